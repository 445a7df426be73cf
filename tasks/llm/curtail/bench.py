"""`seedflow bench curtail`: curtailment-aware training against its baselines, at equal tokens.

Runs, all on the same bytes (tinyshakespeare, or the generated corpus), seed and site-steps:
the reactive and the forecast policy over every site; the two-site variant (reactive, first two
sites); and the centralised baseline, one site training non-stop. The centralised model is the
same whichever region hosts it, so it is trained once and its emissions are accounted on each
region's trace.
"""

from __future__ import annotations

import tempfile

import pandas as pd

from tasks.llm.config import PretrainConfig
from tasks.llm.curtail.config import CurtailConfig
from tasks.llm.curtail.run import energy_figures, prepare, run_curtail

FIGURES = ("kg_co2", "energy_kwh", "idle_kwh", "share_in_windows", "sim_hours", "val_bpb", "tokens")


def _row(summary: dict) -> dict:
    return {k: (round(summary[k], 4) if isinstance(summary[k], float) else summary[k]) for k in FIGURES}


def run(ccfg: CurtailConfig, pcfg: PretrainConfig, source, traces: dict[str, pd.Series]) -> dict:
    def train(variant: str, policy: str | None = None, region: str | None = None) -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            return run_curtail(ccfg, pcfg, source, traces, tmp, variant, policy, region, stage="bench")

    policies = {name: train("curtailed", name) for name in ("reactive", "forecast")}
    two = train("two_sites", "reactive")
    central = train("centralised", region=next(iter(traces)))
    centralised = {}
    for region in traces:
        figures = energy_figures(ccfg, prepare(ccfg, traces, "centralised", region=region))
        centralised[region] = {**_row({**central, **figures})}
    out = {"precision": central["precision"], "policy": {name: _row(s) for name, s in policies.items()},
           "two_sites": _row(two),
           "centralised": centralised, "site_steps": ccfg.target_site_steps, "threshold": ccfg.threshold,
           "unit": ccfg.unit, "step_s": ccfg.step_s, "round_s": ccfg.round_s}
    out["emission_ratio_vs_centralised"] = {
        name: {region: round(s["kg_co2"] / c["kg_co2"], 4) for region, c in centralised.items()}
        for name, s in [*policies.items(), ("two_sites", two)]}
    bpb = central["val_bpb"]
    out["bpb_gap_vs_centralised"] = {name: round(s["val_bpb"] / bpb - 1, 4)
                                     for name, s in [*policies.items(), ("two_sites", two)]}
    reactive, forecast = policies["reactive"], policies["forecast"]
    out["targets"] = {
        "emissions_at_most_12pct_of_centralised_in_every_region": {
            name: max(ratios.values()) <= 0.12 for name, ratios in out["emission_ratio_vs_centralised"].items()},
        "val_bpb_at_most_3pct_above_centralised": {name: gap <= 0.03 for name, gap in out["bpb_gap_vs_centralised"].items()},
        "forecast_less_idle_energy_or_shorter_runtime": forecast["idle_kwh"] < reactive["idle_kwh"]
        or forecast["sim_hours"] < reactive["sim_hours"]}
    return out
