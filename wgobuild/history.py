"""Run history: one small record per run under ``reports/runs/<time>-<pid>.json``; the newest :data:`HISTORY` kept.

Kept apart from :mod:`wgobuild.report` and light on purpose (standard library only, no dataclasses): the no-op
shortcut (:mod:`wgobuild.fastpath`) writes a record without loading doit or the report machinery. A record is a
note, not an output: written to a temporary name and renamed (never seen half-written), without an fsync.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

HISTORY = 20  # run records kept under reports/runs/
NOTHING_TO_DO = "wgobuild: nothing to do, all {steps} steps up to date."  # the run table of a no-op run


def save(folder: Path, started: float, ran: dict[str, dict[str, object]], up_to_date: int,
         shortcut: str = "") -> Path:
    """Write one run's record (``ran``: step -> status, wall_s, reason) and drop all but the newest records."""
    record: dict[str, object] = {"started": started, "finished": time.time(), "ran": ran, "up_to_date": up_to_date}
    if shortcut:
        record["shortcut"] = shortcut  # the snapshot that answered a no-op without doit
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(started)) + f".{int(started * 1e6) % 10**6:06d}"
    path = folder / f"{stamp}-{os.getpid()}.json"
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f".{path.name}.part"
    part.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    os.replace(part, path)
    for old in sorted(folder.glob("*.json"))[:-HISTORY]:
        old.unlink(missing_ok=True)
    return path
