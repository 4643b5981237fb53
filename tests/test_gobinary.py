"""install-service refuses a binary that cannot talk to the service control manager, read from real builds."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_admin_tasks import FLAGS, calls, invoke, project  # noqa: F401 - project is a fixture

from wgobuild import gobinary, gotool
from wgobuild.config import Platform
from wgobuild.errors import StepFailed

HELLO = Path(__file__).resolve().parents[1] / "examples" / "hello"
WINDOWS = Platform("windows", "amd64")


@pytest.fixture(scope="module")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """examples/hello (a real service through x/sys/windows/svc) and a plain program, both built for Windows the
    way wgobuild builds them (stripped: -s -w, so only the pclntab keeps function names)."""
    out = tmp_path_factory.mktemp("bins")
    plain = out / "plain"
    plain.mkdir()
    (plain / "go.mod").write_text("module example.com/plain\n\ngo 1.22\n")
    (plain / "main.go").write_text('package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("svc.Run") }\n')
    built = {"service": out / "hello.exe", "plain": out / "plain.exe"}
    gotool.build(HELLO, ".", WINDOWS, built["service"], "1.0.0")
    gotool.build(plain, ".", WINDOWS, built["plain"], "1.0.0")
    return built


def test_the_marker_is_found_only_in_a_service(binaries: dict[str, Path]) -> None:
    assert gobinary.contains(binaries["service"], gobinary.SCM_MARKER)
    assert not gobinary.contains(binaries["plain"], gobinary.SCM_MARKER)
    assert gobinary.require_service_binary([binaries["plain"].with_name("nope.exe"), binaries["service"]]) == \
        binaries["service"]


def test_marker_split_across_chunks_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "blob"
    data.write_bytes(b"x" * 10 + gobinary.SCM_MARKER + b"y" * 10)
    for chunk in (7, 16, 33, 1 << 20):  # the marker straddles a chunk boundary for the small sizes
        monkeypatch.setattr(gobinary, "_CHUNK", chunk)
        assert gobinary.contains(data, gobinary.SCM_MARKER), chunk
    data.write_bytes(b"x" * 10 + gobinary.SCM_MARKER[:-1] + b"y" * 10)
    assert not gobinary.contains(data, gobinary.SCM_MARKER)


def test_refusal_names_the_binary_and_the_fix(binaries: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(StepFailed, match=r"plain\.exe does not talk to the Windows service control manager.*"
                                         r"error 1053.*golang\.org/x/sys/windows/svc.*Nothing was changed"):
        gobinary.require_service_binary([binaries["plain"]])
    with pytest.raises(StepFailed, match=r"no built Windows binary at .*missing\.exe: build it with `doit image`"):
        gobinary.require_service_binary([tmp_path / "missing.exe"])


def test_install_service_checks_before_running_any_script(project: Path,  # noqa: F811 - the imported fixture
                                                          binaries: dict[str, Path]) -> None:
    exe = project / "dist" / "windows-amd64" / "hello.exe"
    missing = invoke(project, "install-service", "--dry-run")
    assert missing.returncode == 1 and "no built Windows binary" in missing.output and calls(project) == []
    exe.parent.mkdir(parents=True)
    shutil.copy(binaries["plain"], exe)
    refused = invoke(project, "install-service")
    assert refused.returncode == 1, refused.output
    assert "does not talk to the Windows service control manager" in refused.output and calls(project) == []
    shutil.copy(binaries["service"], exe)
    assert invoke(project, "install-service", "--dry-run").ok
    script = project / "dist" / "powershell" / "service.ps1"
    assert calls(project) == [[*FLAGS, str(script), "-Action", "install", "-WhatIf"]]
