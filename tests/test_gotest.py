"""go test -json against the real Go toolchain: summary, named failures, JUnit XML."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from junitparser import Failure, JUnitXml

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
    with pytest.raises(StepFailed) as caught:
        gotest.test(multi, ["./..."], flags=[], timeout="60s", tags=[], cgo=False, junit=tmp_path / "j.xml")
    lines = str(caught.value).splitlines()
    assert lines[0].startswith("go test: 0 passed, 0 failed, 0 skipped in 2 packages ("), lines
    assert lines[1:4] == ["FAIL example.com/multi/lib/jobs [example.com/multi/lib/jobs.test]",
                          "    # example.com/multi/lib/jobs [example.com/multi/lib/jobs.test]",
                          "    lib/jobs/jobs_test.go:5:28: undefined: x"], lines
    failed = ET.parse(tmp_path / "j.xml").getroot().find(".//testcase[@name='(package)']/failure")
    assert failed is not None and failed.get("message") == "package failed"


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


COLOURFUL_TEST = (
    'package jobs\n\nimport (\n\t"fmt"\n\t"testing"\n)\n\n'
    'func TestColours(t *testing.T) {\n'
    '\tfmt.Println("\\x1b[31mred\\x1b[0m and a NUL:\\x00: bell\\x07 tab\\t <&> done")\n'
    '\tt.Fatal("\\x1b[1mboom\\x1b[0m")\n}\n'
)


def test_junit_from_coloured_output_with_nul_parses_in_junit_consumers(multi: Path, tmp_path: Path) -> None:
    """A real Go test printing ANSI colours, a NUL and a bell: junit.xml is well-formed for two XML readers."""
    (multi / "lib/jobs/colour_test.go").write_text(COLOURFUL_TEST)
    junit = tmp_path / "junit.xml"
    with pytest.raises(StepFailed, match=r"FAIL example.com/multi/lib/jobs TestColours"):
        gotest.test(multi, ["./lib/jobs"], flags=[], timeout="60s", tags=[], cgo=False, junit=junit)
    raw = junit.read_text()
    assert "\x1b" not in raw and "\x00" not in raw and "\x07" not in raw

    # Go >= 1.27's test2json drops ESC itself (older ones pass it on: test_xml_safe_... covers that); NUL and BEL
    # reach the writer from every version.
    failure = ET.parse(junit).getroot().find(".//testcase[@name='TestColours']/failure")
    assert failure is not None and failure.text is not None
    assert "red[0m and a NUL:\\x00: bell\\x07 tab\t <&> done" in failure.text
    assert "boom" in failure.text

    parsed = JUnitXml.fromfile(str(junit))
    cases = {case.name: case for suite in parsed for case in suite}
    assert set(cases) == {"TestNext", "TestColours"}
    assert cases["TestNext"].is_passed
    results = cases["TestColours"].result
    assert [type(r) for r in results] == [Failure]
    assert "and a NUL:\\x00: bell\\x07" in (results[0].text or "")


def test_xml_safe_keeps_what_xml_allows_and_marks_the_rest() -> None:
    text = "\x1b[31mred\x1b[0m\x00\x08\x0b\x1f\ud800\ufffe ok\ttab\nline\rcr é 😀"
    assert gotest.xml_safe(text) == "red\\x00\\x08\\x0b\\x1f\\ud800\\ufffe ok\ttab\nline\rcr é 😀"
    report = gotest.TestReport([gotest.TestCase("p", "TestA", "fail", 0.1, [text])], {}, 0.1)
    element = ET.fromstring(gotest.junit_xml(report).encode())
    failure = element.find(".//failure")
    assert failure is not None  # a parser reads CR as newline (XML end-of-line handling)
    assert failure.text == gotest.xml_safe(text).replace("\r", "\n")
