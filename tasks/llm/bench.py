"""`seedflow bench pretrain`: how well single-process training uses the CPU, and what DiLoCo saves.

Throughput runs the real trainer on random tokens (speed does not depend on the text) and divides
by matmul peaks measured in the same process. The DDP / DiLoCo comparison trains the same model,
from the same seed, on the same number of tinyshakespeare tokens (bytes as tokens, so val loss is
directly bits per byte) on 2 Ray workers.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from tasks.common.paths import data_dir as resolve_data_dir
from tasks.llm.config import PretrainConfig
from tasks.llm.data import TokenStreamSource
from tasks.llm.flops import matmul_peak
from tasks.llm.train import run_training

EXPERIMENT = "llm-bench"


def single_throughput(depth: int, seq_len: int, vocab: int, batch_size: int = 8, accum: int = 8, steps: int = 4,
                      compile: bool = True) -> dict:
    """The trainer's tokens/s (after its warm-up step) and MFU for one process on random tokens.

    `accum` micro-batches per optimizer step, as real pretraining's large batches amortise the
    optimizer (Muon's Newton-Schulz work is per step, not per token, and is not model FLOPs).
    """
    peak_bf16, peak_fp32 = matmul_peak(torch.bfloat16, n=2048), matmul_peak(torch.float32, n=2048)
    rng = np.random.default_rng(0)
    n = batch_size * seq_len * (steps * accum + 2)
    source = TokenStreamSource(batch_size, seq_len, arrays={"train": rng.integers(0, vocab, n), "val": rng.integers(0, vocab, n // 4)},
                               byte_lengths=np.ones(vocab, dtype=np.int64))
    cfg = PretrainConfig(depth=depth, sequence_len=seq_len, device_batch_size=batch_size,
                         total_batch_tokens=batch_size * seq_len * accum, steps=steps, mode="single", compile=compile,
                         eval_every=0, eval_tokens=batch_size * seq_len, checkpoint_every=0, experiment=EXPERIMENT,
                         run_name=f"bench-throughput-d{depth}{'-compiled' if compile else ''}")
    with tempfile.TemporaryDirectory() as tmp:
        s = run_training(cfg, source, out_dir=tmp, stage="bench")
    achieved = s["flops_per_token"] * s["tokens_per_s"]
    return {"depth": depth, "sequence_len": seq_len, "vocab_size": vocab, "batch_tokens": batch_size * seq_len * accum,
            "compile": compile, "threads": torch.get_num_threads(), "tokens_per_s": round(s["tokens_per_s"], 1),
            "achieved_tflops": round(achieved / 1e12, 4), "peak_bf16_tflops": round(peak_bf16 / 1e12, 3),
            "peak_fp32_tflops": round(peak_fp32 / 1e12, 3), "mfu_vs_bf16_peak": round(achieved / peak_bf16, 4),
            "mfu_vs_fp32_peak": round(achieved / peak_fp32, 4)}


def shakespeare_bytes(data_dir: str | None, batch_size: int, seq_len: int) -> TokenStreamSource:
    folder = resolve_data_dir(data_dir)
    path = folder / "text" / "tinyshakespeare.txt" if folder else None
    if path is None or not path.is_file():
        raise FileNotFoundError(f"tinyshakespeare.txt not found under {folder} (pass --data-dir)")
    arr = np.frombuffer(path.read_bytes(), dtype=np.uint8).astype(np.uint16)
    cut = int(len(arr) * 0.95)
    return TokenStreamSource(batch_size, seq_len, arrays={"train": arr[:cut], "val": arr[cut:]},
                             byte_lengths=np.ones(256, dtype=np.int64))


def compare_ddp_diloco(data_dir: str | None, steps: int, inner_steps: int, workers: int = 2) -> dict:
    source = shakespeare_bytes(data_dir, batch_size=8, seq_len=128)
    common = dict(depth=2, sequence_len=128, device_batch_size=8, steps=steps, workers=workers, threads_per_worker=1,
                  eval_every=0, eval_tokens=32768, checkpoint_every=0, seed=0, experiment=EXPERIMENT)
    # "diloco" uses the default outer optimizer (Nesterov, lr 0.7, momentum 0.9); "diloco_avg" plain
    # averaging of the workers (outer lr 1, no momentum), which tracks DDP more closely at this tiny scale.
    variants = {"ddp": ("ddp", {}), "diloco": ("diloco", {}), "diloco_avg": ("diloco", {"outer_lr": 1.0, "outer_momentum": 0.0})}
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (mode, outer) in variants.items():
            cfg = PretrainConfig(mode=mode, run_name=f"bench-{name}", diloco={"inner_steps": inner_steps, **outer}, **common)
            runs[name] = run_training(cfg, source, out_dir=Path(tmp) / name, stage="bench")
    ddp, dil = runs["ddp"], runs["diloco"]
    out = {"workers": workers, "steps": steps, "inner_steps": inner_steps, "tokens": ddp["tokens"]}
    for mode, s in runs.items():
        out[mode] = {"val_bpb": round(s["val_bpb"], 4), "bytes_per_worker": s["comm_bytes_per_worker"],
                     "sync_rounds": s["sync_rounds"], "comm_seconds": round(s["comm_seconds"], 2),
                     "wall_s": round(s["wall_seconds"], 1), "tokens_per_s": round(s["tokens_per_s"], 1)}
    out["bytes_ratio_ddp_over_diloco"] = round(ddp["comm_bytes_per_worker"] / max(dil["comm_bytes_per_worker"], 1), 2)
    out["bpb_gap_diloco_vs_ddp"] = round(dil["val_bpb"] / ddp["val_bpb"] - 1, 4)
    out["bpb_gap_diloco_avg_vs_ddp"] = round(runs["diloco_avg"]["val_bpb"] / ddp["val_bpb"] - 1, 4)
    return out
