"""Inputs of the study: the runs table (real or generated), the candidate space, the chosen jobs,
and the searches to run. Checked before anything starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tasks.cloud.config import CloudConfig
from tasks.cloud.problem import candidate_space, runtime_limit
from tasks.cloud.runs import CloudError, check_prices, check_runs, load_runs
from tasks.cloud.study import Search, support_jobs
from tasks.cloud.synthetic import generated_runs
from tasks.common.paths import data_dir as find_data_dir


@dataclass(frozen=True)
class StudyInputs:
    runs: pd.DataFrame
    space: pd.DataFrame
    jobs: list[str]  # the targets
    source: str


def load_study_runs(cfg: CloudConfig, data_dir: str | None) -> tuple[pd.DataFrame, str]:
    """The configured runs table from the data folder, else the generated one (said in `source`)."""
    folder = find_data_dir(data_dir)
    if folder is None:
        runs, prices = generated_runs(cfg.seed)
        return check_runs(runs, check_prices(prices, "generated prices"), "generated table"), "generated"
    runs_path, prices_path = Path(folder) / cfg.runs_file, Path(folder) / cfg.prices_file
    return load_runs(runs_path, prices_path), str(runs_path)


def check_inputs(cfg: CloudConfig, data_dir: str | None) -> StudyInputs:
    runs, source = load_study_runs(cfg, data_dir)
    jobs = sorted(runs["job"].unique())
    chosen = cfg.workloads or jobs
    unknown = [j for j in chosen if j not in jobs]
    if unknown:
        raise CloudError(f"workloads {unknown} are not in {source}; choose among {', '.join(jobs)}")
    for job in chosen:
        runtime_limit(runs[runs["job"] == job], min(cfg.percentiles))  # a job without completed runs fails here
    if "karasu" in cfg.methods + cfg.pareto_methods:
        lonely = [j for j in chosen if not support_jobs(j, jobs, cfg.karasu.support)]
        if lonely:
            raise CloudError(f"karasu.support={cfg.karasu.support} leaves {lonely[0]} without collaborators' runs; "
                             "use karasu.support=similar")
    return StudyInputs(runs, candidate_space(runs), chosen, source)


def searches(cfg: CloudConfig, jobs: list[str]) -> list[Search]:
    constrained = [Search(job, method, p, r) for job in jobs for p in cfg.percentiles for r in range(cfg.repetitions)
                   for method in cfg.methods]
    pareto = [Search(job, method, None, r) for job in jobs for r in range(cfg.pareto_repetitions)
              for method in cfg.pareto_methods]
    return constrained + pareto

