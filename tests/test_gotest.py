"""go test -json against the real Go toolchain: summary, named failures, JUnit XML."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from wgobuild import gotest
from wgobuild.errors import StepFailed


def test_go_test_report_names_failures_and_writes_junit(multi: Path, tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    report = gotest.test(multi, ["./..."], flags=[], timeout="60s", tags=[], cgo=False, junit=junit)
    assert report.ok and report.count("pass") == 1
    (multi / "lib/jobs/jobs_test.go").write_text(
        'package jobs\n\nimport "testing"\n\nfunc TestNext(t *testing.T) { t.Log("checking"); t.Fatal("want 2") }\n'
        "\nfunc TestOther(t *testing.T) {}\n")
    with pytest.raises(StepFailed) as caught:
        gotest.test(multi, ["./..."], flags=[], timeout="60s", tags=[], cgo=False, junit=junit)
    summary = str(caught.value)
    assert "1 passed, 1 failed" in summary
    assert "FAIL example.com/multi/lib/jobs TestNext" in summary and "want 2" in summary
    suites = ET.parse(junit).getroot()
    failures = [c.get("name") for c in suites.iter("testcase") if c.find("failure") is not None]
    assert failures == ["TestNext"]


def test_go_test_build_failure_is_reported(multi: Path, tmp_path: Path) -> None:
    (multi / "lib/jobs/jobs_test.go").write_text('package jobs\n\nimport "testing"\n\nfunc TestX(t *testing.T) { x }\n')
    with pytest.raises(StepFailed, match="FAIL"):
        gotest.test(multi, ["./..."], flags=[], timeout="60s", tags=[], cgo=False, junit=tmp_path / "j.xml")


def test_events_parse_into_cases() -> None:
    lines = [
        '{"Action":"run","Package":"p","Test":"TestA"}',
        '{"Action":"output","Package":"p","Test":"TestA","Output":"boom\\n"}',
        '{"Action":"fail","Package":"p","Test":"TestA","Elapsed":0.5}',
        '{"Action":"pass","Package":"p","Test":"TestB"}',
        '{"Action":"skip","Package":"p","Test":"TestB/sub"}',
        '{"Action":"fail","Package":"p","Elapsed":1}',
        "not json",
    ]
    report = gotest.parse_test_events(lines)
    assert [(c.name, c.outcome) for c in report.cases] == [("TestA", "fail"), ("TestB", "pass")]
    assert not report.ok and "FAIL p TestA" in report.summary() and "boom" in report.summary()
