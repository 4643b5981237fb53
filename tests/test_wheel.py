"""Installed as users install it: the wheel from ``python -m build``, in a fresh venv, runs the whole first tour.

The wheel is built from a copy of this checkout (so the build leaves no ``build/`` or ``*.egg-info`` behind here),
installed with its dependencies from the package index into a venv that sees nothing of this environment, and its
own executables (``wgobuild``, ``doit``, ``invoke``) run ``init`` → ``doit image`` → ``invoke scripts`` on a
generated module, with ``PYTHONPATH`` unset so nothing can import this checkout instead.
"""

from __future__ import annotations

import os
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
from test_init import write_shop

from wgobuild import gotool, proc

REPO = Path(__file__).resolve().parents[1]
IGNORED = shutil.ignore_patterns(".git", ".venv", "dist", "build", "*.egg-info", ".wgobuild", "__pycache__",
                                 ".pytest_cache", ".ruff_cache", ".mypy_cache")


def run(argv: list[str | Path], cwd: Path, env: dict[str, str], step: str, timeout: float = 900) -> str:
    result = proc.run([str(a) for a in argv], cwd=cwd, env=env, quiet=True, timeout=timeout)
    assert result.returncode == 0, f"{step} failed ({result.returncode}):\n{result.output}"
    return result.output


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source") / "wgobuild"
    shutil.copytree(REPO, source, ignore=IGNORED)
    out = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "build", "--wheel", "--outdir", out], source, dict(os.environ), "python -m build")
    (found,) = out.glob("wgobuild-*-py3-none-any.whl")
    return found


def test_wheel_holds_every_module_template_and_script(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {p.relative_to(REPO).as_posix() for p in (REPO / "wgobuild").rglob("*")
              if p.is_file() and "__pycache__" not in p.parts}
    wanted |= {f"wgobuild/powershell_templates/{p.name}" for p in (REPO / "powershell").iterdir()
               if p.suffix in (".ps1", ".py")}
    assert wanted - names == set()
    assert any(n.startswith("wgobuild/templates/Dockerfile.") for n in names)
    assert "wgobuild/powershell_templates/harden.ps1" in names
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    import wgobuild

    assert f"Version: {wgobuild.__version__}\n" in zipfile.ZipFile(wheel).read(metadata).decode()


@pytest.mark.slow
def test_fresh_venv_from_the_wheel_runs_init_image_and_scripts(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")

    def exe(name: str) -> Path:
        return bin_dir / f"{name}.exe" if os.name == "nt" else bin_dir / name

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    # The venv's executables first; the Go toolchain this machine has (the module needs one, not wgobuild's wheel).
    env["PATH"] = os.pathsep.join([str(bin_dir), str(gotool.find_go().parent), env.get("PATH", "")])
    env["DOCKER_HOST"] = f"unix://{tmp_path}/no-engine.sock"  # daemonless, the same on every machine
    run([sys.executable, "-m", "venv", venv], tmp_path, env, "python -m venv")
    run([exe("python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel], tmp_path, env,
        "pip install the wheel")

    version = run([exe("wgobuild"), "--version"], tmp_path, env, "wgobuild --version")
    assert f"from {venv}" in version and str(REPO) not in version, version
    module = write_shop(tmp_path / "shop")
    imported = run([exe("python"), "-c", "import wgobuild; print(wgobuild.__file__)"], module, env, "import")
    assert Path(imported.strip()).is_relative_to(venv), imported

    init = run([exe("wgobuild"), "init"], module, env, "wgobuild init")
    assert "entrypoint  shopd" in init
    image = run([exe("doit"), "image"], module, env, "doit image")
    assert "linux/amd64  oci" in image, image
    assert (module / "dist/images/linux-amd64.docker.tar").is_file()  # the linux image, daemonless
    assert (module / "dist/windows-amd64/shopd.exe").is_file() and (module / "dist/linux-amd64/shopctl").is_file()
    scripts = run([exe("invoke"), "scripts"], module, env, "invoke scripts")
    for name in ("harden", "audit", "rotate-logs", "cleanup", "service"):
        assert str(module / "dist/powershell" / f"{name}.ps1") in scripts.splitlines(), scripts
    assert "C:\\app\\shopd.exe" in (module / "dist/powershell/service.ps1").read_text(encoding="utf-8-sig")
