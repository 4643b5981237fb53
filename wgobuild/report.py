"""Run report: per-step wall time, CPU time and peak memory, printed as a table and kept in ``run.json``.

Steps record themselves through :func:`record` (the task wiring calls it around each action); figures of external
programs come from :mod:`wgobuild.proc`, Python-side work adds its own thread CPU time.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from wgobuild import files


@dataclass
class StepFigures:
    step: str
    status: str  # ran | failed | up-to-date
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss: int = 0
    programs: int = 0


class RunReport:
    """Collects step figures from any thread; written once at the end of a run."""

    def __init__(self) -> None:
        self._steps: dict[str, StepFigures] = {}
        self._lock = threading.Lock()
        self.started = time.time()

    def record(self, figures: StepFigures) -> None:
        with self._lock:
            self._steps[figures.step] = figures

    @property
    def steps(self) -> list[StepFigures]:
        with self._lock:
            return list(self._steps.values())

    def table(self) -> str:
        ran = [s for s in self.steps if s.status != "up-to-date"]
        skipped = len(self.steps) - len(ran)
        if not ran:
            return f"wgobuild: nothing to do, all {skipped} steps up to date."
        rows = [("step", "status", "wall", "cpu", "peak rss")]
        rows += [(s.step, s.status, f"{s.wall_s:.2f}s", f"{s.cpu_s:.2f}s",
                  human_size(s.peak_rss) if s.peak_rss else "-") for s in ran]  # peak RSS of programs run
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w)
                           for i, (cell, w) in enumerate(zip(r, widths, strict=True))) for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        if skipped:
            lines.append(f"({skipped} steps up to date)")
        return "\n".join(lines)

    def write(self, path: Path) -> None:
        data = {"started": self.started, "finished": time.time(), "steps": [asdict(s) for s in self.steps]}
        files.write_text(path, json.dumps(data, indent=2) + "\n")


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
