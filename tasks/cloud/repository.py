"""The shared repository of profiling runs: one Parquet file per contribution in one folder,
versioned by DVC (`dvc add` of the folder after each contribution when it lies in this project).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd

from tasks.cloud.config import CloudConfig
from tasks.cloud.runs import (
    RUN_COLUMNS,
    CloudError,
    check_runs,
    read_prices,
    read_table,
)
from tasks.common.atomic import write_frame
from tasks.common.paths import data_dir as find_data_dir
from tasks.common.paths import project_root


def repository_folder(cfg: CloudConfig, given: str | None) -> Path:
    """`given`, else params.yaml `cloud.repository`; relative paths are from the project root."""
    folder = Path(given or cfg.repository)
    return folder if folder.is_absolute() else project_root() / folder


def price_list(cfg: CloudConfig, given: str | None, data_dir: str | None) -> pd.DataFrame:
    """`given`, else the data folder's `cloud.prices_file`."""
    if given:
        return read_prices(given)
    folder = find_data_dir(data_dir)
    if folder is None:
        raise CloudError(f"no price list: pass --prices FILE (vm_type,usd_per_hour) or --data-dir with {cfg.prices_file}")
    return read_prices(Path(folder) / cfg.prices_file)


def own_runs(job: str, observed: str | None, shared: pd.DataFrame, prices: pd.DataFrame
             ) -> tuple[pd.DataFrame, dict | None]:
    """A user's runs of `job`: the `observed` file's (they win over the repository's), then their
    contributions in the repository; and, for a file, which of its runs were used."""
    mine, used = _observed_runs(job, observed, prices) if observed else (shared.iloc[:0], None)
    both = pd.concat([mine, shared[shared["job"] == job]], ignore_index=True)
    return both.drop_duplicates(["vm_type", "nodes"]), used


def _observed_runs(job: str, path: str, prices: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    runs = check_runs(read_table(path, "runs table"), prices, path)
    if runs.empty:
        raise CloudError(f"--observed {path} holds no runs: add your runs of {job} below its header, or leave "
                         "--observed out to start from scratch")
    mine = runs[runs["job"] == job]
    others = runs.loc[runs["job"] != job, "job"].value_counts().sort_index()
    if mine.empty:
        raise CloudError(f"--observed {path} holds no runs of {job} (only of {', '.join(others.index)}): pass your "
                         f"runs of {job}, or set --workload to the job they are of")
    return mine, {"file": str(path), "runs_used": len(mine), "runs_of_other_jobs_ignored": others.to_dict()}


def contribute(runs_path: str | Path, user: str, folder: str | Path, prices: pd.DataFrame) -> Path:
    """Check a user's runs and add them to the repository as `<user>-<content hash>.parquet`."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", user):
        raise CloudError(f"user name {user!r} must be letters, digits, '.', '_' or '-' (it names the file)")
    runs = check_runs(read_table(runs_path, "runs table"), prices, str(runs_path))[RUN_COLUMNS]
    if runs.empty:
        raise CloudError(f"runs table {runs_path} holds no runs, so there is nothing to contribute: add your "
                         "profiling runs below its header")
    digest = hashlib.sha256(pd.util.hash_pandas_object(runs, index=False).to_numpy().tobytes()).hexdigest()[:12]
    target = Path(folder) / f"{user}-{digest}.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    write_frame(target, runs)
    return target


def read_repository(folder: str | Path, prices: pd.DataFrame) -> pd.DataFrame:
    """Every contributed run; where two contributions hold the same job and configuration, the newest wins."""
    files = sorted(Path(folder).glob("*.parquet"), key=lambda p: p.stat().st_mtime)
    if not files:
        return check_runs(pd.DataFrame(columns=RUN_COLUMNS), prices, str(folder))
    runs = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    runs = runs.drop_duplicates(["workload", "framework", "datasize", "vm_type", "nodes"], keep="last")
    return check_runs(runs.reset_index(drop=True), prices, str(folder))


def version_with_dvc(folder: str | Path) -> Path | None:
    """`dvc add` the folder when it lies inside this DVC project; returns its .dvc file."""
    root, folder = project_root(), Path(folder).resolve()
    if not (root / ".dvc").is_dir() or not folder.is_relative_to(root):
        return None
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        repo.scm_context.quiet = True
        repo.add(str(folder))
    return folder.with_name(folder.name + ".dvc")
