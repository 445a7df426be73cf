"""`seedflow bench curtail`: curtailment-aware training against its baselines, at equal tokens.

Runs, all with the same seed and site-steps, on windows of the same corpus (tinyshakespeare, or
the generated one) dealt IID to the sites (tasks/llm/data/iid_windows.py): the reactive and the
forecast policy over every site; the two-site variant (reactive, first two sites); and the
centralised baseline, one site training non-stop. The centralised model is the same whichever
region hosts it, so it is trained once and its emissions are accounted on each region's trace.

Emissions, which the plans alone decide, are also reported from `start_days` start days spread over
the trace (tasks/llm/curtail/analysis.py), beside the floor the trace sets; bpb comes from the
trained runs, which start at `start_s`.
"""

from __future__ import annotations

import tempfile

import pandas as pd

from tasks.llm.config import PretrainConfig
from tasks.llm.curtail.analysis import emissions_over_start_days, trace_floor
from tasks.llm.curtail.config import CurtailConfig
from tasks.llm.data.iid_windows import IidWindows
from tasks.llm.curtail.run import energy_figures, prepare, run_curtail
from tasks.llm.curtail.traces import DAY_S
from tasks.llm.data.batches import TokenStreamSource

FIGURES = ("kg_co2", "energy_kwh", "idle_kwh", "share_in_windows", "sim_hours", "val_bpb", "tokens")
START_DAYS = 12
EMISSION_TARGET = 0.12  # curtailed kg CO2 / centralised kg CO2, in every region
BPB_TARGET = 0.03  # val bpb at most this much above centralised


def _row(summary: dict) -> dict:
    return {k: (round(summary[k], 4) if isinstance(summary[k], float) else summary[k]) for k in FIGURES}


def forecast_vs_reactive(forecast: dict, reactive: dict, over_days: dict) -> dict:
    """Forecast's kg CO2 and idle kWh against reactive's, median over the start days (and at the trained
    day); `wins` names the figures forecast lowers, empty when it lowers neither."""
    def wins(kg: float, idle: float | None) -> list[str]:
        return [name for name, ratio in (("kg_co2", kg), ("idle_kwh", idle)) if ratio is not None and ratio < 1]

    kg, idle = over_days["kg_co2_ratio"]["median"], (over_days["idle_kwh_ratio"] or {}).get("median")
    day_kg = round(forecast["kg_co2"] / reactive["kg_co2"], 4)
    day_idle = round(forecast["idle_kwh"] / reactive["idle_kwh"], 4) if reactive["idle_kwh"] else None
    return {"kg_co2_ratio": kg, "idle_kwh_ratio": idle, "wins": wins(kg, idle), "over_start_days": over_days,
            "trained_day": {"kg_co2_ratio": day_kg, "idle_kwh_ratio": day_idle, "wins": wins(day_kg, day_idle)}}


def run(ccfg: CurtailConfig, pcfg: PretrainConfig, source: TokenStreamSource, traces: dict[str, pd.Series],
        start_days: int = START_DAYS) -> dict:
    floor = trace_floor(ccfg, traces)
    days = emissions_over_start_days(ccfg, traces, start_days)  # plans only: errors show before any training
    source = IidWindows.of(source, pcfg.seed)

    def train(variant: str, policy: str | None = None, region: str | None = None) -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            return run_curtail(ccfg, pcfg, source, traces, tmp, variant, policy, region, stage="bench")

    policies = {name: train("curtailed", name) for name in ("reactive", "forecast")}
    two = train("two_sites", "reactive")
    central = train("centralised", region=next(iter(traces)))
    centralised = {}
    for region in traces:
        figures = energy_figures(ccfg, prepare(ccfg, traces, "centralised", region=region))
        centralised[region] = _row({**central, **figures})
    curtailed = [*policies.items(), ("two_sites", two)]
    out = {"precision": central["precision"], "data": "iid_windows",
           "policy": {name: _row(s) for name, s in policies.items()}, "two_sites": _row(two),
           "centralised": centralised, "site_steps": ccfg.target_site_steps, "threshold": ccfg.threshold,
           "unit": ccfg.unit, "step_s": ccfg.step_s, "round_s": ccfg.round_s,
           "trained_start_day": round(ccfg.start_s / DAY_S, 3)}
    out["emission_ratio_vs_centralised"] = {
        name: {region: round(s["kg_co2"] / c["kg_co2"], 4) for region, c in centralised.items()}
        for name, s in curtailed}
    out["trace_floor"] = floor
    out["start_days"] = {key: days[key] for key in ("days", "kg_co2", "ratio_vs_centralised", "ratio_spread")}
    out["forecast_vs_reactive"] = forecast_vs_reactive(policies["forecast"], policies["reactive"],
                                                       days["forecast_vs_reactive"])
    bpb = central["val_bpb"]
    out["bpb_gap_vs_centralised"] = {name: round(s["val_bpb"] / bpb - 1, 4) for name, s in curtailed}
    lowest_floor = min(f["floor"] for f in floor.values())
    out["targets"] = {
        "emissions_at_most_12pct_of_centralised_in_every_region": {
            name: {"met": max(m["median"] for m in spread.values()) <= EMISSION_TARGET,
                   "worst_region_median_ratio": max(m["median"] for m in spread.values()),
                   "trace_floor": lowest_floor}
            for name, spread in days["ratio_spread"].items()},
        "val_bpb_at_most_3pct_above_centralised": {
            name: {"met": gap <= BPB_TARGET, "gap": gap} for name, gap in out["bpb_gap_vs_centralised"].items()},
        "forecast_lower_kg_co2_or_idle_kwh_than_reactive": {
            "met": bool(out["forecast_vs_reactive"]["wins"]), "wins": out["forecast_vs_reactive"]["wins"]}}
    return out
