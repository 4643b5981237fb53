"""The `wgobuild` command: init, doctor, and doit's commands without a dodo.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fixtures_go import write_module


def wgobuild(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wgobuild.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={**os.environ})


@pytest.mark.slow
def test_init_then_build_works_right_away(tmp_path: Path) -> None:
    root = write_module(tmp_path / "svc")
    (root / "wgobuild.toml").unlink()
    (root / "dodo.py").unlink()
    result = wgobuild(root, "init")
    assert result.returncode == 0, result.stderr
    text = (root / "wgobuild.toml").read_text()
    assert 'package = "./cmd/api"' in text and 'package = "./cmd/worker"' in text
    assert '"windows/amd64", "linux/amd64"' in text
    assert (root / "dodo.py").read_text().count("\n") == 2
    refused = wgobuild(root, "init")
    assert refused.returncode != 0 and "--force" in refused.stderr
    assert wgobuild(root, "init", "--force").returncode == 0
    built = subprocess.run([sys.executable, "-m", "doit", "compile"], cwd=root, capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    assert (root / "dist/windows-amd64/api.exe").exists() and (root / "dist/linux-amd64/worker").exists()


def test_init_outside_a_module_is_refused(tmp_path: Path) -> None:
    result = wgobuild(tmp_path, "init")
    assert result.returncode == 1 and "no go.mod" in result.stderr
    assert not (tmp_path / "wgobuild.toml").exists()


@pytest.mark.slow
def test_wgobuild_runs_doit_tasks_without_a_dodo(tmp_path: Path) -> None:
    root = write_module(tmp_path / "svc")
    (root / "dodo.py").unlink()
    result = wgobuild(root, "compile")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (root / "dist/linux-amd64/api").exists()
    listed = wgobuild(root, "list")
    assert "image-platform" in listed.stdout and "compile" in listed.stdout


def test_bad_config_through_wgobuild_exits_2(tmp_path: Path) -> None:
    root = write_module(tmp_path / "svc")
    (root / "wgobuild.toml").write_text((root / "wgobuild.toml").read_text() + "\n[bogus]\n")
    result = wgobuild(root, "image")
    assert result.returncode == 2
    assert "wgobuild.toml: bogus: unknown section" in result.stderr


def test_doctor_reports_each_part(tmp_path: Path, docker_host: str) -> None:
    from wgobuild import engine as engine_mod

    client = engine_mod.connect()
    info = client.info()
    client.close()
    result = wgobuild(Path(__file__).parents[1] / "examples/hello", "doctor")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ok") and "Go toolchain" in lines[0] and "go1." in lines[0]
    engine = next(line for line in lines if "Docker engine" in line)
    assert engine == (f"ok       Docker engine        {info['ServerVersion']} ({info['OSType']}/{info['Architecture']})"
                      "; Windows images are assembled daemonless (OCI backend)"), lines
    powershell = next(line for line in lines if "PowerShell" in line)
    assert powershell.startswith("missing") and "dist/powershell" in powershell
    windows = next(line for line in lines if "Base windows/amd64" in line)
    assert windows.startswith("missing") and "mcr.microsoft.com" in windows and "windows_base" in windows
    assert next(line for line in lines if "Base linux/amd64" in line).startswith("ok")


def test_doctor_finds_a_reachable_base(tmp_path: Path, seeded_bases: Any) -> None:
    from fixtures_go import copy_hello

    root = copy_hello(tmp_path / "hello", windows_base=f'"{seeded_bases.windows}"')
    result = wgobuild(root, "doctor")
    line = next(x for x in result.stdout.splitlines() if "Base windows/amd64" in x)
    assert line.startswith("ok") and seeded_bases.windows in line, result.stdout


def test_doctor_reports_a_malformed_base_and_goes_on(tmp_path: Path) -> None:
    from fixtures_go import copy_hello

    root = copy_hello(tmp_path / "hello", windows_base='"evil@host/x"')
    result = wgobuild(root, "doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(x for x in result.stdout.splitlines() if "Base windows/amd64" in x)
    assert line.startswith("missing") and "evil@host/x" in line, result.stdout
    assert any("Base linux/amd64" in x for x in result.stdout.splitlines())  # the next platform is still checked
    assert result.stdout.rstrip().splitlines()[-1].endswith("builds go on with what is here (see above)")


def _message_literals(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string literal in a module except docstrings."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_messages_do_not_send_pip_users_to_files_they_lack() -> None:
    """A pip-installed wgobuild has no docs/ folder: a message may name a docs page only as part of its source."""
    package = Path(__file__).resolve().parents[1] / "wgobuild"
    found = [f"{path.relative_to(package.parent)}:{line}: {text!r}" for path in sorted(package.rglob("*.py"))
             for line, text in _message_literals(path) if "docs/" in text and "wgobuild's source" not in text]
    assert found == []
    literals = [text for _, text in _message_literals(package / "commands" / "init.py")]
    assert any("docs/config.md" in text for text in literals)  # the scan sees message text (negative control)
