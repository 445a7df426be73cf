"""What every trainer keeps besides the weights: its cadence, throughput and MLflow metrics, the checkpoint
meta and the run summary. Single-machine runs (tasks/llm/train/local.py) and runs across sites
(tasks/llm/sites/hub.py) build the last two here, so they report the same keys the same way."""

from __future__ import annotations

import time

from tasks.common.precision import cpu_model
from tasks.llm.config import PretrainConfig
from tasks.llm.model.flops import device_name, utilisation
from tasks.llm.train.run_folder import RunContext


class Due:
    """Fires at the first allowed step at or after every multiple of `every` (and at the end)."""

    def __init__(self, every: int, step: int):
        self.every, self.next = every, (step // every + 1) * every if every else None

    def __call__(self, step: int, last: bool) -> bool:
        if last:
            return True
        if self.next is None or step < self.next:
            return False
        self.next = (step // self.every + 1) * self.every
        return True


class Throughput:
    """Tokens/s of this process after its first step, which pays for compilation and warm-up."""

    def __init__(self):
        self.first: tuple[float, int] | None = None
        self.seconds, self.tokens = 0.0, 0

    def add(self, seconds: float, tokens: int) -> None:
        if self.first is None:
            self.first = (seconds, tokens)
        else:
            self.seconds, self.tokens = self.seconds + seconds, self.tokens + tokens

    def rate(self) -> float:
        if self.seconds > 0:
            return self.tokens / self.seconds
        return self.first[1] / self.first[0] if self.first and self.first[0] > 0 else 0.0


class MlflowLogger:
    """Metrics of rank 0 into the run the driver created (no active-run state in the worker)."""

    def __init__(self, ctx: RunContext):
        self.client, self.run_id = None, ctx.mlflow_run_id
        if self.run_id:
            from mlflow.tracking import MlflowClient

            self.client = MlflowClient(ctx.tracking_uri)

    def tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items() if self.client else ():
            self.client.set_tag(self.run_id, key, value)

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.client is None or not metrics:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])


def checkpoint_meta(cfg: PretrainConfig, ctx: RunContext, source, init_meta: dict, *, step: int, history: list,
                    evals: list, comm: dict, world: int, **extra) -> dict:
    """meta.json of a checkpoint: where the run is, its books so far, and what a resume or the next stage needs."""
    return {"step": step, "history": history, "evals": evals, "comm": comm, "stage": ctx.stage, "mode": cfg.mode,
            "world_size": world, **extra, "config": cfg.model_dump(mode="json"),
            "tokenizer": getattr(source, "tokenizer_path", "") or init_meta.get("tokenizer", ""),
            "mlflow_run_id": ctx.mlflow_run_id}


def run_summary(cfg: PretrainConfig, ctx: RunContext, model, *, workers: int, steps: int, accum: int, tokens: int,
                history: list, evals: list, rate: float, dtype, precision: str, comm_bytes: int,
                comm_seconds: float, sync_rounds: int, train_seconds: float, model_dir, **extra) -> dict:
    """The summary every stage returns (metrics.json, MLflow, the flows' reports); `extra`: a trainer's own keys."""
    flops_per_token = model.num_flops_per_token()
    mfu, peak = utilisation(flops_per_token * rate / max(1, workers), dtype, ctx.device)
    return {
        "stage": ctx.stage, "mode": cfg.mode, "workers": workers, "steps": steps, "grad_accum": accum, "tokens": tokens,
        "final_train_loss": history[-1] if history else float("nan"),
        "val_bpb": evals[-1]["val_bpb"] if evals else None,
        "tokens_per_s": rate, "mfu": mfu, "matmul_peak_flops": peak, "flops_per_token": flops_per_token,
        "precision": precision, "cpu": cpu_model(), "device": device_name(ctx.device),
        "comm_bytes_per_worker": comm_bytes, "comm_seconds": comm_seconds, "sync_rounds": sync_rounds,
        "train_seconds": train_seconds, "history": history, "evals": evals, "model_dir": str(model_dir),
        "n_params": sum(p.numel() for p in model.parameters()), **extra,
    }
