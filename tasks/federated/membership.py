"""Who took part in which round: the membership timeline of a multi-site run, as a table and a figure.

Each (round, site) cell is one of: `synced` (trained and its pseudo-gradient or gradient was
averaged), `local` (trained, no sync this round), `excluded` (its pseudo-gradient failed the SDC
outer rule), `failed` (died, raised or missed the deadline in this round), `missed` (scheduled but
gone), `idle` (up but not scheduled), `absent` (not joined yet, or left).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from tasks.common.atomic import atomic_path, write_text

STATES = ("synced", "local", "excluded", "failed", "missed", "idle", "absent")
COLOURS = {"synced": "#2b8a3e", "local": "#74c0fc", "excluded": "#f59f00", "failed": "#e03131", "missed": "#ffc9c9",
           "idle": "#dee2e6", "absent": "#ffffff"}


class MembershipTimeline:
    def __init__(self, sites: list[str], rows: list[dict] | None = None):
        self.sites, self.rows = sites, list(rows or [])

    def add(self, round_index: int, states: dict[str, str]) -> None:
        self.rows.append({"round": round_index, **{site: states.get(site, "absent") for site in self.sites}})

    def rounds_in(self, site: str, *states: str) -> list[int]:
        return [row["round"] for row in self.rows if row.get(site) in states]

    def write_csv(self, path: Path) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["round", *self.sites], lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text(path, buf.getvalue())

    def plot(self, path: Path) -> None:
        """Sites as rows, rounds as columns, one colour per state."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.colors import ListedColormap
        from matplotlib.patches import Patch

        grid = [[STATES.index(row.get(site, "absent")) for row in self.rows] for site in self.sites]
        fig, ax = plt.subplots(figsize=(min(14, 3 + 0.25 * len(self.rows)), 1 + 0.5 * len(self.sites)))
        ax.imshow(grid, aspect="auto", interpolation="nearest", vmin=0, vmax=len(STATES) - 1,
                  cmap=ListedColormap([COLOURS[s] for s in STATES]))
        ax.set_yticks(range(len(self.sites)), self.sites)
        ax.set_xlabel("round")
        ax.legend(handles=[Patch(color=COLOURS[s], label=s) for s in STATES], ncol=len(STATES), fontsize=7,
                  loc="upper center", bbox_to_anchor=(0.5, -0.35), frameon=False)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
