"""The cloud-configuration pipeline: loading, arithmetic, the searches, RGPE, and what a search may see."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from tasks.cloud.config import CloudConfig
from tasks.cloud.models import DTYPE, fit_gp, latent, loo_ranking_loss, rgpe_weights
from tasks.cloud.problem import (
    Oracle,
    Truth,
    candidate_space,
    make_problem,
    runtime_limit,
)
from tasks.cloud.runs import CloudError, check_prices, check_runs, load_runs, run_cost
from tasks.cloud.search import Context, SupportModel, karasu_model, observed, run_search
from tasks.cloud.study import Search, collaborator_support, run_one, score
from tasks.cloud.synthetic import generated_runs
from tasks.common.paths import data_dir

PRICES = pd.DataFrame({"vm_type": ["c4.large", "m4.xlarge"], "usd_per_hour": [0.1, 0.2]})


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # GP fits on a handful of points, as in the flow


def runs_table(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["workload", "framework", "datasize", "vm_type", "nodes", "elapsed_time_s", "completed"])


def test_scout_table_loads_with_features_and_costs(shared_data):
    runs = load_runs(shared_data / "cloud" / "scout_multinode.csv", shared_data / "cloud" / "ec2_prices.csv")
    assert runs["job"].nunique() == 18 and len(runs) == 1242 and (~runs["completed"]).sum() == 75
    space = candidate_space(runs)
    assert len(space) == 69 and space.filter(like="x").to_numpy().min() >= 0 and space.filter(like="x").to_numpy().max() <= 1
    row = runs[(runs["job"] == "spark/join/bigdata") & (runs["vm_type"] == "c4.large") & (runs["nodes"] == 4)].iloc[0]
    assert row["cost_usd"] == pytest.approx(4 * 0.100 * 1817.555 / 3600)


@pytest.mark.parametrize("change, message", [
    (lambda r: r.drop(columns=["nodes"]), "lacks columns ['nodes']"),
    (lambda r: r.assign(elapsed_time_s=[-1.0, 5.0]), "row 2 needs nodes >= 1 and elapsed_time_s > 0"),
    (lambda r: r.assign(completed=["yes", "maybe"]), "row 3 has a `completed` that is not true/false"),
    (lambda r: r.assign(vm_type=["c4.large", "x9.huge"]), "VM types ['x9.huge'] have no price"),
    (lambda r: r.assign(nodes=[4, 4], vm_type=["c4.large"] * 2), "appears more than once"),
])
def test_bad_runs_tables_are_refused_with_the_reason(change, message):
    good = runs_table([("join", "spark", "huge", "c4.large", 4, 100.0, True),
                       ("join", "spark", "huge", "m4.xlarge", 8, 50.0, False)])
    with pytest.raises(CloudError, match=__import__("re").escape(message)):
        check_runs(change(good), check_prices(PRICES, "prices"), "runs.csv")


def test_a_generic_table_brings_its_own_vm_types(tmp_path):
    prices = pd.DataFrame({"vm_type": ["n2.big"], "usd_per_hour": [1.0], "vcpus": [16], "memory_gb": [64]})
    runs = runs_table([("etl", "spark", "1tb", "n2.big", 2, 360.0, True)])
    runs.to_parquet(tmp_path / "runs.parquet")
    prices.to_csv(tmp_path / "prices.csv", index=False)
    loaded = load_runs(tmp_path / "runs.parquet", tmp_path / "prices.csv")
    assert loaded["job"].item() == "spark/etl/1tb" and loaded["cost_usd"].item() == pytest.approx(2 * 1.0 * 0.1)
    with pytest.raises(CloudError, match=r"no vcpus/memory_gb for VM types \['n2.big'\]"):
        check_prices(prices.drop(columns=["vcpus"]), "prices.csv")


def test_cost_limit_and_score_arithmetic_by_hand():
    assert run_cost(4, 0.1, 1800) == pytest.approx(0.2)  # 4 nodes x $0.10/h x 0.5 h
    runs = check_runs(runs_table([("j", "f", "s", "c4.large", n, t, ok) for n, t, ok in
                                  [(4, 400.0, True), (8, 300.0, True), (12, 100.0, True), (16, 50.0, False)]]),
                      check_prices(PRICES, "p"), "t")
    assert runtime_limit(runs, 50) == pytest.approx(300.0)  # median of the completed 100, 300, 400
    _, oracle, truth = make_problem(runs, candidate_space(runs), "f/j/s", 50, 7200, 0.0, 0)
    costs = [n * 0.1 * t / 3600 for n, t in [(4, 400), (8, 300), (12, 100), (16, 50)]]
    assert truth.cost == pytest.approx(costs) and truth.feasible.tolist() == [False, True, True, False]
    assert truth.optimum == pytest.approx(costs[2])  # 12 nodes: 0.0333 USD beats 8 nodes' 0.0667
    failed = oracle.profile(3)  # a failed run is observed as running to the timeout, and paid for
    assert not failed.completed and np.exp(failed.log_runtime) == pytest.approx(7200)
    assert np.exp(failed.log_cost) == pytest.approx(16 * 0.1 * 2)
    scored = score([3, 1, 2], truth)  # nothing feasible (undefined), then 8 nodes, then the optimum
    assert scored["norm_cost"] == [None, pytest.approx(costs[1] / costs[2]), 1.0]
    # the penalty fills the gap with the priciest feasible configuration: 8 nodes here
    assert scored["norm_cost_penalised"] == pytest.approx([costs[1] / costs[2], costs[1] / costs[2], 1.0])
    assert scored["runs_to_within_10pct"] == 3 and scored["feasible_runs"] == 2


def smooth_table() -> pd.DataFrame:
    """One job whose runtime falls smoothly with cores: the cheapest feasible configuration is unique."""
    rows = []
    for vm, cores in (("c4.large", 2), ("c4.xlarge", 4), ("c4.2xlarge", 8), ("m4.large", 2), ("m4.xlarge", 4)):
        for nodes in (4, 8, 12, 16, 24, 32):
            rows.append(("job", "spark", "s", vm, nodes, 20.0 + 8000.0 / (cores * nodes) + 0.5 * nodes, True))
    prices = pd.DataFrame({"vm_type": ["c4.large", "c4.xlarge", "c4.2xlarge", "m4.large", "m4.xlarge"],
                           "usd_per_hour": [0.1, 0.2, 0.4, 0.1, 0.2]})
    return check_runs(runs_table(rows), check_prices(prices, "p"), "smooth")


def test_cherrypick_finds_the_optimum_of_a_small_table():
    runs = smooth_table()
    found = run_one(Search("spark/job/s", "cherrypick", 30, 0), runs, candidate_space(runs), [],
                    CloudConfig(max_runs=10, noise_std=0.01))
    assert found["norm_cost"][-1] == pytest.approx(1.0)  # 30 candidates, 10 runs


def test_rgpe_weights_favour_a_support_that_ranks_like_the_target():
    gen = torch.Generator().manual_seed(0)
    X = torch.rand(12, 2, generator=gen, dtype=DTYPE)
    f = (X[:, 0] * 3 + X[:, 1]).unsqueeze(-1)
    alike = fit_gp(X, f + 5.0).models[0]  # shifted, same order
    reversed_ = fit_gp(X, -f).models[0]
    target_X, target_y = X[:5], f[:5, 0]
    weights = rgpe_weights([latent(m, target_X) for m in (alike, reversed_)], None, target_y, 128, gen)
    assert weights[0] > 0.9 and weights.sum() == pytest.approx(1.0)


def blinded(oracle: Oracle, keep: list[int]) -> Oracle:
    """The same oracle with the truth of every candidate outside `keep` replaced by NaN."""
    hidden = [i for i in range(len(oracle._runtime)) if i not in keep]
    copy = Oracle(oracle._runtime.copy(), oracle._completed.copy(), oracle._price.copy(), oracle._timeout, 0.0, 0)
    copy._noise = oracle._noise.copy()
    copy._runtime[hidden], copy._price[hidden] = np.nan, np.nan
    return copy


@pytest.mark.parametrize("method", ["cherrypick", "karasu"])
def test_no_search_reads_the_outcomes_of_runs_it_did_not_profile(method):
    runs, space = generated()
    cfg = CloudConfig(max_runs=6, shared_runs=4, karasu={"support": "same_workload"})
    supports = [collaborator_support(runs, space, "spark/join/bigdata", cfg)]
    problem, oracle, _ = make_problem(runs, space, "spark/join/huge", 50, cfg.timeout_s, cfg.noise_std, 1)
    ctx = Context(cfg, supports, 1)
    first = [o.index for o in run_search(method, problem, oracle, ctx)]
    again = blinded(oracle, first)
    second = run_search(method, problem, again, ctx)
    assert [o.index for o in second] == first  # any look at a hidden outcome would have changed a choice or raised
    assert all(np.isfinite(o.log_cost) for o in second)


def test_truth_scores_only_runs_that_meet_the_limit():
    truth = Truth(cost=np.array([1.0, 2.0, 4.0]), feasible=np.array([False, True, True]))
    assert truth.best_found([0]) is None and truth.fallback == 4.0  # nothing feasible yet: undefined, or the penalty
    assert truth.best_found([0, 2, 1]) == 2.0 and truth.optimum == 2.0


def generated() -> tuple[pd.DataFrame, pd.DataFrame]:
    runs, prices = generated_runs(0)
    runs = check_runs(runs, check_prices(prices, "p"), "generated")
    return runs, candidate_space(runs)


def test_the_targets_loo_loss_ranks_each_held_out_prediction_against_its_own_model():
    y = torch.tensor([0.0, 1.0, 2.0], dtype=DTYPE)
    # row i: the model fitted without point i, at every point; its held-out prediction is on the diagonal
    one_slip = torch.tensor([[[1.5, 1.0, 2.0], [0.0, 1.0, 2.0], [0.0, 1.0, 2.0]]], dtype=DTYPE)
    assert loo_ranking_loss(one_slip, y).tolist() == [1.0]  # 1.5 above model 0's own 1.0 at point 1
    # each held-out prediction sits right among its own model's predictions, though the models' levels differ
    # (held-out values 5, 0, -8 would be fully misordered if ranked against each other)
    levels = torch.tensor([[[5.0, 6.0, 7.0], [-1.0, 0.0, 1.0], [-10.0, -9.0, -8.0]]], dtype=DTYPE)
    assert loo_ranking_loss(levels, y).tolist() == [0.0]


def test_a_tie_between_a_support_and_the_target_goes_to_the_target():
    gen = torch.Generator().manual_seed(0)
    y = torch.tensor([0.0, 1.0, 2.0], dtype=DTYPE)
    from gpytorch.distributions import MultivariateNormal

    perfect_support = MultivariateNormal(10 * y, 1e-6 * torch.eye(3, dtype=DTYPE))
    perfect_target = y.expand(64, 3, 3)  # every LOO sample ranks every point right
    weights = rgpe_weights([perfect_support, perfect_support], perfect_target, y, 64, gen)
    assert weights.tolist() == [0.0, 0.0, 1.0]
    assert rgpe_weights([perfect_support, perfect_support], None, y, 64, gen).tolist() == [0.5, 0.5]  # supports split


def test_the_targets_own_gps_join_the_ensemble_after_three_runs():
    runs, space = generated()
    cfg = CloudConfig(max_runs=4, karasu={"support": "same_workload", "ranking_samples": 32})
    other, other_oracle, _ = make_problem(runs, space, "spark/join/bigdata", 50, cfg.timeout_s, cfg.noise_std, 0)
    support = SupportModel.fit("spark/join/bigdata", *observed(other, [other_oracle.profile(i) for i in range(0, 99, 9)]))
    problem, oracle, _ = make_problem(runs, space, "spark/join/huge", 50, cfg.timeout_s, cfg.noise_std, 1)
    ctx = Context(cfg, [support], 1)
    obs = [oracle.profile(i) for i in (3, 40, 77)]
    two, three = karasu_model(problem, obs[:2], ctx), karasu_model(problem, obs, ctx)
    for output in range(2):
        assert [m.model for m in two.outputs[output]] == [support.outputs[output]]  # supports only
        members = three.outputs[output]
        assert len(members) == 2 and members[0].model is support.outputs[output]
        assert torch.equal(members[1].model.train_inputs[0], observed(problem, obs)[0])  # the target's own GP
        assert sum(m.weight for m in members) == pytest.approx(1.0)


@pytest.mark.parametrize("shared, expected", [(4, 4), ("all", 99)])
def test_a_collaborator_shares_the_runs_its_own_search_profiled(shared, expected):
    runs, space = generated()
    cfg = CloudConfig(shared_runs=shared, noise_std=0.0)
    support = collaborator_support(runs, space, "hadoop/terasort/huge", cfg)
    gp = support.outputs[0]
    X, [log_runtime] = gp.train_inputs[0], gp.outcome_transform.untransform(gp.train_targets.unsqueeze(-1))[0].T
    assert len(X) == expected and len(torch.unique(X, dim=0)) == expected  # distinct configurations
    job = runs[runs["job"] == "hadoop/terasort/huge"].merge(space, on=["vm_type", "nodes"], suffixes=("_run", ""))
    by_features = {tuple(np.round(r, 6)): t for r, t in zip(job.filter(regex=r"^x\d+$").to_numpy(), np.where(
        job["completed"], job["elapsed_time_s"], np.maximum(job["elapsed_time_s"], cfg.timeout_s)))}
    observed_s = [by_features[tuple(np.round(x, 6))] for x in X.numpy()]
    assert np.exp(log_runtime.numpy()) == pytest.approx(observed_s)  # that job's own runs, as it observed them


def test_summary_curves_leave_the_cost_undefined_until_a_feasible_run():
    from tasks.cloud.report import curves

    norm = [[None, 3.0], [None, None], [1.5, 1.0], [2.0, 1.2]]
    penalised = [[4.0, 3.0], [4.0, 4.0], [1.5, 1.0], [2.0, 1.2]]  # the penalty: the priciest feasible, 4x here
    stats = curves(norm, penalised)
    assert stats["feasible_share_at"] == [0.5, 0.75]
    assert stats["median_norm_cost_at"] == [1.75, 1.2] and stats["mean_norm_cost_at"] == [1.75, pytest.approx(1.7333)]
    assert stats["penalised_mean_norm_cost_at"] == [2.875, 2.3]
    assert curves([[None], [None]], [[4.0], [4.0]])["median_norm_cost_at"] == [None]


def test_cherrypick_beats_random_search_over_five_seeds():
    """A tight limit (10th percentile): random mostly pays the penalty, CherryPick's constrained EI finds feasible
    runs. The Scout runs where present, else the generated table (whose gap opens a run later); same seeds, so
    both share their first 3 runs."""
    folder = data_dir()
    if folder is None:
        (runs, space), job, cfg = generated(), "spark/lr/bigdata", CloudConfig(max_runs=6)
    else:
        runs = load_runs(folder / "cloud" / "scout_multinode.csv", folder / "cloud" / "ec2_prices.csv")
        space, job, cfg = candidate_space(runs), "spark/lr/huge", CloudConfig(max_runs=5)
    found = {m: [run_one(Search(job, m, 10, seed), runs, space, [], cfg) for seed in range(5)]
             for m in ("random", "cherrypick")}
    cost = {m: np.mean([r["norm_cost_penalised"][-1] for r in rows]) for m, rows in found.items()}
    feasible = {m: sum(r["feasible_runs"] for r in rows) for m, rows in found.items()}
    assert cost["cherrypick"] < cost["random"] and feasible["cherrypick"] > feasible["random"]


def test_the_bench_compares_both_sharing_protocols_with_the_same_cherrypick_searches():
    from tasks.cloud.report import bench_figures, summarise

    def row(job, method, norm, within):
        return {"job": job, "method": method, "objective": "constrained", "norm_cost": norm, "search_s": 1.0,
                "norm_cost_penalised": [3.0 if v is None else v for v in norm], "runs_to_within_10pct": within,
                "feasible_runs": sum(v is not None for v in norm), "runs": len(norm)}

    cherrypick = [row("a", "cherrypick", [None, 2.0, 1.5, 1.5, 1.0], 5), row("b", "cherrypick", [None, None, 2.0, 1.2, 1.0], 5)]
    study = {"source": "t", "protocol": "study", "shared_runs": 10, **summarise(cherrypick + [
        row("a", "karasu", [1.4, 1.2, 1.05, 1.0, 1.0], 3), row("b", "karasu", [None, 1.8, 1.4, 1.2, 1.0], 5)])}
    bound = {"source": "t", "protocol": "upper bound", "shared_runs": "all", **summarise([
        row("a", "karasu", [None, None, None, 1.6, 1.6], 6), row("b", "karasu", [1.0] * 5, 1)])}
    figures = bench_figures(study, bound)
    # CherryPick's medians at k = 3, 4, 5: 1.75, 1.35, 1.0; Karasu's 1.225, 1.1, 1.0 (a tie at 5 is no win)
    assert figures["karasu_vs_cherrypick"]["margin"] == pytest.approx([0.525, 0.25, 0.0])
    assert figures["targets"] == {"karasu_median_below_cherrypick_at_k_3_4_5": False,
                                  "karasu_fewer_runs_on_60pct_of_jobs": False}  # fewer runs on job a only: 50%
    # every run shared: at k = 3 only b has a feasible run (1.0), then 1.3 and 1.3
    assert figures["margin_by_shared_runs"]["all"] == {"median_margin": pytest.approx([0.75, 0.05, -0.3]),
                                                       "workloads_fewer_runs_share": 0.5}
    assert figures["margin_by_shared_runs"]["10"]["median_margin"] == figures["karasu_vs_cherrypick"]["margin"]
