"""Profiling runs: the Scout table (or any table of its shape), VM features, and run cost.

A run is one (workload, configuration) execution: `workload,framework,datasize,vm_type,nodes,
elapsed_time_s,completed`. Its cost is nodes x USD/hour of the VM type x elapsed hours, whether
or not it completed (a failed run is paid for too).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tasks.common.errors import InputError

RUN_COLUMNS = ["workload", "framework", "datasize", "vm_type", "nodes", "elapsed_time_s", "completed"]
# vCPUs and GiB of memory per node of the EC2 types in the Scout runs (AWS instance type pages)
VM_SPECS = {
    "c4.large": (2, 3.75), "c4.xlarge": (4, 7.5), "c4.2xlarge": (8, 15.0),
    "m4.large": (2, 8.0), "m4.xlarge": (4, 16.0), "m4.2xlarge": (8, 32.0),
    "r4.large": (2, 15.25), "r4.xlarge": (4, 30.5), "r4.2xlarge": (8, 61.0),
}
FAMILIES = ["c", "m", "r"]


class CloudError(InputError):
    """A runs table, price list or setting the cloud pipeline cannot use as it is."""


def read_table(path: str | Path, what: str) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise CloudError(f"{what} {path} not found: pass --data-dir or set the file in params.yaml `cloud`")
    try:
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except Exception as exc:  # unreadable file: one line naming it
        raise CloudError(f"{what} {path} cannot be read as a table: {exc}") from exc


def read_prices(path: str | Path) -> pd.DataFrame:
    return check_prices(read_table(path, "price list"), str(path))


def check_prices(prices: pd.DataFrame, path: str) -> pd.DataFrame:
    """USD per hour by VM type, with vCPUs and memory per node (from the table, else VM_SPECS)."""
    missing = {"vm_type", "usd_per_hour"} - set(prices.columns)
    if missing:
        raise CloudError(f"price list {path} lacks columns {sorted(missing)}: it needs vm_type,usd_per_hour")
    prices = prices.drop_duplicates("vm_type", keep="last").set_index("vm_type")
    if not (pd.to_numeric(prices["usd_per_hour"], errors="coerce") > 0).all():
        raise CloudError(f"price list {path}: every usd_per_hour must be a positive number")
    for column, spec_index in (("vcpus", 0), ("memory_gb", 1)):
        known = prices.index.to_series().map(lambda vm, i=spec_index: VM_SPECS.get(vm, (np.nan, np.nan))[i])
        prices[column] = prices[column].fillna(known) if column in prices else known
    unknown = prices.index[prices[["vcpus", "memory_gb"]].isna().any(axis=1)].tolist()
    if unknown:
        raise CloudError(f"price list {path}: no vcpus/memory_gb for VM types {unknown}; add those columns")
    return prices.astype({"usd_per_hour": float, "vcpus": float, "memory_gb": float})


def check_runs(runs: pd.DataFrame, prices: pd.DataFrame, where: str) -> pd.DataFrame:
    """Typed runs with `job` (framework/workload/datasize), cost and VM features; errors name the problem."""
    missing = [c for c in RUN_COLUMNS if c not in runs.columns]
    if missing:
        raise CloudError(f"runs table {where} lacks columns {missing}: it needs {','.join(RUN_COLUMNS)}")
    runs = runs[RUN_COLUMNS].copy()
    runs["nodes"] = pd.to_numeric(runs["nodes"], errors="coerce")
    runs["elapsed_time_s"] = pd.to_numeric(runs["elapsed_time_s"], errors="coerce")
    bad = runs.index[~(runs["nodes"] >= 1) | ~(runs["elapsed_time_s"] > 0)]
    if len(bad):
        raise CloudError(f"runs table {where}: row {int(bad[0]) + 2} needs nodes >= 1 and elapsed_time_s > 0 "
                         f"({len(bad)} such rows)")
    runs["completed"] = runs["completed"].map(_boolean)
    if runs["completed"].isna().any():
        row = int(runs.index[runs["completed"].isna()][0]) + 2
        raise CloudError(f"runs table {where}: row {row} has a `completed` that is not true/false")
    unpriced = sorted(set(runs["vm_type"]) - set(prices.index))
    if unpriced:
        raise CloudError(f"runs table {where}: VM types {unpriced} have no price; add them to the price list")
    runs["job"] = runs["framework"] + "/" + runs["workload"] + "/" + runs["datasize"].astype(str)
    dupes = runs.duplicated(["job", "vm_type", "nodes"])
    if dupes.any():
        first = runs[dupes].iloc[0]
        raise CloudError(f"runs table {where}: {first['job']} on {int(first['nodes'])} x {first['vm_type']} appears "
                         "more than once; keep one run per job and configuration")
    spec = prices.loc[runs["vm_type"]]
    runs["vcpus"], runs["memory_gb"] = spec["vcpus"].to_numpy(), spec["memory_gb"].to_numpy()
    runs["usd_per_hour"] = runs["nodes"] * spec["usd_per_hour"].to_numpy()
    runs["cost_usd"] = run_cost(runs["nodes"], spec["usd_per_hour"].to_numpy(), runs["elapsed_time_s"])
    runs["nodes"] = runs["nodes"].astype(int)
    return runs.reset_index(drop=True)


def run_cost(nodes, usd_per_hour, elapsed_s):
    """nodes x price per node-hour x hours."""
    return nodes * usd_per_hour * elapsed_s / 3600.0


def load_runs(runs_path: str | Path, prices_path: str | Path) -> pd.DataFrame:
    prices = read_prices(prices_path)
    return check_runs(read_table(runs_path, "runs table"), prices, str(runs_path))


def features(runs: pd.DataFrame) -> np.ndarray:
    """Configuration features in [0, 1]: log vCPUs and memory per node, log node count, VM family."""
    family = runs["vm_type"].str.split(".").str[0]
    columns = [np.log2(runs["vcpus"]), np.log2(runs["memory_gb"]), np.log2(runs["nodes"])]
    scaled = [(c - c.min()) / (c.max() - c.min()) if c.max() > c.min() else c * 0 for c in columns]
    onehot = [(family == f).astype(float) for f in FAMILIES]
    return np.column_stack([*scaled, *onehot]).astype(np.float64)


def _boolean(value) -> bool | None:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    text = str(value).strip().lower()
    return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(text)
