"""Where things live: project root, public datasets, results.

Every path handed to a Ray worker, DVC stage or MLflow is absolute and derived here,
because Ray workers and `dvc exp` run with a different working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def project_root() -> Path:
    """The checkout holding params.yaml; `SEEDFLOW_ROOT` overrides it."""
    return Path(os.environ.get("SEEDFLOW_ROOT", PROJECT_ROOT)).resolve()


def data_dir(explicit: str | Path | None = None) -> Path | None:
    """The public-datasets folder: `--data-dir`, then `SEEDFLOW_DATA`, then `../shared/datasets`.

    Returns None when none exists, so callers fall back to the project's generated seeds.
    An explicit setting that does not exist is an error, not a silent fallback.
    """
    chosen = explicit or os.environ.get("SEEDFLOW_DATA")
    if chosen:
        path = Path(chosen).expanduser().resolve()
        if not path.is_dir():
            raise FileNotFoundError(f"data directory {path} does not exist (from --data-dir / SEEDFLOW_DATA)")
        return path
    default = (project_root().parent / "shared" / "datasets").resolve()
    return default if default.is_dir() else None


def seeds_dir() -> Path:
    return project_root() / "seeds"
