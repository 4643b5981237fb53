"""The run report: per-step figures and reasons as a table, run.json, trace.json and the run history."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from wgobuild import report
from wgobuild.report import RunReport, StepFigures, changed_inputs, changed_settings, human_size


def test_table_lists_steps_that_ran_with_their_reason_and_counts_the_rest(tmp_path: Path) -> None:
    run = RunReport()
    run.because("compile:a-linux-amd64", "first build")
    run.record(StepFigures("compile:a-linux-amd64", "ran", 1.25, 2.5, 150 * 2**20, programs=1))
    run.record(StepFigures("image", "ran", 0.01, 0.01, 0, programs=0))
    run.because("image", "--push")  # a reason said after the figures joins them too
    run.record(StepFigures("test", "up-to-date"))
    lines = run.table().splitlines()
    assert lines[0].split() == ["step", "status", "wall", "cpu", "peak", "rss", "why"]
    assert lines[2].split() == ["compile:a-linux-amd64", "ran", "1.25s", "2.50s", "150.0", "MiB", "first", "build"]
    assert lines[3].split()[-2:] == ["-", "--push"], "a step that ran no program has no program peak"
    assert lines[-1] == "(1 steps up to date)"
    run.save(tmp_path)
    data = json.loads((tmp_path / "run.json").read_text())
    assert [s["step"] for s in data["steps"]] == ["compile:a-linux-amd64", "image", "test"]
    assert [s["reason"] for s in data["steps"]] == ["first build", "--push", ""]
    assert data["finished"] >= data["started"]


def test_nothing_to_do_says_so() -> None:
    run = RunReport()
    run.record(StepFigures("test", "up-to-date"))
    run.record(StepFigures("image", "up-to-date"))
    assert run.table() == "wgobuild: nothing to do, all 2 steps up to date."


def test_a_no_op_run_keeps_the_last_real_runs_figures_and_adds_its_own_record(tmp_path: Path) -> None:
    real = RunReport()
    real.because("test", "3 files under internal/store changed")
    real.record(StepFigures("test", "ran", wall_s=56.0))
    real.save(tmp_path)
    kept = (tmp_path / "run.json").read_text()
    trace = (tmp_path / "trace.json").read_text()
    noop = RunReport()
    noop.record(StepFigures("test", "up-to-date"))
    written = noop.save(tmp_path)
    assert (tmp_path / "run.json").read_text() == kept, "a no-op run must not overwrite run.json"
    assert (tmp_path / "trace.json").read_text() == trace
    assert len(written) == 1 and written[0].parent == tmp_path / "runs"
    records = sorted((tmp_path / "runs").glob("*.json"))
    assert len(records) == 2
    last = json.loads(records[-1].read_text())
    assert last["ran"] == {} and last["up_to_date"] == 1
    first = json.loads(records[0].read_text())
    assert first["ran"]["test"] == {"status": "ran", "wall_s": 56.0, "reason": "3 files under internal/store changed"}


def test_history_keeps_the_newest_records(tmp_path: Path) -> None:
    for i in range(report.HISTORY + 5):
        run = RunReport()
        run.started = 1_700_000_000 + i
        run.save(tmp_path)
    records = sorted((tmp_path / "runs").glob("*.json"))
    assert len(records) == report.HISTORY
    assert json.loads(records[0].read_text())["started"] == 1_700_000_000 + 5


def test_trace_has_one_complete_event_per_step_that_ran_on_its_thread(tmp_path: Path) -> None:
    run = RunReport()
    run.started = 1000.0
    run.because("compile:a", "first build")

    def worker(name: str, start: float, wall: float) -> None:
        run.record(StepFigures(name, "ran", wall_s=wall, cpu_s=0.5, peak_rss=2048, programs=1, start=start))

    threads = [threading.Thread(target=worker, args=("compile:a", 1000.5, 2.0), name="w1"),
               threading.Thread(target=worker, args=("compile:b", 1000.25, 1.0), name="w2")]
    for t in threads:
        t.start()
        t.join()
    run.record(StepFigures("test", "up-to-date"))
    run.save(tmp_path)
    events = json.loads((tmp_path / "trace.json").read_text())["traceEvents"]
    complete = [e for e in events if e["ph"] == "X"]
    assert [e["name"] for e in complete] == ["compile:b", "compile:a"], "ordered by start, up-to-date steps left out"
    a = complete[1]
    assert (a["ts"], a["dur"]) == (500_000, 2_000_000)
    assert a["args"] == {"reason": "first build", "status": "ran", "cpu_s": 0.5, "peak_rss": 2048, "programs": 1}
    assert a["tid"] != complete[0]["tid"] and a["pid"] == complete[0]["pid"]
    names = {e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert names == {a["tid"]: "w1", complete[0]["tid"]: "w2"}


def test_changed_inputs_in_a_few_words(tmp_path: Path) -> None:
    root = tmp_path
    assert changed_inputs([str(root / "main.go")], root) == "main.go changed"
    under = [str(root / "internal/store" / n) for n in ("a.go", "b.go", "sub/c.go")]
    assert changed_inputs(under, root) == "3 files under internal/store changed"
    assert changed_inputs([str(root / "go.mod"), str(root / "main.go"), str(root / "x/y.go")], root) == \
        "3 files changed (go.mod, main.go, …)"
    assert changed_inputs(["/elsewhere/lib/a.go", "/elsewhere/lib/b.go"], root) == \
        "2 files under /elsewhere/lib changed"


def test_changed_settings_names_the_keys() -> None:
    old = {"image": {"backend": "oci", "tag": ""}, "version": "1.0.0", "tags": ["a"]}
    new = {"image": {"backend": "auto", "tag": ""}, "version": "1.0.1", "tags": ["a"], "cgo": True}
    assert changed_settings(old, new) == ["cgo", "image.backend", "version"]
    assert changed_settings(old, old) == []


def test_human_size() -> None:
    assert human_size(512) == "512 B"
    assert human_size(1536) == "1.5 KiB"
    assert human_size(3 * 2**30) == "3.0 GiB"


def test_the_test_step_shows_the_real_time_of_go_test(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two packages whose tests sleep 1.5 s each run side by side: go test takes about 1.5 s plus its builds, while
    the events' Elapsed figures add up to 3 s; the summary shows the wall time of the go test process."""
    from wgobuild import gotest, proc

    (tmp_path / "go.mod").write_text("module example.com/slow\n\ngo 1.22\n")
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}_test.go").write_text(
            f'package {name}\n\nimport (\n\t"testing"\n\t"time"\n)\n\n'
            "func TestSlow(t *testing.T) { time.Sleep(1500 * time.Millisecond) }\n")
    with proc.collecting() as runs:
        result = gotest.test(tmp_path, ["./..."], flags=["-p=2"], timeout="120s", tags=[], cgo=False,
                             junit=tmp_path / "junit.xml")
    (go_test,) = runs
    assert result.elapsed == go_test.wall_s and go_test.wall_s >= 1.5
    summary = capsys.readouterr().out
    assert f"go test: 2 passed, 0 failed, 0 skipped in 2 packages ({go_test.wall_s:.1f}s)" in summary, summary
