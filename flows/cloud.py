"""The cloud-configuration pipeline: Prefect flow `cloud`, `seedflow cloud run|contribute|optimize`,
`seedflow bench cloud`, its demo.

Each collaborator's job is searched (the runs it shares) and its support models fitted as one Ray task;
every search (job x method x percentile x repetition) is a Ray task that receives them from the object store.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import typer
from prefect import flow, get_run_logger, task
from prefect_ray.context import remote_options

from flows.options import (
    DATA_DIR_OPTION,
    cli_overrides,
    comma_list,
    default,
    flow_overrides,
    int_list,
    set_option,
)
from flows.runtime import RETRY_TRANSIENT, run_flow, task_runner
from tasks.cloud.config import CloudConfig
from tasks.common.config import load_config
from tasks.common.paths import project_root
from tasks.common.precision import hardware_tags

if TYPE_CHECKING:  # the searches import BoTorch and torch: only when a cloud run starts, not with every command
    from tasks.cloud.search import SupportModel
    from tasks.cloud.study import Search

SECTION = "cloud"


@task(name="collaborator-support-model", **RETRY_TRANSIENT)
def support_task(job: str, runs, space, cfg: CloudConfig) -> SupportModel:
    import torch

    from tasks.cloud.study import collaborator_support

    torch.set_num_threads(1)
    return collaborator_support(runs, space, job, cfg)


@task(name="search", **RETRY_TRANSIENT)
def search_task(search: Search, runs, space, supports: list[SupportModel], cfg: CloudConfig) -> dict:
    import torch

    from tasks.cloud.study import run_one

    torch.set_num_threads(1)
    start = time.perf_counter()
    return {**run_one(search, runs, space, supports, cfg), "search_s": time.perf_counter() - start}


@flow(name="cloud", task_runner=task_runner(), log_prints=True)
def cloud_flow(
    workloads: list[str] = default(SECTION, "workloads"),
    methods: list[str] = default(SECTION, "methods"),
    percentiles: list[int] = default(SECTION, "percentiles"),
    overrides: dict[str, Any] | None = None,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """Collaborative cloud configuration (Karasu) against CherryPick and random search on the Scout runs.

    Args:
        workloads: target jobs as framework/workload/datasize (e.g. spark/join/huge); empty: all.
        methods: searches among random, cherrypick, karasu.
        percentiles: runtime limits, as percentiles of each job's completed runtimes.
        overrides: any other key of params.yaml `cloud`, dotted (e.g. {"repetitions": 1}); wins over the fields above.
        data_dir: public datasets folder (default: SEEDFLOW_DATA, else ../shared/datasets).
    """
    from tasks.cloud.pipeline import check_inputs, searches
    from tasks.cloud.report import log_to_mlflow, protocol, summarise, write_outputs
    from tasks.cloud.study import support_jobs

    logger = get_run_logger()
    cfg = load_config(CloudConfig, SECTION, flow_overrides(overrides, workloads=workloads, methods=methods,
                                                           percentiles=percentiles))
    inputs = check_inputs(cfg, data_dir)
    if inputs.source == "generated":
        logger.warning("no datasets folder found (--data-dir, SEEDFLOW_DATA, ../shared/datasets): using generated runs")
    todo = searches(cfg, inputs.jobs)
    shared = protocol(cfg)
    logger.info("cloud: %d searches (%d jobs x %s x %d percentiles x %d repetitions) on %s; collaborators share %s "
                "(shared_runs: %s)", len(todo), len(inputs.jobs), ",".join(cfg.methods), len(cfg.percentiles),
                cfg.repetitions, inputs.source, shared["protocol"], shared["shared_runs"])
    all_jobs = sorted(inputs.runs["job"].unique())
    wanted = {s.job: support_jobs(s.job, all_jobs, cfg.karasu.support) for s in todo if s.method == "karasu"}
    needed = sorted({j for jobs in wanted.values() for j in jobs})
    with remote_options(num_cpus=1):
        models = {job: support_task.submit(job, inputs.runs, inputs.space, cfg) for job in needed}
        futures = [search_task.submit(s, inputs.runs, inputs.space, [models[j] for j in wanted.get(s.job, [])]
                                      if s.method == "karasu" else [], cfg) for s in todo]
    rows = collect(futures, logger)

    out_dir = project_root() / cfg.out_dir
    summary = summarise(rows)
    info = {"hardware": hardware_tags(), "protocol": shared,
            "title": f"{len(inputs.jobs)} jobs, {inputs.source.split('/')[-1]}, {shared['protocol']}"}
    write_outputs(rows, summary, out_dir, info)
    run_id = log_to_mlflow(rows, summary, cfg, out_dir, run_name=f"cloud-{len(inputs.jobs)}jobs")
    for method, stats in summary["methods"].items():
        logger.info("%s: at k=1..%d share of searches with a feasible run %s, median normalised cost over those %s, "
                    "runs to within 10%% %.2f", method, cfg.max_runs, stats["feasible_share_at"],
                    stats["median_norm_cost_at"], stats["runs_to_within_10pct"])
    logger.info("results: %s, MLflow run %s", out_dir / "metrics.json", run_id)
    return {**shared, **summary, "metrics": str(out_dir / "metrics.json"), "mlflow_run_id": run_id,
            "source": inputs.source}


def collect(futures: list, logger) -> list[dict]:
    """Results in submission order; a progress line (searches done, rate, ETA) at most every 10 s."""
    from prefect.futures import as_completed

    position = {future.task_run_id: i for i, future in enumerate(futures)}
    rows: list[dict] = [{}] * len(futures)
    start = last = time.monotonic()
    for done, future in enumerate(as_completed(futures), 1):
        rows[position[future.task_run_id]] = future.result()
        now = time.monotonic()
        if now - last >= 10 or done == len(futures):
            rate = done / max(now - start, 1e-9)
            logger.info("searches %d/%d | %.2f/s | ETA %.0fs", done, len(futures), rate, (len(futures) - done) / rate)
            last = now
    return rows


FLOWS = [cloud_flow]
app = typer.Typer(help="Cloud configuration: collaborative Bayesian optimisation (Karasu) on shared profiling runs.",
                  no_args_is_help=True)
SET_OPTION = set_option("repetitions=1")


def _overrides(assignments: list[str] | None, workloads: str | None, methods: str | None,
               percentiles: str | None) -> dict:
    return cli_overrides(assignments, workloads=comma_list(workloads), methods=comma_list(methods),
                         percentiles=int_list(percentiles, "--percentiles") if percentiles else None)


def run_cloud(overrides: dict, data_dir: str | None) -> dict:
    """Check the config and the runs here, then run the flow against a Prefect API."""
    from tasks.cloud.pipeline import check_inputs

    check_inputs(load_config(CloudConfig, SECTION, overrides), data_dir)
    return run_flow("flows.cloud:cloud_flow", overrides=overrides, data_dir=data_dir)


WORKLOADS_HELP = "Comma-separated jobs as framework/workload/datasize, e.g. spark/join/huge (default: all)."


@app.command("run")
def run(
    workloads: str = typer.Option(None, help=WORKLOADS_HELP),
    methods: str = typer.Option(None, help="Comma-separated searches among random,cherrypick,karasu."),
    percentiles: str = typer.Option(None, help="Comma-separated runtime-limit percentiles, e.g. 10,50,90."),
    set_: list[str] = SET_OPTION,
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Run the search study (Prefect flow `cloud` on Ray, logged to MLflow)."""
    result = run_cloud(_overrides(set_, workloads, methods, percentiles), data_dir)
    typer.echo(json.dumps({"methods": result["methods"], "metrics": result["metrics"],
                           "mlflow_run_id": result["mlflow_run_id"]}, indent=2))


REPOSITORY_OPTION = typer.Option(None, help="Repository folder (default: params.yaml cloud.repository).")
PRICES_OPTION = typer.Option(None, help="Price list vm_type,usd_per_hour (default: the data dir's).")


@app.command("contribute")
def contribute(
    runs: str = typer.Argument(..., help="Your profiling runs: CSV or Parquet with workload,framework,datasize,vm_type,"
                                         "nodes,elapsed_time_s,completed."),
    user: str = typer.Option(..., "--user", help="Your name; it names the contribution's file."),
    repository: str = REPOSITORY_OPTION,
    prices: str = PRICES_OPTION,
    set_: list[str] = SET_OPTION,
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Share profiling runs with collaborators: checked, written to the repository, versioned by DVC."""
    from tasks.cloud.repository import contribute as add_runs
    from tasks.cloud.repository import price_list, repository_folder, version_with_dvc

    cfg = load_config(CloudConfig, SECTION, cli_overrides(set_))
    folder = repository_folder(cfg, repository)
    path = add_runs(runs, user, folder, price_list(cfg, prices, data_dir))
    tracked = version_with_dvc(folder)
    typer.echo(f"added {path}" + (f"; DVC tracks the folder in {tracked} (git add it, then dvc push)" if tracked else ""))


@app.command("optimize")
def optimize(
    workload: str = typer.Option(..., help="Your job as framework/workload/datasize, e.g. spark/join/huge."),
    max_runtime: float = typer.Option(..., help="Runtime limit in seconds a configuration must meet."),
    observed: str = typer.Option(None, help="Your runs of this job so far (same columns as contribute); none: start."),
    repository: str = REPOSITORY_OPTION,
    prices: str = PRICES_OPTION,
    set_: list[str] = SET_OPTION,
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Recommend the next configuration to profile for your job (Karasu on collaborators' runs)."""
    from tasks.cloud.recommend import check_request, recommend
    from tasks.cloud.repository import (
        own_runs,
        price_list,
        read_repository,
        repository_folder,
    )

    check_request(workload, max_runtime)  # before any file is read
    cfg = load_config(CloudConfig, SECTION, cli_overrides(set_))
    table = price_list(cfg, prices, data_dir)
    shared = read_repository(repository_folder(cfg, repository), table)
    own, used = own_runs(workload, observed, shared, table)
    advice = recommend(workload, own, shared, max_runtime, cfg)
    typer.echo(json.dumps({**advice, **({"observed": used} if used else {})}, indent=2))


def bench(
    workloads: str = typer.Option(None, help=WORKLOADS_HELP),
    pareto: bool = typer.Option(True, help="Also the Pareto (cost, runtime) variant, each method once per job."),
    upper_bound: bool = typer.Option(True, help="Also Karasu with every run of each support job shared "
                                                "(shared_runs: all), an upper bound beside the study's protocol."),
    set_: list[str] = SET_OPTION,
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """The whole study (18 jobs x 3 methods x 5 percentiles x 3 repetitions, plus the Pareto variant), then
    Karasu again with every run shared; last line = one JSON object."""
    from flows.runtime import prefect_api
    from tasks.cloud.report import bench_figures

    overrides = _overrides(set_, workloads, None, None)
    overrides.setdefault("out_dir", "results/bench/cloud")
    if pareto:
        overrides.setdefault("pareto_methods", ["random", "cherrypick", "karasu"])
    start = time.perf_counter()
    with prefect_api():  # one server for both runs
        result = run_cloud(overrides, data_dir)
        bound = run_cloud({**overrides, "methods": ["karasu"], "pareto_methods": [], "shared_runs": "all",
                           "out_dir": overrides["out_dir"] + "/upper_bound"}, data_dir) if upper_bound else None
    out = {"hardware": hardware_tags(), "precision": "fp64 GPs", **bench_figures(result, bound)}
    out["wall_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps(out))


BENCHES = {"cloud": bench}


def demo(data_dir: str | None) -> str:
    """Small search study with the `demo.cloud` overrides from params.yaml."""
    from tasks.common.config import read_params

    overrides = read_params().get("demo", {}).get("cloud", {})
    result = run_cloud(overrides, data_dir)
    last = {m: (s["median_norm_cost_at"][-1], s["feasible_share_at"][-1]) for m, s in result["methods"].items()}
    said = ", ".join(f"{m} {'-' if v is None else f'{v:.2f}'} ({share:.0%} feasible)" for m, (v, share) in last.items())
    runs = len(next(iter(result["methods"].values()))["median_norm_cost_at"])
    return (f"cloud: median best feasible cost / optimum after {runs} runs: {said}; {result['metrics']} "
            f"(MLflow experiment 'cloud', run {result['mlflow_run_id']})")
