"""``go test -json``: run the tests, turn the event stream into a one-screen summary and JUnit XML.

Kept apart from :mod:`wgobuild.gotool` because only a run that tests needs it (a no-op run never imports it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from wgobuild import files, proc
from wgobuild.errors import StepFailed
from wgobuild.gotool import GO_SLOTS, find_go, go_env_vars


@dataclass
class TestCase:
    package: str
    name: str
    outcome: str = "run"  # pass | fail | skip
    elapsed: float = 0.0
    output: list[str] = field(default_factory=list)


@dataclass
class TestReport:
    cases: list[TestCase]
    failed_packages: dict[str, list[str]]  # package -> output (build failures, panics outside a test)
    elapsed: float

    def count(self, outcome: str) -> int:
        return sum(1 for c in self.cases if c.outcome == outcome)

    @property
    def ok(self) -> bool:
        return not self.failed_packages and self.count("fail") == 0

    def summary(self, max_lines: int = 15) -> str:
        """A one-screen summary: counts, then each failing test with the tail of its output."""
        lines = [
            f"go test: {self.count('pass')} passed, {self.count('fail')} failed, {self.count('skip')} skipped "
            f"in {len({c.package for c in self.cases} | set(self.failed_packages))} packages ({self.elapsed:.1f}s)"
        ]
        for case in self.cases:
            if case.outcome == "fail":
                lines.append(f"FAIL {case.package} {case.name}")
                lines += ["    " + o.rstrip("\n") for o in case.output[-max_lines:] if o.strip()]
        for package, output in self.failed_packages.items():
            lines.append(f"FAIL {package}")
            lines += ["    " + o.rstrip("\n") for o in output[-max_lines:] if o.strip()]
        return "\n".join(lines)


def parse_test_events(lines: list[str]) -> TestReport:
    """Turn ``go test -json`` events into a :class:`TestReport` (non-JSON lines count as package output)."""
    cases: dict[tuple[str, str], TestCase] = {}
    package_output: dict[str, list[str]] = {}
    failed: dict[str, list[str]] = {}
    build_output: dict[str, list[str]] = {}
    elapsed = 0.0
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            package_output.setdefault("", []).append(line)
            continue
        if not isinstance(event, dict):
            continue
        action, package, test = event.get("Action"), str(event.get("Package", "")), event.get("Test")
        if action == "build-output":
            build_output.setdefault(str(event.get("ImportPath", package)), []).append(event.get("Output", ""))
            continue
        if action == "build-fail":
            path = str(event.get("ImportPath", package))
            failed[path] = build_output.get(path, [])
            continue
        if test:
            case = cases.setdefault((package, test), TestCase(package, test))
            if action == "output":
                case.output.append(event.get("Output", ""))
            elif action in ("pass", "fail", "skip"):
                case.outcome, case.elapsed = action, float(event.get("Elapsed", 0))
        elif action == "output":
            package_output.setdefault(package, []).append(event.get("Output", ""))
        elif action == "fail":
            if not any(c.outcome == "fail" for (p, _), c in cases.items() if p == package):
                failed[package] = package_output.get(package, [])
            elapsed += float(event.get("Elapsed", 0))
        elif action in ("pass", "skip"):
            elapsed += float(event.get("Elapsed", 0))
    if "" in package_output and not cases and not failed:
        failed["(go test)"] = package_output[""]
    top_level = [c for c in cases.values() if "/" not in c.name]
    return TestReport(cases=top_level, failed_packages=failed, elapsed=elapsed)


# ANSI escape sequences (colours, cursor moves) and every character XML 1.0 forbids: C0 controls other than tab,
# newline and CR, lone surrogates, U+FFFE and U+FFFF.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """``text`` without ANSI sequences, other forbidden characters shown as ``\\xNN`` (XML 1.0 cannot hold them)."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}",
                        _ANSI.sub("", text))


def junit_xml(report: TestReport) -> str:
    """JUnit XML (one testsuite per package) for CI systems that show test results.

    go test output may hold colours and raw bytes; they are made XML-safe (:func:`xml_safe`) so the file parses.
    """
    from xml.etree import ElementTree as ET

    root = ET.Element("testsuites", tests=str(len(report.cases)), failures=str(report.count("fail")))
    packages = sorted({c.package for c in report.cases} | set(report.failed_packages))
    for package in packages:
        cases = [c for c in report.cases if c.package == package]
        suite = ET.SubElement(root, "testsuite", name=xml_safe(package), tests=str(len(cases)),
                              failures=str(sum(c.outcome == "fail" for c in cases)),
                              skipped=str(sum(c.outcome == "skip" for c in cases)))
        for case in cases:
            element = ET.SubElement(suite, "testcase", classname=xml_safe(package), name=xml_safe(case.name),
                                    time=f"{case.elapsed:.3f}")
            if case.outcome == "fail":
                ET.SubElement(element, "failure", message="failed").text = xml_safe("".join(case.output))
            elif case.outcome == "skip":
                ET.SubElement(element, "skipped")
        if package in report.failed_packages:
            element = ET.SubElement(suite, "testcase", classname=xml_safe(package), name="(package)")
            ET.SubElement(element, "failure", message="package failed").text = xml_safe(
                "".join(report.failed_packages[package]))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def test(root: Path, packages: list[str], *, flags: list[str], timeout: str, tags: list[str], cgo: bool,
         junit: Path, label: str | None = None) -> TestReport:
    """Run ``go test -json`` for the host platform; write ``junit``; raise StepFailed with the summary on failure."""
    argv = [str(find_go()), "test", "-json", f"-timeout={timeout}", *flags]
    if tags:
        argv.append("-tags=" + ",".join(tags))
    argv += packages
    lines: list[str] = []
    with GO_SLOTS:
        result = proc.run(argv, env=go_env_vars(cgo=cgo), cwd=root, on_line=lines.append, label=label)
    report = parse_test_events(lines)
    report.elapsed = result.wall_s  # the real time of `go test`: event Elapsed sums miss builds and parallel runs
    if not result.ok and report.ok:
        report.failed_packages["(go test)"] = lines[-20:]
    files.write_text(junit, junit_xml(report))
    if not report.ok:
        raise StepFailed(report.summary())
    proc.echo(report.summary(), label)
    return report
