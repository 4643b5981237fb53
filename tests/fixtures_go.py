"""Go-side fixtures: copies of examples/hello, generated multi-package modules, and running doit as a user does."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
HELLO = REPO / "examples" / "hello"
DODO = 'from wgobuild.doit_tasks import load_tasks\nglobals().update(load_tasks("."))\n'


@dataclass
class DoitRun:
    returncode: int
    output: str

    @property
    def ran(self) -> set[str]:
        """Tasks doit executed (lines ``.  name (why)``)."""
        return set(self.reasons)

    @property
    def reasons(self) -> dict[str, str]:
        """Why each executed task ran, as its line said."""
        return dict(re.findall(r"^\.  (\S+) \((.*)\)$", self.output, re.MULTILINE))

    @property
    def skipped(self) -> set[str]:
        return set(re.findall(r"^-- (\S+)$", self.output, re.MULTILINE))


def run_doit(root: Path, *args: str, timeout: float = 600, env: dict[str, str] | None = None) -> DoitRun:
    """``doit <args>`` in ``root`` through the real doit command line, output captured."""
    result = subprocess.run(
        [sys.executable, "-m", "doit", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    return DoitRun(result.returncode, result.stdout + result.stderr)


def copy_hello(dest: Path, **image: str) -> Path:
    """A copy of examples/hello (without build outputs) with a dodo.py; ``image`` keys extend ``[image]``."""
    shutil.copytree(HELLO, dest, ignore=shutil.ignore_patterns("dist", ".wgobuild", "dodo.py"))
    (dest / "dodo.py").write_text(DODO)
    if image:
        text = (dest / "wgobuild.toml").read_text()
        extra = "".join(f"{key} = {value}\n" for key, value in image.items())
        (dest / "wgobuild.toml").write_text(text.replace("[image]\n", "[image]\n" + extra))
    return dest


@pytest.fixture
def hello(tmp_path: Path, seeded_bases: Any) -> Path:
    """examples/hello in a temporary folder, building both images daemonless on the test registry's bases."""
    return copy_hello(tmp_path / "hello", backend='"oci"', windows_base=f'"{seeded_bases.windows}"')


def write_module(root: Path, platforms: str = '["linux/amd64"]') -> Path:
    """A Go module with two commands and three library packages.

    ``cmd/api`` imports ``lib/web`` (which embeds ``lib/web/page.html``); ``cmd/worker`` imports ``lib/jobs``;
    ``lib/unused`` is imported by no binary.
    """
    sources = {
        "go.mod": "module example.com/multi\n\ngo 1.22\n",
        "cmd/api/main.go": 'package main\n\nimport (\n\t"fmt"\n\n\t"example.com/multi/lib/web"\n)\n\n'
        'var version = "dev"\n\nfunc main() { fmt.Println(version, len(web.Page)) }\n',
        "cmd/worker/main.go": 'package main\n\nimport (\n\t"fmt"\n\n\t"example.com/multi/lib/jobs"\n)\n\n'
        'var version = "dev"\n\nfunc main() { fmt.Println(version, jobs.Next()) }\n',
        "lib/web/web.go": 'package web\n\nimport _ "embed"\n\n// Page is served at /.\n//\n//go:embed page.html\n'
        "var Page string\n",
        "lib/web/page.html": "<p>hi</p>\n",
        "lib/jobs/jobs.go": "package jobs\n\n// Next returns the next job number.\nfunc Next() int { return 1 }\n",
        "lib/jobs/jobs_test.go": 'package jobs\n\nimport "testing"\n\nfunc TestNext(t *testing.T) {\n'
        "\tif Next() != 1 {\n\t\tt.Fatal(\"want 1\")\n\t}\n}\n",
        "lib/unused/unused.go": "package unused\n\n// Answer is imported by no binary.\nconst Answer = 42\n",
        "wgobuild.toml": f'[project]\nname = "multi"\nversion = "1.0.0"\n\n[build]\nplatforms = {platforms}\n\n'
        '[[binaries]]\nname = "api"\npackage = "./cmd/api"\n\n[[binaries]]\nname = "worker"\n'
        'package = "./cmd/worker"\n\n[image]\nbackend = "oci"\n',
        "dodo.py": DODO,
    }
    for name, text in sources.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def multi(tmp_path: Path) -> Path:
    return write_module(tmp_path / "multi")


LIB_GO = 'package lib\n\n// Greeting is what the worker prints.\nfunc Greeting() string { return "hello" }\n'
WORKER_WITH_LIB = ('package main\n\nimport (\n\t"fmt"\n\n\t"example.com/lib"\n\t"example.com/multi/lib/jobs"\n)\n\n'
                   'var version = "dev"\n\nfunc main() { fmt.Println(version, jobs.Next(), lib.Greeting()) }\n')


def write_lib(root: Path, greeting: str = "hello") -> Path:
    """A separate module ``example.com/lib`` (one package, ``lib.Greeting()``) with its own go.mod."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "go.mod").write_text("module example.com/lib\n\ngo 1.22\n")
    (root / "lib.go").write_text(LIB_GO.replace('"hello"', f'"{greeting}"'))
    return root


def use_lib(module: Path, lib: Path, mode: str) -> None:
    """Make ``cmd/worker`` of :func:`write_module`'s module import ``example.com/lib`` from the folder ``lib``.

    ``mode``: ``replace`` (a ``replace => ../lib`` in go.mod), ``vendor`` (the same, then ``go mod vendor``: the
    build reads vendor/ only) or ``work`` (a go.work in the common parent folder using both modules).
    """
    (module / "cmd/worker/main.go").write_text(WORKER_WITH_LIB)
    relative = os.path.relpath(lib, module).replace(os.sep, "/")
    if mode in ("replace", "vendor"):
        with (module / "go.mod").open("a") as handle:
            handle.write(f"\nrequire example.com/lib v0.0.0\n\nreplace example.com/lib => {relative}\n")
    elif mode == "work":
        parent = Path(os.path.commonpath([module, lib]))
        uses = "".join(f"\t./{os.path.relpath(p, parent).replace(os.sep, '/')}\n" for p in (module, lib))
        (parent / "go.work").write_text(f"go 1.22\n\nuse (\n{uses})\n")
    else:
        raise ValueError(mode)
    if mode == "vendor":
        from wgobuild import gotool

        subprocess.run([str(gotool.find_go()), "mod", "vendor"], cwd=module, check=True,
                       env=gotool.go_env_vars(), capture_output=True)
