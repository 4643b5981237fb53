"""Exact build inputs, end to end through the real doit CLI on generated Go modules.

A step runs again exactly when something ``go build``/``go test`` reads for it changed, and what an incremental
run leaves behind equals a from-scratch build of a copy of the same tree in a fresh folder with empty state.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_go import LIB_GO, DoitRun, run_doit, use_lib, write_lib, write_module

COMPILES = {"compile:api-linux-amd64", "compile:worker-linux-amd64"}
IMAGE_STEPS = {"image-platform:linux-amd64", "image"}


def binaries(module: Path) -> dict[str, bytes]:
    """Every binary under dist/<os>-<arch>/, by relative path."""
    dist = module / "dist"
    return {p.relative_to(dist).as_posix(): p.read_bytes()
            for p in sorted(dist.glob("*-*/*")) if p.is_file() and p.parent.name.startswith(("linux-", "windows-"))}


class Tree:
    """A folder holding a generated module (and maybe the modules it uses) that tests edit and rebuild."""

    def __init__(self, top: Path, module: Path, scratch: Path) -> None:
        self.top, self.module, self.scratch, self.fresh_builds = top, module, scratch, 0

    def doit(self, env: dict[str, str] | None = None) -> DoitRun:
        return run_doit(self.module, "image", env=env)

    def edit(self, relative: str, old: str, new: str) -> None:
        path = self.top / relative
        text = path.read_text()
        assert old in text, f"{old!r} not in {relative}"
        path.write_text(text.replace(old, new, 1))

    def write(self, relative: str, text: str) -> None:
        path = self.top / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def run_binary(self, name: str) -> str:
        exe = self.module / "dist" / "linux-amd64" / name
        return subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.strip()

    def assert_same_as_fresh(self, run: DoitRun, env: dict[str, str] | None = None) -> None:
        """A copy of the tree (sources only) built from scratch gives the same verdict and the same binaries."""
        self.fresh_builds += 1
        copy = self.scratch / f"fresh{self.fresh_builds}"
        shutil.copytree(self.top, copy, symlinks=True, ignore=shutil.ignore_patterns("dist", ".wgobuild"))
        module = copy / self.module.relative_to(self.top)
        fresh = run_doit(module, "image", env=env)
        assert (run.returncode == 0) == (fresh.returncode == 0), f"incremental:\n{run.output}\nfresh:\n{fresh.output}"
        mine, theirs = binaries(self.module), binaries(module)
        assert mine.keys() == theirs.keys() and mine, (mine.keys(), theirs.keys())
        different = [name for name in mine if mine[name] != theirs[name]]
        assert not different, f"stale binaries after an incremental run: {different}"


def tree_with_lib(tmp_path: Path, mode: str) -> Tree:
    top = tmp_path / "tree"
    module, lib = write_module(top / "multi"), write_lib(top / "lib")
    use_lib(module, lib, mode)
    return Tree(top, module, tmp_path)


def assert_first_build(tree: Tree) -> DoitRun:
    run = tree.doit()
    assert run.returncode == 0, run.output
    assert run.ran >= COMPILES
    return run


def test_replaced_module_edits_rebuild_and_a_parent_go_work_is_noticed(tmp_path: Path) -> None:
    tree = tree_with_lib(tmp_path, "replace")
    assert_first_build(tree)
    assert tree.run_binary("worker") == "1.0.0 1 hello"

    tree.edit("lib/lib.go", '"hello"', '"bonjour"')
    run = tree.doit()
    assert "compile:worker-linux-amd64" in run.ran and "compile:api-linux-amd64" in run.skipped, run.output
    assert tree.run_binary("worker") == "1.0.0 1 bonjour"
    tree.assert_same_as_fresh(run)

    tree.write("lib/extra.go", 'package lib\n\nfunc init() { println("extra") }\n')
    tree.edit("lib/go.mod", "go 1.22", "// The library.\ngo 1.22")
    run = tree.doit()
    assert "compile:worker-linux-amd64" in run.ran, run.output
    tree.assert_same_as_fresh(run)

    # A go.work appearing in a parent folder switches to workspace mode: its replace wins over go.mod's.
    tree.write("go.work", "go 1.22\n\nuse ./multi\n\nreplace example.com/lib => ./lib2\n")
    write_lib(tree.top / "lib2", "hallo")
    run = tree.doit()
    assert "compile:worker-linux-amd64" in run.ran, run.output
    assert tree.run_binary("worker") == "1.0.0 1 hallo"
    tree.assert_same_as_fresh(run)

    (tree.top / "go.work").unlink()
    run = tree.doit()
    assert "compile:worker-linux-amd64" in run.ran, run.output
    assert tree.run_binary("worker") == "1.0.0 1 bonjour"
    assert not tree.doit().ran, "and then nothing is left to do"


def test_workspace_module_edit_rebuilds(tmp_path: Path) -> None:
    tree = tree_with_lib(tmp_path, "work")
    assert_first_build(tree)
    tree.edit("lib/lib.go", '"hello"', '"salut"')
    run = tree.doit()
    assert "compile:worker-linux-amd64" in run.ran and "compile:api-linux-amd64" in run.skipped, run.output
    assert tree.run_binary("worker") == "1.0.0 1 salut"
    tree.assert_same_as_fresh(run)

    tree.write("lib3/go.mod", "module example.com/lib\n\ngo 1.22\n")
    tree.write("lib3/lib.go", LIB_GO.replace('"hello"', '"ciao"'))
    tree.edit("go.work", "./lib\n", "./lib3\n")
    run = tree.doit()
    assert "compile:worker-linux-amd64" in run.ran, run.output
    assert tree.run_binary("worker") == "1.0.0 1 ciao"
    tree.assert_same_as_fresh(run)


def test_vendored_files_are_the_inputs_in_vendor_mode(tmp_path: Path) -> None:
    tree = tree_with_lib(tmp_path, "vendor")
    assert_first_build(tree)
    tree.edit("lib/lib.go", '"hello"', '"not vendored"')
    assert not tree.doit().ran & COMPILES, "in vendor mode go build never reads ../lib"

    tree.edit("multi/vendor/example.com/lib/lib.go", '"hello"', '"vendored"')
    run = tree.doit()
    assert "compile:worker-linux-amd64" in run.ran and "compile:api-linux-amd64" in run.skipped, run.output
    assert tree.run_binary("worker") == "1.0.0 1 vendored"
    tree.assert_same_as_fresh(run)

    # go.mod and vendor/modules.txt disagree: go list fails before any step, and the binaries built from the
    # previous sources must not stay looking current.
    modules = tree.top / "multi/vendor/modules.txt"
    listed = modules.read_text()
    modules.write_text("")
    run = tree.doit()
    assert run.returncode != 0 and "inconsistent vendoring" in run.output, run.output
    assert "the binaries built from the previous sources were removed" in run.output
    assert not list((tree.module / "dist/linux-amd64").iterdir())
    assert not list((tree.module / "dist/images").glob("*.json"))
    modules.write_text(listed)
    run = tree.doit()
    assert run.returncode == 0 and run.ran >= COMPILES, run.output
    tree.assert_same_as_fresh(run)


def test_embed_or_testdata_edit_that_fails_a_go_test_fails_the_run(tmp_path: Path) -> None:
    tree = Tree(tmp_path / "multi", write_module(tmp_path / "multi"), tmp_path)
    tree.write("lib/web/web_test.go", 'package web\n\nimport (\n\t"strings"\n\t"testing"\n)\n\n'
               'func TestPage(t *testing.T) {\n\tif !strings.Contains(Page, "hi") {\n\t\tt.Fatal("no greeting")\n'
               "\t}\n}\n")
    tree.write("lib/jobs/testdata/want.txt", "1\n")
    tree.write("lib/jobs/data_test.go", 'package jobs\n\nimport (\n\t"os"\n\t"strconv"\n\t"strings"\n\t"testing"\n)\n\n'
               'func TestWant(t *testing.T) {\n\tdata, _ := os.ReadFile("testdata/want.txt")\n'
               "\tif strings.TrimSpace(string(data)) != strconv.Itoa(Next()) {\n\t\tt.Fatal(\"want\")\n\t}\n}\n")
    assert_first_build(tree)

    tree.edit("lib/web/page.html", "hi", "bye")
    run = tree.doit()
    assert run.returncode != 0 and "no greeting" in run.output, run.output
    assert "test" in run.ran and "image" not in run.ran, "a failing test publishes nothing"
    tree.assert_same_as_fresh(run)

    tree.edit("lib/web/page.html", "bye", "hi")
    tree.edit("lib/jobs/testdata/want.txt", "1", "2")
    run = tree.doit()
    assert run.returncode != 0 and "TestWant" in run.output, run.output
    assert "compile:worker-linux-amd64" not in run.ran, "testdata is read by the tests only"

    tree.edit("lib/jobs/testdata/want.txt", "2", "1")
    run = tree.doit()
    assert run.returncode == 0 and "test" in run.ran, run.output


def test_goamd64_relinks_the_amd64_binaries_only(tmp_path: Path) -> None:
    root = write_module(tmp_path / "multi", platforms='["linux/amd64", "linux/arm64"]')
    tree = Tree(root, root, tmp_path)
    assert_first_build(tree)
    before = binaries(root)
    v3 = {"GOAMD64": "v3"}
    run = tree.doit(env=v3)
    assert run.ran >= COMPILES, run.output
    assert not {"compile:api-linux-arm64", "compile:worker-linux-arm64"} & run.ran
    assert binaries(root)["linux-amd64/api"] != before["linux-amd64/api"]
    tree.assert_same_as_fresh(run, env=v3)
    run = tree.doit()
    assert run.ran >= COMPILES and binaries(root) == before, run.output


def test_comment_only_edits_keep_the_bytes_and_the_images(tmp_path: Path) -> None:
    tree = Tree(tmp_path / "multi", write_module(tmp_path / "multi"), tmp_path)
    assert_first_build(tree)
    before = binaries(tree.module)
    tree.edit("cmd/api/main.go", 'var version = "dev"', 'var version = "dev" // set by the linker')
    tree.edit("lib/jobs/jobs.go", "the next job", "the following job")
    run = tree.doit()
    assert run.ran >= COMPILES, run.output
    assert binaries(tree.module) == before, "a comment-only edit, in main too, gives the same binary"
    assert run.skipped >= IMAGE_STEPS, run.output
    tree.edit("cmd/api/main.go", "len(web.Page)", "len(web.Page) + 1")
    run = tree.doit()
    assert "image-platform:linux-amd64" in run.ran, "negative control: a code edit rebuilds the image"


def git(root: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e"}
    subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)


def test_git_version_follows_each_binarys_own_inputs(tmp_path: Path) -> None:
    tree = Tree(tmp_path / "multi", write_module(tmp_path / "multi"), tmp_path)
    tree.edit("wgobuild.toml", 'version = "1.0.0"', 'version = "git"')
    run = assert_first_build(tree)
    note = f'wgobuild: version = "git" but {tree.module} is not in a git repository: binaries and images get 0.0.0-dev'
    assert run.output.count(note) == 1, run.output
    assert tree.run_binary("api") == "0.0.0-dev 10"

    tree.write("README.md", "# multi\n")
    tree.write(".gitignore", "dist/\n.wgobuild/\n")
    git(tree.module, "init", "-q")
    git(tree.module, "add", ".")
    git(tree.module, "commit", "-qm", "first")
    git(tree.module, "tag", "v1.0.0")
    run = tree.doit()
    assert run.ran >= COMPILES and note not in run.output, run.output
    assert (tree.run_binary("api"), tree.run_binary("worker")) == ("v1.0.0 10", "v1.0.0 1")

    tree.edit("README.md", "multi", "multi, edited")
    tree.edit("lib/jobs/jobs_test.go", "want 1", "want one")
    tree.edit("lib/unused/unused.go", "42", "43")
    tree.write("tools/gen/main.go", "package main\n\nfunc main() {}\n")
    run = tree.doit()
    assert run.returncode == 0 and "test" in run.ran, run.output
    assert not run.ran & (COMPILES | IMAGE_STEPS), "no binary is built from those files"

    tree.edit("lib/jobs/jobs.go", "return 1", "return 1 + 0")
    run = tree.doit()
    assert "compile:worker-linux-amd64" in run.ran and "compile:api-linux-amd64" in run.skipped, run.output
    assert (tree.run_binary("api"), tree.run_binary("worker")) == ("v1.0.0 10", "v1.0.0-dirty 1")
    assert run.ran >= IMAGE_STEPS, "the image version follows its dirty binary"
    record = (tree.module / "dist/images/linux-amd64.json").read_text()
    assert "multi:v1.0.0-dirty" in record
    tree.assert_same_as_fresh(run)


def test_build_tagged_new_files_and_deleted_files(tmp_path: Path) -> None:
    tree = Tree(tmp_path / "multi", write_module(tmp_path / "multi"), tmp_path)
    assert_first_build(tree)
    before = binaries(tree.module)
    tree.write("lib/jobs/jobs_windows.go", '//go:build windows\n\npackage jobs\n\nfunc init() { println("w") }\n')
    run = tree.doit()
    assert not run.ran & COMPILES, "a windows-only file is no input of a linux binary"

    tree.write("lib/jobs/jobs_linux.go", '//go:build linux\n\npackage jobs\n\nfunc init() { println("l") }\n')
    run = tree.doit()
    assert "compile:worker-linux-amd64" in run.ran and "compile:api-linux-amd64" in run.skipped, run.output
    assert binaries(tree.module) != before
    tree.assert_same_as_fresh(run)

    (tree.module / "lib/jobs/jobs_linux.go").unlink()
    run = tree.doit()
    assert "compile:worker-linux-amd64" in run.ran, run.output
    assert binaries(tree.module) == before, "deleting the file gives back the first binary"
    tree.assert_same_as_fresh(run)


@pytest.mark.skipif(os.name == "nt", reason="the go wrapper that counts calls is a POSIX shell script")
def test_a_no_op_starts_no_go_and_a_body_edit_no_go_list(tmp_path: Path) -> None:
    log = tmp_path / "go-calls.log"
    wrapper = tmp_path / "bin" / "go"
    wrapper.parent.mkdir()
    real = subprocess.run([sys.executable, "-c", "from wgobuild import gotool; print(gotool.find_go())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    wrapper.write_text(f'#!/bin/sh\necho "$1" >> "{log}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    env = {"WGOBUILD_GO": str(wrapper)}
    tree = Tree(tmp_path / "multi", write_module(tmp_path / "multi"), tmp_path)

    def go_calls(run: DoitRun) -> list[str]:
        assert run.returncode == 0, run.output
        calls = log.read_text().split() if log.exists() else []
        log.unlink(missing_ok=True)
        return sorted(calls)

    assert {"env", "list", "build", "test"} <= set(go_calls(tree.doit(env)))
    assert go_calls(tree.doit(env)) == [], "a no-op run never starts go"
    tree.edit("lib/jobs/jobs.go", "return 1", "return 1 + 0")
    assert go_calls(tree.doit(env)) == ["build", "test"], "a body edit needs no go list and no go env"
    tree.write("lib/jobs/more.go", "package jobs\n\n// More is new.\nconst More = 2\n")
    assert go_calls(tree.doit(env)) == ["build", "list", "list", "test"], "a new file: go list (build and test)"
