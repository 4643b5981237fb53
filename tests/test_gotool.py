"""The Go toolchain wrapper against the real Go toolchain."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fixtures_go import HELLO

from wgobuild import gotool, proc
from wgobuild.config import Platform
from wgobuild.errors import StepFailed

LINUX = Platform("linux", "amd64")
WINDOWS = Platform("windows", "amd64")


def test_find_go_prefers_the_real_binary() -> None:
    go = gotool.find_go()
    head = go.read_bytes()[:4]
    assert head in (b"\x7fELF", b"MZ\x90\x00") or not head.startswith(b"#!")
    assert gotool.go_env(HELLO)["GOMOD"] == str(HELLO / "go.mod")


def test_cross_compile_stamps_version_and_is_reproducible(tmp_path: Path) -> None:
    exe = tmp_path / "windows" / "hello.exe"
    gotool.build(HELLO, ".", WINDOWS, exe, "1.2.3")
    assert exe.read_bytes()[:2] == b"MZ"
    linux = tmp_path / "linux" / "hello"
    gotool.build(HELLO, ".", LINUX, linux, "1.2.3")
    first = linux.read_bytes()
    assert proc.run([linux, "-version"], quiet=True).output == "1.2.3"
    gotool.build(HELLO, ".", LINUX, linux, "1.2.3")
    assert linux.read_bytes() == first, "same inputs must give a byte-identical binary"
    assert b".symtab" not in first, "binary must be stripped (-s)"
    assert str(HELLO).encode() not in first, "-trimpath must drop local paths"
    assert not [p for p in linux.parent.iterdir() if p.name != "hello"], "no temporary files left"


def test_compile_error_shows_compiler_and_removes_stale_binary(tmp_path: Path) -> None:
    root = tmp_path / "broken"
    root.mkdir()
    (root / "go.mod").write_text("module example.com/broken\n\ngo 1.22\n")
    (root / "main.go").write_text("package main\n\nfunc main() {}\n")
    out = tmp_path / "dist" / "broken"
    gotool.build(root, ".", LINUX, out, "1")
    assert out.exists()
    (root / "main.go").write_text("package main\n\nfunc main() { undefinedThing() }\n")
    with pytest.raises(StepFailed, match="undefined: undefinedThing"):
        gotool.build(root, ".", LINUX, out, "2")
    assert not out.exists(), "the old binary must not stay looking current"
    assert not list(out.parent.iterdir())


def test_dependencies_are_per_binary_and_include_embeds(multi: Path) -> None:
    deps = gotool.list_dependencies(multi, {"api": "./cmd/api", "worker": "./cmd/worker"}, LINUX, [], False)
    api = {Path(p).relative_to(multi).as_posix() for p in deps["api"]}
    worker = {Path(p).relative_to(multi).as_posix() for p in deps["worker"]}
    assert api == {"go.mod", "cmd/api/main.go", "lib/web/web.go", "lib/web/page.html"}
    assert worker == {"go.mod", "cmd/worker/main.go", "lib/jobs/jobs.go"}


def test_dependency_cache_reruns_go_list_only_when_the_build_graph_can_change(multi: Path) -> None:
    cache = multi / ".wgobuild" / "deps.json"
    packages = {"worker": "./cmd/worker"}

    def deps() -> tuple[list[str], int]:
        with proc.collecting() as runs:
            found = gotool.cached_dependencies(multi, cache, packages, [LINUX], [], False, set())[0][LINUX]["worker"]
        return found, len(runs)

    first, calls = deps()
    assert calls == 1 and cache.exists()
    assert deps() == (first, 0), "a no-op asks nothing"
    jobs = multi / "lib/jobs/jobs.go"
    jobs.write_text(jobs.read_text().replace("return 1", "return 2 // changed body"))
    assert deps() == (first, 0), "a body or comment edit cannot change the build graph"
    (multi / "cmd/worker/main.go").write_text(
        'package main\n\nimport (\n\t"fmt"\n\n\t"example.com/multi/lib/jobs"\n\t"example.com/multi/lib/unused"\n)\n\n'
        "func main() { fmt.Println(jobs.Next(), unused.Answer) }\n")
    second, calls = deps()
    assert calls == 1 and str(multi / "lib/unused/unused.go") in second and second != first
    (multi / "lib/jobs/extra.go").write_text("package jobs\n\n// Extra is new.\nconst Extra = 1\n")
    third, calls = deps()
    assert calls == 1 and str(multi / "lib/jobs/extra.go") in third, "a new file in an imported package counts"


def test_file_header_covers_imports_constraints_and_embeds() -> None:
    body = b"//go:build linux\n\npackage x\n\nimport \"os\"\n\nfunc F() { os.Exit(1) }\n"
    assert gotool.go_file_header(body) == gotool.go_file_header(body.replace(b"Exit(1)", b"Exit(2)"))
    assert gotool.go_file_header(body) != gotool.go_file_header(body.replace(b"linux", b"windows"))
    assert gotool.go_file_header(body) != gotool.go_file_header(body.replace(b'"os"', b'"io"'))
    embed = b"package x\n\nimport _ \"embed\"\n\n//go:embed a.txt\nvar A string\n"
    assert gotool.go_file_header(embed) != gotool.go_file_header(embed.replace(b"a.txt", b"b.txt"))


def test_golden_passes_and_shows_a_diff(tmp_path: Path) -> None:
    exe = tmp_path / "hello"
    gotool.build(HELLO, ".", Platform(*host()), exe, "1")
    gotool.golden(exe, [], HELLO / "testdata/input.txt", HELLO / "testdata/expected.txt", cwd=HELLO)
    wrong = tmp_path / "expected.txt"
    wrong.write_text("Hello, Ada!\nHello, Bob!\n")
    with pytest.raises(StepFailed, match=r"(?s)-Hello, Bob!.*\+Hello, Grace!"):
        gotool.golden(exe, [], HELLO / "testdata/input.txt", wrong, cwd=HELLO)


def test_missing_go_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WGOBUILD_GO", str(tmp_path / "no-go-here"))
    gotool.find_go.cache_clear()
    try:
        with pytest.raises(Exception, match="no-go-here"):
            gotool.build(HELLO, ".", LINUX, tmp_path / "x", "1")
    finally:
        gotool.find_go.cache_clear()


def host() -> tuple[str, str]:
    p = Platform.host()
    return p.os, p.arch


def test_version_from_git_or_literal(tmp_path: Path) -> None:
    assert gotool.project_version(tmp_path, "2.0.0") == "2.0.0"
    assert gotool.project_version(tmp_path, "git") == "0.0.0-dev"  # not a git repository
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e"}
    (tmp_path / "f").write_text("x")
    for argv in (["git", "init", "-q"], ["git", "add", "f"], ["git", "commit", "-qm", "x"], ["git", "tag", "v1.4.0"]):
        proc.run(argv, cwd=tmp_path, env=env, quiet=True, check=True)
    assert gotool.project_version(tmp_path, "git") == "v1.4.0"
    (tmp_path / "f").write_text("y")
    assert gotool.project_version(tmp_path, "git") == "v1.4.0-dirty"


def test_scan_lists_test_inputs_and_skips_outputs(multi: Path) -> None:
    (multi / "lib/jobs/testdata").mkdir()
    (multi / "lib/jobs/testdata/case.json").write_text("{}")
    (multi / "dist/linux-amd64").mkdir(parents=True)
    (multi / "dist/linux-amd64/stray.go").write_text("package x\n")
    (multi / ".hidden").mkdir()
    (multi / ".hidden/x.go").write_text("package x\n")
    scan = gotool.scan_sources(multi, {str(multi / "dist")}, {})
    inputs = {Path(p).relative_to(multi).as_posix() for p in scan.test_inputs}
    assert "lib/jobs/testdata/case.json" in inputs and "lib/jobs/jobs_test.go" in inputs and "go.mod" in inputs
    assert not {p for p in inputs if p.startswith(("dist/", ".hidden/"))}
    assert "lib/web/page.html" not in inputs  # embedded files reach tests through the compile deps, not here
