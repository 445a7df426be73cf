"""One search problem: a target job, its candidate configurations, a runtime limit, and an oracle.

A search sees only what a user would: the candidates' features and hourly prices, the runtime
limit, and the outcomes of the runs it chose to profile. The outcomes of everything else stay
inside the `Oracle`, the benchmark's stand-in for actually running the job.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tasks.cloud.runs import CloudError, features


@dataclass(frozen=True)
class Observation:
    index: int
    log_runtime: float  # noisy; a failed run is modelled as running until the timeout
    log_cost: float
    completed: bool


@dataclass(frozen=True)
class Problem:
    job: str
    configs: pd.DataFrame  # vm_type, nodes, usd_per_hour of each candidate
    X: np.ndarray  # candidate features in [0, 1]
    max_runtime_s: float
    timeout_s: float

    @property
    def log_limit(self) -> float:
        return float(np.log(self.max_runtime_s))

    def describe(self, index: int) -> str:
        row = self.configs.iloc[index]
        return f"{int(row['nodes'])} x {row['vm_type']}"


class Oracle:
    """Runs a candidate (looks up its recorded run) and reports a noisy observation."""

    def __init__(self, runtime_s: np.ndarray, completed: np.ndarray, usd_per_hour: np.ndarray,
                 timeout_s: float, noise_std: float, seed: int):
        self._runtime, self._completed, self._price = runtime_s, completed, usd_per_hour
        self._timeout = timeout_s
        self._noise = np.random.default_rng(seed).normal(0.0, noise_std, size=(len(runtime_s), 2))
        self.profiled: list[int] = []

    def profile(self, index: int) -> Observation:
        if index in self.profiled:
            raise ValueError(f"candidate {index} was already profiled")
        self.profiled.append(index)
        done = bool(self._completed[index])
        runtime = self._runtime[index] if done else max(self._runtime[index], self._timeout)
        cost = self._price[index] * runtime / 3600.0
        return Observation(index, float(np.log(runtime) + self._noise[index, 0]),
                           float(np.log(cost) + self._noise[index, 1]), done)


@dataclass(frozen=True)
class Truth:
    """What the benchmark scores a search with; never handed to a search."""

    cost: np.ndarray
    feasible: np.ndarray  # completed and within the runtime limit
    runtime: np.ndarray | None = None  # seconds, for the Pareto variant
    completed: np.ndarray | None = None

    @property
    def optimum(self) -> float:
        return float(self.cost[self.feasible].min())

    @property
    def fallback(self) -> float:
        """The priciest feasible configuration: a penalty for a search that has found none yet."""
        return float(self.cost[self.feasible].max())

    def best_found(self, profiled: list[int]) -> float | None:
        """Cheapest truly feasible run among those profiled; None until one is found."""
        found = [self.cost[i] for i in profiled if self.feasible[i]]
        return float(min(found)) if found else None

    def hypervolume_ratio(self, profiled: list[int]) -> float:
        """Hypervolume of the completed profiled runs in (log cost, log runtime), minimised, over that of
        every completed configuration; the reference point is the worst completed one (plus a margin)."""
        import torch
        from botorch.utils.multi_objective.hypervolume import Hypervolume

        points = -np.log(np.column_stack([self.cost, self.runtime]))
        done = self.completed
        ref = points[done].min(axis=0) - 0.01
        hv = Hypervolume(torch.tensor(ref))
        full = hv.compute(torch.tensor(points[done]))
        found = [i for i in profiled if done[i]]
        return float(hv.compute(torch.tensor(points[found])) / full) if found else 0.0


def runtime_limit(job_runs: pd.DataFrame, percentile: float) -> float:
    """The constraint: the p-th percentile of the job's completed runtimes."""
    done = job_runs.loc[job_runs["completed"], "elapsed_time_s"]
    if done.empty:
        raise CloudError(f"job {job_runs['job'].iloc[0]} has no completed run, so no runtime limit can be set")
    return float(np.percentile(done, percentile))


def candidate_space(runs: pd.DataFrame) -> pd.DataFrame:
    """Every (vm_type, nodes) configuration in the runs, with features shared by all jobs."""
    configs = (runs[["vm_type", "nodes", "vcpus", "memory_gb", "usd_per_hour"]]
               .drop_duplicates(["vm_type", "nodes"]).sort_values(["vm_type", "nodes"]).reset_index(drop=True))
    X = features(configs)
    return configs.assign(**{f"x{i}": X[:, i] for i in range(X.shape[1])})


def feature_matrix(configs: pd.DataFrame) -> np.ndarray:
    return configs[[c for c in configs.columns if c.startswith("x") and c[1:].isdigit()]].to_numpy(np.float64)


def make_problem(runs: pd.DataFrame, space: pd.DataFrame, job: str, percentile: float, timeout_s: float,
                 noise_std: float, seed: int) -> tuple[Problem, Oracle, Truth]:
    """The job's recorded runs as a problem over the configurations it was run on."""
    job_runs = runs[runs["job"] == job]
    if job_runs.empty:
        raise CloudError(f"no runs of job {job}; jobs in the table: {', '.join(sorted(runs['job'].unique())[:6])}...")
    rows = space.merge(job_runs[["vm_type", "nodes", "elapsed_time_s", "completed", "cost_usd"]], on=["vm_type", "nodes"])
    limit = runtime_limit(job_runs, percentile)
    feasible = rows["completed"].to_numpy() & (rows["elapsed_time_s"].to_numpy() <= limit)
    problem = Problem(job, rows[["vm_type", "nodes", "usd_per_hour"]], feature_matrix(rows), limit, timeout_s)
    oracle = Oracle(rows["elapsed_time_s"].to_numpy(float), rows["completed"].to_numpy(bool),
                    rows["usd_per_hour"].to_numpy(float), timeout_s, noise_std, seed)
    truth = Truth(rows["cost_usd"].to_numpy(float), feasible, rows["elapsed_time_s"].to_numpy(float),
                  rows["completed"].to_numpy(bool))
    return problem, oracle, truth
