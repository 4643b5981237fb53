"""The run report: per-step figures as a table and as run.json."""

from __future__ import annotations

import json
from pathlib import Path

from wgobuild.report import RunReport, StepFigures, human_size


def test_table_lists_steps_that_ran_and_counts_the_rest(tmp_path: Path) -> None:
    report = RunReport()
    report.record(StepFigures("compile:a-linux-amd64", "ran", 1.25, 2.5, 150 * 2**20, programs=1))
    report.record(StepFigures("image", "ran", 0.01, 0.01, 0, programs=0))
    report.record(StepFigures("test", "up-to-date"))
    lines = report.table().splitlines()
    assert lines[0].split() == ["step", "status", "wall", "cpu", "peak", "rss"]
    assert lines[2].split() == ["compile:a-linux-amd64", "ran", "1.25s", "2.50s", "150.0", "MiB"]
    assert lines[3].split()[-1] == "-", "a step that ran no program has no program peak"
    assert lines[-1] == "(1 steps up to date)"
    report.write(tmp_path / "run.json")
    data = json.loads((tmp_path / "run.json").read_text())
    assert [s["step"] for s in data["steps"]] == ["compile:a-linux-amd64", "image", "test"]
    assert data["finished"] >= data["started"]


def test_nothing_to_do_says_so() -> None:
    report = RunReport()
    report.record(StepFigures("test", "up-to-date"))
    report.record(StepFigures("image", "up-to-date"))
    assert report.table() == "wgobuild: nothing to do, all 2 steps up to date."


def test_human_size() -> None:
    assert human_size(512) == "512 B"
    assert human_size(1536) == "1.5 KiB"
    assert human_size(3 * 2**30) == "3.0 GiB"
