"""The pipeline's steps as plain functions: ingest, parse, weak-label, detect. The Prefect flow
(flows/logs.py) calls them as tasks; tests and benchmarks call them directly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tasks.common.atomic import write_frame, write_json
from tasks.common.paths import data_dir as resolve_data_dir
from tasks.logs.config import DatasetSpec, LogsConfig
from tasks.logs.data import Detection, LogData, chronological
from tasks.logs.loaders import load
from tasks.logs.parsing import parse
from tasks.logs.windows import incident_windows, read_incidents, simulate_windows

PARSED_COLUMNS = ["timestamp", "node", "template_id", "template", "tokens", "label", "content"]


def resolve(path: str | None, data_dir: str | None) -> Path | None:
    """Absolute path of a dataset file: absolute as given, else under the datasets folder."""
    if path is None:
        return None
    candidate = Path(path).expanduser()
    if candidate.is_absolute():
        return candidate
    folder = resolve_data_dir(data_dir)
    if folder is None:
        raise FileNotFoundError(f"{path} is relative but no datasets folder was found (set --data-dir or SEEDFLOW_DATA)")
    return folder / candidate


def ingest_and_parse(spec: DatasetSpec, cfg: LogsConfig, data_dir: str | None, out_dir: Path,
                     resume_state: bool = False) -> tuple[Path, dict]:
    """Load, parse, sort by time; write `<out>/parsed/<name>.parquet` and its stats."""
    loaded = load(spec.format, resolve(spec.path, data_dir), resolve(spec.labels, data_dir), spec.max_lines)
    state = out_dir / "parsed" / f"{spec.name}.drain3"
    if not resume_state:
        state.unlink(missing_ok=True)
    parsed, stats = parse(loaded.frame, cfg.parse, state)
    parsed = chronological(parsed)
    stats = {**stats, **{k: v for k, v in loaded.summary().items() if k != "lines"},
             "labelled_anomalies": int((parsed["label"] == 1).sum())}
    target = write_frame(out_dir / "parsed" / f"{spec.name}.parquet", parsed[PARSED_COLUMNS + ["masked_id"]])
    write_json(out_dir / "parsed" / f"{spec.name}_stats.json", stats)
    return target, stats


def read_parsed(path: Path) -> pd.DataFrame:
    parsed = pd.read_parquet(path)
    parsed["tokens"] = parsed["tokens"].map(tuple)
    return parsed


def weak_labels(parsed: pd.DataFrame, spec: DatasetSpec, w: float, data_dir: str | None) -> np.ndarray:
    """Failure windows from the incidents file when given, else simulated from the truth (+/- w s)."""
    if spec.incidents:
        return incident_windows(parsed["timestamp"].to_numpy(), parsed["node"], read_incidents(resolve(spec.incidents, data_dir)))
    labels = parsed["label"]
    if labels.isna().all():
        raise ValueError(f"dataset {spec.name!r} has no labels and no incidents file: cannot build failure windows")
    return simulate_windows(parsed["timestamp"].to_numpy(), labels.fillna(0).to_numpy(np.int64), w)


def detect(model: str, data: LogData, cfg: LogsConfig, labels: np.ndarray | None = None) -> Detection:
    """Fit one detector on the train part and score every line. Only `supervised` reads labels."""
    import torch

    torch.set_num_threads(1)
    if model in ("pull", "loglab"):
        from tasks.logs.pull import run_loglab, run_pull

        run = run_pull if model == "pull" else run_loglab
        return run(data, cfg.pull, cfg.parse.max_tokens, cfg.seed)
    if model == "deeplog":
        from tasks.logs.deeplog import run_deeplog

        return run_deeplog(data, cfg.deeplog, cfg.seed)
    from tasks.logs import baselines

    if model == "supervised":
        if labels is None:
            raise ValueError("the supervised upper bound needs true labels")
        return baselines.run_supervised(data, labels, cfg.seed)
    if model == "pca":
        return baselines.run_pca(data, cfg.counts)
    if model == "invariants":
        return baselines.run_invariants(data, cfg.counts)
    if model == "iforest":
        return baselines.run_iforest(data, cfg.counts, cfg.seed)
    if model == "logcluster":
        return baselines.run_logcluster(data, cfg.counts, cfg.seed)
    raise ValueError(f"unknown model {model!r}")
