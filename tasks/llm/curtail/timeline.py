"""The study's figures, as PNG files written atomically: the run's timeline, and val bpb against kg CO2.

The timeline shows, over simulated hours, each site's MCI with the threshold and its available
(green) and provisioning (orange) stretches, the number of sites training per round (sync rounds
marked), and the loss curve when one is given.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tasks.common.atomic import atomic_path
from tasks.llm.curtail.availability import AVAILABLE, PROVISIONING
from tasks.llm.curtail.config import KG_PER_KWH, CurtailConfig
from tasks.llm.curtail.schedule import Schedule
from tasks.llm.curtail.traces import seconds

SHADES = {AVAILABLE: ("tab:green", 0.25), PROVISIONING: ("tab:orange", 0.35)}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    _pyplot().close(fig)
    return Path(path)


def plot_timeline(path: str | Path, schedule: Schedule, traces: dict[str, pd.Series], cfg: CurtailConfig,
                  loss: list[tuple[float, float]] | None = None) -> Path:
    """Per-site MCI (in cfg.unit) with threshold and availability, active sites per round, loss."""
    plt = _pyplot()
    sites = list(schedule.timelines)
    panels = len(sites) + 1 + (loss is not None)
    fig, axes = plt.subplots(panels, 1, figsize=(11, 1.6 * panels + 1), sharex=True, squeeze=False)
    axes = axes[:, 0]
    start, end = schedule.rounds[0].start_s, schedule.rounds[-1].end_s
    for ax, site in zip(axes, sites):
        trace = traces[site]
        t = seconds(trace)
        keep = (t >= start - 3600) & (t <= end)
        ax.step(t[keep] / 3600, trace.to_numpy()[keep] / KG_PER_KWH[cfg.unit], where="post", lw=0.8, color="k")
        ax.axhline(cfg.threshold, color="tab:red", ls="--", lw=0.8)
        for state, (color, alpha) in SHADES.items():
            for a, b in schedule.timelines[site].intervals(state, start, end):
                ax.axvspan(a / 3600, b / 3600, color=color, alpha=alpha, lw=0)
        ax.set_ylabel(f"{site}\n{cfg.unit}", fontsize=8)
    ax = axes[len(sites)]
    starts = [r.start_s / 3600 for r in schedule.rounds] + [end / 3600]
    active = [len(r.steps) for r in schedule.rounds]
    ax.stairs(active, starts, color="tab:blue")
    synced = [r for r in schedule.rounds if r.sync]
    ax.plot([r.end_s / 3600 for r in synced], [len(r.steps) for r in synced], "v", ms=3, color="tab:purple",
            label="sync")
    ax.set_ylabel("sites\ntraining", fontsize=8)
    ax.set_ylim(-0.2, len(sites) + 0.4)
    ax.legend(fontsize=7, loc="upper right")
    if loss is not None:
        ax = axes[-1]
        ax.plot([t / 3600 for t, _ in loss], [value for _, value in loss], color="tab:brown")
        ax.set_ylabel("loss", fontsize=8)
    axes[-1].set_xlabel("simulated hours since the trace start")
    axes[-1].set_xlim(start / 3600, end / 3600)
    fig.suptitle(f"curtailment-aware training: {schedule.policy} policy, {schedule.site_steps} site-steps")
    return _save(fig, path)


def plot_bpb_vs_carbon(path: str | Path, curves: dict[str, list[tuple[float, float]]]) -> Path:
    """Val bits per byte against cumulative kg CO2, one curve per run: {label: [(kg_co2, bpb), ...]}."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, points in curves.items():
        ax.plot([kg for kg, _ in points], [bpb for _, bpb in points], marker=".", label=label)
    ax.set(xlabel="cumulative kg CO2", ylabel="val bpb", title="val bpb against emissions")
    ax.legend(fontsize=8)
    return _save(fig, path)
