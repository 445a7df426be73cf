"""Load one time series from CSV or Parquet and refuse anything the protocol cannot trust.

Reads the study's `date,messages` files and the common `timestamp,value` layout (columns are
detected, or named explicitly). The result is a float Series on a regular DatetimeIndex.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

TIME_COLUMNS = ("date", "timestamp", "time", "datetime", "ds")
VALUE_COLUMNS = ("messages", "value", "y", "count")


class SeriesError(ValueError):
    """A series file that cannot be used as it is."""


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise SeriesError(f"series file {path} not found")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        if path.suffix in (".csv", ".gz") or path.name.endswith(".csv.gz"):
            return pd.read_csv(path, encoding="utf-8-sig")
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise SeriesError(f"cannot read {path}: {exc}") from exc
    raise SeriesError(f"{path}: unsupported file type {path.suffix!r}; use .csv or .parquet")


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


def load_series(
    path: str | Path,
    time_column: str | None = None,
    value_column: str | None = None,
    fill_gaps: bool = False,
    nan_policy: str = "drop",
) -> pd.Series:
    """Read, sort and validate a series.

    nan_policy: "drop" (the study's rule), "interpolate" or "error".
    fill_gaps: insert missing timestamps (then handled by nan_policy) instead of refusing them.
    """
    path = Path(path)
    frame = _read_table(path)
    if frame.empty:
        raise SeriesError(f"{path}: the file holds no rows")
    tcol = _pick(frame, time_column, TIME_COLUMNS, "time", path)
    vcol = _pick(frame, value_column, VALUE_COLUMNS, "value", path)

    times = pd.to_datetime(frame[tcol], errors="coerce")
    if times.isna().any():
        bad = frame.loc[times.isna(), tcol].head(3).tolist()
        raise SeriesError(f"{path}: {int(times.isna().sum())} unparseable timestamps in {tcol!r}, e.g. {bad}")
    values = pd.to_numeric(frame[vcol], errors="coerce")
    non_numeric = values.isna() & frame[vcol].notna()
    if non_numeric.any():
        bad = frame.loc[non_numeric, vcol].head(3).tolist()
        raise SeriesError(f"{path}: non-numeric values in {vcol!r}, e.g. {bad}")
    if np.isinf(values).any():
        raise SeriesError(f"{path}: infinite values in {vcol!r}")

    series = pd.Series(values.to_numpy(dtype=float), index=pd.DatetimeIndex(times), name=vcol)
    if series.index.has_duplicates:
        dup = series.index[series.index.duplicated()][:3].tolist()
        raise SeriesError(f"{path}: duplicate timestamps, e.g. {dup}")
    if not series.index.is_monotonic_increasing:
        series = series.sort_index()
    series = _regularise(series, path, fill_gaps)
    return _handle_nans(series, path, nan_policy)


def _regularise(series: pd.Series, path: Path, fill_gaps: bool) -> pd.Series:
    if len(series) < 3:
        raise SeriesError(f"{path}: {len(series)} rows is too short to be a series")
    steps = series.index.to_series().diff().dropna()
    step = steps.mode().iloc[0]
    if step <= pd.Timedelta(0):
        raise SeriesError(f"{path}: non-increasing timestamps")
    irregular = steps[steps != step]
    if irregular.empty:
        return series.asfreq(step)
    if not fill_gaps:
        where = irregular.index[0]
        raise SeriesError(
            f"{path}: irregular spacing: the usual step is {step} but {len(irregular)} steps differ, "
            f"first at {where} ({irregular.iloc[0]}); pass fill_gaps to insert missing timestamps"
        )
    if ((irregular % step) != pd.Timedelta(0)).any():
        raise SeriesError(f"{path}: timestamps off the {step} grid cannot be filled as gaps")
    return series.asfreq(step)


def _handle_nans(series: pd.Series, path: Path, nan_policy: str) -> pd.Series:
    n_nan = int(series.isna().sum())
    if n_nan == 0:
        return series
    if nan_policy == "error":
        raise SeriesError(f"{path}: {n_nan} missing values (nan_policy='error')")
    if nan_policy == "interpolate":
        return series.interpolate(limit_direction="both")
    if nan_policy == "drop":
        return series.dropna()
    raise SeriesError(f"unknown nan_policy {nan_policy!r}; use drop, interpolate or error")
