"""Run report: why each step ran, its wall time, CPU time and peak memory; a table, run.json, trace.json, history.

Steps record themselves through :meth:`RunReport.record` (the task wiring calls it around each action) and say why
they run through :meth:`RunReport.because`; figures of external programs come from :mod:`wgobuild.proc`,
Python-side work adds its own thread CPU time.

What is written under ``dist/reports/`` (:meth:`RunReport.save`):

* ``run.json``: the steps of the last run that did work, with their reasons and figures. A no-op run leaves it alone,
  so the figures of the last real build stay readable.
* ``trace.json``: that same run in Chrome's trace-event format (open it in Perfetto or ``chrome://tracing``): one
  complete event per step on the worker thread that ran it, with its reason and figures.
* ``runs/<time>-<pid>.json``: one small record per run, no-op runs included (:mod:`wgobuild.history`); the newest
  :data:`HISTORY` are kept.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from wgobuild import files, history
from wgobuild.history import HISTORY as HISTORY


@dataclass
class StepFigures:
    step: str
    status: str  # ran | failed | up-to-date
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss: int = 0
    programs: int = 0
    reason: str = ""  # why it ran: first build, an input changed, settings changed, output missing, forced
    start: float = 0.0  # epoch seconds when the step started (0 for up-to-date steps)
    thread: str = ""  # the worker thread that ran it


class RunReport:
    """Collects step figures and reasons from any thread; saved once at the end of a run."""

    def __init__(self) -> None:
        self._steps: dict[str, StepFigures] = {}
        self._reasons: dict[str, str] = {}
        self._lock = threading.Lock()
        self.started = time.time()

    def because(self, step: str, reason: str) -> None:
        """Note why ``step`` runs (said before it runs; joined to its figures when they are recorded)."""
        with self._lock:
            self._reasons[step] = reason
            if step in self._steps:
                self._steps[step].reason = reason

    def record(self, figures: StepFigures) -> None:
        """Keep one step's figures; a step that ran is stamped with its start time and worker thread."""
        if figures.status != "up-to-date":
            if not figures.start:
                figures.start = time.time() - figures.wall_s
            if not figures.thread:
                figures.thread = threading.current_thread().name
        with self._lock:
            figures.reason = figures.reason or self._reasons.get(figures.step, "")
            self._steps[figures.step] = figures

    @property
    def steps(self) -> list[StepFigures]:
        with self._lock:
            return list(self._steps.values())

    @property
    def did_work(self) -> bool:
        return any(s.status != "up-to-date" for s in self.steps)

    def table(self) -> str:
        ran = [s for s in self.steps if s.status != "up-to-date"]
        skipped = len(self.steps) - len(ran)
        if not ran:
            return history.NOTHING_TO_DO.format(steps=skipped)
        rows = [("step", "status", "wall", "cpu", "peak rss", "why")]
        rows += [(s.step, s.status, f"{s.wall_s:.2f}s", f"{s.cpu_s:.2f}s",
                  human_size(s.peak_rss) if s.peak_rss else "-", s.reason or "-")  # peak RSS of programs run
                 for s in ran]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) if i in (0, 1, 5) else cell.rjust(w)
                           for i, (cell, w) in enumerate(zip(r, widths, strict=True))).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        if skipped:
            lines.append(f"({skipped} steps up to date)")
        return "\n".join(lines)

    def save(self, reports_dir: Path) -> list[Path]:
        """Write this run's files under ``reports_dir`` (see the module doc); returns the paths written."""
        finished = time.time()
        steps = self.steps
        written = []
        if self.did_work:
            data = {"started": self.started, "finished": finished, "steps": [asdict(s) for s in steps]}
            files.write_text(reports_dir / "run.json", json.dumps(data, indent=2) + "\n")
            trace = {"traceEvents": trace_events(steps, self.started), "displayTimeUnit": "ms"}
            files.write_text(reports_dir / "trace.json", json.dumps(trace, indent=1) + "\n")
            written += [reports_dir / "run.json", reports_dir / "trace.json"]
        written.append(self._save_history(reports_dir / "runs", finished, steps))
        return written

    def _save_history(self, folder: Path, finished: float, steps: Sequence[StepFigures]) -> Path:
        ran = {s.step: {"status": s.status, "wall_s": round(s.wall_s, 3), "reason": s.reason}
               for s in steps if s.status != "up-to-date"}
        return history.save(folder, self.started, ran, len(steps) - len(ran))


def trace_events(steps: Sequence[StepFigures], origin: float) -> list[dict[str, object]]:
    """Chrome trace events: one ``X`` (complete) event per step that ran, times in µs from ``origin``.

    ``tid`` numbers the worker threads in order of first use, named by ``M`` (metadata) events.
    """
    pid = os.getpid()
    tids: dict[str, int] = {}
    events: list[dict[str, object]] = [{"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
                                        "args": {"name": "wgobuild"}}]
    for s in sorted((s for s in steps if s.status != "up-to-date"), key=lambda s: s.start):
        tid = tids.setdefault(s.thread, len(tids) + 1)
        events.append({
            "name": s.step, "cat": s.step.split(":")[0], "ph": "X", "pid": pid, "tid": tid,
            "ts": round((s.start - origin) * 1e6), "dur": max(1, round(s.wall_s * 1e6)),
            "args": {"reason": s.reason, "status": s.status, "cpu_s": round(s.cpu_s, 3), "peak_rss": s.peak_rss,
                     "programs": s.programs},
        })
    events += [{"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}}
               for name, tid in tids.items()]
    return events


def changed_inputs(paths: Sequence[str], root: Path) -> str:
    """Which inputs changed, in a few words: ``main.go changed`` or ``3 files under internal/store changed``."""
    rel = [_relative(p, root) for p in paths]
    if len(rel) == 1:
        return f"{rel[0]} changed"
    parts = [PurePosixPath(p).parent.parts for p in rel]
    common: list[str] = []
    for level in zip(*parts, strict=False):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    if common:
        return f"{len(rel)} files under {PurePosixPath(*common)} changed"
    shown = ", ".join(sorted(rel)[:2])
    return f"{len(rel)} files changed ({shown}{', …' if len(rel) > 2 else ''})"


def changed_settings(old: Mapping[str, object], new: Mapping[str, object], prefix: str = "") -> list[str]:
    """Names of the settings that differ, nested ones dotted (``image.backend``); one level of nesting is shown."""
    keys: list[str] = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if isinstance(before, dict) and isinstance(after, dict) and not prefix:
            keys += changed_settings(before, after, f"{key}.")
        else:
            keys.append(prefix + key)
    return keys


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).as_posix()


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
