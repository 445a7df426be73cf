"""When a site powers up and trains: reactive (the study's rule), forecast-led, or always (the baseline).

`reactive` is the availability rule: provisioning starts once MCI is below the threshold, so every
window pays the delay as idle-provisioned time. `forecast` forecasts each site's MCI with the
platform's own models (tasks/forecast/models) and provisions a site `provision_delay_s` ahead of a
forecast crossing, so the delay is hidden; it does not start a site whose window is forecast to end
within the round it would join. The forecast only moves power-up decisions: a site trains only
while the rule on its actual MCI allows it, so emissions stay honest.

No look-ahead: the forecast policy reads the trace only through a `PastView`, which refuses any
time after the simulated now; `tests/test_curtail.py` also checks that garbage written after a time
T leaves every decision before T unchanged.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from tasks.common.errors import InputError
from tasks.forecast.models.base import FitContext, Forecaster
from tasks.forecast.models.catalog import make_model
from tasks.forecast.protocol import Split
from tasks.llm.curtail.availability import (
    AVAILABLE,
    OFF,
    SiteMachine,
    StateTimeline,
    reactive_timeline,
    samples_from,
)
from tasks.llm.curtail.config import CurtailConfig, ForecastPolicyConfig
from tasks.llm.curtail.traces import DAY_S


class LookAheadError(RuntimeError):
    """A policy asked for a trace value after the simulated now."""


class PastView:
    """One site's MCI samples as known at the simulated `now`: nothing after it."""

    def __init__(self, times: np.ndarray, values: np.ndarray) -> None:
        self._times, self._values = times, values
        self.now = -math.inf
        self._known = 0  # samples at times <= now

    def move_to(self, now: float) -> None:
        if now < self.now:
            raise ValueError(f"the clock runs forward only ({now:g} s after {self.now:g} s)")
        self.now = now
        self._known = int(np.searchsorted(self._times, now, side="right"))

    def history(self, since: float = -math.inf) -> tuple[np.ndarray, np.ndarray]:
        """(times, values) of the samples in [since, now]."""
        first = int(np.searchsorted(self._times[: self._known], since, side="left"))
        return self._times[first: self._known].copy(), self._values[first: self._known].copy()

    def value_at(self, t: float) -> float:
        """The MCI in effect at `t` <= now (a step function)."""
        if t > self.now:
            raise LookAheadError(f"asked for the MCI at {t:g} s, after the simulated now ({self.now:g} s)")
        k = int(np.searchsorted(self._times[: self._known], t, side="right")) - 1
        if k < 0:
            raise LookAheadError(f"no sample at or before {t:g} s")
        return float(self._values[k])


@dataclass
class Prediction:
    """A forecast issued at `issued_s`: values at the sample times after the last observed one."""

    issued_s: float
    times: np.ndarray
    values: np.ndarray

    def window(self, start: float, end: float) -> tuple[np.ndarray, np.ndarray]:
        keep = (self.times > start) & (self.times < end)
        return self.times[keep], self.values[keep]


class MciForecaster:
    """A registry model refit every `refit_every_s` on the past `history_hours`; its forecast is
    re-issued every `forecast_every_s` from the newest samples with the fitted parameters.

    Fits are memoised in `fits` by their exact input, so re-planning the same trace refits nothing."""

    def __init__(self, options: ForecastPolicyConfig, step: float, site: str, fits: dict[str, Forecaster]) -> None:
        self.options, self.step, self.site, self.fits = options, step, site, fits
        self.season = max(2, round(DAY_S / step))
        self.horizon = max(1, math.ceil(options.horizon_hours * 3600 / step))
        self.model: Forecaster | None = None
        self.fit_from, self.fitted_s = -math.inf, -math.inf

    def _fit(self, view: PastView) -> None:
        times, values = view.history(view.now - self.options.history_hours * 3600)
        key = hashlib.blake2b(repr((self.options, self.step)).encode() + times.tobytes() + values.tobytes()).hexdigest()
        if key not in self.fits:
            n = len(values)
            model = make_model(self.options.model, **self.options.model_options)
            try:
                model.fit(values, FitContext(split=Split(n, n, n), season=self.season, horizon=self.horizon,
                                             seed=self.options.seed))
            except (ValueError, np.linalg.LinAlgError) as exc:
                raise InputError(f"forecast model {self.options.model} could not be fit for site {self.site} at "
                                 f"{view.now:g} s: {exc}; choose another llm.curtail.forecast.model") from exc
            self.fits[key] = model
        self.model, self.fit_from, self.fitted_s = self.fits[key], float(times[0]), view.now

    def predict(self, view: PastView) -> Prediction | None:
        """A forecast from the samples up to now; None while less than `history_hours` are known."""
        known, _ = view.history()
        if view.now - known[0] + self.step < self.options.history_hours * 3600:
            return None
        if self.model is None or view.now - self.fitted_s >= self.options.refit_every_s:
            self._fit(view)
        times, values = view.history(self.fit_from)
        forecast = self.model.forecast(values, np.array([len(values)]), self.horizon)[0]
        return Prediction(view.now, times[-1] + self.step * np.arange(1, self.horizon + 1), forecast)


def predicted_leave(times: np.ndarray, values: np.ndarray, threshold: float, off_delay_s: float,
                    step: float) -> float:
    """When the rule would make a site leave if the MCI followed the forecast; inf if not within it."""
    above = values >= threshold
    k = 0
    while k < len(times):
        if not above[k]:
            k += 1
            continue
        j = k
        while j < len(times) and above[j]:
            j += 1
        run_end = float(times[j]) if j < len(times) else float(times[-1] + step)
        if run_end >= times[k] + off_delay_s:  # above for the whole off delay (a deadline beats a sample)
            return float(times[k] + off_delay_s)
        k = j
    return math.inf


class ReactivePolicy:
    """The study's availability rule."""

    name = "reactive"

    def __init__(self, cfg: CurtailConfig) -> None:
        self.cfg = cfg

    def timeline(self, site: str, times: np.ndarray, values: np.ndarray, start_s: float, end_s: float) -> StateTimeline:
        cfg = self.cfg
        return reactive_timeline(times, values, cfg.threshold_kg_per_kwh, cfg.provision_delay_s, cfg.off_delay_s,
                                 start_s, end_s)


class AlwaysPolicy:
    """Available from the start to the end, no provisioning delay: the centralised baseline."""

    name = "always"

    def __init__(self, cfg: CurtailConfig) -> None:
        self.cfg = cfg

    def timeline(self, site: str, times: np.ndarray, values: np.ndarray, start_s: float, end_s: float) -> StateTimeline:
        return StateTimeline(np.array([start_s, end_s], dtype=float), (AVAILABLE,))


class ForecastPolicy:
    """Provisions ahead of forecast windows; trains only while the rule on the actual MCI allows it."""

    name = "forecast"

    def __init__(self, cfg: CurtailConfig) -> None:
        self.cfg = cfg
        self.fits: dict[str, Forecaster] = {}

    def _round_end(self, t: float, start_s: float) -> float:
        return start_s + (math.floor((t - start_s) / self.cfg.round_s) + 1) * self.cfg.round_s

    def _decide(self, machine: SiteMachine, prediction: Prediction | None, now: float, below: bool,
                start_s: float, step: float) -> tuple[bool, bool]:
        """(start, hold) for the sample at `now`: power up an off site; keep a powered idle one."""
        cfg = self.cfg
        threshold = cfg.threshold_kg_per_kwh
        if prediction is None:
            return below, False
        lead_t, lead_v = prediction.window(now, now + cfg.provision_delay_s + step)
        crossing = lead_t[lead_v < threshold]
        soon = len(crossing) > 0
        if machine.state != OFF or not (below or soon):
            return False, soon
        trains_from = now + cfg.provision_delay_s if below else max(float(crossing[0]), now + cfg.provision_delay_s)
        ahead_t, ahead_v = prediction.window(trains_from - step, math.inf)
        leave = predicted_leave(ahead_t, ahead_v, threshold, cfg.off_delay_s, step)
        return leave > self._round_end(trains_from, start_s), soon

    def timeline(self, site: str, times: np.ndarray, values: np.ndarray, start_s: float, end_s: float) -> StateTimeline:
        cfg = self.cfg
        step = float(np.median(np.diff(times)))
        view = PastView(times, values)
        forecaster = MciForecaster(cfg.forecast, step, site, self.fits)
        machine = SiteMachine(start_s, cfg.provision_delay_s, cfg.off_delay_s)
        prediction: Prediction | None = None
        for k in samples_from(times, start_s):
            now = max(float(times[k]), start_s)
            if now >= end_s:
                break
            view.move_to(now)
            if prediction is None or now - prediction.issued_s >= cfg.forecast.forecast_every_s:
                prediction = forecaster.predict(view)
            below = view.value_at(now) < cfg.threshold_kg_per_kwh
            machine.advance(now)
            start, hold = self._decide(machine, prediction, now, below, start_s, step)
            machine.see(now, below, start=start, hold=hold)
        return machine.timeline(end_s)


POLICIES = {"reactive": ReactivePolicy, "forecast": ForecastPolicy, "always": AlwaysPolicy}
Policy = ReactivePolicy | ForecastPolicy | AlwaysPolicy


def make_policy(name: str, cfg: CurtailConfig) -> Policy:
    if name not in POLICIES:
        raise InputError(f"unknown curtailment policy {name!r}; choose from {', '.join(POLICIES)}")
    return POLICIES[name](cfg)

