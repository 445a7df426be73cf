"""Load one time series from CSV (plain or gzipped) or Parquet and refuse anything the protocol cannot trust.

Reads the study's `date,messages` files and the common `timestamp,value` layout (columns are
detected, or named explicitly). The result is a float Series on a regular DatetimeIndex plus a
`LoadReport` of what loading changed, so no step is filled, dropped or interpolated silently.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.common.errors import InputError

TIME_COLUMNS = ("date", "timestamp", "time", "datetime", "ds")
VALUE_COLUMNS = ("messages", "value", "y", "count")
SUFFIXES = (".csv", ".csv.gz", ".parquet")
MAX_ABS = 1e15  # far above any load series, and small enough that sums of squares stay finite in float64
MIN_ROWS = 3


class SeriesError(InputError):
    """A series file that cannot be used as it is."""


@dataclass(frozen=True)
class LoadReport:
    """What loading did to a series; logged by the flow and kept with every result."""

    rows: int  # data rows in the file
    step: str  # the file's own sampling step, inferred from its timestamps
    rate: str  # the step of the loaded series (differs from `step` only when resampled)
    filled: int = 0  # missing timestamps inserted (fill_gaps), at the file's step
    dropped: int = 0  # steps without a value that were dropped (nan_policy drop)
    interpolated: int = 0  # steps without a value that were interpolated (nan_policy interpolate)
    resampled: str = ""  # "sum" or "mean" when a finer series was aggregated to `rate`

    def counts(self) -> dict[str, int]:
        return {"steps_filled": self.filled, "steps_dropped": self.dropped, "steps_interpolated": self.interpolated}

    def params(self) -> dict[str, Any]:
        return {"rows_read": self.rows, "native_step": self.step, "resampled": self.resampled or "no", **self.counts()}

    def summary(self) -> str:
        resampled = f", aggregated to {self.rate} by {self.resampled}" if self.resampled else ""
        return (f"{self.rows} rows at {self.step}{resampled}; {self.filled} steps filled, "
                f"{self.dropped} dropped, {self.interpolated} interpolated")


def series_stem(path: Path) -> str | None:
    """The name without its series suffix (`x_1h.csv.gz` -> `x_1h`); None for other file types."""
    for suffix in SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return None


def step_label(step: pd.Timedelta) -> str:
    """A step spelled like the rates in file names: `1h`, `30min`, `10s`."""
    for unit, size in (("h", pd.Timedelta("1h")), ("min", pd.Timedelta("1min")), ("s", pd.Timedelta("1s"))):
        if step >= size and step % size == pd.Timedelta(0):
            return f"{step // size}{unit}"
    return str(step)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise SeriesError(f"series file {path} not found")
    if series_stem(path) is None:
        raise SeriesError(f"{path}: unsupported file type {path.suffix!r}; use .csv, .csv.gz or .parquet")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, encoding="utf-8-sig")
    except (ValueError, OSError, EOFError, zlib.error) as exc:  # truncated .gz raises EOFError
        raise SeriesError(f"cannot read {path}: {_first_line(exc)}; check that the file is complete") from exc


def _row(path: Path, i: int) -> str:
    """Where data row i (0-based) is: the line in a CSV (line 1 is the header), else the row number."""
    return f"row {i + 1}" if path.suffix == ".parquet" else f"line {i + 2}"


def _pick(frame: pd.DataFrame, explicit: str | None, candidates: tuple[str, ...], what: str, path: Path) -> str:
    if explicit:
        if explicit not in frame.columns:
            raise SeriesError(f"{path}: {what} column {explicit!r} not found (columns: {list(frame.columns)})")
        return explicit
    lowered = {str(c).lower(): c for c in frame.columns}
    for name in candidates:
        if name in lowered:
            return lowered[name]
    raise SeriesError(
        f"{path}: no {what} column found among {list(frame.columns)}; expected one of {list(candidates)} "
        f"or pass it explicitly"
    )


def _parse(frame: pd.DataFrame, tcol: str, vcol: str, path: Path) -> pd.Series:
    """Timestamps and finite, sane values, sorted; every refusal names the first bad row."""
    times = pd.to_datetime(frame[tcol], errors="coerce")
    if times.isna().any():
        bad = frame.loc[times.isna(), tcol].head(3).tolist()
        first = _row(path, int(np.flatnonzero(times.isna())[0]))
        raise SeriesError(f"{path}: {int(times.isna().sum())} unparseable timestamps in {tcol!r}, e.g. {bad} (first at {first})")
    values = pd.to_numeric(frame[vcol], errors="coerce")
    non_numeric = values.isna() & frame[vcol].notna()
    if non_numeric.any():
        bad = frame.loc[non_numeric, vcol].head(3).tolist()
        first = _row(path, int(np.flatnonzero(non_numeric)[0]))
        raise SeriesError(f"{path}: non-numeric values in {vcol!r}, e.g. {bad} (first at {first})")
    absurd = values.abs() > MAX_ABS  # also catches +-inf; NaN is a missing value, handled by nan_policy
    if absurd.any():
        i = int(np.flatnonzero(absurd)[0])
        raise SeriesError(
            f"{path}: {int(absurd.sum())} values in {vcol!r} are infinite or larger than {MAX_ABS:g} in magnitude, "
            f"first {values.iloc[i]:g} at {_row(path, i)}; fix or remove those rows"
        )
    series = pd.Series(values.to_numpy(dtype=float), index=pd.DatetimeIndex(times), name=vcol)
    if series.index.has_duplicates:
        dup = series.index[series.index.duplicated()][:3].tolist()
        raise SeriesError(f"{path}: duplicate timestamps, e.g. {dup}")
    return series if series.index.is_monotonic_increasing else series.sort_index()


def read_series(
    path: str | Path,
    time_column: str | None = None,
    value_column: str | None = None,
    fill_gaps: bool = False,
    nan_policy: str = "drop",
    rate: str | None = None,
    resample: str = "none",
) -> tuple[pd.Series, LoadReport]:
    """Read, sort and validate a series; return it with a report of what was changed.

    nan_policy: "drop" (the study's rule), "interpolate" or "error".
    fill_gaps: insert missing timestamps (then handled by nan_policy) instead of refusing them.
    rate: the step the series must have (e.g. "1h"); None accepts the file's own step.
    resample: "sum" or "mean" aggregates a series whose step divides `rate`; "none" refuses it.
    """
    path = Path(path)
    frame = _read_table(path)
    if frame.empty:
        raise SeriesError(f"{path}: the file holds no rows")
    tcol = _pick(frame, time_column, TIME_COLUMNS, "time", path)
    vcol = _pick(frame, value_column, VALUE_COLUMNS, "value", path)
    series = _parse(frame, tcol, vcol, path)
    step = _native_step(series, path)
    target = _target_step(step, rate, resample, path)
    series, filled = _regularise(series, step, path, fill_gaps)
    if target != step:
        series = _aggregate(series, step, target, resample)
    usable = int(series.notna().sum())
    if usable < MIN_ROWS:
        raise SeriesError(
            f"{path}: only {usable} of {len(series)} steps have a value; a series needs at least {MIN_ROWS} "
            f"(is the value column {vcol!r} empty?)"
        )
    series, dropped, interpolated = _handle_nans(series, path, nan_policy)
    report = LoadReport(rows=len(frame), step=step_label(step), rate=step_label(target), filled=filled,
                        dropped=dropped, interpolated=interpolated, resampled=resample if target != step else "")
    return series, report


def load_series(path: str | Path, **options: Any) -> pd.Series:
    """`read_series` without the report, for interactive use (same options)."""
    return read_series(path, **options)[0]


def _native_step(series: pd.Series, path: Path) -> pd.Timedelta:
    """The usual spacing of the timestamps: the sampling rate the file really has."""
    if len(series) < MIN_ROWS:
        raise SeriesError(f"{path}: {len(series)} rows is too short to be a series")
    step = series.index.to_series().diff().dropna().mode().iloc[0]
    if step <= pd.Timedelta(0):
        raise SeriesError(f"{path}: non-increasing timestamps")
    return step


def _target_step(step: pd.Timedelta, rate: str | None, resample: str, path: Path) -> pd.Timedelta:
    """The step to deliver: the file's own, or `rate` when a finer series may be aggregated to it."""
    if rate is None or pd.Timedelta(rate) == step:
        return step
    target, native = pd.Timedelta(rate), step_label(step)
    rename = f"or rename the file to match its {native} step"
    if step > target or target % step != pd.Timedelta(0):
        raise SeriesError(
            f"{path}: timestamps are {native} apart but the series is named for {rate}; resample only aggregates "
            f"a finer series whose step divides the rate, so use a {rate} file {rename}"
        )
    if resample == "none":
        raise SeriesError(
            f"{path}: timestamps are {native} apart but the series is named for {rate}; set forecast.resample "
            f"to sum or mean (--set resample=sum) to aggregate it to {rate}, {rename}"
        )
    return target


def _regularise(series: pd.Series, step: pd.Timedelta, path: Path, fill_gaps: bool) -> tuple[pd.Series, int]:
    """The series on its regular grid, and how many missing timestamps were inserted."""
    steps = series.index.to_series().diff().dropna()
    irregular = steps[steps != step]
    if irregular.empty:
        return series.asfreq(step), 0
    if not fill_gaps:
        where = irregular.index[0]
        raise SeriesError(
            f"{path}: irregular spacing: the usual step is {step} but {len(irregular)} steps differ, "
            f"first at {where} ({irregular.iloc[0]}); pass fill_gaps to insert missing timestamps"
        )
    if ((irregular % step) != pd.Timedelta(0)).any():
        raise SeriesError(f"{path}: timestamps off the {step} grid cannot be filled as gaps")
    regular = series.asfreq(step)
    return regular, len(regular) - len(series)


def _aggregate(series: pd.Series, step: pd.Timedelta, target: pd.Timedelta, how: str) -> pd.Series:
    """Sum or mean per target step; a step missing any native value stays missing, partial edge steps are cut."""
    per_step = target // step
    bins = series.resample(target)
    values = bins.agg(how).where(bins.count() == per_step)
    return values[bins.size() == per_step].asfreq(target)


def _handle_nans(series: pd.Series, path: Path, nan_policy: str) -> tuple[pd.Series, int, int]:
    """The series without missing values, and how many steps were dropped and interpolated."""
    n_nan = int(series.isna().sum())
    if n_nan == 0:
        return series, 0, 0
    if nan_policy == "error":
        raise SeriesError(f"{path}: {n_nan} missing values (nan_policy='error'); use drop or interpolate, or fix the file")
    if nan_policy == "interpolate":
        return series.interpolate(limit_direction="both"), 0, n_nan
    if nan_policy == "drop":
        return series.dropna(), n_nan, 0
    raise SeriesError(f"unknown nan_policy {nan_policy!r}; use drop, interpolate or error")
