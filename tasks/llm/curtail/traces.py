"""Marginal-carbon-intensity and solar traces: load, check, convert, shift, or generate.

A trace is a float `pandas.Series` indexed by time: a DatetimeIndex, or float seconds since the
start when the file's time column is numeric (the solar example). The simulation reads every trace
on its own clock, seconds since its first sample (`seconds`), so traces of different years align at
their starts. A value holds until the next sample; the last one holds for one median step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tasks.common.errors import InputError
from tasks.llm.curtail.config import KG_PER_KWH, CurtailConfig, GridSiteConfig

DAY_S = 86400.0
MAX_STEP_RATIO = 1.5  # a step this much longer than the median step is a gap


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"trace {path} not found; check the site's trace path (relative to the data dir)")
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
        if not isinstance(frame.index, pd.RangeIndex):
            frame = frame.reset_index()  # a time index saved by pandas becomes the first column
    elif path.suffix == ".csv":
        frame = pd.read_csv(path, encoding="utf-8-sig")  # WattTime exports may start with a byte-order mark
    else:
        raise InputError(f"trace {path} is neither .csv nor .parquet; convert it to one of them")
    frame.columns = [str(name).lstrip("\ufeff").strip() for name in frame.columns]
    if len(frame) < 2:
        raise InputError(f"trace {path} has {len(frame)} row(s); a trace needs at least two samples")
    return frame


def _pick_columns(frame: pd.DataFrame, path: Path, time_column: str | None,
                  value_column: str | None) -> tuple[str, str]:
    columns = list(frame.columns)
    time_column = time_column or columns[0]
    if time_column not in columns:
        raise InputError(f"trace {path} has no time column {time_column!r} (columns: {', '.join(columns)}); "
                         f"fix the site's time_column")
    others = [name for name in columns if name != time_column]
    if not value_column and len(others) != 1:
        raise InputError(f"trace {path} has {len(others)} value columns ({', '.join(others)}); "
                         f"name the one to use (the site's column)")
    value_column = value_column or others[0]
    if value_column not in others:
        raise InputError(f"trace {path} has no value column {value_column!r} (columns: {', '.join(columns)}); "
                         f"fix the site's column")
    return time_column, value_column


def _where(path: Path, row: int, time: object) -> str:
    line = f", line {row + 2}" if path.suffix == ".csv" else ""
    return f"{path} row {row + 1}{line} (time {time})"


def _parse_time(raw: pd.Series, path: Path) -> pd.Index:
    if pd.api.types.is_numeric_dtype(raw):
        times = pd.Index(raw.astype(float), name="seconds")
        bad = np.flatnonzero(~np.isfinite(times.to_numpy()))
    else:
        times = pd.DatetimeIndex(pd.to_datetime(raw, errors="coerce"), name="time")
        bad = np.flatnonzero(times.isna())
    if len(bad):
        row = int(bad[0])
        raise InputError(f"{_where(path, row, raw.iloc[row])}: not a time; times are datetimes or seconds")
    return times


def _check_grid(times: pd.Index, path: Path) -> None:
    seconds = _seconds_of(times)
    steps = np.diff(seconds)
    if (steps <= 0).any():
        row = int(np.flatnonzero(steps <= 0)[0]) + 1
        what = "repeats the previous time" if steps[row - 1] == 0 else f"goes back in time (after {times[row - 1]})"
        raise InputError(f"{_where(path, row, times[row])}: {what}; sort the trace and drop duplicate times")
    median = float(np.median(steps))
    gaps = np.flatnonzero(steps > MAX_STEP_RATIO * median)
    if len(gaps):
        row = int(gaps[0]) + 1
        raise InputError(f"{_where(path, row, times[row])}: a gap of {steps[row - 1]:g} s after the previous "
                         f"sample (median step {median:g} s); fill the gap or use a continuous stretch")


def load_trace(path: str | Path, time_column: str | None = None, value_column: str | None = None) -> pd.Series:
    """The float trace in `path` (CSV or Parquet), checked: no NaN, strictly increasing times, no gaps.

    `time_column` defaults to the first column, `value_column` to the only other one. Numeric times
    are seconds since the start (the index stays float seconds); others are parsed as datetimes."""
    path = Path(path)
    frame = _read_table(path)
    time_column, value_column = _pick_columns(frame, path, time_column, value_column)
    times = _parse_time(frame[time_column], path)
    values = pd.to_numeric(frame[value_column], errors="coerce").astype(float)
    missing = np.flatnonzero(~np.isfinite(values.to_numpy()))
    if len(missing):
        row = int(missing[0])
        raw = frame[value_column].iloc[row]
        what = "has no value" if pd.isna(raw) else f"is {raw!r}, not a number"
        raise InputError(f"{_where(path, row, times[row])}: {value_column} {what}; fill or drop the row")
    _check_grid(times, path)
    return pd.Series(values.to_numpy(), index=times, name=value_column)


def _seconds_of(index: pd.Index) -> np.ndarray:
    if isinstance(index, pd.DatetimeIndex):
        return (index - index[0]).total_seconds().to_numpy(dtype=float)
    values = index.to_numpy(dtype=float)
    return values - values[0]


def seconds(trace: pd.Series) -> np.ndarray:
    """Sample times as seconds since the trace's first sample."""
    return _seconds_of(trace.index)


def sampling_step(trace: pd.Series) -> float:
    """The median sampling step in seconds."""
    return float(np.median(np.diff(seconds(trace))))


def span_s(trace: pd.Series) -> float:
    """Seconds the trace covers: its last value holds for one step."""
    return float(seconds(trace)[-1] + sampling_step(trace))


def to_kg_per_kwh(trace: pd.Series, unit: str) -> pd.Series:
    """`trace` (in `unit`: lbs_per_mwh, g_per_kwh or kg_per_kwh) in kg CO2 per kWh."""
    return trace * KG_PER_KWH[unit]


def shifted(trace: pd.Series, hours: float) -> pd.Series:
    """The trace moved `hours` later in time, circularly: the value at t is the original's at t - shift.

    Values pushed past the end wrap round to the start (the trace is read as periodic over its
    span), so the shifted trace keeps the original's times and span and a reused trace can stand
    for a region some time zones away."""
    if not hours:
        return trace.copy()
    t = seconds(trace)
    source = np.mod(t - hours * 3600.0, span_s(trace))
    positions = np.searchsorted(t, source, side="right") - 1
    return pd.Series(trace.to_numpy()[positions], index=trace.index, name=trace.name)


def generated_trace(days: float = 31, step: float = 300, mean: float = 400, amplitude: float = 150,
                    noise: float = 10, seed: int = 0, start: str = "2023-06-08") -> pd.Series:
    """A synthetic MCI trace in the WattTime file's layout (g/kWh-like): a daily sinusoid, lowest in the
    afternoon, plus seeded Gaussian noise; for demos and tests without the shared data."""
    t = np.arange(0, days * DAY_S, step)
    rng = np.random.default_rng(seed)
    values = mean - amplitude * np.sin(2 * np.pi * (t / DAY_S - 0.375)) + rng.normal(0, noise, len(t))
    index = pd.DatetimeIndex(pd.Timestamp(start) + pd.to_timedelta(t, unit="s"), name="time")
    return pd.Series(np.maximum(values, 0.0), index=index, name="generated")


def site_trace(site: GridSiteConfig, cfg: CurtailConfig, data_dir: Path | None, seed: int = 0) -> pd.Series:
    """A site's MCI in kg/kWh, shifted; a generated trace (seeded) when there is no data dir."""
    if data_dir is None:
        raw = generated_trace(seed=seed)
    else:
        path = Path(data_dir) / site.trace
        raw = load_trace(path, site.time_column or None, site.column or None)
        negative = np.flatnonzero(raw.to_numpy() < 0)
        if len(negative) and not cfg.negative_mci:
            row = int(negative[0])
            raise InputError(f"{_where(path, row, raw.index[row])}: {raw.name} is {raw.iloc[row]:g}, a negative carbon "
                             "intensity; fix the trace, or set llm.curtail.negative_mci=true if negative marginal "
                             "emissions are meant")
    return shifted(to_kg_per_kwh(raw, cfg.unit), site.shift_hours).rename(site.name)


def site_traces(cfg: CurtailConfig, data_dir: Path | None) -> dict[str, pd.Series]:
    """Every site's MCI in kg/kWh, by site name."""
    return {site.name: site_trace(site, cfg, data_dir, seed=i) for i, site in enumerate(cfg.sites)}


def solar_traces(cfg: CurtailConfig, data_dir: Path | None) -> dict[str, pd.Series]:
    """On-site PV output in kW for the sites that have one."""
    out = {}
    for site in cfg.sites:
        if site.solar is None:
            continue
        if data_dir is None:
            raise InputError(f"site {site.name}'s solar trace {site.solar.trace} needs the data dir; "
                             f"set SEEDFLOW_DATA or remove the site's solar section")
        raw = load_trace(Path(data_dir) / site.solar.trace, None, site.solar.column)
        out[site.name] = shifted(raw * site.solar.peak_kw, site.solar.shift_hours).rename(site.name)
    return out
