"""The study's availability rule, with hysteresis, on simulated seconds; and the state timeline it yields.

A site whose MCI drops below the threshold is provisioned (powered, idle) for `provision_delay_s`,
then available (it may train). An available site whose MCI rises to the threshold or above is
marked; it leaves after `off_delay_s` above, unless a dip below clears the mark first. MCI rising
during provisioning cancels it: the site powers off at once, and a later dip starts a full delay
again (the delay is the price of each attempt, paid as idle-provisioned time).

The MCI is a step function: the value of a sample holds until the next one. "Below" is strict.
A deadline (end of provisioning, end of the off delay) that falls on a sample time takes effect
before that sample is read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OFF, PROVISIONING, AVAILABLE = "off", "provisioning", "available"
STATES = (OFF, PROVISIONING, AVAILABLE)
READY = "ready"  # delay paid, waiting for MCI below: only a forecast start gets here; drawn as provisioning
EPS = 1e-9


@dataclass(frozen=True, eq=False)
class StateTimeline:
    """A site's state on [times[k], times[k+1]) = states[k]; times ascend from the start to the end."""

    times: np.ndarray
    states: tuple[str, ...]

    def __post_init__(self) -> None:
        durations = np.diff(self.times)
        cumulative = {s: np.concatenate([[0.0], np.cumsum(durations * [x == s for x in self.states])])
                      for s in STATES}
        object.__setattr__(self, "_cumulative", cumulative)

    @property
    def start_s(self) -> float:
        return float(self.times[0])

    @property
    def end_s(self) -> float:
        return float(self.times[-1])

    def _seconds_until(self, state: str, t: float) -> float:
        return float(np.interp(t, self.times, self._cumulative[state]))

    def seconds(self, state: str, start: float, end: float) -> float:
        """Seconds in `state` within [start, end)."""
        return max(0.0, self._seconds_until(state, end) - self._seconds_until(state, start))

    def time_after(self, state: str, start: float, seconds: float) -> float:
        """The earliest time by which the site has spent `seconds` in `state` since `start`."""
        cumulative = self._cumulative[state]
        level = self._seconds_until(state, start) + seconds
        k = int(np.searchsorted(cumulative, level - EPS, side="left"))
        if k >= len(cumulative):
            raise ValueError(f"the timeline holds less than {seconds:g} s of {state} after {start:g}")
        if k == 0:
            return start
        return max(start, float(self.times[k - 1] + (level - cumulative[k - 1])))

    def intervals(self, state: str, start: float, end: float) -> list[tuple[float, float]]:
        """The stretches of `state` within [start, end), clipped."""
        out = []
        for k, s in enumerate(self.states):
            a, b = max(start, float(self.times[k])), min(end, float(self.times[k + 1]))
            if s == state and b > a:
                out.append((a, b))
        return out

    def to_dict(self) -> dict:
        return {"times": [float(t) for t in self.times], "states": list(self.states)}


class SiteMachine:
    """The rule as a state machine fed with one site's samples in time order; it records every change."""

    def __init__(self, start_s: float, provision_delay_s: float, off_delay_s: float) -> None:
        self.provision_delay_s, self.off_delay_s = provision_delay_s, off_delay_s
        self.state, self.deadline, self.below = OFF, None, False
        self.changes: list[tuple[float, str]] = [(start_s, OFF)]

    def _set(self, t: float, state: str) -> None:
        self.state, self.deadline = state, None
        drawn = PROVISIONING if state == READY else state
        if self.changes[-1][0] >= t:
            self.changes.pop()
        if not self.changes or self.changes[-1][1] != drawn:
            self.changes.append((t, drawn))

    def advance(self, t: float) -> None:
        """Apply a deadline at or before `t`: provisioning ends, or a marked site leaves."""
        if self.deadline is None or self.deadline > t:
            return
        when = self.deadline
        if self.state == PROVISIONING:
            self._set(when, AVAILABLE if self.below else READY)
        elif self.state == AVAILABLE:
            self._set(when, OFF)

    def see(self, t: float, below: bool, start: bool | None = None, hold: bool = False) -> None:
        """A sample at `t`. An off site starts provisioning when `start` (default: when `below`);
        a powered site that is not available stays powered above the threshold only with `hold`."""
        self.advance(t)
        self.below = below
        if self.state == OFF:
            if below if start is None else start:
                self._set(t, PROVISIONING)
                self.deadline = t + self.provision_delay_s
                self.advance(t)
        elif self.state in (PROVISIONING, READY):
            if below and self.state == READY:
                self._set(t, AVAILABLE)
            elif not below and not hold:
                self._set(t, OFF)
        elif below:
            self.deadline = None  # a dip clears the mark
        elif self.deadline is None:
            self.deadline = t + self.off_delay_s  # marked
            self.advance(t)

    def timeline(self, end_s: float) -> StateTimeline:
        self.advance(end_s)
        changes = [(t, s) for t, s in self.changes if t < end_s]
        times = np.array([t for t, _ in changes] + [end_s], dtype=float)
        return StateTimeline(times, tuple(s for _, s in changes))


def samples_from(times: np.ndarray, start_s: float) -> np.ndarray:
    """Indices of the samples a run from `start_s` reads: the one holding at start_s, then every later one."""
    first = max(int(np.searchsorted(times, start_s, side="right")) - 1, 0)
    return np.arange(first, len(times))


def reactive_timeline(times: np.ndarray, values: np.ndarray, threshold: float, provision_delay_s: float,
                      off_delay_s: float, start_s: float, end_s: float) -> StateTimeline:
    """The rule applied to one MCI step function (sample `times` in seconds) over [start_s, end_s)."""
    machine = SiteMachine(start_s, provision_delay_s, off_delay_s)
    for k in samples_from(times, start_s):
        if times[k] >= end_s:
            break
        machine.see(max(float(times[k]), start_s), bool(values[k] < threshold))
    return machine.timeline(end_s)
