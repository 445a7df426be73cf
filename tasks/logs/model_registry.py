"""Fitted log detectors as MLflow models: one per (dataset, window, detector) child run, the best per dataset registered.

Every detector returns its scoring half (`Detection.fitted`); `detect` pickles it next to the results
and the MLflow logging turns each into a pyfunc model (tasks/logs/pyfunc_model.py). The pyfunc reads
parsed lines in time order (`timestamp` epoch seconds, `node`, `template_id` from the dataset's drain3
state, `tokens` space-separated as in parsed/<name>.parquet) and returns `score` and `anomaly` (0/1)
per line. The registered name is `seedflow-logs-<dataset>`; the best detector is the one with the
highest F1 (rows with an undefined F1 never count).
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.common.atomic import write_bytes
from tasks.common.model_registry import log_pyfunc, pins, register
from tasks.logs.data import LogData

CODE = Path(__file__).with_name("pyfunc_model.py")
REQUIREMENTS = ("mlflow", "numpy", "pandas", "scipy", "scikit-learn", "torch")
COLUMNS = {"timestamp": "double", "node": "string", "template_id": "long", "tokens": "string"}


def registered_name(dataset: str) -> str:
    return f"seedflow-logs-{dataset}"


def save_fitted(fitted: Any, model: str, folder: Path) -> Path:
    """Pickle a fitted detector under a name from its content (one file per distinct fit)."""
    blob = pickle.dumps(fitted)
    return write_bytes(folder / f"{model}-{hashlib.sha256(blob).hexdigest()[:12]}.pkl", blob)


def load_fitted(path: str) -> Any:
    return pickle.loads(Path(path).read_bytes())


def signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec(kind, name) for name, kind in COLUMNS.items()]),
                          outputs=Schema([ColSpec("double", "score"), ColSpec("long", "anomaly")]))


def lines_to_data(frame: pd.DataFrame) -> LogData:
    """The detector's view of parsed lines; nothing of it is trained on, so weak labels are all 0."""
    tokens = frame["tokens"].fillna("").map(lambda text: tuple(text.split()))
    seq, unique = pd.factorize(tokens, sort=False)
    n = len(frame)
    return LogData(seq_tokens=list(unique), seq=seq.astype(np.int64), template=frame["template_id"].to_numpy(np.int64),
                   node=frame["node"].astype("string").fillna("").to_numpy(dtype=object),
                   timestamp=frame["timestamp"].to_numpy(np.float64), weak=np.zeros(n, np.int8), train=np.zeros(n, bool))


def score_lines(fitted: Any, frame: pd.DataFrame) -> pd.DataFrame:
    scores, predicted = fitted.score(lines_to_data(frame))
    return pd.DataFrame({"score": np.asarray(scores, np.float64), "anomaly": np.asarray(predicted, np.int64)})


def log_detector(run_id: str, model_file: str, tags: dict[str, str]):
    """Log a pickled fitted detector as run `run_id`'s MLflow model; its ModelInfo."""
    return log_pyfunc(run_id, CODE, {"detector": model_file}, signature(), pins(*REQUIREMENTS), tags=tags)


def register_best(candidates: list[tuple[dict[str, str], float | None, Any]]) -> dict[str, str]:
    """Register the highest-F1 logged detector of each dataset: {dataset: models:/NAME/VERSION}.

    `candidates` are (tags with dataset / window_s / model, F1 or None, ModelInfo) per logged detector."""
    best: dict[str, tuple[dict[str, str], float, Any]] = {}
    for tags, f1, info in candidates:
        if f1 is not None and (tags["dataset"] not in best or f1 > best[tags["dataset"]][1]):
            best[tags["dataset"]] = (tags, f1, info)
    registered = {}
    for dataset, (tags, f1, info) in best.items():
        version = register(info, registered_name(dataset), {**tags, "f1": f"{f1:.4f}"})
        registered[dataset] = f"models:/{version.name}/{version.version}"
    return registered
