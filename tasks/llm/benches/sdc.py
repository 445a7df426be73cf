"""`seedflow bench sdc`: which bit flips harm training, and how well the study's detector and two baselines catch them.

Trials: every stage (a Linear's output, its input operand, the gradient into its output, its
weight's optimizer state) x every exponent bit, a mantissa bit and the sign bit x
`trials_per_cell`; one fault event per trial (the injector's schedule from a step drawn uniformly
over the run, a random Linear and element, 1-5 faulty steps) in a small GPT trained `steps` steps
from the seed of one of `twins` fault-free runs (`cells` narrows the sweep to some cells). Bit
positions are those of the faulty element's dtype: the training precision (bf16 where the CPU has
fast bf16, else fp32) for matmuls, fp32 for the optimizer state.

A trial runs without the guard acting: the guard only records each step's statistics
(`on_flag: record`), and the detectors are replayed on them afterwards, every alpha on the same
trials. Up to a detector's first flag that is exactly the run the guard would have trained, so an
event is detected when a detector flags one of its faulty steps (the guard can recompute those);
`within_5` also counts flags up to 5 steps after the event (a rollback could still undo it).
Detectors: the guard's rule (tasks/llm/sdc/guard.py, at each alpha), the non-finite check alone
(gradient norm or loss not finite) and a loss z-score spike detector (loss more than z standard
deviations above the mean of the last `window` unflagged losses, or not finite, at each z). False
alarms are flags on the fault-free twins' steps.

An event is harmful when its run, against its twin (same seed and batches),
- has a non-finite loss or final weight ("non-finite"; otherwise it is a finite event), or
- spikes: a train loss more than `spike_nats` above the twin's at the same step, or
- ends worse: a final val bpb (over the whole val split) more than `worse_bpb` (relative) above the
  twin's.
Final-weight distance is no harm criterion: a perturbed run of this GPT converges elsewhere
(relative L2 of 0.39 from its twin) with no worse a loss.

Cost: the step loop is the trainer's own (`take_step`, its lr schedule and batches, checked bit for
bit against `train_worker` in the same run) held in memory, so a trial starts from the twin's
snapshot before its event (snapshots every 50 steps) and ends early where its outcome is known:
at a non-finite loss, or at a snapshot where its state is bit for bit the twin's again (the rest
of the run is then the twin's). The val bpb target runs the full schedule (events at `schedule_p`,
bits of the configured `bit_class`, per stage of `schedule_stages`) through `train_worker`,
unguarded and with the guard recomputing, against the fault-free twin; `val_bpb_spread` says how
far val bpb moves without harm (the twins' seeds, and harmless trials against their twins).
"""

from __future__ import annotations

import copy
import math
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tasks.common.paths import data_dir as resolve_data_dir
from tasks.common.precision import resolve_precision, torch_dtype
from tasks.llm.model.bpb import bits_per_byte
from tasks.llm.train.checkpoint import load_model
from tasks.llm.config import PretrainConfig
from tasks.llm.data.corpus import generate_corpus
from tasks.llm.data.batches import TokenStreamSource
from tasks.llm.train.device import resolve_device
from tasks.llm.model.optim import build_optimizers, lr_multiplier, set_lr
from tasks.llm.sdc.attach import attach
from tasks.llm.sdc.guard import UpdateRule
from tasks.llm.sdc.inject import LAYOUT, fault_dtype, width
from tasks.llm.train.build import prepare_model
from tasks.llm.train.local import train_worker
from tasks.llm.train.run_folder import RunContext
from tasks.llm.train.step import take_step

STAGES = ("forward", "input", "backward", "optimizer")
LATE = 5  # steps after an event in which a flag still counts for `within_5`


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


def bit_cells(dtype: torch.dtype) -> list[tuple[str, list[int]]]:
    """(label, bits) of every exponent bit, the mantissa (a bit drawn per event) and the sign bit of `dtype`."""
    _, e, m = LAYOUT[dtype]
    return [(f"bit{b}", [b]) for b in range(m + e - 1, m - 1, -1)] + [("mantissa", []), (f"bit{width(dtype) - 1}",
                                                                                        [width(dtype) - 1])]


@dataclass
class Snapshot:
    step: int
    position: dict | None
    model: dict
    optimizers: list


@dataclass
class Run:
    """One run's per-step losses and guard statistics from `first` on; `rejoined`: the step from which it is the
    twin's run bit for bit."""
    first: int
    history: list[float] = field(default_factory=list)
    trace: list[dict] = field(default_factory=list)
    faulty: set[int] = field(default_factory=set)
    val_bpb: float | None = None
    finite: bool = True
    rejoined: int | None = None
    snapshots: dict[int, Snapshot] = field(default_factory=dict)


class StepLoop:
    """The trainer's step loop (tasks/llm/train/run.py `_train`: lr schedule, batches, `take_step` through the SDC
    injector and a recording guard), in memory, for runs that start from another run's snapshot."""

    def __init__(self, base: dict, source: TokenStreamSource, snapshot_every: int = 50):
        self.base, self.source, self.snapshot_every = base, source, snapshot_every
        self.device = resolve_device(base.get("device", "auto"))
        self.precision = resolve_precision(base["precision"], self.device)

    def config(self, seed: int, inject: dict | None = None) -> PretrainConfig:
        sdc = {"guard": {"enabled": True, "on_flag": "record"}, "inject": {"enabled": True, **inject} if inject else {}}
        return PretrainConfig(**self.base, seed=seed, sdc=sdc)

    def run(self, cfg: PretrainConfig, start: Snapshot | None = None, twin: Run | None = None,
            keep_snapshots: bool = False) -> Run:
        torch.set_num_threads(cfg.threads_per_worker)
        model, _ = prepare_model(cfg, self.source, None, self.device)
        optimizers = build_optimizers(model, cfg.optim, self.precision)
        step, position = 0, None
        if start is not None:
            model.load_state_dict(start.model)
            for opt, state in zip(optimizers, start.optimizers):
                opt.load_state_dict(copy.deepcopy(state))
            step, position = start.step, start.position
        log, injector, guard = attach(model, optimizers, cfg, 0, torch_dtype(self.precision), shared=False)
        batches, last_mult, autocast = self.source.batches(0, 1, position), None, self.precision == "bf16"
        out = Run(first=step + 1)
        while step < cfg.steps:
            if keep_snapshots and step % self.snapshot_every == 0:
                out.snapshots[step] = _snapshot(step, position, model, optimizers)
            if twin is not None and step > cfg.sdc.inject.start_step + cfg.sdc.inject.duration[1] \
                    and step in twin.snapshots and _same(model, optimizers, twin.snapshots[step]):
                out.rejoined = step + 1
                break
            mult = lr_multiplier(step, cfg.steps, cfg.optim)
            if mult != last_mult:
                set_lr(optimizers, mult)
                last_mult = mult
            micro = [next(batches)]
            position = micro[-1][2]
            _, loss, _ = take_step(model, optimizers, micro, step, accum=1, autocast=autocast, device=self.device,
                                   clip=cfg.optim.grad_clip, injector=injector, guard=guard)
            step += 1
            out.history.append(loss)
            if not math.isfinite(loss):  # a non-finite loss poisons every later step: the outcome is known
                break
        out.trace = log.trace
        out.faulty = {row["step"] for row in log.rows if row["event"] == "fault"}
        out.finite = all(math.isfinite(v) for v in out.history) and all(torch.isfinite(p).all()
                                                                         for p in model.parameters())
        if out.finite and out.rejoined is None:
            out.val_bpb = bits_per_byte(model, self.source.val_batches(cfg.eval_tokens), self.source.token_bytes(),
                                        autocast)
        return out


def _snapshot(step: int, position: dict | None, model, optimizers) -> Snapshot:
    return Snapshot(step, position, {k: v.clone() for k, v in model.state_dict().items()},
                    [copy.deepcopy(o.state_dict()) for o in optimizers])


def _same(model, optimizers, snap: Snapshot) -> bool:
    """Whether weights and optimizer state are bit for bit those of `snap`."""
    def tensors(obj):
        if torch.is_tensor(obj):
            yield obj
        elif isinstance(obj, dict):
            for v in obj.values():
                yield from tensors(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                yield from tensors(v)
    mine = list(tensors([model.state_dict(), [o.state_dict()["state"] for o in optimizers]]))
    theirs = list(tensors([snap.model, [o["state"] for o in snap.optimizers]]))
    return len(mine) == len(theirs) and all(torch.equal(a, b) for a, b in zip(mine, theirs))


def whole(run: Run, twin: Run) -> tuple[list[float], list[dict]]:
    """A trial's losses and statistics over the whole run: the twin's before its start and after it rejoined."""
    head, tail = run.first - 1, (run.rejoined - 1 if run.rejoined else None)
    return (twin.history[:head] + run.history + (twin.history[tail:] if tail is not None else []),
            twin.trace[:head] + run.trace + (twin.trace[tail:] if tail is not None else []))


def harm(run: Run, twin: Run, spike_nats: float, worse_bpb: float) -> str:
    """Why a trial is harmed against its twin ('' when it is not)."""
    if run.rejoined is not None:
        return ""
    if not run.finite:
        return "non-finite"
    if max(a - b for a, b in zip(whole(run, twin)[0], twin.history)) > spike_nats:
        return "spike"
    return "worse" if run.val_bpb > twin.val_bpb * (1 + worse_bpb) else ""


def guard_flags(trace: list[dict], alpha: float, active_from: int, mean_steps: int) -> set[int]:
    """The steps the guard's rule flags at `alpha` (a flagged step enters neither mu nor the next differences)."""
    kinds = sorted({k for row in trace for k in row if k not in ("step", "grad_norm")})
    rule, flags = UpdateRule(alpha, active_from, mean_steps, kinds), set()
    for t, row in enumerate(trace, 1):
        stats = {k: row[k] for k in kinds if k in row}
        if rule.why(t, row["grad_norm"], stats):
            flags.add(row["step"])
        else:
            rule.accept(t, row["grad_norm"], stats)
    return flags


def nonfinite_flags(trace: list[dict], history: list[float]) -> set[int]:
    """The non-finite check alone: a step whose gradient norm or loss is not finite."""
    return {row["step"] for row, loss in zip(trace, history) if not (math.isfinite(row["grad_norm"])
                                                                    and math.isfinite(loss))}


def loss_spike_flags(history: list[float], z: float, window: int, active_from: int) -> set[int]:
    """A loss z-score spike detector: a loss more than z standard deviations above the mean of the last `window`
    unflagged losses, or not finite (from step `active_from`, as the guard)."""
    kept, flags = [], set()
    for step, loss in enumerate(history, 1):
        recent = kept[-window:]
        if not math.isfinite(loss) or (step >= active_from and len(recent) >= 2 and loss > statistics.fmean(recent)
                                       + z * statistics.pstdev(recent)):
            flags.add(step)
        else:
            kept.append(loss)
    return flags


def _rate(n: int, d: int) -> float | None:
    return round(n / d, 4) if d else None


def _detected(trial: dict, flags: set[int], late: int = 0) -> bool:
    last = max(trial["faulty"])
    return any(s in flags for s in trial["faulty"]) or (late > 0 and any(last < s <= last + late for s in flags))


def operating_point(trials: list[dict], twins: list[dict], detector: str, setting: float) -> dict:
    """A detector at one setting: detection of the finite, non-finite and all harmful events, and false alarms."""
    key = (detector, setting)
    finite = [t for t in trials if t["harm"] and t["harm"] != "non-finite"]
    nonfinite = [t for t in trials if t["harm"] == "non-finite"]
    harmless = [t for t in trials if not t["harm"]]
    false = sum(len(t["flags"][key]) for t in twins)
    clean = sum(t["steps"] for t in twins)

    def rate(group, late=0):
        return _rate(sum(_detected(t, t["flags"][key], late) for t in group), len(group))
    return {"setting": setting, "false_alarm_rate": _rate(false, clean), "false_alarms": false,
            "finite_harmful": rate(finite), "finite_harmful_within_5": rate(finite, LATE),
            "nonfinite_harmful": rate(nonfinite), "harmful": rate(finite + nonfinite),
            "harmless_flagged": rate(harmless)}


def best_at(curve: list[dict], false_alarm_rate: float) -> dict | None:
    """The point of a curve with the highest finite-harmful detection among those with no more false alarms."""
    within = [p for p in curve if p["false_alarm_rate"] is not None and p["false_alarm_rate"] <= false_alarm_rate]
    return max(within, key=lambda p: (p["finite_harmful"] or 0, -p["false_alarm_rate"]), default=None)


def study(data_dir: str | None = None, steps: int = 1000, trials_per_cell: int = 1, twins: int = 3,
          alphas: tuple[float, ...] = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
          zs: tuple[float, ...] = (2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 12.0), window: int = 100, spike_nats: float = 0.5,
          worse_bpb: float = 0.01, schedule_p: float = 0.02,
          schedule_stages: tuple[str, ...] = ("backward", "optimizer"),
          depth: int = 1, seq_len: int = 64, batch_size: int = 8, threads: int = 1,
          cells: tuple[str, ...] = ()) -> dict:
    """The sweep stage x bit x `trials_per_cell` on `twins` fault-free runs, its detector curves and baselines, and
    the val bpb of the full schedule unguarded and guarded. `cells` ("optimizer/bit30", ...): only these."""
    source, corpus = byte_corpus(data_dir, batch_size, seq_len)
    base = {"depth": depth, "sequence_len": seq_len, "device_batch_size": batch_size, "steps": steps, "eval_every": 0,
            "eval_tokens": 1 << 20, "log_every": 50, "checkpoint_every": 0, "threads_per_worker": threads,
            "precision": "auto", "compile": False, "experiment": "llm-bench"}
    loop = StepLoop(base, source)
    guard_cfg = PretrainConfig().sdc.guard
    alphas = tuple(sorted(set(alphas) | {guard_cfg.alpha}))
    train_dtype = torch_dtype(loop.precision)
    detectors = [("guard", a) for a in alphas] + [("loss_z", z) for z in zs] + [("nonfinite", 0.0)]

    def flags_of(history: list[float], trace: list[dict]) -> dict:
        out = {("guard", a): guard_flags(trace, a, guard_cfg.active_from, guard_cfg.mean_steps) for a in alphas}
        out.update({("loss_z", z): loss_spike_flags(history, z, window, guard_cfg.active_from) for z in zs})
        out[("nonfinite", 0.0)] = nonfinite_flags(trace, history)
        return out

    clean = [loop.run(loop.config(seed), keep_snapshots=True) for seed in range(twins)]
    twin_rows = [{"steps": steps, "flags": flags_of(c.history, c.trace)} for c in clean]
    trials, by_cell, steps_run, n = [], {}, sum(len(c.history) for c in clean), 0
    for stage in STAGES:
        for label, bits in bit_cells(fault_dtype(stage, train_dtype)):
            if cells and f"{stage}/{label}" not in cells:
                continue
            for _ in range(trials_per_cell):  # trial n: its event's step, layer, element and length from seed n
                twin = clean[n % twins]
                at = int(np.random.default_rng(n).integers(guard_cfg.active_from, steps - 9))
                inject = {"p": 1.0, "start_step": at, "max_events": 1, "stage": stage, "bits": bits,
                          "bit_class": "mantissa", "seed": n}
                start = twin.snapshots[(at - 1) // loop.snapshot_every * loop.snapshot_every]
                run = loop.run(loop.config(n % twins, inject), start=start, twin=twin)
                n, steps_run = n + 1, steps_run + len(run.history)
                history, trace = whole(run, twin)
                trial = {"cell": f"{stage}/{label}", "faulty": run.faulty,
                         "harm": harm(run, twin, spike_nats, worse_bpb),
                         "flags": flags_of(history, trace), "ended": "rejoined" if run.rejoined else
                         ("non-finite" if not run.finite else "full"),
                         "gap": run.val_bpb / twin.val_bpb - 1 if run.val_bpb is not None else None}
                trials.append(trial)
                by_cell.setdefault(trial["cell"], []).append(trial)

    curves = {name: [operating_point(trials, twin_rows, name, s) for d, s in detectors if d == name]
              for name in ("guard", "loss_z", "nonfinite")}
    configured = operating_point(trials, twin_rows, "guard", guard_cfg.alpha)
    schedule, real_twin = _schedule(base, source, schedule_p, schedule_stages)
    finite = [t for t in trials if t["harm"] and t["harm"] != "non-finite"]
    return {
        "corpus": corpus, "precision": loop.precision,
        "model": {"depth": depth, "sequence_len": seq_len, "batch_size": batch_size, "steps": steps,
                  "optimizer": "muon+adamw", "threads": threads},
        "protocol": {"stages": list(STAGES), "cells": list(cells) or "all", "trials_per_cell": trials_per_cell,
                     "twins": twins, "event_duration": [1, 5],
                     "window": window, "harm": {"spike_nats": spike_nats, "worse_bpb_relative": worse_bpb},
                     "guard": guard_cfg.model_dump(exclude={"enabled", "on_flag", "on_repeat", "outer_ratio"})},
        "events": len(trials), "harmful_nonfinite": sum(t["harm"] == "non-finite" for t in trials),
        "harmful_finite": len(finite), "harmful_finite_kinds": {k: sum(t["harm"] == k for t in finite)
                                                                 for k in ("spike", "worse")},
        "clean_steps": steps * twins, "steps_trained": steps_run,
        "val_bpb_spread": _spread(clean, trials),
        "trials_ended": {k: sum(t["ended"] == k for t in trials) for k in ("full", "non-finite", "rejoined")},
        "guard_at_configured_alpha": configured,
        "alpha_curve": curves["guard"], "loss_zscore_curve": curves["loss_z"],
        "nonfinite_check": curves["nonfinite"][0],
        "vs_baselines_at_equal_false_alarms": _versus(configured, curves),
        "targets": _targets(configured, curves, schedule),
        "per_cell": {cell: {"events": len(ts), "nonfinite": sum(t["harm"] == "non-finite" for t in ts),
                            "finite_harmful": sum(bool(t["harm"]) and t["harm"] != "non-finite" for t in ts),
                            "finite_harmful_detected": sum(bool(t["harm"]) and t["harm"] != "non-finite" and
                                                           _detected(t, t["flags"][("guard", guard_cfg.alpha)])
                                                           for t in ts)}
                     for cell, ts in by_cell.items()},
        "val_bpb": schedule,
        "loop_matches_trainer": real_twin["history"] == clean[0].history and real_twin["val_bpb"] == clean[0].val_bpb,
        "guard_overhead": round(real_twin["train_seconds"] / (real_twin["train_seconds"]
                                                              - real_twin["sdc_guard_seconds"]), 4),
        "tokens_per_s_guarded": round(real_twin["tokens_per_s"]),
    }


def _schedule(base: dict, source: TokenStreamSource, p: float, stages: tuple[str, ...]) -> tuple[dict, dict]:
    """The full schedule through the trainer itself: fault-free (recording, the twin), and per stage unguarded and
    with the guard recomputing; val bpb of each."""
    with tempfile.TemporaryDirectory() as tmp:
        def train(name: str, sdc: dict) -> dict:
            cfg = PretrainConfig(**base, seed=0, sdc=sdc)
            return train_worker(cfg, source, 0, 1, RunContext(out_dir=str(Path(tmp) / name)))

        real_twin = train("twin", {"guard": {"enabled": True, "on_flag": "record"}})
        out = {"fault_free": _bpb(real_twin)}
        for stage in stages:
            inject = {"enabled": True, "p": p, "stage": stage, "seed": 100}  # bits: the configured bit_class
            hit = train(f"{stage}-unguarded", {"inject": inject})
            guarded = train(f"{stage}-guarded", {"inject": inject, "guard": {"enabled": True}})
            out[stage] = {"unguarded": _bpb(hit), "guarded": _bpb(guarded), "fault_steps": _count(hit, "fault"),
                          "recomputes": _count(guarded, "recompute"), "skips": _count(guarded, "skip"),
                          "guarded_gap": _gap(_bpb(guarded), out["fault_free"]),
                          "unguarded_gap": _gap(_bpb(hit), out["fault_free"]),
                          "finite_weights_unguarded": bool(all(torch.isfinite(w).all() for w in
                                                               load_model(hit["model_dir"])[0].parameters()))}
    return out, real_twin


def _spread(clean: list[Run], trials: list[dict]) -> dict:
    """How far val bpb moves without harm: the twins' (seeds) and the harmless trials' gaps to their twins (a fault
    that changed some bits and no outcome: the runs diverge, their final bpb with them)."""
    gaps = sorted(abs(t["gap"]) for t in trials if not t["harm"] and t["gap"] is not None)
    return {"twins": [round(c.val_bpb, 4) for c in clean], "harmless_trials": len(gaps),
            "harmless_abs_gap_median": round(statistics.median(gaps), 4) if gaps else None,
            "harmless_abs_gap_max": round(gaps[-1], 4) if gaps else None}


def _count(summary: dict, event: str) -> int:
    return len({e["step"] for e in summary.get("sdc_events", []) if e["event"] == event})


def _bpb(summary: dict) -> float | None:
    bpb = summary["val_bpb"]
    return round(bpb, 4) if bpb is not None and math.isfinite(bpb) else None


def _gap(bpb: float | None, reference: float | None) -> float | None:
    return round(bpb / reference - 1, 4) if bpb is not None and reference else None


def _versus(configured: dict, curves: dict) -> dict:
    """The baselines at no more false alarms than the guard at its configured alpha, against the guard."""
    f = configured["false_alarm_rate"]
    loss = best_at(curves["loss_z"], f)
    nonfinite = curves["nonfinite"][0] if curves["nonfinite"][0]["false_alarm_rate"] <= f else None
    guard = configured["finite_harmful"] or 0.0
    return {"false_alarm_rate": f, "guard_finite_harmful": configured["finite_harmful"],
            "loss_zscore": loss and {"z": loss["setting"], "finite_harmful": loss["finite_harmful"],
                                     "false_alarm_rate": loss["false_alarm_rate"]},
            "nonfinite_check": nonfinite and {"finite_harmful": nonfinite["finite_harmful"]},
            "guard_ahead_of_both": all(guard > (b["finite_harmful"] or 0.0) for b in (loss, nonfinite) if b)}


def _targets(configured: dict, curves: dict, schedule: dict) -> dict:
    """#18's targets, met or missed with their figures."""
    gaps = [v["guarded_gap"] for k, v in schedule.items() if k != "fault_free"]
    meeting = [p for p in curves["guard"] if p["false_alarm_rate"] is not None and p["false_alarm_rate"] < 0.01
               and (p["finite_harmful"] or 0) >= 0.9]
    return {
        "detection_90_at_fa_below_1pct": {
            "configured_alpha": {"alpha": configured["setting"], "finite_harmful": configured["finite_harmful"],
                                 "false_alarm_rate": configured["false_alarm_rate"],
                                 "met": (configured["finite_harmful"] or 0) >= 0.9
                                 and configured["false_alarm_rate"] < 0.01},
            "alphas_meeting": [p["setting"] for p in meeting]},
        "recompute_val_bpb_within_0.5pct": {"guarded_gaps": gaps,
                                            "met": bool(gaps) and all(g is not None and abs(g) <= 0.005 for g in gaps)},
    }
