"""The SDC benchmark's parts on tiny runs: a recording guard, its replay, and the in-memory step loop."""

from __future__ import annotations

import math

from tasks.llm.benches.sdc import StepLoop, guard_flags, harm, nonfinite_flags, whole
from test_sdc import HARMFUL, byte_source, events, tiny_cfg, train

STUCK_MOMENTUM = {**HARMFUL, "layer": "transformer.h.0.mlp.c_fc", "bits": [30], "stage": "optimizer"}


def test_a_recording_guard_flags_applies_the_step_and_its_replay_agrees(tmp_path):
    hit = train(tmp_path, "hit", sdc={"inject": STUCK_MOMENTUM})
    rec = train(tmp_path, "rec", sdc={"inject": STUCK_MOMENTUM, "guard": {"enabled": True, "on_flag": "record"}})
    assert rec["history"] == hit["history"]  # recorded, not acted on
    assert [(e["step"], e["event"]) for e in rec["sdc_events"]][:2] == [(12, "fault"), (12, "flag")]
    assert not events(rec, "recompute")
    trace = rec["sdc_trace"]
    assert [row["step"] for row in trace] == list(range(1, 21)) and {"adamw", "muon", "grad_norm"} <= set(trace[0])
    guard = tiny_cfg().sdc.guard
    flags = {e["step"] for e in events(rec, "flag")}
    assert guard_flags(trace, guard.alpha, guard.active_from, guard.mean_steps) == flags
    assert nonfinite_flags(trace, rec["history"]) == set()


def test_the_step_loop_is_the_trainer_and_a_run_from_a_snapshot_is_the_whole_run(tmp_path):
    base = tiny_cfg().model_dump(exclude={"seed", "sdc"})
    loop = StepLoop(base, byte_source(), snapshot_every=5)
    twin = loop.run(loop.config(0), keep_snapshots=True)
    assert twin.history == train(tmp_path, "twin", sdc={"guard": {"enabled": True, "on_flag": "record"}})["history"]
    assert sorted(twin.snapshots) == [0, 5, 10, 15]

    inject = {k: v for k, v in STUCK_MOMENTUM.items() if k != "enabled"}
    from_start = loop.run(loop.config(0, inject))
    from_snapshot = loop.run(loop.config(0, inject), start=twin.snapshots[10], twin=twin)
    assert from_snapshot.first == 11 and from_snapshot.faulty == {12}
    assert whole(from_snapshot, twin) == (from_start.history, from_start.trace)
    assert from_snapshot.val_bpb == from_start.val_bpb and harm(from_snapshot, twin, 0.5, 0.01) in ("", "worse")

    # a run whose state is the twin's again at a snapshot after its event ends there: the rest is the twin's
    nothing = loop.run(loop.config(0, {**inject, "p": 0.0, "start_step": 6}), start=twin.snapshots[5], twin=twin)
    assert nothing.rejoined == 11 and len(nothing.history) == 5 and nothing.val_bpb is None  # steps 6-10, then the twin
    assert whole(nothing, twin) == (twin.history, twin.trace) and harm(nothing, twin, 0.5, 0.01) == ""
    assert not from_start.rejoined and all(math.isfinite(v) for v in from_start.history)


def test_seedflow_bench_sdc_runs_from_the_command_line(monkeypatch, tmp_path, mlflow_store, capsys):
    """The command as the README writes it, at a tiny size: its options reach the study, its last line is the JSON."""
    import json
    import sys

    from flows.cli import run

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["seedflow", "bench", "sdc", "--steps", "30", "--twins", "1",
                                      "--cells", "optimizer/bit30"])
    run()
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"harmful_finite", "harmful_nonfinite", "alpha_curve", "loss_zscore_curve", "nonfinite_check"} <= set(out)
    assert list(out["per_cell"]) == ["optimizer/bit30"] and out["loop_matches_trainer"] is True
