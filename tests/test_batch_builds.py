"""Binaries of one platform that one run needs are linked by one `go build`, and nothing else changes: the same
bytes as a build of each alone, only the binaries an edit touches, each failure its own, never a stale sibling."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from fixtures_go import run_doit, write_module

from wgobuild import gotool, proc
from wgobuild.config import Platform

pytestmark = pytest.mark.slow

LINUX = Platform("linux", "amd64")
BINARIES = ("api", "worker")


def go_programs(root: Path) -> dict[str, int]:
    """How many programs each compile step of the last run started (a step whose binary a sibling's batch built
    starts none)."""
    run = json.loads((root / "dist/reports/run.json").read_text())
    return {s["step"]: s["programs"] for s in run["steps"] if s["step"].startswith("compile:") and s["status"] == "ran"}


def built_alone(root: Path, name: str, out: Path) -> bytes:
    """The binary as one `go build` of it alone makes it, with the flags wgobuild uses."""
    argv = gotool.build_argv(f"./cmd/{name}", out / name, "1.0.0", ldflags=[], tags=[], trimpath=True)
    subprocess.run(argv, cwd=root, env=gotool.go_env_vars(LINUX), check=True, capture_output=True)
    return (out / name).read_bytes()


def test_binaries_an_edit_touches_are_linked_together_and_match_builds_alone(tmp_path: Path) -> None:
    root = write_module(tmp_path / "multi")
    first = run_doit(root, "image")
    assert first.returncode == 0, first.output
    assert sorted(go_programs(root).values()) == [0, 1], go_programs(root)  # one go build for both binaries
    for name in BINARIES:
        assert (root / f"dist/linux-amd64/{name}").read_bytes() == built_alone(root, name, tmp_path / "alone"), name

    jobs = root / "lib/jobs/jobs.go"  # imported by the worker alone: the api is neither built nor taken along
    jobs.write_text(jobs.read_text().replace("return 1", "return 1 + 0*2"))
    api_before = (root / "dist/linux-amd64/api").stat().st_mtime_ns
    only_worker = run_doit(root, "image")
    assert only_worker.returncode == 0, only_worker.output
    assert go_programs(root) == {"compile:worker-linux-amd64": 1}
    assert (root / "dist/linux-amd64/api").stat().st_mtime_ns == api_before

    gomod = root / "go.mod"  # read by both: both are built again, by one go build
    gomod.write_text(gomod.read_text() + "\n// both binaries read go.mod\n")
    both = run_doit(root, "image")
    assert both.returncode == 0, both.output
    assert sorted(go_programs(root).values()) == [0, 1], both.output


def test_a_compile_error_in_one_binary_is_its_own_and_the_other_is_still_built(tmp_path: Path) -> None:
    root = write_module(tmp_path / "multi")
    assert run_doit(root, "image").returncode == 0
    gomod = root / "go.mod"
    gomod.write_text(gomod.read_text() + "\n// both binaries read go.mod\n")
    worker = root / "cmd/worker/main.go"
    worker.write_text(worker.read_text().replace("jobs.Next())", "jobs.Next(), undefinedName)"))
    broken = run_doit(root, "--continue", "image")
    assert broken.returncode != 0
    assert "cmd/worker/main.go" in broken.output and "undefinedName" in broken.output, broken.output
    assert set(go_programs(root)) == {"compile:api-linux-amd64"}, broken.output  # built alone once the batch failed
    assert not (root / "dist/linux-amd64/worker").exists()
    assert (root / "dist/linux-amd64/api").read_bytes() == built_alone(root, "api", tmp_path / "alone")


def requests(root: Path, out: Path) -> dict[str, gotool.BuildRequest]:
    inputs = {"api": ["cmd/api/main.go", "lib/web/web.go", "lib/web/page.html"],
              "worker": ["cmd/worker/main.go", "lib/jobs/jobs.go"]}
    return {name: gotool.BuildRequest(f"./cmd/{name}", out / name, "1.0.0",
                                      frozenset(str(root / f) for f in ["go.mod", *inputs[name]]))
            for name in BINARIES}


def build(batches: gotool.Batches, root: Path, wanted: dict[str, gotool.BuildRequest], name: str) -> int:
    """One compile step through ``batches`` after an edit of go.mod; how many programs it started."""
    with proc.collecting() as runs:
        batches.build(root, LINUX, wanted[name], [r for n, r in wanted.items() if n != name], [str(root / "go.mod")],
                      ldflags=[], tags=[], cgo=False, trimpath=True, label=f"compile:{name}")
    return len(runs)


@pytest.mark.parametrize("edited", [False, True], ids=["untouched", "edited-after-the-batch"])
def test_a_sibling_edited_after_its_batch_began_is_built_again(tmp_path: Path, edited: bool) -> None:
    root = write_module(tmp_path / "multi")
    wanted = requests(root, tmp_path / "out")
    batches = gotool.Batches()
    assert build(batches, root, wanted, "api") == 1 and (tmp_path / "out/worker").is_file()
    if edited:
        worker = root / "cmd/worker/main.go"
        worker.write_text(worker.read_text().replace("jobs.Next())", 'jobs.Next(), "edited")'))
    assert build(batches, root, wanted, "worker") == (1 if edited else 0)
    said = subprocess.run([tmp_path / "out/worker"], capture_output=True, text=True, check=True).stdout
    assert said == ("1.0.0 1 edited\n" if edited else "1.0.0 1\n")


def test_a_binary_named_unlike_its_package_folder_is_linked_with_its_sibling(tmp_path: Path) -> None:
    """`go build -o DIR/` names files after the package folder (cmd/api -> api); the binary is called server."""
    root = write_module(tmp_path / "multi")
    toml = root / "wgobuild.toml"
    toml.write_text(toml.read_text().replace('name = "api"\npackage = "./cmd/api"',
                                             'name = "server"\npackage = "./cmd/api"'))
    built = run_doit(root, "image")
    assert built.returncode == 0, built.output
    assert sorted(go_programs(root).values()) == [0, 1], built.output
    assert sorted(p.name for p in (root / "dist/linux-amd64").iterdir()) == ["server", "worker"]
    said = subprocess.run([root / "dist/linux-amd64/server"], capture_output=True, text=True, check=True).stdout
    assert said == "1.0.0 10\n"  # the api's output (page length 10), not the worker's
