"""`seedflow bench pretrain`: how well single-process training uses the CPU, and what DiLoCo saves.

Throughput runs the real trainer on random tokens (speed does not depend on the text) and divides
by matmul peaks measured in the same process. The DDP / DiLoCo comparison trains the same model,
from the same seeds, on the same number of tinyshakespeare tokens (bytes as tokens, so val loss is
directly bits per byte) on 2 Ray workers.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from tasks.common.paths import data_dir as resolve_data_dir
from tasks.llm.config import PretrainConfig
from tasks.llm.data.batches import TokenStreamSource
from tasks.llm.train.run import run_training

EXPERIMENT = "llm-bench"


def single_throughput(depth: int, seq_len: int, vocab: int, batch_size: int = 8, accum: int = 8, steps: int = 4,
                      compile: bool = True, precision: str = "auto", device: str = "cpu") -> dict:
    """The trainer's tokens/s (after its warm-up step) and MFU for one process on random tokens.

    `accum` micro-batches per optimizer step, as real pretraining's large batches amortise the
    optimizer (Muon's Newton-Schulz work is per step, not per token, and is not model FLOPs).
    MFU is against the matmul peak of the dtype the run used, measured in this process.
    """
    rng = np.random.default_rng(0)
    n = batch_size * seq_len * (steps * accum + 2)
    source = TokenStreamSource(batch_size, seq_len, arrays={"train": rng.integers(0, vocab, n), "val": rng.integers(0, vocab, n // 4)},
                               byte_lengths=np.ones(vocab, dtype=np.int64))
    cfg = PretrainConfig(depth=depth, sequence_len=seq_len, device_batch_size=batch_size,
                         total_batch_tokens=batch_size * seq_len * accum, steps=steps, mode="single", compile=compile,
                         eval_every=0, eval_tokens=batch_size * seq_len, checkpoint_every=0, experiment=EXPERIMENT,
                         precision=precision, device=device,
                         run_name=f"bench-throughput-d{depth}{'-compiled' if compile else ''}")
    with tempfile.TemporaryDirectory() as tmp:
        s = run_training(cfg, source, out_dir=tmp, stage="bench")
    achieved = s["flops_per_token"] * s["tokens_per_s"]
    return {"depth": depth, "sequence_len": seq_len, "vocab_size": vocab, "batch_tokens": batch_size * seq_len * accum,
            "compile": compile, "precision": s["precision"], "device": s["device"], "threads": torch.get_num_threads(),
            "tokens_per_s": round(s["tokens_per_s"], 1), "achieved_tflops": round(achieved / 1e12, 4),
            "peak_tflops": round(s["matmul_peak_flops"] / 1e12, 4), "mfu": round(s["mfu"], 4)}


def shakespeare_bytes(data_dir: str | None, batch_size: int, seq_len: int) -> TokenStreamSource:
    folder = resolve_data_dir(data_dir)
    path = folder / "text" / "tinyshakespeare.txt" if folder else None
    if path is None or not path.is_file():
        raise FileNotFoundError(f"tinyshakespeare.txt not found under {folder} (pass --data-dir)")
    arr = np.frombuffer(path.read_bytes(), dtype=np.uint8).astype(np.uint16)
    cut = int(len(arr) * 0.95)
    return TokenStreamSource(batch_size, seq_len, arrays={"train": arr[:cut], "val": arr[cut:]},
                             byte_lengths=np.ones(256, dtype=np.int64))


def compare_ddp_diloco(data_dir: str | None, steps: int, inner_steps: int, workers: int = 2,
                       seeds: tuple[int, ...] = (0, 1, 2)) -> dict:
    """DDP vs DiLoCo per seed (the same seed and tokens for every variant); bpb figures are seed means.

    At this size one seed's gap moves by a few points with any change in rounding, hence several.
    """
    source = shakespeare_bytes(data_dir, batch_size=8, seq_len=128)
    common = dict(depth=2, sequence_len=128, device_batch_size=8, steps=steps, workers=workers, threads_per_worker=1,
                  eval_every=0, eval_tokens=32768, checkpoint_every=0, compile=False, experiment=EXPERIMENT)
    # "diloco" uses the default outer optimizer (Nesterov, lr 0.7, momentum 0.9); "diloco_avg" plain
    # averaging of the workers (outer lr 1, no momentum), which tracks DDP more closely at this tiny scale.
    variants = {"ddp": ("ddp", {}), "diloco": ("diloco", {}), "diloco_avg": ("diloco", {"outer_lr": 1.0, "outer_momentum": 0.0})}
    runs = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for name, (mode, outer) in variants.items():
                cfg = PretrainConfig(mode=mode, run_name=f"bench-{name}-seed{seed}", seed=seed,
                                     diloco={"inner_steps": inner_steps, **outer}, **common)
                runs[name].append(run_training(cfg, source, out_dir=Path(tmp) / f"{name}{seed}", stage="bench"))
    out = {"workers": workers, "steps": steps, "inner_steps": inner_steps, "seeds": list(seeds),
           "tokens": runs["ddp"][0]["tokens"]}
    for name, per_seed in runs.items():
        bpb = [s["val_bpb"] for s in per_seed]
        out[name] = {"val_bpb": round(float(np.mean(bpb)), 4), "val_bpb_per_seed": [round(b, 4) for b in bpb],
                     "bytes_per_worker": per_seed[0]["comm_bytes_per_worker"], "sync_rounds": per_seed[0]["sync_rounds"],
                     "comm_seconds": round(float(np.mean([s["comm_seconds"] for s in per_seed])), 2),
                     "wall_s": round(float(np.mean([s["wall_seconds"] for s in per_seed])), 1),
                     "tokens_per_s": round(float(np.mean([s["tokens_per_s"] for s in per_seed])), 1)}
    ddp, dil = out["ddp"], out["diloco"]
    out["bytes_ratio_ddp_over_diloco"] = round(ddp["bytes_per_worker"] / max(dil["bytes_per_worker"], 1), 2)
    out["bpb_gap_diloco_vs_ddp"] = round(dil["val_bpb"] / ddp["val_bpb"] - 1, 4)
    out["bpb_gap_diloco_avg_vs_ddp"] = round(out["diloco_avg"]["val_bpb"] / ddp["val_bpb"] - 1, 4)
    return out
