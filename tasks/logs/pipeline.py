"""The pipeline's steps as plain functions: check, ingest, parse, weak-label, detect. The Prefect
flow (flows/logs.py) calls them as tasks; tests and benchmarks call them directly.

Datasets that could teach and measure nothing are refused before anything is parsed (no
incidents file, and no labels or no labelled anomaly: every failure window would be empty).
Gaps found after parsing are skipped and said so: `supervised` without a labelled anomaly in
the train part, P/R/F1 without one in the test part.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.common.atomic import write_frame, write_json
from tasks.common.config import check_known_models
from tasks.common.paths import data_dir as resolve_data_dir
from tasks.common.paths import project_root
from tasks.logs.config import MODELS, DatasetSpec, LogsConfig
from tasks.logs.data import Detection, LogData, chronological
from tasks.logs.errors import LogsError
from tasks.logs.loaders import check_columns, load, read_labels
from tasks.logs.parsing import compare_parsers, parse
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


def check_inputs(cfg: LogsConfig, data_dir: str | None) -> None:
    """Every check that needs no parsing or training, so a bad input fails in seconds, not after
    minutes: names in `run`, models, each file readable in its format, labels or incidents."""
    defined = [spec.name for spec in cfg.datasets]
    twice = sorted({name for name in defined if defined.count(name) > 1})
    if twice:
        raise LogsError(f"logs.datasets defines {twice} more than once; give every dataset its own name")
    unknown = [name for name in cfg.run if name not in defined]
    if unknown:
        raise LogsError(f"logs.run names {unknown}, not defined under logs.datasets ({defined}); add them there or fix the names")
    try:
        check_known_models(cfg.models, MODELS)
    except ValueError as exc:
        raise LogsError(f"logs.models: {exc}") from exc
    for name in cfg.run:
        check_dataset(cfg.dataset(name), data_dir)


def check_dataset(spec: DatasetSpec, data_dir: str | None) -> None:
    """One dataset's files exist and read in the declared format; it has failure windows to offer."""
    where = f"logs dataset {spec.name!r}"
    paths = {key: _existing(spec, key, data_dir) for key in ("path", "labels", "incidents") if getattr(spec, key)}
    try:
        labels = read_labels(spec.format, paths["path"], paths.get("labels"), spec.max_lines)
        check_columns(spec.format, paths["path"])
        if "incidents" in paths:
            read_incidents(paths["incidents"])
    except LogsError as exc:
        raise LogsError(f"{where}: {exc}") from exc
    except ValueError as exc:  # an incidents file's columns or values
        raise LogsError(f"{where}: {exc}; fix the incidents file (columns start,end[,node])") from exc
    require_failure_windows(spec, labels)


def _existing(spec: DatasetSpec, key: str, data_dir: str | None) -> Path:
    where = f"logs dataset {spec.name!r}: {key} {getattr(spec, key)!r}"
    try:
        path = resolve(getattr(spec, key), data_dir)
    except FileNotFoundError as exc:
        raise LogsError(f"{where}: {exc}") from exc  # relative without a datasets folder, or a --data-dir that is not there
    if not path.is_file():
        raise LogsError(f"{where}: {path} is not a file; fix the path in logs.datasets or --data-dir")
    return path


def require_failure_windows(spec: DatasetSpec, labels: pd.Series | None) -> None:
    """Without an incidents file the failure windows come from labelled anomalies: refuse a dataset
    with none, which would train every model on all-normal weak labels and leave every F1 undefined."""
    if spec.incidents:
        return
    fix = f"add `incidents: <csv of start,end[,node]>` to {spec.name!r} in logs.datasets, or drop it from logs.run"
    if labels is None or labels.isna().all():
        if spec.format == "hdfs":
            fix = f"add `labels: anomaly_label.csv` (loghub's block labels) or `incidents:` to {spec.name!r} in logs.datasets"
        raise LogsError(f"logs dataset {spec.name!r} has no labels and no incidents file, so there are no failure "
                        f"windows to learn from and nothing to evaluate; {fix}")
    if not (labels == 1).any():
        raise LogsError(f"logs dataset {spec.name!r}: none of its {int(labels.notna().sum())} labelled lines is an anomaly "
                        f"and it has no incidents file, so its failure windows would be empty and every F1 undefined; {fix}")


def console_warning(message: str) -> None:
    """A warning the user sees: on stderr, which a flow's `log_prints` also sends to the Prefect run log."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def malformed_warning(name: str, path: Path, malformed: int, lines: int, share: float) -> str | None:
    """The one-line warning when more than `share` of a file's lines did not fit its format."""
    total = malformed + lines
    if not total or malformed / total <= share:
        return None
    return (f"{name}: {malformed} of {total} lines ({malformed / total:.1%}) in {path} are malformed and were skipped "
            f"(over logs.malformed_warn_share {share:.0%}); check the dataset's `format`, examples in parsed/{name}_stats.json")


def ingest_and_parse(spec: DatasetSpec, cfg: LogsConfig, data_dir: str | None, out_dir: Path,
                     resume_state: bool = False) -> tuple[Path, dict]:
    """Load, check the labels, parse, sort by time; write `<out>/parsed/<name>.parquet` and its stats."""
    path = resolve(spec.path, data_dir)
    loaded = load(spec.format, path, resolve(spec.labels, data_dir), spec.max_lines)
    require_failure_windows(spec, loaded.frame["label"])  # exact, before anything is written
    warning = malformed_warning(spec.name, path, loaded.malformed, len(loaded.frame), cfg.malformed_warn_share)
    if warning:
        console_warning(warning)
    state = out_dir / "parsed" / f"{spec.name}.drain3"
    if not resume_state:
        state.unlink(missing_ok=True)
    parsed, stats = parse(loaded.frame, cfg.parse, state)
    parsed = chronological(parsed)
    stats = {**stats, **{k: v for k, v in loaded.summary().items() if k != "lines"},
             "malformed_share": round(loaded.malformed / (loaded.malformed + len(loaded.frame)), 4),
             "warnings": [warning] if warning else [],
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
    require_failure_windows(spec, parsed["label"])
    return simulate_windows(parsed["timestamp"].to_numpy(), parsed["label"].fillna(0).to_numpy(np.int64), w)


def label_gaps(labels: np.ndarray, train: np.ndarray) -> dict[str, str]:
    """What the truth cannot support, as {what: why}: `supervised` needs a labelled anomaly in the
    train part; `metrics` (P/R/F1 are on the test part) need one in the test part."""
    positive = np.asarray(labels) == 1
    gaps = {}
    if not positive[train].any():
        gaps["supervised"] = "skipped: no labelled anomaly in the train part to fit on"
    if not positive[~train].any():
        gaps["metrics"] = "P/R/F1 undefined: no labelled anomaly in the test part"
    return gaps


def detect(model: str, data: LogData, cfg: LogsConfig, labels: np.ndarray | None = None) -> Detection:
    """Fit one detector on the train part and score every line. Only `supervised` reads labels.

    The fitted detector is kept as `<out_dir>/models/<model>-<digest>.pkl`, named by `info["model_file"]`:
    the results rows carry it to the MLflow logging (tasks/logs/report.py), which logs it as a model."""
    from tasks.logs.model_registry import save_fitted

    det = _fit_and_score(model, data, cfg, labels)
    det.info["model_file"] = str(save_fitted(det.fitted, model, project_root() / cfg.out_dir / "models"))
    return det


def _fit_and_score(model: str, data: LogData, cfg: LogsConfig, labels: np.ndarray | None) -> Detection:
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


def parsing_benchmark(cfg: LogsConfig, data_dir: str | None, repeats: int = 3) -> dict:
    """`seedflow bench logs`' parsing section: the fast path against stock drain3 with the same masks
    and with its defaults, for every dataset in `run` and every other one with loghub's true
    templates beside its file (grouping accuracy: BGL_2k)."""
    out = {}
    for spec in cfg.datasets:
        path = resolve(spec.path, data_dir)
        if spec.name in cfg.run or (path.is_file() and _structured(path).is_file()):
            frame = load(spec.format, path, resolve(spec.labels, data_dir), spec.max_lines).frame
            out[spec.name] = compare_parsers(frame, cfg.parse, loghub_templates(path, len(frame)), repeats)
    return out


def _structured(path: Path) -> Path:
    return path.with_name(path.name + "_structured.csv")


def loghub_templates(path: Path, lines: int) -> pd.Series | None:
    """loghub's true template per line (`EventId` of `<file>_structured.csv`), if there and as long."""
    if not _structured(path).is_file():
        return None
    truth = pd.read_csv(_structured(path), usecols=["EventId"])["EventId"]
    return truth if len(truth) == lines else None
