"""Input datasets as DVC-tracked folders under the repository's `data/`.

Stages read `data/<folder>` (dvc.yaml deps), never the shared source, so `dvc status` sees every
input change, `dvc exp run --temp` finds the inputs in its copy, and `dvc push` / `dvc pull` move
them with the rest of the pipeline. Importing is `dvc add SOURCE/<folder> --out data/<folder>`:
the data goes into the DVC cache and `data/<folder>.dvc` (committed) records its hash.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tasks.common.errors import InputError

DATA_DIR = "data"
DEFAULT_FOLDERS = ("load", "logs", "text", "eval", "cloud", "energy")  # what dvc.yaml's stages read
SOURCE_HINT = "pass SOURCE (the datasets folder) or set SEEDFLOW_DATA"


@dataclass(frozen=True)
class Imported:
    folder: str
    dvc_file: Path
    files: int
    size: int
    state: str  # new | updated | unchanged


def repo_root(start: str | Path | None = None) -> Path:
    """The DVC repository holding `start` (default: the current directory), as `dvc add` would pick."""
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    start = Path(start or os.getcwd()).resolve()
    try:
        return Path(Repo.find_root(str(start)))
    except NotDvcRepoError:
        raise InputError(f"{start} is not inside a DVC repository; run this in the project checkout") from None


def source_dir(explicit: str | Path | None, root: Path) -> Path:
    """SOURCE, else SEEDFLOW_DATA, else ../shared/datasets beside the repository; it must exist."""
    chosen = explicit or os.environ.get("SEEDFLOW_DATA")
    path = Path(chosen).expanduser().resolve() if chosen else (root.parent / "shared" / "datasets").resolve()
    if not path.is_dir():
        origin = "SOURCE" if explicit else "SEEDFLOW_DATA" if chosen else "the default ../shared/datasets"
        raise InputError(f"data source {path} (from {origin}) does not exist; {SOURCE_HINT}, "
                         f"or run `dvc pull` to fetch {DATA_DIR}/ from the DVC remote")
    return path


def check_folders(source: Path, folders: list[str] | None) -> list[str]:
    """The folders to import (default: DEFAULT_FOLDERS); each must be a folder directly in `source`."""
    chosen = list(folders or DEFAULT_FOLDERS)
    missing = [name for name in chosen if "/" in name or name in ("", ".", "..") or not (source / name).is_dir()]
    if missing:
        present = sorted(p.name for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))
        raise InputError(f"data source {source} has no folder {', '.join(missing)} (from --only); "
                         f"choose among {', '.join(present) or 'nothing: it holds no folders'}")
    return chosen


def _read(path: Path) -> str | None:
    return path.read_text() if path.is_file() else None


def _state(before: str | None, after: str | None) -> str:
    return "new" if before is None else "unchanged" if before == after else "updated"


def _count(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def import_datasets(source: str | Path | None = None, folders: list[str] | None = None,
                    start: str | Path | None = None) -> list[Imported]:
    """Copy each source folder to data/<folder> and track it with DVC; re-importing is idempotent."""
    from dvc.repo import Repo

    root = repo_root(start)
    src = source_dir(source, root)
    chosen = check_folders(src, folders)
    (root / DATA_DIR).mkdir(exist_ok=True)
    results = []
    with Repo(str(root)) as repo:
        repo.scm_context.quiet = True  # the CLI prints one hint for all folders
        for name in chosen:
            dvc_file = root / DATA_DIR / f"{name}.dvc"
            before = _read(dvc_file)
            repo.add(str(src / name), out=str(root / DATA_DIR / name))
            results.append(Imported(name, dvc_file, *_count(root / DATA_DIR / name), _state(before, _read(dvc_file))))
    return results
