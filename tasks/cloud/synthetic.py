"""A generated runs table of the Scout shape, for demos and tests without ../shared/datasets.

Each job has a work size, a parallel fraction (Amdahl), a per-node coordination overhead and a
memory need: runs on too little total memory spill (slower) or fail.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.cloud.runs import VM_SPECS

NODES = [4, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48]
JOBS = [("spark", "join"), ("spark", "lr"), ("hadoop", "terasort"), ("hadoop", "wordcount")]
PRICES = {"c4.large": 0.100, "c4.xlarge": 0.199, "c4.2xlarge": 0.398, "m4.large": 0.100, "m4.xlarge": 0.200,
          "m4.2xlarge": 0.400, "r4.large": 0.133, "r4.xlarge": 0.266, "r4.2xlarge": 0.532}


def generated_runs(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, prices) for every job at two data sizes on every configuration."""
    rng = np.random.default_rng(seed)
    rows = []
    for framework, workload in JOBS:
        parallel, overhead, mem_per_gb = rng.uniform(0.85, 0.99), rng.uniform(2, 12), rng.uniform(0.5, 3)
        for datasize, scale in (("bigdata", 1.0), ("huge", 3.0)):
            work, need_gb = 2e4 * scale * rng.uniform(0.5, 2), 40 * scale * mem_per_gb
            for vm, (vcpus, mem) in VM_SPECS.items():
                for nodes in NODES:
                    cores, total_mem = vcpus * nodes, mem * nodes
                    runtime = work * ((1 - parallel) + parallel / cores) + overhead * nodes
                    runtime *= 1 + 2 * max(0.0, need_gb / total_mem - 1)
                    runtime *= np.exp(rng.normal(0, 0.05))
                    completed = total_mem >= 0.25 * need_gb and runtime < 7200
                    rows.append((workload, framework, datasize, vm, nodes, round(min(runtime, 7200), 3), completed))
    runs = pd.DataFrame(rows, columns=["workload", "framework", "datasize", "vm_type", "nodes", "elapsed_time_s", "completed"])
    prices = pd.DataFrame({"vm_type": list(PRICES), "usd_per_hour": list(PRICES.values())})
    return runs, prices
