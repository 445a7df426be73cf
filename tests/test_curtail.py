"""Curtailment-aware training's pure core: traces, the availability rule, policies, rounds, energy, figures."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
import torch

from tasks.common.config import ConfigError, validate
from tasks.common.errors import InputError
from tasks.llm.curtail import policy as policy_module
from tasks.llm.curtail.analysis import day_figures, start_days, trace_floor
from tasks.llm.curtail.availability import (
    AVAILABLE,
    OFF,
    PROVISIONING,
    STATES,
    reactive_timeline,
)
from tasks.llm.benches.curtail import forecast_vs_reactive
from tasks.llm.curtail.config import CurtailConfig, GridSiteConfig
from tasks.llm.curtail.energy import (
    Steps,
    account,
    budget_cutoff,
    integrate,
    joules_between,
    measured_cpu_energy,
    read_rapl,
)
from tasks.llm.data.iid_windows import IidWindows
from tasks.llm.curtail.policy import LookAheadError, PastView, make_policy
from tasks.llm.curtail.schedule import centralised, plan
from tasks.llm.curtail.timeline import plot_bpb_vs_carbon, plot_timeline
from tasks.llm.curtail.traces import (
    generated_trace,
    load_trace,
    shifted,
    site_traces,
    to_kg_per_kwh,
)
from tasks.llm.data.batches import TokenStreamSource


def seconds_trace(values, step: float) -> pd.Series:
    """A trace in kg/kWh indexed by seconds, one sample per `step`."""
    return pd.Series(np.asarray(values, dtype=float), index=pd.Index(np.arange(len(values)) * float(step)))


def config(names=("a",), **options) -> CurtailConfig:
    base = {"unit": "kg_per_kwh", "threshold": 0.3, "start_s": 0, "round_s": 600, "step_s": 60}
    return CurtailConfig(sites=[GridSiteConfig(name=n) for n in names], **{**base, **options})


def stretches(timeline, end: float) -> dict[str, list[tuple[float, float]]]:
    return {state: timeline.intervals(state, timeline.start_s, end) for state in STATES}


# -- the availability rule ---------------------------------------------------------------------------------------


def test_rule_provisions_after_the_delay_keeps_a_marked_site_until_the_off_delay_and_a_dip_clears_the_mark():
    values = [2, .5, .5, .5, 2, .5, 2, 2, 2, 2, .5, 2, 2]  # one sample a minute, threshold 1
    times = np.arange(len(values)) * 60.0
    timeline = reactive_timeline(times, np.array(values), 1.0, provision_delay_s=120, off_delay_s=180,
                                 start_s=0, end_s=780)
    assert stretches(timeline, 780) == {
        OFF: [(0, 60), (540, 600), (660, 780)],
        PROVISIONING: [(60, 180), (600, 660)],  # the second attempt is cancelled when MCI rises at 660
        AVAILABLE: [(180, 540)],  # marked at 240, cleared by the dip at 300, marked at 360, left 180 s later
    }


def test_a_zero_off_delay_leaves_at_the_first_sample_above():
    timeline = reactive_timeline(np.arange(4) * 60.0, np.array([.5, .5, 2, .5]), 1.0, 0, 0, 0, 240)
    assert timeline.intervals(AVAILABLE, 0, 240) == [(0, 120), (180, 240)]


# -- rounds ----------------------------------------------------------------------------------------------------


def test_rounds_pause_without_sites_train_locally_alone_and_sync_when_a_second_site_joins():
    # one sample per round: a is below in rounds 1-4, b in round 3 only
    traces = {"a": seconds_trace([1, .1, .1, .1, .1, 1, 1], 600), "b": seconds_trace([1, 1, 1, .1, 1, 1, 1], 600)}
    cfg = config(("a", "b"), provision_delay_s=0, off_delay_s=0)
    schedule = plan(traces, cfg, target_site_steps=45)
    rounds = [(r.start_s, r.end_s, r.steps, r.sync) for r in schedule.rounds]
    assert rounds == [
        (0, 600, {}, False),  # paused: the clock runs, nothing trains
        (600, 1200, {"a": 10}, False),  # one site: local steps, no sync
        (1200, 1800, {"a": 10}, False),
        (1800, 2400, {"a": 10, "b": 10}, True),  # a second site: sync
        (2400, 2700, {"a": 5}, True),  # the final round is cut at the target and syncs
    ]
    assert schedule.site_steps == 45
    json.dumps(schedule.to_dict())


def test_unequal_steps_and_idle_provisioned_seconds_per_round():
    traces = {"a": seconds_trace([1, .1, .1, .1, 1, 1], 300), "b": seconds_trace([.1] * 6, 300)}
    cfg = config(("a", "b"), provision_delay_s=120, off_delay_s=0)
    first = plan(traces, cfg, target_site_steps=20).rounds[0]
    assert first.steps == {"a": 3, "b": 8}  # a: available 420-600; b: 120-600
    assert first.provisioned == {"a": 120, "b": 120}
    assert first.sync


def test_traces_too_short_for_the_target_say_how_long_a_trace_is_needed():
    traces = {"a": seconds_trace([.1] * 6, 600)}
    with pytest.raises(InputError, match=r"60 of 1000 site-steps done; the run needs about"):
        plan(traces, config(provision_delay_s=0), target_site_steps=1000)


def test_centralised_baseline_trains_non_stop_from_the_start():
    schedule = centralised({"a": seconds_trace([1.0] * 6, 600), "b": seconds_trace([.1] * 6, 600)},
                           config(("a", "b")), target_site_steps=25)
    assert [r.steps for r in schedule.rounds] == [{"a": 10}, {"a": 10}, {"a": 5}]


# -- energy and budgets ------------------------------------------------------------------------------------------


def test_emissions_integrate_the_step_function_exactly():
    mci = Steps.of(seconds_trace([.1, .3, .2, .4], 300))
    got = integrate(150, 750, 2.0, mci, threshold=0.25)
    assert got["energy_kwh"] == pytest.approx(2.0 * 600 / 3600)
    assert got["kg_co2"] == pytest.approx(2.0 * (150 * .1 + 300 * .3 + 150 * .2) / 3600)
    assert got["window_kwh"] == pytest.approx(2.0 * 300 / 3600)
    solar = Steps.of(seconds_trace([0.5, 3.0], 450))  # PV covers 0.5 kW until 450 s, then all of the draw
    got = integrate(150, 750, 2.0, mci, 0.25, solar)
    assert got["grid_kwh"] == pytest.approx(1.5 * 300 / 3600)
    assert got["kg_co2"] == pytest.approx(1.5 * (150 * .1 + 150 * .3) / 3600)


def schedule_and_accounting():
    # off until 300, provisioning 300-420, available 420-1200; an 8-GPU site draws twice the 4-GPU power
    traces = {"a": seconds_trace([.5, .1, .1, .1, .5, .5], 300)}
    cfg = config(provision_delay_s=120, off_delay_s=0).model_copy(update={"sites": [GridSiteConfig(name="a", gpus=8)]})
    schedule = plan(traces, cfg, target_site_steps=13)
    return schedule, account(schedule, traces, cfg)


def test_accounting_per_round_and_site_against_hand_computed_values():
    schedule, accounting = schedule_and_accounting()
    assert [r.steps for r in schedule.rounds] == [{"a": 3}, {"a": 10}]
    train_kw, idle_kw = 2 * 2.024, 2 * 0.468
    per_round = accounting.per_round()
    assert per_round["train_s"].tolist() == [180, 600]
    assert per_round["idle_s"].tolist() == [120, 0]
    assert per_round["energy_kwh"].tolist() == pytest.approx([(train_kw * 180 + idle_kw * 120) / 3600,
                                                               train_kw * 600 / 3600])
    totals = accounting.totals()
    assert totals["kg_co2"] == pytest.approx(0.1 * (train_kw * 780 + idle_kw * 120) / 3600)
    assert totals["share_in_windows"] == pytest.approx(1.0)
    json.dumps(accounting.to_dict())


def test_budget_stops_before_the_round_that_would_exceed_it():
    schedule, accounting = schedule_and_accounting()
    first = accounting.per_round()["energy_kwh"].iloc[0]
    cfg = CurtailConfig()
    cut = budget_cutoff(schedule, accounting, cfg.budget.model_copy(update={"energy_kwh": first * 1.5}))
    assert (cut.last_round, cut.site_steps, cut.limited) == (0, 3, True)
    assert cut.energy_kwh == pytest.approx(first)
    assert budget_cutoff(schedule, accounting, cfg.budget.model_copy(update={"energy_kwh": first})).last_round == 0
    assert budget_cutoff(schedule, accounting, cfg.budget.model_copy(update={"carbon_kg": 1e-9})).last_round == -1
    unlimited = budget_cutoff(schedule, accounting, cfg.budget)
    assert (unlimited.last_round, unlimited.site_steps, unlimited.limited) == (1, 13, False)


def test_rapl_energy_handles_absence_and_counter_wrap(tmp_path):
    assert read_rapl(tmp_path / "missing") is None
    zone = tmp_path / "intel-rapl:0"
    zone.mkdir()
    (zone / "max_energy_range_uj").write_text("1000000\n")
    (zone / "energy_uj").write_text("900000\n")
    before = read_rapl(tmp_path)
    (zone / "energy_uj").write_text("100000\n")  # wrapped: 100000 + 1000000 - 900000 uJ
    assert joules_between(before, read_rapl(tmp_path)) == pytest.approx(0.2)
    with measured_cpu_energy(tmp_path / "missing") as measured:
        pass
    assert measured.joules is None


# -- the forecast policy -----------------------------------------------------------------------------------------


def forecast_config(model: str = "ses", history_hours: float = 6, forecast_every_s: float = 900) -> CurtailConfig:
    return CurtailConfig(sites=[GridSiteConfig(name="a")], unit="kg_per_kwh", threshold=0.3, start_s=history_hours * 3600,
                         forecast={"model": model, "history_hours": history_hours, "refit_every_s": 7200,
                                   "forecast_every_s": forecast_every_s, "horizon_hours": 2})


def forecast_timeline(trace: pd.Series, cfg: CurtailConfig, end: float):
    times, values = trace.index.to_numpy(dtype=float), trace.to_numpy()
    return make_policy("forecast", cfg).timeline("a", times, values, cfg.start_s, end)


def test_past_view_refuses_the_future():
    view = PastView(np.arange(5) * 300.0, np.arange(5.0))
    view.move_to(650)
    assert view.history()[1].tolist() == [0, 1, 2]
    assert view.value_at(650) == 2
    with pytest.raises(LookAheadError):
        view.value_at(651)


def garbage_after(trace: pd.Series, t: float) -> pd.Series:
    return trace.where(trace.index < t, trace * 0.05)  # clean power after t: a look-ahead would start sites early


def test_forecast_decisions_before_t_do_not_depend_on_values_after_t(monkeypatch):
    trace = seconds_trace(to_kg_per_kwh(generated_trace(days=1.5), "g_per_kwh").to_numpy(), 300)
    cfg, cut, end = forecast_config(forecast_every_s=300), 24 * 3600.0, 1.5 * 86400
    honest = stretches(forecast_timeline(trace, cfg, end), cut)
    assert stretches(forecast_timeline(garbage_after(trace, cut), cfg, end), cut) == honest

    real_history = PastView.history

    def sees_one_sample_ahead(view, since=-np.inf):  # the comparison must catch a model fed the next sample
        times, _ = real_history(view, since)
        return times, view._values[np.minimum(np.searchsorted(view._times, times) + 1, len(view._times) - 1)]

    monkeypatch.setattr(policy_module.PastView, "history", sees_one_sample_ahead)
    leaky = stretches(forecast_timeline(garbage_after(trace, cut), cfg, end), cut)
    assert leaky != stretches(forecast_timeline(trace, cfg, end), cut)


def test_forecast_policy_hides_the_provisioning_delay_on_a_daily_pattern():
    trace = seconds_trace(to_kg_per_kwh(generated_trace(days=3, noise=0), "g_per_kwh").to_numpy(), 300)
    cfg = forecast_config("last_day", history_hours=24)
    end = 3 * 86400.0
    forecast = forecast_timeline(trace, cfg, end)
    reactive = make_policy("reactive", cfg).timeline("a", trace.index.to_numpy(dtype=float), trace.to_numpy(),
                                                     cfg.start_s, end)
    available = forecast.seconds(AVAILABLE, cfg.start_s, end) - reactive.seconds(AVAILABLE, cfg.start_s, end)
    assert available == pytest.approx(2 * cfg.provision_delay_s)  # two windows, each delay hidden
    for t in forecast.intervals(AVAILABLE, cfg.start_s, end):
        assert trace.iloc[int(t[0] // 300)] < cfg.threshold_kg_per_kwh  # trains only on actual low MCI


# -- traces ------------------------------------------------------------------------------------------------------


def test_the_watttime_file_loads_despite_its_header(shared_data):
    trace = load_trace(shared_data / "energy" / "watttime_example.csv")
    assert (len(trace), trace.name) == (8928, "Caiso_North")
    assert isinstance(trace.index, pd.DatetimeIndex)
    assert trace.iloc[0] == pytest.approx(425.01605069)
    traces = site_traces(CurtailConfig(), shared_data)
    assert list(traces) == ["region-a", "region-b", "region-c"]
    assert traces["region-b"].iloc[8 * 12] == pytest.approx(traces["region-a"].iloc[0])  # +8 h shift


def test_a_byte_order_mark_and_numeric_seconds_load(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_text("\ufefftime,mci\n2023-06-08 00:00,1.5\n2023-06-08 00:05,2.5\n", encoding="utf-8")
    assert load_trace(path, time_column="time").tolist() == [1.5, 2.5]
    path = tmp_path / "solar.csv"
    path.write_text("time,Berlin,Lagos\n0,0.1,0.2\n300,0.3,0.4\n")
    trace = load_trace(path, value_column="Lagos")
    assert (trace.index.tolist(), trace.tolist()) == ([0.0, 300.0], [0.2, 0.4])


@pytest.mark.parametrize(("rows", "message"), [
    ("0,1\n300,2\n900,3\n1200,4\n", r"row 3, line 4 \(time 900.0\): a gap of 600 s"),
    ("0,1\n300,\n600,3\n", r"row 2, line 3 \(time 300.0\): x has no value"),
    ("0,1\n600,2\n300,3\n", r"row 3, line 4 \(time 300.0\): goes back in time"),
    ("0,1\n300,2\n300,3\n", r"row 3, line 4 \(time 300.0\): repeats the previous time"),
])
def test_bad_traces_name_the_row(tmp_path, rows, message):
    path = tmp_path / "bad.csv"
    path.write_text("t,x\n" + rows)
    with pytest.raises(InputError, match=message):
        load_trace(path)


def test_missing_and_ambiguous_columns_are_input_errors(tmp_path):
    path = tmp_path / "two.csv"
    path.write_text("t,x,y\n0,1,2\n300,2,3\n")
    with pytest.raises(InputError, match=r"2 value columns \(x, y\)"):
        load_trace(path)
    with pytest.raises(InputError, match=r"no value column 'z' \(columns: t, x, y\)"):
        load_trace(path, value_column="z")


def test_a_parquet_trace_with_a_time_index_loads(tmp_path):
    path = tmp_path / "mci.parquet"
    index = pd.date_range("2023-06-08", periods=3, freq="5min", name="time")
    pd.DataFrame({"mci": [1.0, 2.0, 3.0]}, index=index).to_parquet(path)
    assert load_trace(path).tolist() == [1.0, 2.0, 3.0]


def test_shift_is_circular_and_keeps_the_span():
    trace = seconds_trace([1, 2, 3, 4], 3600)
    assert shifted(trace, 1).tolist() == [4, 1, 2, 3]
    assert shifted(trace, -2).tolist() == [3, 4, 1, 2]


def test_generated_traces_stand_in_without_the_shared_data():
    traces = site_traces(CurtailConfig(), None)
    assert {len(t) for t in traces.values()} == {31 * 288}
    assert traces["region-a"].iloc[0] != traces["region-b"].iloc[0]


def test_config_converts_units_and_rejects_inconsistent_settings():
    assert CurtailConfig(unit="lbs_per_mwh", threshold=1000).threshold_kg_per_kwh == pytest.approx(0.45359237)
    assert CurtailConfig().threshold_kg_per_kwh == pytest.approx(0.3)
    with pytest.raises(ConfigError, match="step_s=900 is longer than a round"):
        validate(CurtailConfig, {"step_s": 900}, "llm.curtail")
    with pytest.raises(ConfigError, match="holt_winters needs history_hours >= 48"):
        validate(CurtailConfig, {"policy": "forecast", "forecast": {"model": "holt_winters", "history_hours": 24}},
                 "llm.curtail")
    with pytest.raises(ConfigError, match="unknown forecast model 'gru'"):
        validate(CurtailConfig, {"forecast": {"model": "gru"}}, "llm.curtail")


# -- figures -----------------------------------------------------------------------------------------------------


def test_figures_are_png_files(tmp_path):
    traces = {"a": seconds_trace([1, .1, .1, .1, .1, 1, 1], 600), "b": seconds_trace([1, 1, 1, .1, 1, 1, 1], 600)}
    cfg = config(("a", "b"))
    schedule = plan(traces, cfg, target_site_steps=30)
    for path in (plot_timeline(tmp_path / "timeline.png", schedule, traces, cfg, loss=[(600, 3.0), (2400, 2.5)]),
                 plot_bpb_vs_carbon(tmp_path / "bpb.png", {"reactive": [(0.1, 2.0), (0.3, 1.5)]})):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- the bench: start days, the trace's floor, IID windows -------------------------------------------------------


def test_the_floor_is_the_mean_mci_inside_windows_over_the_mean_mci():
    trace = seconds_trace([.1, .5, .1, .5, .3, .3], 300)  # inside (strictly below 0.3): 0.1; mean 1.8 / 6 = 0.3
    floor = trace_floor(config(), {"a": trace})["a"]
    assert floor["floor"] == pytest.approx(0.1 / 0.3, abs=1e-4)
    assert floor["share_of_time_in_windows"] == pytest.approx(1 / 3, abs=1e-4)


def test_start_days_spread_to_the_last_that_fits_and_each_is_planned_from_its_own_start():
    day = seconds_trace(to_kg_per_kwh(generated_trace(days=6, step=900, noise=20), "g_per_kwh").to_numpy(), 900)
    traces = {"a": day, "b": shifted(day, 8).rename("b")}
    cfg = config(("a", "b"), start_s=86400.0, target_site_steps=1000,
                 forecast={"model": "last_day", "history_hours": 24})
    days = start_days(cfg, traces, count=3)
    starts = list(days)
    assert starts == [86400.0, 3 * 86400.0, 4 * 86400.0]  # days 1-4 fit: the first, the middle, the last
    with pytest.raises(InputError, match="the traces end"):
        day_figures(cfg, traces, starts[-1] + 86400)  # the day after the last one does not fit
    for start, figures in days.items():
        kg = account(plan(traces, cfg, 1000, policy="reactive", start_s=start), traces, cfg).totals()["kg_co2"]
        central = account(plan({"a": day}, cfg, 1000, policy="always", start_s=start), traces, cfg).totals()["kg_co2"]
        assert figures["reactive"]["kg_co2"] == pytest.approx(kg)
        assert figures["centralised"]["a"] == pytest.approx(central)


def test_forecast_against_reactive_names_what_it_lowers_and_says_when_it_lowers_neither():
    spread = {"median": 1.2, "min": 1.0, "max": 1.5}
    worse = forecast_vs_reactive({"kg_co2": 11.0, "idle_kwh": 3.0}, {"kg_co2": 10.0, "idle_kwh": 1.0},
                                 {"kg_co2_ratio": spread, "idle_kwh_ratio": spread})
    assert worse["wins"] == [] and worse["trained_day"] == {"kg_co2_ratio": 1.1, "idle_kwh_ratio": 3.0, "wins": []}
    idle = forecast_vs_reactive({"kg_co2": 11.0, "idle_kwh": 0.5}, {"kg_co2": 10.0, "idle_kwh": 1.0},
                                {"kg_co2_ratio": spread, "idle_kwh_ratio": {**spread, "median": 0.8}})
    assert idle["wins"] == ["idle_kwh"] and idle["trained_day"]["wins"] == ["idle_kwh"]


def test_iid_windows_deal_every_window_of_the_corpus_once_to_disjoint_ranks_and_resume():
    tokens = np.arange(8 * 30 + 1, dtype=np.uint16)  # 30 windows of 2 x 4 tokens (+1)
    source = IidWindows.of(TokenStreamSource(2, 4, arrays={"train": tokens, "val": tokens}), seed=3)
    firsts = {}
    for rank in range(3):
        stream = source.batches(rank, 3)
        for _ in range(10):
            x, y, _ = next(stream)
            assert torch.equal(y.flatten()[:-1], x.flatten()[1:])  # targets are the next tokens
            firsts.setdefault(rank, []).append(int(x[0, 0]) // 8)
    assert sorted(w for ws in firsts.values() for w in ws) == list(range(30))  # disjoint, all of the corpus
    alone = [int(x[0, 0]) // 8 for x, _, _ in itertools.islice(source.batches(0, 1), 30)]
    assert sorted(alone) == list(range(30)) and alone != list(range(30))  # shuffled, not read in order
    stream = source.batches(1, 3)
    for _ in range(4):
        _, _, position = next(stream)
    assert torch.equal(next(source.batches(1, 3, position))[0], next(stream)[0])
