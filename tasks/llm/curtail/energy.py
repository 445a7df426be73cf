"""What a schedule costs: energy and emissions per site and round, budgets as hard limits, and measured
CPU energy where the machine exposes RAPL.

Power model: a site draws `train_kw` while training and `idle_kw` while provisioned and idle
(scaled by its gpus / per_gpus), nothing when off; on-site PV, where configured, offsets the grid
draw. Emissions integrate grid power x MCI exactly: every training or idle stretch is split at the
MCI (and PV) sample times, where the step functions change, and summed piece by piece.
`share_in_windows` is the share of energy used while the site's own MCI was below the threshold.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.common.errors import InputError
from tasks.llm.curtail.config import BudgetConfig, CurtailConfig
from tasks.llm.curtail.schedule import Schedule
from tasks.llm.curtail.traces import seconds, span_s

POWERCAP = Path("/sys/class/powercap")
COLUMNS = ["train_s", "idle_s", "energy_kwh", "grid_kwh", "kg_co2", "window_kwh"]


@dataclass(frozen=True)
class Steps:
    """A step function on seconds since its trace's start: values[k] holds on [times[k], times[k+1])."""

    times: np.ndarray
    values: np.ndarray

    @classmethod
    def of(cls, trace: pd.Series) -> Steps:
        return cls(seconds(trace), trace.to_numpy(dtype=float))

    def inside(self, start: float, end: float) -> np.ndarray:
        return self.times[(self.times > start) & (self.times < end)]

    def at(self, t: np.ndarray) -> np.ndarray:
        return self.values[np.searchsorted(self.times, t, side="right") - 1]


def integrate(start: float, end: float, power_kw: float, mci: Steps, threshold: float,
              solar_kw: Steps | None = None) -> dict[str, float]:
    """Energy (kWh), grid energy after PV, kg CO2 and energy below the threshold of [start, end) at one power."""
    cuts = [np.array([start, end]), mci.inside(start, end)]
    if solar_kw is not None:
        cuts.append(solar_kw.inside(start, end))
    edges = np.unique(np.concatenate(cuts))
    middle = (edges[:-1] + edges[1:]) / 2
    hours = np.diff(edges) / 3600
    intensity = mci.at(middle)
    grid = np.maximum(power_kw - solar_kw.at(middle), 0.0) if solar_kw is not None else np.full(len(middle), power_kw)
    return {"energy_kwh": float(power_kw * hours.sum()), "grid_kwh": float((grid * hours).sum()),
            "kg_co2": float((grid * intensity * hours).sum()),
            "window_kwh": float(power_kw * hours[intensity < threshold].sum())}


def _site_power(cfg: CurtailConfig, site: str) -> tuple[float, float]:
    gpus = {s.name: s.gpus for s in cfg.sites}
    if site not in gpus:
        raise InputError(f"site {site!r} of the schedule is not in llm.curtail.sites ({', '.join(gpus)}); "
                         f"plan with the configured sites")
    scale = gpus[site] / cfg.power.per_gpus
    return cfg.power.train_kw * scale, cfg.power.idle_kw * scale


@dataclass(frozen=True, eq=False)
class Accounting:
    """One row per (round, site) with any activity: seconds, energy, grid energy, emissions."""

    rows: pd.DataFrame
    rounds: int

    def per_round(self) -> pd.DataFrame:
        """Sums per round, every round listed (a pause round without power draws zeros)."""
        summed = self.rows.groupby("round")[COLUMNS].sum()
        return summed.reindex(range(self.rounds), fill_value=0.0).rename_axis("round")

    def per_site(self) -> pd.DataFrame:
        summed = self.rows.groupby("site")[COLUMNS].sum()
        summed["share_in_windows"] = summed["window_kwh"] / summed["energy_kwh"].where(summed["energy_kwh"] > 0)
        return summed

    def totals(self) -> dict[str, float]:
        out = {name: float(self.rows[name].sum()) for name in COLUMNS}
        out["share_in_windows"] = out["window_kwh"] / out["energy_kwh"] if out["energy_kwh"] else float("nan")
        return out

    def to_dict(self) -> dict:
        return {"totals": self.totals(), "per_site": self.per_site().reset_index().to_dict(orient="records"),
                "per_round": self.per_round().reset_index().to_dict(orient="records")}


def account(schedule: Schedule, traces: dict[str, pd.Series], cfg: CurtailConfig,
            solar_kw: dict[str, pd.Series] | None = None) -> Accounting:
    """Energy and emissions of every site in every round of `schedule` (traces: MCI in kg/kWh per site)."""
    solar_kw = solar_kw or {}
    end = schedule.rounds[-1].end_s if schedule.rounds else 0.0
    for site, pv in solar_kw.items():
        if site in schedule.timelines and span_s(pv) < end:
            raise InputError(f"site {site}'s solar trace covers {span_s(pv):g} s but the run lasts until {end:g} s; "
                             f"use a longer solar trace or a shorter run")
    threshold = cfg.threshold_kg_per_kwh
    rows = []
    for site in schedule.timelines:
        train_kw, idle_kw = _site_power(cfg, site)
        mci = Steps.of(traces[site])
        pv = Steps.of(solar_kw[site]) if site in solar_kw else None
        for r in schedule.rounds:
            row = dict.fromkeys(COLUMNS, 0.0)
            for key, kw, stretches in (("train_s", train_kw, schedule.training(site, r)),
                                       ("idle_s", idle_kw, schedule.idle(site, r))):
                for a, b in stretches:
                    row[key] += b - a
                    for name, value in integrate(a, b, kw, mci, threshold, pv).items():
                        row[name] += value
            if row["train_s"] or row["idle_s"]:
                rows.append({"round": r.index, "site": site, **row})
    return Accounting(pd.DataFrame(rows, columns=["round", "site", *COLUMNS]), len(schedule.rounds))


@dataclass(frozen=True)
class Cutoff:
    """Where a budget stops the run: after round `last_round` (-1: before the first), with what used."""

    last_round: int
    site_steps: int
    energy_kwh: float
    carbon_kg: float
    limited: bool  # the budget stops the run before its final round

    def to_dict(self) -> dict:
        return asdict(self)


def budget_cutoff(schedule: Schedule, accounting: Accounting, budget: BudgetConfig) -> Cutoff:
    """The last round whose cumulative energy and emissions stay within `budget`; the next would exceed it."""
    per_round = accounting.per_round()
    energy, carbon = per_round["energy_kwh"].cumsum().to_numpy(), per_round["kg_co2"].cumsum().to_numpy()
    fits = np.ones(len(per_round), dtype=bool)
    if budget.energy_kwh is not None:
        fits &= energy <= budget.energy_kwh * (1 + 1e-12)
    if budget.carbon_kg is not None:
        fits &= carbon <= budget.carbon_kg * (1 + 1e-12)
    last = int(np.argmin(fits)) - 1 if not fits.all() else len(fits) - 1
    steps = sum(r.site_steps for r in schedule.rounds[: last + 1])
    used = (float(energy[last]), float(carbon[last])) if last >= 0 else (0.0, 0.0)
    return Cutoff(last, steps, *used, limited=last < len(fits) - 1)


def read_rapl(root: Path = POWERCAP) -> dict[str, tuple[int, int]] | None:
    """{package zone: (energy_uj, max_energy_range_uj)}; None where powercap is absent or unreadable."""
    zones = sorted(p for p in Path(root).glob("intel-rapl:*") if re.fullmatch(r"intel-rapl:\d+", p.name))
    if not zones:
        return None
    try:
        return {z.name: (int((z / "energy_uj").read_text()), int((z / "max_energy_range_uj").read_text()))
                for z in zones}
    except (OSError, ValueError):
        return None


def joules_between(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> float:
    """Energy between two readings, counting one wrap-around of each counter (at max_energy_range_uj)."""
    total = 0
    for zone, (start, _) in before.items():
        end, span = after[zone]
        total += end - start if end >= start else end + span - start
    return total / 1e6


@dataclass
class Measurement:
    joules: float | None = None  # None: no readable RAPL counters


@contextmanager
def measured_cpu_energy(root: Path = POWERCAP) -> Iterator[Measurement]:
    """Measure the CPU packages' energy of the block: `with measured_cpu_energy() as m: ...; m.joules`.

    A counter that wraps more than once within the block is under-counted; keep blocks short of
    max_energy_range_uj (tens of minutes at full load)."""
    measurement = Measurement()
    before = read_rapl(root)
    try:
        yield measurement
    finally:
        after = read_rapl(root) if before is not None else None
        if after is not None and after.keys() == before.keys():
            measurement.joules = joules_between(before, after)
