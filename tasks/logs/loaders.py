"""Loaders for real log formats -> one frame: timestamp (epoch s), node, content, label.

`label` is the dataset's ground truth (1 anomaly, 0 normal, <NA> unknown); it is used only
for simulated failure windows and evaluation, never by a detector's threshold. Lines that do
not fit the format are counted (with a few examples), never silently dropped, never fatal.
A file that cannot be read at all (missing, truncated .gz, not the declared format) is a
`LogsError` naming the file. `read_labels` reads only the label column, for checks up front.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.logs.errors import LogsError

COLUMNS = ["timestamp", "node", "content", "label"]
MAX_EXAMPLES = 5


@dataclass
class Loaded:
    frame: pd.DataFrame
    malformed: int = 0
    examples: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {"lines": len(self.frame), "malformed": self.malformed, "malformed_examples": self.examples}


class _Collector:
    def __init__(self):
        self.rows: list[tuple] = []
        self.malformed = 0
        self.examples: list[str] = []

    def bad(self, line: str, why: str) -> None:
        self.malformed += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{why}: {line[:120]!r}")

    def result(self, source: Path) -> Loaded:
        frame = pd.DataFrame(self.rows, columns=COLUMNS)
        return _finish(frame, self.malformed, self.examples, source)


def _finish(frame: pd.DataFrame, malformed: int, examples: list[str], source: Path) -> Loaded:
    if frame.empty:
        raise LogsError(f"{source}: no valid log lines ({malformed} malformed; e.g. {examples[:2]}); "
                        "check the dataset's `format` in logs.datasets")
    frame = frame.astype({"timestamp": "float64", "content": "str"})
    frame["node"] = frame["node"].astype("string")
    frame["label"] = frame["label"].astype("Int8")
    return Loaded(frame.reset_index(drop=True), malformed, examples)


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"log file {path} not found")


@contextmanager
def readable(path: Path) -> Iterator[None]:
    """Turn a failure deep in gzip / the CSV or Parquet reader into one line naming the file."""
    try:
        yield
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise LogsError(f"{path} is truncated or corrupt ({type(exc).__name__}: {_first_line(exc)}); "
                        "copy or download it again") from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise LogsError(f"{path} cannot be read as CSV ({type(exc).__name__}: {_first_line(exc)}); "
                        "check the file and the dataset's `format`") from exc


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


def _lines(path: Path, max_lines: int | None) -> Iterator[str]:
    _require_file(path)
    with readable(path):
        raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
        with io.TextIOWrapper(raw, encoding="utf-8", errors="replace") as handle:
            for i, line in enumerate(handle):
                if max_lines is not None and i >= max_lines:
                    return
                yield line.rstrip("\r\n")


def check_readable(path: Path) -> None:
    """Read the whole file once: a truncated .gz shows only at its end."""
    _require_file(path)
    with readable(path), (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as handle:
        while handle.read(1 << 20):
            pass


Row = tuple[int, str, str, int]  # epoch, node, content, label


def bgl_row(line: str) -> Row | None:
    """loghub BGL: `label epoch date node time noderepeat type component level content...`.

    The first field is `-` for normal lines, otherwise the alert tag (anomaly).
    """
    parts = line.split(" ", 9)
    if len(parts) < 9 or not parts[1].isdigit():
        return None
    return int(parts[1]), parts[3], parts[9] if len(parts) == 10 else "", int(parts[0] != "-")


def thunderbird_row(line: str) -> Row | None:
    """loghub Thunderbird: `label epoch date user month day time location content...`."""
    parts = line.split(" ", 8)
    if len(parts) < 9 or not parts[1].isdigit() or not parts[0]:
        return None
    return int(parts[1]), parts[3], parts[8], int(parts[0] != "-")


def _load_rows(path: Path, max_lines: int | None, row: Callable[[str], Row | None]) -> Loaded:
    out = _Collector()
    for line in _lines(path, max_lines):
        parsed = row(line)
        if parsed is None:
            out.bad(line, "expected >= 9 space-separated fields with an epoch in field 2")
        else:
            out.rows.append(parsed)
    return out.result(path)


def load_bgl(path: str | Path, max_lines: int | None = None) -> Loaded:
    return _load_rows(Path(path), max_lines, bgl_row)


def load_thunderbird(path: str | Path, max_lines: int | None = None) -> Loaded:
    return _load_rows(Path(path), max_lines, thunderbird_row)


HDFS_LINE = re.compile(r"^(\d{6}) (\d{6}) (\d+) (\w+) ([^:]+): (.*)$")
BLOCK = re.compile(r"blk_-?\d+")


def read_block_labels(path: str | Path) -> dict[str, int]:
    """loghub HDFS `anomaly_label.csv`: BlockId,Label with Label in {Normal, Anomaly}."""
    _require_file(Path(path))
    with readable(Path(path)):
        frame = pd.read_csv(path)
    missing = {"BlockId", "Label"} - set(frame.columns)
    if missing:
        raise LogsError(f"{path}: missing columns {sorted(missing)} (expected BlockId,Label as in loghub's anomaly_label.csv)")
    bad = ~frame["Label"].isin(["Normal", "Anomaly"])
    if bad.any():
        raise LogsError(f"{path}: Label must be Normal or Anomaly, found {frame.loc[bad, 'Label'].unique()[:5].tolist()}")
    return dict(zip(frame["BlockId"], (frame["Label"] == "Anomaly").astype(int)))


def load_hdfs(path: str | Path, labels: str | Path | None = None, max_lines: int | None = None) -> Loaded:
    """loghub HDFS: `yymmdd HHMMSS pid level component: content`; node = the line's block id.

    A line is anomalous when its block is labelled Anomaly; lines without a labelled block get <NA>.
    """
    block_labels = read_block_labels(labels) if labels else {}
    out = _Collector()
    for line in _lines(Path(path), max_lines):
        match = HDFS_LINE.match(line)
        if not match:
            out.bad(line, "expected `yymmdd HHMMSS pid LEVEL component: content`")
            continue
        date, time_, _, _, _, content = match.groups()
        try:
            stamp = datetime.strptime(date + time_, "%y%m%d%H%M%S").replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            out.bad(line, "invalid date/time")
            continue
        block = BLOCK.search(content)
        node = block.group(0) if block else None
        label = block_labels.get(node, pd.NA) if node else pd.NA
        out.rows.append((stamp, node, content, label))
    return out.result(Path(path))


def load_spirit(path: str | Path, max_lines: int | None = None) -> Loaded:
    """The LogLAB Spirit sample: CSV `,t,Timestamp,Content,datetime`; `t` is `-` or an alert tag."""
    return _load_csv(Path(path), time_col="Timestamp", text_col="Content", label_col="t", max_lines=max_lines)


def load_generic(path: str | Path, max_lines: int | None = None) -> Loaded:
    """Any CSV/Parquet with a `timestamp` (epoch s or date string) and a `message`/`content` column.

    Optional `node` and `label` (0/1, or `-`/tag) columns are kept.
    """
    path = Path(path)
    if path.suffix == ".parquet":
        frame = _read_parquet(path)
        if max_lines:
            frame = frame.head(max_lines)
        return _from_frame(frame, path, 0, [])
    return _load_csv(path, None, None, None, max_lines)


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow

    _require_file(path)
    try:
        return pd.read_parquet(path)
    except (pyarrow.ArrowException, OSError) as exc:
        raise LogsError(f"{path} cannot be read as Parquet ({type(exc).__name__}: {_first_line(exc)}); "
                        "check the file and the dataset's `format`") from exc


def _load_csv(path: Path, time_col, text_col, label_col, max_lines) -> Loaded:
    _require_file(path)
    bad: list[list[str]] = []

    def on_bad(fields: list[str]) -> None:
        bad.append(fields)

    with readable(path):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], nrows=max_lines,
                            engine="python", on_bad_lines=on_bad, quoting=csv.QUOTE_MINIMAL)
    examples = [f"wrong number of fields: {','.join(f)[:120]!r}" for f in bad[:MAX_EXAMPLES]]
    rename = {}
    if time_col:
        rename = {time_col: "timestamp", text_col: "content", label_col: "label"}
    return _from_frame(frame.rename(columns=rename), path, len(bad), examples)


def _from_frame(frame: pd.DataFrame, path: Path, malformed: int, examples: list[str]) -> Loaded:
    cols = {c.lower(): c for c in frame.columns}
    text = cols.get("content") or cols.get("message")
    if "timestamp" not in cols or text is None:
        raise LogsError(f"{path}: needs a `timestamp` and a `content` or `message` column, found {list(frame.columns)}; "
                        "check the dataset's `format`")
    stamps = _to_epoch(frame[cols["timestamp"]])
    content = frame[text]
    ok = stamps.notna() & content.notna()
    for _, row in frame[~ok].head(MAX_EXAMPLES - len(examples)).iterrows():
        examples.append(f"missing/invalid timestamp or content: {row.to_dict()!r}"[:160])
    malformed += int((~ok).sum())
    out = pd.DataFrame({"timestamp": stamps[ok].to_numpy(), "content": content[ok].astype(str).to_numpy()})
    out["node"] = frame.loc[ok, cols["node"]].to_numpy() if "node" in cols else None
    out["label"] = _to_label(frame.loc[ok, cols["label"]]).to_numpy() if "label" in cols else pd.NA
    return _finish(out[COLUMNS], malformed, examples, path)


def _to_epoch(values: pd.Series) -> pd.Series:
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().mean() >= 0.5:
        return numeric.astype("float64")
    parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    seconds = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return seconds.astype("float64")


def _to_label(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip()
    numeric = pd.to_numeric(text, errors="coerce")
    tag = (text != "-").astype("Int8").where(text.notna())
    return pd.Series(np.where(numeric.notna(), numeric.fillna(0).clip(0, 1), tag), index=values.index).astype("Int8")


LOADERS = {"bgl": load_bgl, "thunderbird": load_thunderbird, "spirit": load_spirit, "generic": load_generic}


def load(fmt: str, path: str | Path, labels: str | Path | None = None, max_lines: int | None = None) -> Loaded:
    """Dispatch on the format name (see `tasks.logs.config.FORMATS`)."""
    if fmt == "hdfs":
        return load_hdfs(path, labels, max_lines)
    if fmt not in LOADERS:
        raise LogsError(f"unknown log format {fmt!r}; choose from {sorted([*LOADERS, 'hdfs'])}")
    return LOADERS[fmt](path, max_lines)


def read_labels(fmt: str, path: str | Path, labels: str | Path | None = None, max_lines: int | None = None) -> pd.Series | None:
    """Only the ground truth (1 anomaly, 0 normal, <NA> unknown), read in one cheap pass that also
    proves the file readable in its format; None where the dataset carries no labels. HDFS: the
    block labels of `labels` (its log is read through, its first lines parsed)."""
    path = Path(path)
    if fmt in ("bgl", "thunderbird"):
        row = bgl_row if fmt == "bgl" else thunderbird_row
        found = [parsed[3] for parsed in map(row, _lines(path, max_lines)) if parsed is not None]
        if not found:
            _load_rows(path, max_lines, row)  # raises the loader's "no valid log lines" error
        return pd.Series(found, dtype="Int8")
    if fmt == "hdfs":
        check_readable(path)
        load_hdfs(path, None, max_lines=1000)  # its first lines fit the format
        return pd.Series(list(read_block_labels(labels).values()), dtype="Int8") if labels else None
    if fmt == "spirit":
        return _to_label(_csv_column(path, "t", max_lines))
    if fmt == "generic":
        return _generic_labels(path, max_lines)
    raise LogsError(f"unknown log format {fmt!r}; choose from {sorted([*LOADERS, 'hdfs'])}")


def check_columns(fmt: str, path: str | Path, lines: int = 1000) -> None:
    """A table format's log has its timestamp and text columns and a valid line among its first rows
    (a header-only file, say, is refused); the line formats are proved by `read_labels`."""
    if fmt in ("spirit", "generic"):
        load(fmt, path, max_lines=lines)


def _csv_column(path: Path, column: str, max_lines: int | None) -> pd.Series:
    _require_file(path)
    with readable(path):
        frame = pd.read_csv(path, usecols=lambda c: c == column, dtype=str, keep_default_na=False, na_values=[""],
                            nrows=max_lines, on_bad_lines="skip")
    if column not in frame.columns:
        raise LogsError(f"{path}: no `{column}` column; check the dataset's `format`")
    return frame[column]


def _generic_labels(path: Path, max_lines: int | None) -> pd.Series | None:
    if path.suffix == ".parquet":
        frame = _read_parquet(path).iloc[:max_lines]
        label = next((c for c in frame.columns if c.lower() == "label"), None)
        return None if label is None else _to_label(frame[label])
    _require_file(path)
    with readable(path):
        names = pd.read_csv(path, nrows=0).columns
    label = next((c for c in names if c.lower() == "label"), None)
    if label is None:
        check_readable(path)
        return None
    return _to_label(_csv_column(path, label, max_lines))
