"""The training loop of one machine's workers, and `run_training`, the entry point of every stage.

`run_training` takes a config, a `BatchSource`, optionally a checkpoint to start from and a stage
name for MLflow. One worker trains in this process; data-parallel workers on one site run this
loop as Ray actors joined by one torch.distributed group (gloo on CPU, NCCL on CUDA), rank 0
logging to MLflow, printing progress and writing checkpoints with every rank's own optimizer and
data state. Sites that synchronise through a hub (DiLoCo, or DDP across sites) run in
tasks/llm/hub.py, whose workers take their steps with `take_step` too.
With `sdc` on, a fault injector wraps a step's forward and backward and a guard reviews its
gradients before they are applied: recompute, skip or roll back (tasks/llm/sdc.py).
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from tasks.common.atomic import atomic_dir, write_json, write_text
from tasks.common.errors import InputError
from tasks.common.paths import project_root
from tasks.common.precision import cpu_model, hardware_tags, resolve_precision, torch_dtype
from tasks.common.progress import Progress
from tasks.common.registry import is_model_uri
from tasks.llm.bpb import bits_per_byte
from tasks.llm.checkpoint import (
    CheckpointError,
    load_state,
    load_weights,
    mark_latest,
    read_meta,
    resolve_checkpoint,
    resume_point,
    save_checkpoint,
    save_state,
    step_folders,
)
from tasks.llm.config import PretrainConfig
from tasks.llm.data import BatchSource
from tasks.llm.ddp import CommStats, allreduce_gradients
from tasks.llm.device import dist_backend, resolve_device
from tasks.llm.flops import device_name, utilisation
from tasks.llm.model import GPT, GPTConfig
from tasks.llm.optim import build_optimizers, lr_multiplier, set_lr
from tasks.llm.sdc import attach as attach_sdc
from tasks.llm.sdc import write_events


@dataclass
class RunContext:
    """What every rank needs besides the config and the data: all paths absolute."""

    out_dir: str
    stage: str = "pretrain"
    init_checkpoint: str | None = None
    resume_from: str | None = None
    mlflow_run_id: str | None = None
    tracking_uri: str | None = None
    dist_url: str | None = None
    device: str = "cpu"
    tags: dict[str, str] = field(default_factory=dict)


def plan(cfg: PretrainConfig, source: BatchSource) -> tuple[int, int]:
    """(optimizer steps, micro-batches per step per worker) from the batch and budget settings."""
    per_forward = _batch_tokens(source, cfg)
    world = cfg.world_size
    accum = 1
    if cfg.total_batch_tokens:
        if cfg.total_batch_tokens % (per_forward * world):
            raise InputError(f"total_batch_tokens={cfg.total_batch_tokens} is not a multiple of "
                             f"{world} worker(s) x {per_forward} tokens per forward")
        accum = cfg.total_batch_tokens // (per_forward * world)
    steps = math.ceil(cfg.token_budget / (per_forward * world * accum)) if cfg.token_budget else cfg.steps
    if steps < 1:
        raise InputError("nothing to train: steps and token_budget are both 0")
    return steps, accum


def _batch_tokens(source: BatchSource, cfg: PretrainConfig) -> int:
    b = getattr(source, "batch_size", cfg.device_batch_size)
    t = getattr(source, "seq_len", cfg.sequence_len)
    return b * t


def build_model(cfg: PretrainConfig, vocab_size: int, init_checkpoint: str | None) -> tuple[GPT, dict]:
    """A fresh GPT from the config (seeded: identical on every rank), or the weights of a checkpoint."""
    torch.manual_seed(cfg.seed)
    if init_checkpoint:
        meta = read_meta(init_checkpoint)
        model = GPT(GPTConfig(**meta["model_config"]))
        if vocab_size is not None and vocab_size != model.config.vocab_size:
            raise ValueError(f"checkpoint {init_checkpoint} has vocabulary {model.config.vocab_size}, "
                             f"the data has {vocab_size}: they come from different tokenizers")
        load_weights(model, init_checkpoint)
        return model, meta
    return GPT(GPTConfig.from_depth(cfg.depth, vocab_size, cfg.sequence_len, cfg.n_kv_head)), {}


def prepare_model(cfg: PretrainConfig, source: BatchSource, init_checkpoint: str | None, device: str) -> tuple[GPT, dict]:
    """`build_model` on `device`, in training mode, compiled when the config says so."""
    model, meta = build_model(cfg, getattr(source, "vocab_size", None), init_checkpoint)
    model.to(device).train()
    if cfg.compile:
        if device == "cpu":
            require_cpp_compiler()
        model.compile_for_training()
    return model, meta


def require_cpp_compiler() -> None:
    """torch.compile on a CPU builds C++ kernels: without a compiler it fails deep inside the first step."""
    if not any(shutil.which(c) for c in (os.environ.get("CXX"), "g++", "clang++") if c):
        raise InputError("compile: true needs a C++ compiler (g++ or clang++, or $CXX) for torch.compile on CPU; "
                         "install one or set compile: false (--set compile=false)")


def progress_log(out_dir: str | Path) -> Path:
    """Where rank 0 appends its progress lines (relayed into the Prefect flow run's log)."""
    return Path(out_dir) / "progress.log"


def previous_run(out: Path) -> str | None:
    """What an earlier run left in `out` (its final model or checkpoints), or None if nothing."""
    found = []
    if (out / "model" / "meta.json").is_file():
        found.append("model/")
    steps = step_folders(out / "checkpoints")
    if steps:
        found.append(f"checkpoints up to {steps[0].name}")
    return " and ".join(found) or None


def check_out_dir(cfg: PretrainConfig, out: Path) -> None:
    """Refuse to train over an earlier run unless the user said --resume or --overwrite."""
    earlier = previous_run(out)
    if earlier and not cfg.resume and not cfg.overwrite:
        raise CheckpointError(f"{out} already holds a run ({earlier}); pass --resume to continue it, --overwrite "
                              "to replace it, or choose another folder with --set out_dir=...")


def choose_resume(cfg: PretrainConfig, out: Path, steps: int, log=print) -> Path | None:
    """The checkpoint a --resume continues from: the newest intact one, damaged ones skipped and said.

    Checkpoints that exist but are all damaged are an error, never a silent restart from step 0."""
    root = out / "checkpoints"
    folder, notes = resume_point(root, None if cfg.on_hub else cfg.world_size)
    for note in notes:
        log(f"resume: {note}")
    if folder is None:
        if notes:
            raise CheckpointError(f"--resume: no intact checkpoint in {root}; pass --overwrite to start over")
        log(f"resume: no checkpoint in {root}, starting from step 0")
        return None
    meta = read_meta(folder)
    if meta["mode"] != cfg.mode or ("states" in meta) != cfg.on_hub or (
            not cfg.on_hub and meta["world_size"] != cfg.world_size):
        raise CheckpointError(f"{folder} was written by {meta['world_size']} worker(s) in mode {meta['mode']}; "
                              f"resume it with the same mode and workers (asked: {cfg.world_size}, {cfg.mode}; "
                              "runs across sites may resume with other sites)")
    if meta["step"] > steps:
        raise CheckpointError(f"{folder} is at step {meta['step']}, beyond this run's {steps} steps; "
                              "raise --steps or start a new run")
    log(f"resume: resuming from {folder} at step {meta['step']}")
    return folder


class _Due:
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


def train_worker(cfg: PretrainConfig, source: BatchSource, rank: int, world: int, ctx: RunContext) -> dict:
    """Train as rank `rank` of `world`; returns the run summary (rank 0) or this rank's stats."""
    torch.set_num_threads(cfg.threads_per_worker or max(1, (os.cpu_count() or 1) // world))
    if world > 1:
        dist.init_process_group(dist_backend(ctx.device), init_method=ctx.dist_url, rank=rank, world_size=world)
    try:
        return _train(cfg, source, rank, world, ctx)
    finally:
        if world > 1:
            dist.destroy_process_group()


def _train(cfg: PretrainConfig, source: BatchSource, rank: int, world: int, ctx: RunContext) -> dict:
    steps, accum = plan(cfg, source)
    device = ctx.device
    model, init_meta = prepare_model(cfg, source, ctx.init_checkpoint, device)
    precision = resolve_precision(cfg.precision, device)
    autocast = precision == "bf16"
    optimizers = build_optimizers(model, cfg.optim, precision)
    comm = CommStats()
    ckpt_root = Path(ctx.out_dir) / "checkpoints"
    step, position, history, evals = 0, None, [], []
    latest = Path(ctx.resume_from) if ctx.resume_from else None
    if latest is not None:
        step, position, meta = _restore(latest, model, optimizers, rank)
        history, evals = meta["history"], meta["evals"]
        comm = CommStats(**meta["comm"])

    lead = rank == 0
    batches = source.batches(rank, world, position)
    has_val = lead and hasattr(source, "val_batches")
    token_bytes = source.token_bytes() if has_val else None
    dtype = torch_dtype(precision)
    sdc_log, injector, guard = attach_sdc(model, optimizers, cfg, rank, dtype, shared=cfg.mode == "ddp" and world > 1)
    flops_per_token = model.num_flops_per_token()
    logger = _MlflowLogger(ctx) if lead else None
    if lead:
        logger.tags({"precision": precision, **hardware_tags()})
    progress = Progress(steps, f"{ctx.stage}/{cfg.mode}", unit="tok", log_file=progress_log(ctx.out_dir)) if lead else None
    eval_due, ckpt_due = _Due(cfg.eval_every, step), _Due(cfg.checkpoint_every, step)
    train_seconds, throughput = 0.0, _Throughput()
    last_mult = None

    while step < steps:
        t0 = time.perf_counter()
        mult = lr_multiplier(step, steps, cfg.optim)
        if mult != last_mult:
            set_lr(optimizers, mult)
            last_mult = mult
        micro = [next(batches) for _ in range(accum)]
        position = micro[-1][2]
        action, loss_sum, step_tokens = take_step(
            model, optimizers, micro, step, accum=accum, autocast=autocast, device=device, clip=cfg.optim.grad_clip,
            injector=injector, guard=guard, can_roll_back=latest is not None,
            allreduce=functools.partial(allreduce_gradients, model, comm) if world > 1 else None)
        if action == "rollback":  # every rank at once: DDP ranks share the flag
            step, position, meta = _restore(latest, model, optimizers, rank)
            history, evals = meta["history"], meta["evals"]
            batches = source.batches(rank, world, position)
            eval_due, ckpt_due, last_mult = _Due(cfg.eval_every, step), _Due(cfg.checkpoint_every, step), None
            continue
        step += 1
        last = step == steps
        step_seconds = time.perf_counter() - t0
        train_seconds += step_seconds
        throughput.add(step_seconds, step_tokens * world)
        history.append(loss_sum / accum)
        if not lead:
            if ckpt_due(step, last):
                latest = _checkpoint(ckpt_root, model, optimizers, position, rank, world, step, {})
            continue
        rate = throughput.rate()
        progress.update(step, step_tokens * world, loss=history[-1])
        metrics = {}
        if step % cfg.log_every == 0 or last:
            metrics = {"train_loss": history[-1], "tokens_per_s": rate, "lr_multiplier": mult,
                       "mfu": utilisation(flops_per_token * rate / world, dtype, device)[0], "comm_bytes": comm.bytes,
                       "comm_seconds": comm.seconds, "sync_rounds": comm.rounds}
        if has_val and eval_due(step, last):
            bpb = bits_per_byte(model, source.val_batches(cfg.eval_tokens), token_bytes, autocast)
            evals.append({"step": step, "val_bpb": bpb})
            metrics["val_bpb"] = bpb
            progress.say(f"[{ctx.stage}/{cfg.mode}] step {step}: val bpb {bpb:.4f}")
        if sdc_log is not None:
            metrics.update(sdc_log.step_metrics())
        logger.log(metrics, step)
        if ckpt_due(step, last):
            meta = {"step": step, "history": history, "evals": evals, "comm": comm.as_dict(),
                    "stage": ctx.stage, "mode": cfg.mode, "world_size": world, "config": cfg.model_dump(mode="json"),
                    "tokenizer": getattr(source, "tokenizer_path", "") or init_meta.get("tokenizer", ""),
                    "mlflow_run_id": ctx.mlflow_run_id}
            latest = _checkpoint(ckpt_root, model, optimizers, position, rank, world, step, meta)

    events = sdc_log.summary() if sdc_log is not None else {}
    if not lead:
        return {"rank": rank, "comm": comm.as_dict(), **events}
    model_dir = Path(ctx.out_dir) / "model"  # the final weights, what the next stage starts from
    with atomic_dir(model_dir) as tmp:  # an earlier model/ stays whole until this one is complete
        save_checkpoint(tmp, model, {}, read_meta(latest))
    rate = throughput.rate()
    mfu, peak = utilisation(flops_per_token * rate / world, dtype, device)
    return {
        "stage": ctx.stage, "mode": cfg.mode, "workers": world, "steps": steps, "grad_accum": accum,
        "tokens": steps * accum * world * _batch_tokens(source, cfg),
        "final_train_loss": history[-1] if history else float("nan"),
        "val_bpb": evals[-1]["val_bpb"] if evals else None,
        "tokens_per_s": rate, "mfu": mfu, "matmul_peak_flops": peak, "flops_per_token": flops_per_token,
        "precision": precision, "cpu": cpu_model(), "device": device_name(device),
        "comm_bytes_per_worker": comm.bytes, "comm_seconds": comm.seconds, "sync_rounds": comm.rounds,
        "train_seconds": train_seconds, "history": history, "evals": evals,
        "model_dir": str(model_dir), "n_params": sum(p.numel() for p in model.parameters()), **events,
    }


def take_step(model: GPT, optimizers: list, micro: list, step: int, *, accum: int, autocast: bool, device: str,
              clip: float, injector=None, guard=None, can_roll_back: bool = False, allreduce=None) -> tuple[str, float, int]:
    """One optimizer step of this worker: forward and backward (through the SDC injector and guard when on),
    `allreduce` of the gradients, clipping, the optimizers' step: (action, summed loss, tokens).

    The action is "step", "skip" (the guard dropped it) or "rollback" (the caller restores a checkpoint)."""
    compute = functools.partial(_forward_backward, model, micro, accum, autocast, device)
    if injector is not None:
        compute = injector.wrap(step + 1, compute)
    if guard is None:
        action, (loss_sum, tokens) = "step", compute()
    else:
        action, (loss_sum, tokens) = guard.review(step + 1, compute, can_roll_back=can_roll_back)
    if action == "step":
        if allreduce is not None:
            allreduce()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        for opt in optimizers:
            opt.step()
    model.zero_grad(set_to_none=True)
    return action, loss_sum, tokens


def _forward_backward(model: GPT, micro: list, accum: int, autocast: bool, device: str) -> tuple[float, int]:
    """Forward and backward of one step's micro-batches, gradients accumulating: (summed loss, tokens)."""
    loss_sum, tokens = 0.0, 0
    for x, y, _ in micro:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            loss = model(x, y)
        (loss / accum).backward()
        loss_sum += loss.item()
        tokens += x.numel()
    return loss_sum, tokens


def _restore(folder: Path, model: GPT, optimizers, rank: int) -> tuple[int, dict, dict]:
    """Weights and this rank's optimizer and data state from a checkpoint: (step, data position, meta)."""
    meta = read_meta(folder)
    load_weights(model, folder)
    mine = load_state(folder / f"rank{rank}.pt")
    for opt, state in zip(optimizers, mine["optimizers"]):
        opt.load_state_dict(state)
    return meta["step"], mine["position"], meta


def _checkpoint(root: Path, model: GPT, optimizers, position: dict, rank: int,
                world: int, step: int, meta: dict) -> Path:
    """Every rank writes its own state into a temporary folder; rank 0 completes it and renames it."""
    final = root / f"step_{step:06d}"
    tmp = root / f".{final.name}.tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    save_state(tmp / f"rank{rank}.pt", {"optimizers": [o.state_dict() for o in optimizers], "position": position})
    if world > 1:
        dist.barrier()
    if rank == 0:
        save_checkpoint(tmp, model, {}, meta)
        if final.exists():  # this run's own damaged checkpoint, skipped by the resume
            shutil.rmtree(final)
        tmp.rename(final)
        mark_latest(root, final)
    return final


class _Throughput:
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


class _MlflowLogger:
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


def run_training(cfg: PretrainConfig, source: BatchSource, init_checkpoint: str | None = None,
                 out_dir: str | Path | None = None, stage: str = "pretrain", tags: dict[str, str] | None = None,
                 schedule: list | None = None) -> dict:
    """Train one stage and return its summary; logs one MLflow run in `cfg.experiment`.

    `init_checkpoint` (midtrain / SFT) starts from those weights with fresh optimizers;
    `cfg.resume` continues this stage's own last checkpoint in `out_dir`; `schedule` (a list of
    tasks/llm/hub.py `RoundPlan`) says which sites train in which round, instead of the config's.
    """
    out = Path(out_dir or project_root() / cfg.out_dir).resolve()
    init = str(resolve_checkpoint(init_checkpoint)) if init_checkpoint else None
    steps, _ = plan(cfg, source)
    device = resolve_device(cfg.device)
    if cfg.compile:
        require_cpp_compiler()
    check_out_dir(cfg, out)
    say = Progress(steps, stage, log_file=progress_log(out)).say
    resume_from = choose_resume(cfg, out, steps, log=lambda line: say(f"[{stage}] {line}")) if cfg.resume else None
    if cfg.overwrite and not cfg.resume:  # asked for: the earlier run's checkpoints go; its model/ stays until replaced
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    tags = {**(tags or {}), **({"init_model": init_checkpoint} if is_model_uri(init_checkpoint) else {})}
    ctx = RunContext(out_dir=str(out), stage=stage, init_checkpoint=init, resume_from=str(resume_from) if resume_from else None,
                     tags=tags, device=device)
    client, run_id = _start_mlflow_run(cfg, ctx, out, steps)
    ctx.mlflow_run_id, ctx.tracking_uri = run_id, client.tracking_uri if client else None
    start = time.perf_counter()
    try:
        if cfg.on_hub:
            from tasks.llm.hub import run_on_hub

            results = [run_on_hub(cfg, source, ctx, schedule)]
        elif cfg.world_size == 1:
            results = [train_worker(cfg, source, 0, 1, ctx)]
        else:
            results = _run_on_ray(cfg, source, ctx)
    except BaseException:
        if client:
            client.set_terminated(run_id, status="FAILED")
        raise
    summary = results[0]
    if "sdc_events" in summary:
        summary.update(write_events(out, [r.pop("sdc_events") for r in results]))
    summary.update(wall_seconds=time.perf_counter() - start, mlflow_run_id=run_id, out_dir=str(out))
    _finish(summary, out, client, run_id, cfg.register_model)
    return summary


def _start_mlflow_run(cfg: PretrainConfig, ctx: RunContext, out: Path, steps: int):
    """Create (or, when resuming, reopen) the stage's MLflow run in the driver."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from tasks.common.tracking import use_experiment

    experiment_id = use_experiment(cfg.experiment)
    client = MlflowClient(mlflow.get_tracking_uri())
    run_id = read_meta(ctx.resume_from).get("mlflow_run_id") if ctx.resume_from else None
    if run_id:
        client.update_run(run_id, status="RUNNING")
        return client, run_id
    name = cfg.run_name or f"{ctx.stage}-{cfg.mode}-d{cfg.depth}"
    tags = {"stage": ctx.stage, "mode": cfg.mode, **ctx.tags}
    run_id = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
    params = _flatten(cfg.model_dump(mode="json"))
    params.update(planned_steps=steps, init_checkpoint=ctx.init_checkpoint or "")
    from mlflow.entities import Param

    client.log_batch(run_id, params=[Param(k, str(v)[:500]) for k, v in params.items()])
    return client, run_id


def _finish(summary: dict, out: Path, client, run_id: str, register: bool) -> None:
    """metrics.json (DVC metrics) and loss.csv (DVC plot), logged to the MLflow run too, with the model."""
    from mlflow.entities import Metric

    scalars = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None}
    write_json(out / "metrics.json", scalars)
    write_text(out / "loss.csv", "step,train_loss\n" + "".join(f"{i + 1},{v:.6f}\n" for i, v in enumerate(summary["history"])))
    if client:
        now = int(time.time() * 1000)
        final = {f"final_{k}": float(v) for k, v in scalars.items() if k.startswith("sdc_") or k in (
            "val_bpb", "tokens_per_s", "mfu", "comm_bytes_per_worker", "comm_seconds", "sync_rounds", "wall_seconds")}
        client.log_batch(run_id, metrics=[Metric(k, v, now, summary["steps"]) for k, v in final.items()])
        for name in ("metrics.json", "loss.csv") + (("sdc_events.csv",) if "sdc_flag_steps" in summary else ()):
            client.log_artifact(run_id, str(out / name))
        if summary["stage"] != "bench":  # benchmarks train throwaway models in temporary folders
            summary.update(_log_model(client, run_id, summary, register))
        client.set_terminated(run_id, status="FINISHED")


def _log_model(client, run_id: str, summary: dict, register: bool) -> dict[str, str]:
    """The final model as the run's MLflow model, registered as seedflow-llm-<stage> when `register`."""
    from tasks.llm.registry import log_checkpoint

    tags = {"stage": summary["stage"], "mode": summary["mode"], "precision": summary["precision"]}
    logged = log_checkpoint(run_id, Path(summary["model_dir"]), tags, register)
    if "registered_model" in logged:
        client.set_tag(run_id, "registered_model", logged["registered_model"])
    return logged


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _run_on_ray(cfg: PretrainConfig, source: BatchSource, ctx: RunContext) -> list[dict]:
    """One Ray actor per rank; rank 0's node address hosts the gloo rendezvous."""
    import ray

    from tasks.common.ray_runtime import cluster_cpus, ensure_ray

    ensure_ray()
    world = cfg.world_size
    cpus = min(1.0, cluster_cpus() / world)  # never ask for more than the cluster has: that would hang
    actor_cls = ray.remote(_TrainActor)
    env = {"OMP_WAIT_POLICY": "PASSIVE"}  # idle OpenMP threads sleep: spinning wrecks a shared CPU
    gpus = 1 if ctx.device == "cuda" else 0
    actors = [actor_cls.options(num_cpus=cpus, num_gpus=gpus, runtime_env={"env_vars": env}).remote() for _ in range(world)]
    try:
        host, port = ray.get(actors[0].address.remote())
        ctx.dist_url = f"tcp://{host}:{port}"
        return ray.get([a.run.remote(cfg, source, rank, world, ctx) for rank, a in enumerate(actors)])
    finally:
        for actor in actors:
            ray.kill(actor)


class _TrainActor:
    def address(self) -> tuple[str, int]:
        import ray

        from tasks.common.ports import free_port

        return ray.util.get_node_ip_address(), free_port()

    def run(self, cfg: PretrainConfig, source: BatchSource, rank: int, world: int, ctx: RunContext) -> dict:
        return train_worker(cfg, source, rank, world, ctx)
