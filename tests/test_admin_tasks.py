"""End to end: the real ``invoke`` command line against a temporary Go module, with a stand-in PowerShell on PATH.

The stand-in records its arguments and exits with the code it is told to; the rendered scripts are not executed.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
from test_powershell import make_stand_in, recorded

from wgobuild import proc

REPO = Path(__file__).resolve().parents[1]
TASKS = ["harden", "audit", "rotate-logs", "install-service", "uninstall-service", "scripts"]
FLAGS = ["-NoLogo", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-File"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "hello"
    root.mkdir()
    (root / "main.go").write_text("package main\n\nfunc main() {}\n")
    (root / "wgobuild.toml").write_text(
        '[project]\nname = "hello"\n\n[[binaries]]\nname = "hello"\npackage = "."\n\n'
        '[harden]\nservices = ["Spooler"]\n\n[logs]\ndir = "C:\\\\logs\\\\hello"\n'
    )
    return root


def invoke(project: Path, *args: str, path: str | None = None, cwd: Path | None = None, **env: str) -> proc.ProcResult:
    """Run ``python -m invoke`` in ``project`` with the repository's tasks.py and a stand-in PowerShell."""
    bin_dir = project.parent / "bin"
    if not (bin_dir / "pwsh").exists():
        make_stand_in(bin_dir)
    search = ["--search-root", str(REPO)]  # the repository's own tasks.py, run from the project folder
    full_env = {k: v for k, v in os.environ.items() if k != "WGOBUILD_POWERSHELL"}
    full_env.update(PATH=path if path is not None else str(bin_dir), PYTHONPATH=str(REPO),
                    STAND_IN_LOG=str(project.parent / "argv.jsonl"), **env)
    return proc.run([sys.executable, "-m", "invoke", *search, *args], env=full_env, cwd=cwd or project, quiet=True,
                    timeout=120)


def calls(project: Path) -> list[list[str]]:
    log = project.parent / "argv.jsonl"
    return recorded(log) if log.exists() else []


def test_list_and_help_explain_every_task_and_option(project: Path) -> None:
    listed = invoke(project, "--list")
    assert listed.ok, listed.output
    for name in TASKS:
        assert f"  {name} " in listed.output
    helped = invoke(project, "--help", "harden")
    assert helped.ok, helped.output
    for option in ("--dry-run", "--services", "--features", "--identity", "--account", "--install-dir",
                   "--log-dir", "--service-name", "--root", "--config", "--shell", "-WhatIf"):
        assert option in helped.output, option
    rotate = invoke(project, "--help", "rotate-logs")
    assert "--register" in rotate.output and "scheduled task" in rotate.output


def test_harden_dry_run_renders_and_passes_whatif(project: Path) -> None:
    result = invoke(project, "harden", "--dry-run", "--services", "Spooler,Fax", STAND_IN_OUTPUT="What if: x")
    assert result.ok, result.output
    script = project / "dist/powershell/harden.ps1"
    assert calls(project) == [[*FLAGS, str(script), "-WhatIf"]]
    assert "[harden] What if: x" in result.output
    assert sorted(p.name for p in script.parent.iterdir()) == sorted(
        ["harden.ps1", "audit.ps1", "rotate-logs.ps1", "cleanup.ps1", "service.ps1"])
    assert "$Services = @('Spooler', 'Fax')," in script.read_text(encoding="utf-8-sig")


AUDIT_SOURCE = (REPO / "powershell/audit.ps1").read_text(encoding="utf-8-sig")


def audit_line(control: str, expected: object, actual: object, ok: bool) -> str:
    """One line as audit.ps1 prints it: its Write-Control record (keys read from the script) through
    ``ConvertTo-Json -Compress``; ``control`` must be an id the script reports."""
    record = re.search(r"\$record = \[ordered\]@\{ ([^}]*) \}\n"
                       r"\s*Write-Output \(\$record \| ConvertTo-Json -Compress\)", AUDIT_SOURCE)
    assert record is not None, "audit.ps1 no longer prints one compressed JSON record per control"
    keys = [pair.split("=")[0].strip() for pair in record[1].split(";")]
    ids = {m[0] or m[1] for m in re.findall(r"Write-Control (?:'([^']+)'|\"([^\"$]+)\$\w+\")", AUDIT_SOURCE)}
    assert control in ids or control.split(":")[0] + ":" in ids, f"audit.ps1 reports no control {control!r}"
    return json.dumps(dict(zip(keys, [control, expected, actual, ok], strict=True)), separators=(",", ":"))


def test_audit_writes_json_and_exits_3_on_drift(project: Path) -> None:
    lines = [audit_line("service:Spooler", "Stopped, Disabled", "Running, Automatic", False),
             audit_line("smb1-server", False, False, True)]
    assert lines[0] == ('{"id":"service:Spooler","expected":"Stopped, Disabled","actual":"Running, Automatic",'
                        '"ok":false}')
    result = invoke(project, "audit", STAND_IN_OUTPUT="|".join(lines), STAND_IN_EXIT="3")
    assert result.returncode == 3, result.output
    assert "1 control(s) drifted: service:Spooler" in result.output and "Traceback" not in result.output
    report = json.loads((project / "dist/reports/audit.json").read_text())
    assert [item["ok"] for item in report] == [False, True]
    assert calls(project) == [[*FLAGS, str(project / "dist/powershell/audit.ps1")]]
    clean = invoke(project, "audit", STAND_IN_OUTPUT=lines[1], STAND_IN_EXIT="0")
    assert clean.ok and "all 1 controls ok" in clean.output


def test_a_failing_script_fails_the_task_and_shows_its_error(project: Path) -> None:
    result = invoke(project, "harden", STAND_IN_OUTPUT="Stop-Service : Access is denied", STAND_IN_EXIT="1")
    assert result.returncode == 1
    assert "harden.ps1 failed: exit code 1 (failed)" in result.output and "Access is denied" in result.output
    assert "Traceback" not in result.output


def test_no_powershell_still_renders_and_says_what_is_missing(project: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke(project, "harden", path=str(empty))
    assert result.returncode == 1
    assert "PowerShell not found" in result.output and "Traceback" not in result.output
    assert (project / "dist/powershell/harden.ps1").read_bytes().startswith(b"\xef\xbb\xbf")


@pytest.mark.parametrize(("args", "words"), [
    (["harden", "--features", "SMB1Protocol,x;Remove-Item"], "command line: --features[1]: 'x;Remove-Item'"),
    (["audit", "--services", "Spooler,$(Stop-Computer)"], "command line: --services[1]"),
    (["harden", "--install-dir", "C:\\a\\..\\Windows"], "command line: --install-dir"),
    (["install-service", "--identity", "root"], "command line: --identity"),
    (["rotate-logs", "--keep", "ten"], "command line: --keep: 'ten' is not a whole number"),
])
def test_bad_overrides_are_refused_before_anything_runs(project: Path, args: list[str], words: str) -> None:
    result = invoke(project, *args)
    assert result.returncode == 2, result.output
    assert words in result.output and "Traceback" not in result.output
    assert calls(project) == []
    assert not (project / "dist/powershell").exists()


def test_bad_config_names_the_file_and_key(project: Path) -> None:
    toml = project / "wgobuild.toml"
    toml.write_text(toml.read_text().replace('services = ["Spooler"]', 'features = ["SMB1’; rm"]'))
    result = invoke(project, "harden")
    assert result.returncode == 2
    assert f"{toml}: [harden].features[0]" in result.output and calls(project) == []


def test_other_tasks_pass_their_arguments(project: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    folder = project / "dist/powershell"
    # install-service first checks that the binary talks to the service control manager: examples/hello does
    from wgobuild import gotool
    from wgobuild.config import Platform

    gotool.build(REPO / "examples" / "hello", ".", Platform("windows", "amd64"),
                 project / "dist" / "windows-amd64" / "hello.exe", "1.0.0")
    assert invoke(project, "rotate-logs", "--register").ok
    assert invoke(project, "install-service", "--dry-run", "--start", "demand").ok
    assert "[string] $Start = 'demand'," in (folder / "service.ps1").read_text(encoding="utf-8-sig")
    assert invoke(project, "uninstall-service", "--root", str(project), cwd=elsewhere).ok
    assert "[string] $Start = 'auto'," in (folder / "service.ps1").read_text(encoding="utf-8-sig")
    assert calls(project) == [
        [*FLAGS, str(folder / "rotate-logs.ps1"), "-Register"],
        [*FLAGS, str(folder / "service.ps1"), "-Action", "install", "-WhatIf"],
        [*FLAGS, str(folder / "service.ps1"), "-Action", "uninstall"],
    ]


def test_scripts_renders_for_review_and_runs_nothing(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "review"
    result = invoke(project, "scripts", "--out", str(out), "--config", str(project / "wgobuild.toml"))
    assert result.ok, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["harden.ps1", "audit.ps1", "rotate-logs.ps1", "cleanup.ps1", "service.ps1"])
    assert "C:\\logs\\hello" in (out / "rotate-logs.ps1").read_text(encoding="utf-8-sig")
    assert calls(project) == []
