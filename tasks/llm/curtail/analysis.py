"""Emissions as the study measured them, over many start days, and the floor that the trace sets.

One start day says little: a run's emissions depend on the days it happens to cover. Energy and
emissions come from the plan alone (no training), so every variant is planned from each of several
start days spread over the trace, and the ratio curtailed kg CO2 / centralised kg CO2 is reported
per region and day with its median, min and max.

The floor: a run that trained only inside windows, at no extra energy, would emit the trace's mean
MCI inside windows per kWh, where the centralised run emits its mean MCI; their quotient is the
best ratio any schedule can reach on that trace at that threshold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.common.errors import InputError
from tasks.llm.curtail.config import KG_PER_KWH, CurtailConfig
from tasks.llm.curtail.run import energy_figures, prepare
from tasks.llm.curtail.traces import DAY_S, seconds, span_s

CURTAILED = {"reactive": ("curtailed", "reactive"), "forecast": ("curtailed", "forecast"),
             "two_sites": ("two_sites", "reactive")}


def spread(values: list[float]) -> dict[str, float]:
    return {"median": round(float(np.median(values)), 4), "min": round(float(np.min(values)), 4),
            "max": round(float(np.max(values)), 4)}


def day_figures(ccfg: CurtailConfig, traces: dict[str, pd.Series], start_s: float) -> dict:
    """kg CO2 and idle kWh of every curtailed variant, and each region's centralised kg CO2, from `start_s`."""
    cfg = ccfg.model_copy(update={"start_s": start_s})
    out = {}
    for name, (variant, policy) in CURTAILED.items():
        figures = energy_figures(cfg, prepare(cfg, traces, variant, policy))
        out[name] = {"kg_co2": figures["kg_co2"], "idle_kwh": figures["idle_kwh"]}
    out["centralised"] = {region: energy_figures(cfg, prepare(cfg, traces, "centralised", region=region))["kg_co2"]
                          for region in traces}
    return out


def start_days(ccfg: CurtailConfig, traces: dict[str, pd.Series], count: int) -> dict[float, dict]:
    """`count` start days with their figures: whole days after `start_s`, evenly spread from the first to
    the last from which every variant still reaches its target before the traces end. The first must fit."""
    end = min(span_s(trace) for trace in traces.values())
    candidates = [ccfg.start_s + k * DAY_S for k in range(max(1, int((end - ccfg.start_s) // DAY_S)))]
    figures = {candidates[0]: day_figures(ccfg, traces, candidates[0])}
    last, too_late = 0, len(candidates)
    while too_late - last > 1:  # bisect for the latest day that fits: a later start leaves less trace
        k = (last + too_late) // 2
        try:
            figures[candidates[k]] = day_figures(ccfg, traces, candidates[k])
            last = k
        except InputError:
            too_late = k
    chosen = sorted({int(k) for k in np.round(np.linspace(0, last, min(count, last + 1)))})
    for k in chosen:
        if candidates[k] not in figures:
            figures[candidates[k]] = day_figures(ccfg, traces, candidates[k])
    return {candidates[k]: figures[candidates[k]] for k in chosen}


def emissions_over_start_days(ccfg: CurtailConfig, traces: dict[str, pd.Series], count: int) -> dict:
    """Per variant and region the ratios curtailed / centralised kg CO2 per start day, and their spread;
    forecast against reactive (kg CO2 and idle kWh) per day, with the days on which forecast is lower."""
    days = start_days(ccfg, traces, count)
    ratios = {name: {region: [d[name]["kg_co2"] / d["centralised"][region] for d in days.values()]
                     for region in traces} for name in CURTAILED}
    kg = {name: [round(d[name]["kg_co2"], 4) for d in days.values()] for name in CURTAILED}
    kg["centralised"] = {region: [round(d["centralised"][region], 4) for d in days.values()] for region in traces}
    forecast, reactive = [d["forecast"] for d in days.values()], [d["reactive"] for d in days.values()]
    kg_ratio = [f["kg_co2"] / r["kg_co2"] for f, r in zip(forecast, reactive)]
    idle_ratio = [f["idle_kwh"] / r["idle_kwh"] for f, r in zip(forecast, reactive) if r["idle_kwh"]]
    return {
        "days": [round(s / DAY_S, 3) for s in days],
        "kg_co2": kg,
        "ratio_vs_centralised": {name: {region: [round(v, 4) for v in values] for region, values in per.items()}
                                 for name, per in ratios.items()},
        "ratio_spread": {name: {region: spread(values) for region, values in per.items()}
                         for name, per in ratios.items()},
        "forecast_vs_reactive": {
            "kg_co2_ratio": spread(kg_ratio), "idle_kwh_ratio": spread(idle_ratio) if idle_ratio else None,
            "days_lower": {key: sum(f[key] < r[key] for f, r in zip(forecast, reactive))
                           for key in ("kg_co2", "idle_kwh")},
            "days": len(days)},
    }


def trace_floor(ccfg: CurtailConfig, traces: dict[str, pd.Series]) -> dict[str, dict[str, float]]:
    """Per site over its whole trace (time-weighted): mean MCI inside windows (below the threshold, in
    `unit`), mean MCI, and their quotient, the floor of the ratio curtailed / centralised kg CO2."""
    out = {}
    for site, trace in traces.items():
        t, v = seconds(trace), trace.to_numpy(dtype=float)
        weights = np.diff(np.append(t, span_s(trace)))
        inside = v < ccfg.threshold_kg_per_kwh
        if not inside.any():
            raise InputError(f"site {site}'s trace is never below threshold {ccfg.threshold:g} {ccfg.unit}: "
                             f"no window to train in; raise llm.curtail.threshold")
        in_windows = float(np.average(v[inside], weights=weights[inside]))
        mean = float(np.average(v, weights=weights))
        unit = KG_PER_KWH[ccfg.unit]
        out[site] = {"mean_mci_in_windows": round(in_windows / unit, 2), "mean_mci": round(mean / unit, 2),
                     "floor": round(in_windows / mean, 4), "share_of_time_in_windows": round(
                         float(weights[inside].sum() / weights.sum()), 4)}
    return out
