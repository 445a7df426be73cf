"""`seedflow bench sdc`: which injected bit flips harm training, and how many of those the guard catches.

Every trial is one fault event (the study's schedule with `max_events: 1`) in a small GPT trained
from the same seed and data as a fault-free twin: with the guard, to see whether the event is
flagged and whether the recompute prevented harm, and without it, to see whether the event is
harmful (where the guard raised no flag the two runs are the same, bit for bit, so one is enough).
An event is harmful when its unguarded run
- has a non-finite loss or final weight, or
- spikes: a train loss more than `spike_nats` above the twin's at the same step, or
- drifts: final weights at a relative L2 distance over `drift` from the twin's.
A false alarm is a flag at a step without a fault (clean runs and the clean steps of every
guarded run). The val bpb comparison runs the full schedule (several events) of the most
harmful class at `schedule_p`. Guard overhead is step time with the guard on and no faults over the
same steps without the guard's checks, timed inside the clean guarded runs (so another job on the
CPU slows both alike); tokens/s of whole runs with the guard on and off are given beside it.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import torch

from tasks.common.paths import data_dir as resolve_data_dir
from tasks.llm.checkpoint import load_model
from tasks.llm.config import PretrainConfig
from tasks.llm.corpus import generate_corpus
from tasks.llm.data import TokenStreamSource
from tasks.llm.sdc import read_events
from tasks.llm.train import run_training

EXPERIMENT = "llm-bench"
BIT_CLASSES = ("sign", "exp_high", "exp_low", "mantissa")
STAGES = ("forward", "backward")


def byte_corpus(data_dir: str | None, batch_size: int, seq_len: int) -> tuple[TokenStreamSource, str]:
    """tinyshakespeare as byte tokens where the data folder has it, else the generated corpus."""
    folder = resolve_data_dir(data_dir)
    path = folder / "text" / "tinyshakespeare.txt" if folder else None
    name, raw = ("tinyshakespeare", path.read_bytes()) if path and path.is_file() else \
        ("generated", generate_corpus(1_000_000).encode())
    arr = np.frombuffer(raw, dtype=np.uint8).astype(np.uint16)
    cut = int(len(arr) * 0.95)
    return TokenStreamSource(batch_size, seq_len, arrays={"train": arr[:cut], "val": arr[cut:]},
                             byte_lengths=np.ones(256, dtype=np.int64)), name


class _Runs:
    """Trains variants of one base config, each in its own folder: (summary, events, flat final weights)."""

    def __init__(self, base: dict, source: TokenStreamSource, root: Path):
        self.base, self.source, self.root, self.n = base, source, root, 0

    def __call__(self, name: str, inject: dict | None = None, guard: bool = False) -> tuple[dict, list[dict], torch.Tensor]:
        self.n += 1
        sdc = {"inject": {"enabled": True, **inject} if inject else {}, "guard": {"enabled": guard}}
        cfg = PretrainConfig(**self.base, run_name=f"bench-sdc-{name}", sdc=sdc)
        out = self.root / f"{self.n:03d}"
        summary = run_training(cfg, self.source, out_dir=out, stage="bench")
        events = read_events(out) if inject or guard else []
        weights = torch.cat([p.detach().flatten() for p in load_model(summary["model_dir"])[0].parameters()])
        return summary, events, weights


def harm(summary: dict, weights: torch.Tensor, twin: dict, twin_weights: torch.Tensor, spike_nats: float,
         drift: float) -> str:
    """Why a run is harmed against its fault-free twin ('' when it is not)."""
    if not (all(math.isfinite(v) for v in summary["history"]) and torch.isfinite(weights).all()):
        return "non-finite"
    if max(a - b for a, b in zip(summary["history"], twin["history"])) > spike_nats:
        return "spike"
    return "drift" if ((weights - twin_weights).norm() / twin_weights.norm()).item() > drift else ""


def _trial(run: _Runs, name: str, inject: dict, twin: tuple, spike_nats: float, drift: float) -> dict | None:
    """One fault event with the guard, and without it where the guard acted (an idle guard changes no bit,
    so where it raised no flag the guarded run is the unguarded one)."""
    guarded, events, guarded_w = run(f"{name}-guarded", inject, guard=True)
    faulty = {e["step"] for e in events if e["event"] == "fault"}
    if not faulty:  # the event never started
        return None
    flags = [e for e in events if e["event"] == "flag"]
    hit, _, hit_w = run(name, inject) if flags else (guarded, None, guarded_w)
    return {"faulty": faulty, "flagged": {e["step"] for e in flags}, "steps": guarded["steps"],
            "harm": harm(hit, hit_w, twin[0], twin[1], spike_nats, drift),
            "harm_guarded": harm(guarded, guarded_w, twin[0], twin[1], spike_nats, drift),
            "reasons": [e["detail"] for e in flags if e["step"] in faulty]}


def _by_statistic(reasons: list[str]) -> dict[str, int]:
    """Which part of the rule raised the flags: a non-finite gradient norm, or the jump of an optimizer's R."""
    return {"not_finite": sum(r.startswith("grad norm") for r in reasons),
            **{kind: sum(f"{kind} R" in r for r in reasons) for kind in ("adamw", "muon")}}


def study(data_dir: str | None = None, steps: int = 100, depth: int = 2, seq_len: int = 64, batch_size: int = 8,
          seeds: tuple[int, ...] = tuple(range(8)), p: float = 0.05, schedule_p: float = 0.1, spike_nats: float = 0.5,
          drift: float = 0.05) -> dict:
    """The sweep bit class x stage x seeds (one event per trial; a seed places the event, at the same step and
    element for every class), the clean runs and the full-schedule runs."""
    source, corpus = byte_corpus(data_dir, batch_size, seq_len)
    base = {"depth": depth, "sequence_len": seq_len, "device_batch_size": batch_size, "steps": steps, "eval_every": 0,
            "eval_tokens": 16384, "log_every": 10, "checkpoint_every": 0, "threads_per_worker": 0, "precision": "fp32",
            "compile": False, "experiment": EXPERIMENT}
    with tempfile.TemporaryDirectory() as tmp:
        run = _Runs(base, source, Path(tmp))
        twin, _, twin_w = run("twin")
        clean, plain = [], [twin]
        for _ in range(2):  # guard on and off in turn: on a shared CPU the best of each is the fair step time
            clean.append(run("clean-guarded", guard=True)[0])
            plain.append(run("clean")[0])
        per_class, trials = {}, []
        for bit_class in BIT_CLASSES:
            for stage in STAGES:
                found = [_trial(run, f"{bit_class}-{stage}-{seed}", {"p": p, "max_events": 1, "bit_class": bit_class,
                                                                           "stage": stage, "seed": seed},
                                (twin, twin_w), spike_nats, drift) for seed in seeds]
                found = [t for t in found if t]
                trials += found
                harmful = [t for t in found if t["harm"]]
                per_class[f"{bit_class}/{stage}"] = {
                    "events": len(found), "detected": sum(bool(t["flagged"] & t["faulty"]) for t in found),
                    "harmful": len(harmful), "harmful_detected": sum(bool(t["flagged"] & t["faulty"]) for t in harmful),
                    "harmful_prevented": sum(not t["harm_guarded"] for t in harmful),
                    "harm_kinds": sorted({t["harm"] for t in harmful})}
        schedule = {}
        for stage in STAGES:
            inject = {"p": schedule_p, "bit_class": "exp_high", "stage": stage, "seed": 100}
            hit = run(f"schedule-{stage}", inject)[0]
            guarded = run(f"schedule-{stage}-guarded", inject, guard=True)[0]
            schedule[stage] = {"faulty_unguarded": _bpb(hit), "faulty_guarded": _bpb(guarded),
                               "fault_steps": hit["sdc_fault_steps"], "recomputes": guarded["sdc_recompute_steps"],
                               "skips": guarded["sdc_skip_steps"]}
        runs = run.n

    false_flags = sum(s["sdc_flag_steps"] for s in clean) + sum(len(t["flagged"] - t["faulty"]) for t in trials)
    clean_steps = steps * len(clean) + sum(t["steps"] - len(t["faulty"]) for t in trials)
    harmful = [t for t in trials if t["harm"]]
    fault_free = _bpb(twin)
    guarded_bpb = [s["faulty_guarded"] for s in schedule.values()]
    return {
        "corpus": corpus, "model": {"depth": depth, "sequence_len": seq_len, "batch_size": batch_size, "steps": steps,
                                    "optimizer": "muon+adamw"},
        "schedule": {"p": p, "start_step": 10, "duration": [1, 5], "seeds": list(seeds), "full_schedule_p": schedule_p},
        "harm_thresholds": {"spike_nats": spike_nats, "drift_relative_l2": drift},
        "guard": PretrainConfig().sdc.guard.model_dump(exclude={"enabled"}),
        "events": len(trials), "harmful": len(harmful),
        "harmful_detected_rate": _rate(sum(bool(t["flagged"] & t["faulty"]) for t in harmful), len(harmful)),
        "harmful_prevented_rate": _rate(sum(not t["harm_guarded"] for t in harmful), len(harmful)),
        "harmful_flagged_by": _by_statistic([r for t in harmful for r in t["reasons"]]),
        "false_alarm_rate": _rate(false_flags, clean_steps), "false_alarms": false_flags, "clean_steps": clean_steps,
        "per_class_stage": per_class,
        "val_bpb": {"fault_free": fault_free, "schedule_exp_high": schedule,
                    "guarded_gap_vs_fault_free": round(max(guarded_bpb) / fault_free - 1, 4) if None not in guarded_bpb
                    else None},
        "tokens_per_s": {"guard_off": [round(s["tokens_per_s"]) for s in plain],
                         "guard_on": [round(s["tokens_per_s"]) for s in clean]},
        "guard_overhead": round(float(np.median([s["train_seconds"] / (s["train_seconds"] - s["sdc_guard_seconds"])
                                                 for s in clean])), 4),
        "runs": runs,
    }


def _bpb(summary: dict) -> float | None:
    bpb = summary["val_bpb"]
    return round(bpb, 4) if bpb is not None and math.isfinite(bpb) else None


def _rate(n: int, d: int) -> float | None:
    return round(n / d, 4) if d else None
