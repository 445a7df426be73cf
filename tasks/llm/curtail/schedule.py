"""The training plan: time-based DiLoCo rounds on a simulated clock driven by the sites' traces.

One optimizer step takes `step_s` simulated seconds. Round k covers [start + k round_s, start +
(k+1) round_s); a site trains floor(its available seconds in the round / step_s) steps in it (its
first available seconds; the rest, and its provisioning, are idle-provisioned time), so sites may
train unequal step counts and the hub weights their pseudo-gradients by tokens. A round in which 2+
sites train ends with a sync (token-weighted pseudo-gradient average, then the DiLoCo outer step);
a lone site trains locally and its progress joins at the next sync; with no site the clock runs and
nothing trains. The final round is cut where the total reaches the target exactly and always syncs,
so every run ends with global parameters after the same number of site-steps (equal tokens).

Choosing step_s: pick it so the run covers several days of trace, step_s ~ days x 86400 x share /
target_site_steps, where share is the sites' summed share of available time (each default site is
available ~22% of the month on the shared trace, more on some days): with the defaults, 5,000
site-steps at step_s = 60 s take 4.1 simulated days. A step_s near round_s wastes the partial step
at every round's end.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import pandas as pd

from tasks.common.errors import InputError
from tasks.llm.curtail.availability import AVAILABLE, EPS, PROVISIONING, StateTimeline
from tasks.llm.curtail.config import CurtailConfig
from tasks.llm.curtail.policy import Policy, make_policy
from tasks.llm.curtail.traces import DAY_S, seconds, span_s


@dataclass(frozen=True)
class Round:
    """One round: optimizer steps per training site, idle-provisioned seconds per site, sync at its end.

    Idle-provisioned time is provisioning, waiting, and available seconds too few for another step."""

    index: int
    start_s: float
    end_s: float
    steps: dict[str, int]
    provisioned: dict[str, float]
    sync: bool

    @property
    def site_steps(self) -> int:
        return sum(self.steps.values())

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class Schedule:
    rounds: list[Round]
    timelines: dict[str, StateTimeline]
    step_s: float
    policy: str

    @property
    def site_steps(self) -> int:
        return sum(r.site_steps for r in self.rounds)

    def training(self, site: str, r: Round) -> list[tuple[float, float]]:
        """The stretches in which `site` trains during round `r`."""
        return split_round(self.timelines[site], r.start_s, r.end_s, r.steps.get(site, 0), self.step_s)[0]

    def idle(self, site: str, r: Round) -> list[tuple[float, float]]:
        """The stretches in which `site` is powered but not training during round `r`."""
        return split_round(self.timelines[site], r.start_s, r.end_s, r.steps.get(site, 0), self.step_s)[1]

    def to_dict(self) -> dict:
        return {"policy": self.policy, "step_s": self.step_s, "site_steps": self.site_steps,
                "rounds": [r.to_dict() for r in self.rounds],
                "timelines": {site: t.to_dict() for site, t in self.timelines.items()}}


def split_round(timeline: StateTimeline, start: float, end: float, steps: int,
                step_s: float) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(training, idle) stretches of a site in [start, end): it trains in its first available seconds."""
    trained = min(end, timeline.time_after(AVAILABLE, start, steps * step_s)) if steps else start
    idle = timeline.intervals(AVAILABLE, trained, end) + timeline.intervals(PROVISIONING, start, end)
    return timeline.intervals(AVAILABLE, start, trained), sorted(idle)


def _cut(timelines: dict[str, StateTimeline], steps: dict[str, int], start: float, step_s: float,
         needed: int) -> tuple[dict[str, int], float]:
    """The first `needed` step completions of the round (ties by site order) and the time of the last."""
    done = sorted((timelines[site].time_after(AVAILABLE, start, j * step_s), order, site)
                  for order, site in enumerate(steps) for j in range(1, steps[site] + 1))[:needed]
    kept: dict[str, int] = {}
    for _, _, site in done:
        kept[site] = kept.get(site, 0) + 1
    return kept, done[-1][0]


def _too_short(start: float, end: float, reached: int, target: int, cfg: CurtailConfig) -> InputError:
    if not reached:
        return InputError(f"no site was ever available between {start:g} s and the traces' end ({end:g} s) at "
                          f"threshold {cfg.threshold:g} {cfg.unit}; raise llm.curtail.threshold or use other traces")
    days = (start + (end - start) * target / reached) / 86400
    return InputError(f"the traces end after {end / 86400:.2f} days with {reached} of {target} site-steps "
                      f"done; the run needs about {days:.1f} days of trace: use longer traces, or a lower "
                      f"start_s or step_s, or a higher threshold")


def _rounds(timelines: dict[str, StateTimeline], cfg: CurtailConfig, start: float, horizon: float,
            target: int) -> list[Round]:
    """Rounds from `start` until `target` site-steps or until the next round would pass `horizon`."""
    rounds: list[Round] = []
    total = 0
    while total < target:
        a = start + len(rounds) * cfg.round_s
        b = a + cfg.round_s
        if b > horizon + EPS:
            break
        steps = {site: math.floor(t.seconds(AVAILABLE, a, b) / cfg.step_s + EPS) for site, t in timelines.items()}
        steps = {site: n for site, n in steps.items() if n > 0}
        if total + sum(steps.values()) > target:
            steps, b = _cut(timelines, steps, a, cfg.step_s, target - total)
        idle = {site: sum(y - x for x, y in split_round(t, a, b, steps.get(site, 0), cfg.step_s)[1])
                for site, t in timelines.items()}
        rounds.append(Round(len(rounds), a, b, steps, {site: s for site, s in idle.items() if s > EPS},
                            sync=len(steps) >= 2))
        total += sum(steps.values())
    return rounds


def plan(traces: dict[str, pd.Series], cfg: CurtailConfig, target_site_steps: int,
         policy: str | Policy | None = None, start_s: float | None = None) -> Schedule:
    """Rounds from `start_s` (default cfg.start_s) until the sites' steps sum to `target_site_steps`.

    `traces`: MCI in kg/kWh per site (traces.site_traces); `policy`: a name (default cfg.policy)
    or a policy object. Raises InputError when the traces end before the target is reached."""
    if target_site_steps < 1:
        raise InputError(f"target_site_steps must be at least 1, got {target_site_steps}")
    if not traces:
        raise InputError("no sites to plan for; list at least one in llm.curtail.sites")
    chosen = make_policy(policy or cfg.policy, cfg) if policy is None or isinstance(policy, str) else policy
    start = cfg.start_s if start_s is None else start_s
    end = min(span_s(trace) for trace in traces.values())
    if start + cfg.round_s > end + EPS:
        raise InputError(f"the traces cover {end:g} s, less than start_s ({start:g}) plus one round "
                         f"({cfg.round_s:g} s); lower start_s or use longer traces")
    span = DAY_S
    while True:  # policies are causal: a longer horizon only appends, so extend until the target fits
        horizon = min(end, start + span)
        timelines = {site: chosen.timeline(site, seconds(trace), trace.to_numpy(dtype=float), start, horizon)
                     for site, trace in traces.items()}
        rounds = _rounds(timelines, cfg, start, horizon, target_site_steps)
        reached = sum(r.site_steps for r in rounds)
        if reached >= target_site_steps:
            break
        if horizon >= end:
            raise _too_short(start, end, reached, target_site_steps, cfg)
        span *= min(8.0, max(1.5, 1.25 * target_site_steps / reached)) if reached else 4.0
    rounds[-1] = replace(rounds[-1], sync=True)
    return Schedule(rounds, timelines, cfg.step_s, chosen.name)


def centralised(traces: dict[str, pd.Series], cfg: CurtailConfig, target_site_steps: int,
                site: str | None = None) -> Schedule:
    """The baseline: one site (default: the first) training non-stop on its own region's trace."""
    name = site or next(iter(traces))
    return plan({name: traces[name]}, cfg, target_site_steps, policy="always")


def two_sites(traces: dict[str, pd.Series], cfg: CurtailConfig, target_site_steps: int,
              policy: str | None = None) -> Schedule:
    """The two-site variant: the curtailment-aware plan restricted to the first two sites."""
    return plan(dict(list(traces.items())[:2]), cfg, target_site_steps, policy=policy)
