"""Where task files come from: the data dir, the project's cache, or (online) the public source.

Lookup order for a file name: `<data dir>/eval/<name>`, then `.cache/llm-tasks/<name>`; when
neither holds it and downloads are allowed, it is fetched from the public URL into the cache
(short timeout: offline fails at once with a message saying where to put the file).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tasks.common.paths import data_dir as find_data_dir
from tasks.common.paths import project_root
from tasks.llm.data.corpus import CorpusError, fetch
from tasks.llm.data.datasets.base import TaskDataError

HF = "https://huggingface.co/datasets"
URLS = {
    "gsm8k_{split}.jsonl": "https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/{split}.jsonl",
    "HumanEval.jsonl.gz": "https://raw.githubusercontent.com/openai/human-eval/master/data/HumanEval.jsonl.gz",
    "mmlu_{split}.parquet": f"{HF}/cais/mmlu/resolve/main/all/{{split}}-00000-of-00001.parquet",
    "arc_{subset}_{split}.parquet": f"{HF}/allenai/ai2_arc/resolve/main/ARC-{{subset}}/{{split}}-00000-of-00001.parquet",
}


def cache_dir() -> Path:
    return project_root() / ".cache" / "llm-tasks"


def locate(pattern: str, data_dir: str | Path | None = None, download: bool = False, timeout: float = 10.0,
           **fields: str) -> Path:
    """The local file for `pattern` (a key of URLS) filled with `fields`, fetching it if allowed."""
    name = pattern.format(**fields)
    base = find_data_dir(data_dir)
    candidates = ([base / "eval" / name] if base else []) + [cache_dir() / name]
    for path in candidates:
        if path.is_file():
            return path
    if not download:
        raise TaskDataError(f"task file {name} not found in {', '.join(map(str, candidates))}; "
                            "place it there, pass a path, or allow download (online only)")
    try:
        return fetch(URLS[pattern].format(**fields), cache_dir() / name, timeout=timeout)
    except CorpusError as exc:
        raise TaskDataError(str(exc)) from exc


def read_rows(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, row) for every row of a .jsonl[.gz], .json (list) or .parquet file; bad files name the line."""
    path = Path(path)
    if not path.is_file():
        raise TaskDataError(f"task file {path} not found")
    name = path.name.lower()
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()  # plain lists / dicts, not numpy arrays
        except Exception as exc:
            raise TaskDataError(f"{path} is not a readable Parquet file: {exc}") from exc
        for i, row in enumerate(rows):
            yield f"{path} row {i}", row
        return
    if name.endswith(".json"):
        try:
            rows = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise TaskDataError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(rows, list):
            raise TaskDataError(f"{path} must hold a JSON list of rows")
        for i, row in enumerate(rows):
            yield f"{path} row {i}", row
        return
    if not name.endswith((".jsonl", ".jsonl.gz")):
        raise TaskDataError(f"{path}: unsupported task file type (use .jsonl, .jsonl.gz, .json or .parquet)")
    opener = gzip.open if name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        yield f"{path}:{lineno}", json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise TaskDataError(f"{path}:{lineno} is not valid JSON: {exc}") from exc
    except (OSError, EOFError) as exc:  # e.g. a truncated or non-gzip .gz
        raise TaskDataError(f"cannot read {path}: {exc}") from exc


def require(row: Any, where: str, fields: dict[str, type | tuple[type, ...]]) -> dict[str, Any]:
    """Check a row has every field with the right type; the error names the row and field."""
    if not isinstance(row, dict):
        raise TaskDataError(f"{where}: a row must be an object, got {type(row).__name__}")
    for key, kind in fields.items():
        if key not in row:
            raise TaskDataError(f"{where}: missing field {key!r} (has {', '.join(map(str, row))})")
        if not isinstance(row[key], kind):
            raise TaskDataError(f"{where}: field {key!r} is {type(row[key]).__name__}, expected {kind}")
    return row
