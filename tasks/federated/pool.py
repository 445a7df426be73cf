"""Membership: the pool of sites (or clients) a coordinator drives, and who joins, leaves, fails and rejoins.

A site here is anything with `name`, `workers`, `leave_round` and `rejoin_after` (tasks/llm/config.py
`SiteConfig`). The pool decides; the coordinator acts (starts and stops processes) and reports
back with `Member.fail` and `Pool.rejoined`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Member:
    """A site the coordinator knows: its workers, the outer version its parameters match (-1: needs all of
    them), its current failure, every drop and rejoin, and its link counts (`stats`: this incarnation's)."""

    site: Any
    workers: list = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    version: int = 0
    restored: bool = False
    tokens: int = 0
    failure: str = ""
    failed_round: int | None = None
    stats: dict = field(default_factory=dict)
    earlier_stats: dict = field(default_factory=dict)
    positions: list = field(default_factory=list)
    drops: list[dict] = field(default_factory=list)
    rejoins: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.site.name

    @property
    def up(self) -> bool:
        return bool(self.workers) and not self.failure

    def link(self) -> dict:
        """Link counts over every incarnation of the site's workers."""
        keys = set(self.stats) | set(self.earlier_stats)
        return {k: self.stats.get(k, 0) + self.earlier_stats.get(k, 0) for k in keys}

    def fail(self, r: int, why: str) -> None:
        self.failure, self.failed_round = why, r
        self.drops.append({"round": r, "reason": why})


@dataclass
class Admissions:
    """What a round's start changes: sites that leave, sites that start, sites due back after a failure."""

    leaving: list[Member]
    starting: list[Member]
    back: list[Member]


class Pool:
    def __init__(self, sites: list):
        self.members = {s.name: Member(s) for s in sites}

    def __iter__(self):
        return iter(self.members.values())

    def admissions(self, r: int, scheduled: dict[str, int]) -> Admissions:
        """Who leaves (past its `leave_round`), who starts (scheduled, never started, never failed) and who
        comes back (failed, scheduled, `rejoin_after` rounds since its failure) at the start of round r."""
        out = Admissions([], [], [])
        for m in self:
            site, due = m.site, scheduled.get(m.name, 0) > 0
            if m.up and site.leave_round and r >= site.leave_round:
                out.leaving.append(m)
            elif not m.workers and not m.failure and due:
                out.starting.append(m)
            elif m.failure and site.rejoin_after and due and r >= m.failed_round + site.rejoin_after:
                out.back.append(m)
        return out

    def rejoined(self, m: Member, r: int) -> None:
        m.failure, m.failed_round = "", None
        m.rejoins.append(r)

    def active(self, scheduled: dict[str, int]) -> list[Member]:
        """The members that train this round: up and given steps."""
        return [m for m in self if m.up and scheduled.get(m.name, 0) > 0]

    def up(self) -> list[Member]:
        return [m for m in self if m.up]

    def all_failed(self) -> bool:
        return all(m.failure for m in self)

    def any_may_rejoin(self) -> bool:
        return any(m.site.rejoin_after for m in self)

    def state_of(self, m: Member, r: int, scheduled: dict[str, int], replied: bool, sync: bool) -> str:
        """The member's cell in the membership timeline (tasks/federated/membership.py)."""
        if replied:
            return "synced" if sync else "local"
        if m.failed_round == r:
            return "failed"
        if scheduled.get(m.name, 0) > 0:
            return "missed" if m.failure else "absent"
        return "idle" if m.up else "absent"
