"""The Windows CI the project ships for users with Windows runners cannot run here: its files are checked instead.

The workflow must be a valid GitHub Actions document with the keys GitHub requires, every PowerShell step must
parse, and every Pester file must parse with tree-sitter-powershell (the same grammar the script checks use).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_powershell import errors

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "windows.yml"
PESTER = sorted((REPO / "tests" / "windows").glob("*.Tests.ps1"))


def workflow() -> dict[Any, Any]:
    doc = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def test_workflow_has_the_keys_github_requires() -> None:
    doc = workflow()
    triggers = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` as true; GitHub reads it as the key
    assert isinstance(triggers, dict) and {"push", "pull_request"} <= set(triggers)
    jobs = doc["jobs"]
    assert isinstance(jobs, dict) and jobs
    for name, job in jobs.items():
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", name)
        assert job["runs-on"] and isinstance(job["steps"], list) and job["steps"]
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), step
    runners = {entry["runner"] for entry in jobs["windows"]["strategy"]["matrix"]["include"]}
    assert runners == {"windows-2022", "windows-2025"}


def _powershell_steps() -> list[tuple[str, str]]:
    steps = workflow()["jobs"]["windows"]["steps"]
    # ${{ expr }} is substituted by GitHub before PowerShell sees the text: a plain word stands in for it here.
    return [(s.get("name", "?"), re.sub(r"\$\{\{[^}]*\}\}", "X", s["run"])) for s in steps if "run" in s]


@pytest.mark.parametrize(("name", "script"), _powershell_steps())
def test_every_workflow_step_parses(name: str, script: str) -> None:
    assert errors(script) == [], name


def test_the_windows_ci_does_what_the_docs_promise() -> None:
    text = "\n".join(script for _, script in _powershell_steps())
    for needed in ("python -m build", "wgobuild image", "docker load", "docker run", "-WhatIf", "audit.ps1",
                   "Invoke-ScriptAnalyzer", "Invoke-Pester"):
        assert needed in text, needed
    assert 'backend = `"$backend`"' in text  # engine and daemonless builds both run


@pytest.mark.parametrize("path", PESTER, ids=[p.name for p in PESTER])
def test_pester_files_parse(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert errors(text) == []
    assert re.search(r"^Describe '", text, re.MULTILINE) and re.search(r"^\s+It '", text, re.MULTILINE)


def test_parse_check_reports_a_broken_step() -> None:
    """Negative control: the check used above does see a syntax error."""
    assert errors("foreach ($x in 1, 2) { Write-Output $x") != []
    assert PESTER, "no Pester files found: the parse test would pass on nothing"
