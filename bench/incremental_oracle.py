"""Differential oracle for incremental builds: an incremental `doit image` must always equal a from-scratch build.

Run: python bench/incremental_oracle.py --edits N --seed S [--variant plain|work|vendor|all]

For each variant a seeded generator writes a Go work area: the module ``mod/`` (a git repository with 2-3 main
packages under cmd/, 3-5 library packages, one with ``//go:embed``, tests incl. one reading testdata/ and one
checking the embedded page, a golden case) beside the locally replaced module ``lib/`` (and ``lib2/``, ``extra/``).
Variants: ``plain`` (``replace example.com/lib => ../lib``), ``work`` (a ``go.work`` in the parent folder using
./mod and ./lib), ``vendor`` (the replace plus ``go mod vendor``). Images are built daemonless for linux/amd64 and
windows/amd64 (a small synthetic Windows base as a local OCI layout outside the module).

Then seeded edits from :data:`EDITS` are applied one at a time. After each edit the incremental side runs
``doit image`` or ``wgobuild image`` (alternating) in its persistent folder, and a copy of the same area (without
``.wgobuild/`` and ``dist/``) is built from scratch with the other entry point. Compared: every binary's bytes,
each step's verdict (compile, test, golden, images: passed or failed), the test step's junit pass/fail set, the
daemonless image digests (``dist/images/*.json``) and the index, the rendered Dockerfiles and PowerShell scripts,
and the exit code. Both run with ``--continue``:
after a failing step doit then still runs every step that does not depend on it, so which steps ran does not
depend on thread scheduling. Any difference is a divergence, printed with the seed, the variant and the edit list.

The from-scratch copy always lives at the same path (emptied before each round): Go's build and test caches key
their entries on package folders for builds without -trimpath (``go test``), so one fixed path keeps the Go cache
warm for it, as for the incremental side. Nothing of wgobuild's or doit's state survives there between rounds.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import io
import json
import os
import random
import re
import shutil
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

REPO = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("wgobuild") is None:  # run from a checkout that is not installed
    sys.path.insert(0, str(REPO))
from wgobuild import gotool, proc  # noqa: E402

VARIANTS = ("plain", "work", "vendor")
PLATFORMS = ("linux/amd64", "windows/amd64")
EPOCH = "1700000000"  # SOURCE_DATE_EPOCH on both sides: daemonless digests must match
GIT_DATE = "2023-11-14T22:13:20+00:00"  # commit dates fixed: a seed gives the same commits and versions again
ENV_KNOBS: dict[str, tuple[str, ...]] = {"GOAMD64": ("v1", "v2", "v3"), "GOFLAGS": ("-tags=oracle", "-gcflags=-l")}
WORDS = ("alpha", "bravo", "cedar", "delta", "ember", "fjord", "gamma", "harbor", "indigo", "juniper", "kayak",
         "lumen", "maple", "nectar", "onyx", "pebble", "quartz", "raven", "sierra", "tundra", "umber", "violet")
LIB_POOL = ("store", "calc", "jobs")
MAIN_POOL = ("api", "worker", "agent")
REPEAT = re.compile(r'strings\.Repeat\("", (\d+)\)')
RAWSD = "AQAAgBQAAAAkAAAAAAAAAAAAAAABAgAAAAAABSAAAAAhAgAAAQIAAAAAAAUgAAAAIQIAAA=="


# ---------------------------------------------------------------------------------------------------------------
# The work area


@dataclass
class Tree:
    """One generated work area and what the edits need to know about it."""

    area: Path
    variant: str
    base: Path  # the synthetic Windows base (OCI layout), outside the area
    mains: list[str]
    libs: list[str]
    config: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    optional: list[str] = field(default_factory=list)  # files an edit may delete (relative to the area)
    failing: set[str] = field(default_factory=set)  # toggles currently set to fail
    stale_vendor: bool = False  # go.mod changed after the last `go mod vendor`
    deck: list[str] = field(default_factory=list)  # edit kinds still to deal once each before random picks
    counter: int = 0

    @property
    def mod(self) -> Path:
        return self.area / "mod"

    def next(self) -> int:
        self.counter += 1
        return self.counter

    def path(self, rel: str) -> Path:
        return self.area / rel

    def read(self, rel: str) -> str:
        return self.path(rel).read_text(encoding="utf-8")

    def write(self, rel: str, text: str) -> None:
        path = self.path(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    def lib_file(self, name: str) -> str:
        return f"mod/internal/{name}/{name}.go"

    def main_file(self, name: str) -> str:
        return f"mod/cmd/{name}/main.go"


def go_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every go, git and wgobuild run: the caller's, minus knobs the edits own, plus fixed dates."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_KNOBS and k not in ("GOWORK", "GOFLAGS", "GOENV")}
    env.update({"SOURCE_DATE_EPOCH": EPOCH, "GIT_AUTHOR_DATE": GIT_DATE, "GIT_COMMITTER_DATE": GIT_DATE,
                "GIT_AUTHOR_NAME": "oracle", "GIT_AUTHOR_EMAIL": "oracle@example.com",
                "GIT_COMMITTER_NAME": "oracle", "GIT_COMMITTER_EMAIL": "oracle@example.com",
                "GOTOOLCHAIN": "local"})
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # Python's usual bytecode cache, as a user's doit runs
    env.update(extra or {})
    return env


def run(argv: Sequence[object], cwd: Path, env: dict[str, str] | None = None, check: bool = True) -> proc.ProcResult:
    return proc.run([str(a) for a in argv], cwd=cwd, env=env or go_env(), quiet=True, check=check,
                    step=" ".join(str(a) for a in argv[:3]))


def git(tree: Tree, *args: str) -> proc.ProcResult:
    return run(["git", *args], tree.mod)


def go(tree: Tree, *args: str) -> proc.ProcResult:
    return run([gotool.find_go(), *args], tree.mod, go_env(tree.env))


def _tar_gz(entries: list[tuple[str, bytes | None]]) -> tuple[bytes, bytes]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode, info.pax_headers = len(content), 0o644, {"MSWINDOWS.rawsd": RAWSD}
                tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), mtime=0), raw.getvalue()


def windows_base(folder: Path) -> Path:
    """A tiny synthetic nanoserver stand-in (ltsc2022) as an OCI image layout: a test base, never a real one."""
    if (folder / "index.json").is_file():
        return folder
    blobs = folder / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    layer, diff = _tar_gz([("Files", None), ("Files/Windows", None), ("Files/Windows/System32", None),
                           ("Files/Windows/System32/kernel.txt", b"synthetic nanoserver\n"), ("Hives", None)])
    platform = {"architecture": "amd64", "os": "windows", "os.version": "10.0.20348.2849"}
    config = {**platform, "created": "2024-05-01T00:00:00Z",
              "config": {"User": "ContainerUser", "Cmd": ["c:\\windows\\system32\\cmd.exe"]},
              "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(diff).hexdigest()]},
              "history": [{"created": "2024-05-01T00:00:00Z", "created_by": "synthetic base"}]}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           **put(json.dumps(config).encode())},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **put(layer)}]}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": manifest["mediaType"], **put(json.dumps(manifest).encode()),
                            "platform": platform}]}
    (folder / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (folder / "index.json").write_text(json.dumps(index))
    return folder


# ---------------------------------------------------------------------------------------------------------------
# The generator


def _lib_source(name: str, deps: list[str], salt: int, uses_lib: bool) -> str:
    imports = ['\t"strings"']
    if name == "web":
        imports = ['\t_ "embed"', '\t"strconv"', '\t"strings"']
    imports += [f'\n\t"example.com/app/internal/{d}"' if i == 0 else f'\t"example.com/app/internal/{d}"'
                for i, d in enumerate(deps)]
    if uses_lib:
        imports.append('\t"example.com/lib"')
    calls = "".join(f' + " " + {d}.Tag()' for d in deps)
    if uses_lib:
        calls += ' + lib.Transform("")'
    body = f'"{name}" + extra + strings.Repeat("", {salt}){calls}'
    if name == "web":
        body += " + strconv.Itoa(len(Page)*0)"
    text = f"package {name}\n\nimport (\n" + "\n".join(imports) + "\n)\n\n"
    if name == "web":
        text += "// Page is the embedded start page.\n//\n//go:embed page.html\nvar Page string\n\n"
    text += "// extra grows with build-tagged files.\nvar extra string\n\n"
    text += f"// Tag names this package and the packages it uses.\nfunc Tag() string {{\n\treturn {body}\n}}\n"
    if name == "text":
        text += ("\n// Normalize trims a line and lower-cases it.\nfunc Normalize(s string) string {\n"
                 "\treturn strings.ToLower(strings.TrimSpace(s))\n}\n")
    return text


def _main_source(name: str, deps: list[str], salt: int, golden: bool, uses_lib: bool) -> str:
    std = ['"bufio"', '"fmt"', '"os"', '"strings"'] if golden else ['"fmt"', '"strings"']
    local = [f'"example.com/app/internal/{d}"' for d in deps] + (['"example.com/lib"'] if uses_lib else [])
    imports = "\n".join(f"\t{s}" for s in std) + "\n\n" + "\n".join(f"\t{s}" for s in local)
    tags = ", ".join(f"{d}.Tag()" for d in deps) + (', lib.Transform("x")' if uses_lib else "")
    text = f"package main\n\nimport (\n{imports}\n)\n\nvar version = \"dev\"\n\nvar flavor = \"\"\n\n"
    text += "func main() {\n\t// note: first words\n"
    line = f'\tfmt.Println(version+flavor+strings.Repeat("", {salt}), {tags})\n'
    if golden:
        text += ('\tif len(os.Args) > 1 && os.Args[1] == "-version" {\n\t' + line + "\t\treturn\n\t}\n"
                 "\tscanner := bufio.NewScanner(os.Stdin)\n\tfor scanner.Scan() {\n"
                 "\t\tfmt.Println(lib.Transform(text.Normalize(scanner.Text())))\n\t}\n")
    else:
        text += line
    return text + "}\n"


def _test_source(name: str) -> str:
    return (f'package {name}\n\nimport (\n\t"strings"\n\t"testing"\n)\n\nconst want = "{name}"\n\n'
            "func TestTag(t *testing.T) {\n\tif !strings.HasPrefix(Tag(), want) {\n"
            '\t\tt.Fatalf("Tag() = %q, want the prefix %q", Tag(), want)\n\t}\n}\n')


CASES_TEST = """package text

import (
\t"os"
\t"strings"
\t"testing"
)

func TestCases(t *testing.T) {
\tdata, err := os.ReadFile("testdata/cases.txt")
\tif err != nil {
\t\tt.Fatal(err)
\t}
\tfor _, line := range strings.Split(strings.TrimSpace(string(data)), "\\n") {
\t\tif line == "!fail" {
\t\t\tt.Fatal("testdata/cases.txt asks this test to fail")
\t\t}
\t\tif got := Normalize(line); got != strings.ToLower(strings.TrimSpace(line)) {
\t\t\tt.Errorf("Normalize(%q) = %q", line, got)
\t\t}
\t}
}
"""

PAGE_TEST = """package web

import (
\t"strings"
\t"testing"
)

func TestPage(t *testing.T) {
\tif !strings.Contains(Page, "<title>") {
\t\tt.Fatal("the embedded page.html has no <title>")
\t}
}
"""

LIB_MODULES = {
    "lib": "package lib\n\nimport \"strings\"\n\n// Transform upper-cases s.\nfunc Transform(s string) string {\n"
           '\treturn strings.ToUpper(s) + strings.Repeat("", 5)\n}\n',
    "lib2": "package lib\n\nimport \"strings\"\n\n// Transform upper-cases s (ASCII), byte by byte.\n"
            "func Transform(s string) string {\n\tb := []byte(s)\n\tfor i, c := range b {\n"
            "\t\tif 'a' <= c && c <= 'z' {\n\t\t\tb[i] = c - 32\n\t\t}\n\t}\n"
            '\treturn string(b) + strings.Repeat("", 7)\n}\n',
}


def render_config(tree: Tree) -> str:
    """wgobuild.toml from the tree's settings (the config edits change the settings, then render again)."""
    c = tree.config

    def table(values: dict[str, str]) -> str:
        return "{ " + ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in sorted(values.items())) + " }"

    lines = ["[project]", 'name = "oracle"', f"version = {json.dumps(c['version'])}", "", "[build]",
             f"platforms = {json.dumps(list(PLATFORMS))}", f"ldflags = {json.dumps(c['ldflags'])}",
             f"tags = {json.dumps(c['tags'])}", "", "[test]", 'packages = ["./..."]', ""]
    for name in tree.mains:
        lines += ["[[binaries]]", f'name = "{name}"', f'package = "./cmd/{name}"', ""]
    lines += ["[[golden]]", 'name = "upper"', f'binary = "{tree.mains[0]}"', 'input = "testdata/golden/input.txt"',
              'expected = "testdata/golden/expected.txt"', "", "[image]", 'backend = "oci"',
              f"windows_base = {json.dumps('oci:' + str(tree.base))}", 'outputs = ["oci-layout"]',
              f"env = {table(c['env'])}", f"labels = {table(c['labels'])}", ""]
    return "\n".join(lines)


def go_mod(tree: Tree, target: str = "lib", go_version: str = "1.22", extra: bool = False) -> str:
    text = f"module example.com/app\n\ngo {go_version}\n\nrequire example.com/lib v0.0.0\n"
    if extra:
        text += "\nrequire example.com/extra v0.0.0\n"
    if tree.variant != "work":
        text += f"\nreplace example.com/lib => ../{target}\n"
        if extra:
            text += "\nreplace example.com/extra => ../extra\n"
    return text


def go_work(uses: list[str]) -> str:
    return "go 1.23\n\nuse (\n" + "".join(f"\t./{u}\n" for u in sorted(uses)) + ")\n"


def generate(area: Path, variant: str, rng: random.Random, base: Path, mains: int = 2) -> Tree:
    """Write a work area for ``variant`` (a git repository in ``mod/``) and return its :class:`Tree`."""
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r}: choose one of {', '.join(VARIANTS)}")
    libs = ["text", "web", *rng.sample(LIB_POOL, rng.randint(1, 3))]
    tree = Tree(area, variant, base, list(MAIN_POOL[:mains]), libs,
                {"version": rng.choice(["git", "1.0.0"]), "ldflags": [], "tags": [], "env": {}, "labels": {}},
                env={"GOENV": str(area.parent / "goenv")})  # Go's env file: beside the area, shared by both sides
    Path(tree.env["GOENV"]).unlink(missing_ok=True)
    for name, source in LIB_MODULES.items():
        tree.write(f"{name}/go.mod", "module example.com/lib\n\ngo 1.22\n")
        tree.write(f"{name}/lib.go", source)
    tree.write("extra/go.mod", "module example.com/extra\n\ngo 1.22\n")
    tree.write("extra/extra.go", "package extra\n\n// Unused is imported by nobody.\nconst Unused = 1\n")
    deps: dict[str, list[str]] = {}
    for i, name in enumerate(libs):
        deps[name] = sorted(d for d in libs[:i] if rng.random() < 0.4)
        tree.write(tree.lib_file(name), _lib_source(name, deps[name], rng.randint(1, 99), name == "store"))
        tree.write(f"mod/internal/{name}/{name}_test.go", _test_source(name))
    tree.write("mod/internal/text/cases_test.go", CASES_TEST)
    tree.write("mod/internal/text/testdata/cases.txt", "\n".join(rng.sample(WORDS, 4)) + "\n")
    tree.write("mod/internal/web/page_test.go", PAGE_TEST)
    tree.write("mod/internal/web/page.html", f"<html><title>{rng.choice(WORDS)}</title></html>\n")
    for i, name in enumerate(tree.mains):
        used = ["text", *sorted(rng.sample(libs[1:], rng.randint(1, 2)))] if i == 0 else \
            sorted(rng.sample(libs, rng.randint(1, 3)))
        tree.write(tree.main_file(name), _main_source(name, used, rng.randint(1, 99), i == 0, i == 0 or rng.random()
                                                      < 0.5))
    words = rng.sample(WORDS, 5)
    tree.write("mod/testdata/golden/input.txt", "\n".join(f"  {w.capitalize()} " for w in words) + "\n")
    tree.write("mod/testdata/golden/expected.txt", "\n".join(w.upper() for w in words) + "\n")
    tree.write("mod/README.md", "# oracle\n\nA generated module.\n")
    tree.write("mod/.gitignore", "/dist/\n/.wgobuild/\n")
    tree.write("mod/dodo.py", 'from wgobuild.doit_tasks import load_tasks\nglobals().update(load_tasks("."))\n')
    tree.write("mod/wgobuild.toml", render_config(tree))
    tree.write("mod/go.mod", go_mod(tree))
    if variant == "work":
        tree.write("go.work", go_work(["lib", "mod"]))
    if variant == "vendor":
        go(tree, "mod", "vendor")
    git(tree, "init", "-q", "-b", "main")
    git(tree, "add", "-A")
    git(tree, "commit", "-q", "-m", "generated")
    git(tree, "tag", "v0.1.0")
    tree.deck = rng.sample(sorted(EDITS), len(EDITS))
    return tree


# ---------------------------------------------------------------------------------------------------------------
# The edit catalogue: each edit changes the tree a little and says what it did (None: not applicable here)

Edit = Callable[[Tree, random.Random], "str | None"]


def _resalt(tree: Tree, rel: str, rng: random.Random) -> str:
    text = tree.read(rel)
    match = REPEAT.search(text)
    assert match, f"{rel} has no strings.Repeat marker"
    new = rng.choice([n for n in range(1, 100) if n != int(match.group(1))])
    tree.write(rel, text[: match.start(1)] + str(new) + text[match.end(1):])
    return f"{rel}: body {match.group(1)} -> {new}"


def edit_body(tree: Tree, rng: random.Random) -> str:
    """A function body changes (main or library package)."""
    files = [tree.lib_file(n) for n in tree.libs] + [tree.main_file(n) for n in tree.mains]
    return "body " + _resalt(tree, rng.choice(files), rng)


def _comment(tree: Tree, rel: str, rng: random.Random, anchor: str) -> str:
    text = tree.read(rel)
    word = rng.choice(WORDS)
    if rng.random() < 0.5 and "// note: " in text:  # same lines, other words
        tree.write(rel, re.sub(r"// note: .*", f"// note: {word} {tree.next()}", text, count=1))
        return f"{rel}: comment text"
    tree.write(rel, text.replace(anchor, f"// {word} {tree.next()}\n{anchor}", 1))  # a new line: lines shift
    return f"{rel}: comment line"


def edit_comment_main(tree: Tree, rng: random.Random) -> str:
    return "comment-main " + _comment(tree, tree.main_file(rng.choice(tree.mains)), rng, "func main()")


def edit_comment_lib(tree: Tree, rng: random.Random) -> str:
    return "comment-lib " + _comment(tree, tree.lib_file(rng.choice(tree.libs)), rng, "// Tag names")


def _toggle(tree: Tree, rng: random.Random, sites: list[str]) -> str:
    """Pick a pass/fail site (a failing one back to passing, mostly) and flip it."""
    failing = sorted(tree.failing & set(sites))
    site = rng.choice(failing) if failing and rng.random() < 0.7 else rng.choice(sites)
    fail = site not in tree.failing
    tree.failing ^= {site}
    kind, _, name = site.partition(":")
    if kind == "test":
        rel = f"mod/internal/{name}/{name}_test.go"
        tree.write(rel, re.sub(r'const want = ".*"', f'const want = "{name}{"!" if fail else ""}"', tree.read(rel)))
    elif kind == "testdata":
        rel = "mod/internal/text/testdata/cases.txt"
        lines = [ln for ln in tree.read(rel).splitlines() if ln != "!fail"]
        if fail:
            lines.insert(rng.randint(0, len(lines)), "!fail")
        tree.write(rel, "\n".join(lines) + "\n")
    elif kind == "page":
        rel = "mod/internal/web/page.html"
        word = rng.choice(WORDS)
        tree.write(rel, f"<html><h1>{word}</h1></html>\n" if fail else f"<html><title>{word}</title></html>\n")
    else:
        rel = "mod/testdata/golden/expected.txt"
        lines = [ln.removesuffix("!") for ln in tree.read(rel).splitlines()]
        if fail:
            lines[rng.randrange(len(lines))] += "!"
        tree.write(rel, "\n".join(lines) + "\n")
    return f"{rel}: {'now fails' if fail else 'passes again'}"


def edit_embed(tree: Tree, rng: random.Random) -> str:
    """The embedded page changes; sometimes it loses its <title> and the web test fails (or gets it back)."""
    if rng.random() < 0.3 or "page" in tree.failing:
        return "embed " + _toggle(tree, rng, ["page"])
    rel = "mod/internal/web/page.html"
    tree.write(rel, f"<html><title>{rng.choice(WORDS)}</title><p>{' '.join(rng.sample(WORDS, 3))}</p></html>\n")
    return f"embed {rel}: new text"


def edit_replaced(tree: Tree, rng: random.Random) -> str:
    """A function body of the locally replaced module: mostly the one in use (lib or lib2), sometimes the other."""
    used = _replace_state(tree)[0]
    other = "lib2" if used == "lib" else "lib"
    return "replaced " + _resalt(tree, f"{used if rng.random() < 0.75 else other}/lib.go", rng)


def _replace_state(tree: Tree) -> tuple[str, str, bool]:
    text = tree.read("go.work") if tree.variant == "work" else tree.read("mod/go.mod")
    target = "lib2" if re.search(r"(=> \.\./|\./)lib2\b", text) else "lib"
    version = re.search(r"^go (\S+)", tree.read("mod/go.mod"), re.MULTILINE)
    assert version
    return target, version.group(1), "example.com/extra" in tree.read("mod/go.mod")


def edit_gomod(tree: Tree, rng: random.Random) -> str:
    """go.mod (or go.work) changes: the replaced module's folder, the go directive, or one more local require."""
    target, version, extra = _replace_state(tree)
    what = rng.choice(["replace", "go", "require"])
    if what == "replace":
        target = "lib2" if target == "lib" else "lib"
    elif what == "go":
        version = "1.23" if version == "1.22" else "1.22"
    else:
        extra = not extra
    tree.write("mod/go.mod", go_mod(tree, target, version, extra))
    if tree.variant == "work":
        tree.write("go.work", go_work([target, "mod", *(["extra"] if extra else [])]))
    note = ""
    if tree.variant == "vendor":
        tree.stale_vendor = rng.random() < 0.3
        if not tree.stale_vendor:
            go(tree, "mod", "vendor")
            note = ", vendor/ refreshed"
    return f"gomod {what}: => ../{target}, go {version}, extra={extra}{note}"


def edit_new_file(tree: Tree, rng: random.Random) -> str:
    n = tree.next()
    if rng.random() < 0.3:
        name = rng.choice(tree.mains)
        rel, package = f"mod/cmd/{name}/extra_{n}.go", "main"
    else:
        package = rng.choice(tree.libs)
        rel = f"mod/internal/{package}/extra_{n}.go"
    tree.write(rel, f"package {package}\n\n// Extra{n} is used by nothing.\nfunc Extra{n}() int {{ return {n} }}\n")
    tree.optional.append(rel)
    return f"new-file {rel}"


def edit_delete_file(tree: Tree, rng: random.Random) -> str | None:
    if not tree.optional:
        return None
    rel = tree.optional.pop(rng.randrange(len(tree.optional)))
    tree.path(rel).unlink()
    return f"delete-file {rel}"


def edit_tagged_file(tree: Tree, rng: random.Random) -> str:
    """A new file behind a build constraint: a tag of the config/GOFLAGS edits, a GOOS, or ignore."""
    n, tag, package = tree.next(), rng.choice(["oracle", "windows", "linux", "ignore"]), rng.choice(tree.libs)
    rel = f"mod/internal/{package}/tagged_{n}_{tag}.go"
    tree.write(rel, f'//go:build {tag}\n\npackage {package}\n\nfunc init() {{ extra += "+{tag}{n}" }}\n')
    tree.optional.append(rel)
    return f"tagged-file {rel}"


def edit_test(tree: Tree, rng: random.Random) -> str:
    """A _test.go changes so that its test fails, or passes again."""
    return "test " + _toggle(tree, rng, [f"test:{n}" for n in tree.libs])


def edit_testdata(tree: Tree, rng: random.Random) -> str:
    if rng.random() < 0.35 or "testdata" in tree.failing:
        return "testdata " + _toggle(tree, rng, ["testdata"])
    rel = "mod/internal/text/testdata/cases.txt"
    tree.write(rel, tree.read(rel) + f"  {rng.choice(WORDS).capitalize()}\n")
    return f"testdata {rel}: one more case"


def edit_golden(tree: Tree, rng: random.Random) -> str:
    if rng.random() < 0.35 or "golden" in tree.failing:
        return "golden " + _toggle(tree, rng, ["golden"])
    word = rng.choice(WORDS)
    tree.write("mod/testdata/golden/input.txt", tree.read("mod/testdata/golden/input.txt") + f"{word}\n")
    tree.write("mod/testdata/golden/expected.txt", tree.read("mod/testdata/golden/expected.txt") + f"{word.upper()}\n")
    return "golden one more line"


def edit_readme(tree: Tree, rng: random.Random) -> str:
    tree.write("mod/README.md", tree.read("mod/README.md") + f"- {rng.choice(WORDS)}\n")
    return "readme mod/README.md: one more line"


def edit_config(tree: Tree, rng: random.Random) -> str:
    """One key of wgobuild.toml: version, ldflags, build tags, image env or labels."""
    c, n = tree.config, tree.next()
    key = rng.choice(["version", "ldflags", "tags", "env", "labels"])
    if key == "version":
        c["version"] = f"1.{n}.0" if c["version"] == "git" or rng.random() < 0.3 else "git"
    elif key == "ldflags":
        c["ldflags"] = [] if c["ldflags"] and rng.random() < 0.5 else [f"-X main.flavor=-f{n}"]
    elif key == "tags":
        c["tags"] = [] if c["tags"] else ["oracle"]
    else:
        c[key] = {} if c[key] and rng.random() < 0.3 else {"ORACLE_NOTE" if key == "env" else "org.example.note":
                                                           rng.choice(WORDS)}
    tree.write("mod/wgobuild.toml", render_config(tree))
    return f"config {key} = {c[key]!r}"


def edit_git_tag(tree: Tree, rng: random.Random) -> str:
    tag = f"v0.{tree.next() + 1}.0"
    git(tree, "tag", tag)
    return f"git-tag {tag}"


def edit_git_commit(tree: Tree, rng: random.Random) -> str:
    git(tree, "add", "-A")
    git(tree, "commit", "-q", "--allow-empty", "-m", f"edit {tree.next()}")
    return "git-commit everything"


def edit_env(tree: Tree, rng: random.Random) -> str:
    """An environment variable that changes Go's output: GOAMD64 or GOFLAGS (unset, or one of a few values)."""
    key = rng.choice(sorted(ENV_KNOBS))
    choices = [v for v in (None, *ENV_KNOBS[key]) if v != tree.env.get(key)]
    value = rng.choice(choices)
    if value is None:
        tree.env.pop(key, None)
    else:
        tree.env[key] = value
    return f"env {key}={value or '(unset)'}"


def edit_goenv(tree: Tree, rng: random.Random) -> str:
    """A setting in Go's own env file (what `go env -w` writes; ``$GOENV`` points at one outside the area)."""
    path = Path(tree.env["GOENV"])
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    current = dict(line.split("=", 1) for line in lines if "=" in line)
    key = rng.choice(sorted(ENV_KNOBS))
    value = rng.choice([v for v in (None, *ENV_KNOBS[key]) if v != current.get(key)])
    current.pop(key, None)
    if value is not None:
        current[key] = value
    path.write_text("".join(f"{k}={v}\n" for k, v in sorted(current.items())), encoding="utf-8")
    return f"goenv {key}={value or '(unset)'}"


def edit_revendor(tree: Tree, rng: random.Random) -> str | None:
    if tree.variant != "vendor":
        return None
    go(tree, "mod", "vendor")
    tree.stale_vendor = False
    return "revendor go mod vendor"


def edit_vendored(tree: Tree, rng: random.Random) -> str | None:
    """A vendored file edited in place (go build reads vendor/, not ../lib)."""
    rel = "mod/vendor/example.com/lib/lib.go"
    if tree.variant != "vendor" or not tree.path(rel).is_file():
        return None
    return "vendored " + _resalt(tree, rel, rng)


EDITS: dict[str, tuple[Edit, int]] = {  # name -> (edit, weight)
    "body": (edit_body, 6),
    "comment-main": (edit_comment_main, 3),
    "comment-lib": (edit_comment_lib, 3),
    "embed": (edit_embed, 3),
    "replaced": (edit_replaced, 3),
    "gomod": (edit_gomod, 2),
    "new-file": (edit_new_file, 2),
    "delete-file": (edit_delete_file, 2),
    "tagged-file": (edit_tagged_file, 2),
    "test": (edit_test, 3),
    "testdata": (edit_testdata, 2),
    "golden": (edit_golden, 2),
    "readme": (edit_readme, 2),
    "config": (edit_config, 3),
    "git-tag": (edit_git_tag, 1),
    "git-commit": (edit_git_commit, 1),
    "env": (edit_env, 2),
    "goenv": (edit_goenv, 1),
    "revendor": (edit_revendor, 2),
    "vendored": (edit_vendored, 2),
}


_FIX_KIND = {"test": "test", "testdata": "testdata", "page": "embed", "golden": "golden"}


def apply_edit(tree: Tree, rng: random.Random) -> str:
    """The next edit: each kind of :data:`EDITS` once in a seeded order, then weighted random picks.

    A failing state is mostly short-lived, like a developer's: while a test or golden case fails, a third of the
    edits make one pass again; a vendor/ folder out of step with go.mod is refreshed by half of the edits.
    """
    if tree.failing and rng.random() < 0.35:
        site = rng.choice(sorted(tree.failing))
        return f"{_FIX_KIND[site.partition(':')[0]]} " + _toggle(tree, rng, [site])
    if tree.stale_vendor and rng.random() < 0.5:
        return str(edit_revendor(tree, rng))
    for i in range(len(tree.deck) - 1, -1, -1):  # every kind once first (kinds not applicable yet wait)
        done = EDITS[tree.deck[i]][0](tree, rng)
        if done is not None:
            del tree.deck[i]
            return done
    names = list(EDITS)
    weights = [EDITS[n][1] for n in names]
    while True:
        name = rng.choices(names, weights)[0]
        done = EDITS[name][0](tree, rng)
        if done is not None:
            return done


# ---------------------------------------------------------------------------------------------------------------
# Building and comparing


@dataclass
class Outcome:
    """What one `doit image` / `wgobuild image` run left: the parts the oracle compares."""

    entry: str
    exit: int
    steps: dict[str, str]  # step -> "ok" (ran or up to date) | "failed"
    binaries: dict[str, str]  # dist-relative path -> sha256
    rendered: dict[str, str]  # dist-relative path -> sha256 of the Dockerfiles, .dockerignore and PowerShell scripts
    junit: list[tuple[str, str, str]] | None  # (package, test, pass|fail|skip), sorted
    images: dict[str, tuple[str, str]]  # image step -> (reference, digest) of its record
    output: str
    seconds: float


_STEP = re.compile(r"^(?:\.  |-- )(\S+)(?: \(.*\))?$", re.MULTILINE)  # doit's ".  name (why)" and "-- name"
_FAILED = re.compile(r"^(?:TaskFailed|TaskError|UnmetDependency|SetupError|DependencyError)\b.*?taskid:(\S+)",
                     re.MULTILINE)


def entry_argv(entry: str) -> list[str]:
    """``doit --continue image`` or ``wgobuild --continue image`` with this Python (both entry points)."""
    if entry == "doit":
        return [sys.executable, "-m", "doit", "--continue", "image"]
    script = Path(sys.executable).parent / ("wgobuild.exe" if os.name == "nt" else "wgobuild")
    if script.is_file():
        return [str(script), "--continue", "image"]
    return [sys.executable, "-c", "import sys; from wgobuild.cli import main; sys.exit(main())", "--continue", "image"]


def build(tree_mod: Path, env: dict[str, str], entry: str, timeout: float = 600) -> Outcome:
    """Run one entry point in ``tree_mod`` and collect what it left in ``dist/``."""
    start = time.perf_counter()
    result = proc.run(entry_argv(entry), cwd=tree_mod, env=go_env(env), quiet=True, timeout=timeout)
    seconds = time.perf_counter() - start
    output = result.output
    steps = {name: "ok" for name in _STEP.findall(output)}
    steps.update({name: "failed" for name in _FAILED.findall(output)})
    dist = tree_mod / "dist"
    binaries = {}
    for platform in PLATFORMS:
        folder = dist / platform.replace("/", "-")
        for path in sorted(folder.glob("*")) if folder.is_dir() else []:
            binaries[path.relative_to(dist).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    rendered = {path.relative_to(dist).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
                for folder in ("docker", "powershell") for path in sorted((dist / folder).rglob("*")) if path.is_file()}
    junit = None
    if (dist / "reports" / "junit.xml").is_file():
        root = ElementTree.parse(dist / "reports" / "junit.xml").getroot()
        junit = sorted((case.get("classname", ""), case.get("name", ""),
                        "fail" if case.find("failure") is not None else
                        "skip" if case.find("skipped") is not None else "pass") for case in root.iter("testcase"))
    images = {}
    for record in sorted((dist / "images").glob("*.json")) if (dist / "images").is_dir() else []:
        data = json.loads(record.read_text(encoding="utf-8"))
        images[f"image-platform:{record.stem}"] = (str(data.get("reference")), str(data.get("digest")))
    summary = dist / "reports" / "images.json"
    if summary.is_file():
        tag = json.loads(summary.read_text(encoding="utf-8")).get("tag") or {}
        images["image"] = (str(tag.get("reference")), str(tag.get("digest")))
    return Outcome(entry, result.returncode, steps, binaries, rendered, junit, images, output, seconds)


def compare(inc: Outcome, clean: Outcome) -> list[str]:
    """Every difference between the incremental and the from-scratch outcome (empty: they agree)."""
    diffs = []
    if inc.exit != clean.exit:
        diffs.append(f"exit code: incremental {inc.exit}, clean {clean.exit}")
    for step in sorted(set(inc.steps) | set(clean.steps)):
        a, b = inc.steps.get(step, "not run"), clean.steps.get(step, "not run")
        if a != b:
            diffs.append(f"step {step}: incremental {a}, clean {b}")
    if not inc.steps and not clean.steps:  # both stopped before any step (the tasks could not be loaded)
        return diffs
    for path in sorted(set(inc.binaries) | set(clean.binaries)):
        a, b = inc.binaries.get(path, "missing"), clean.binaries.get(path, "missing")
        if a != b:
            diffs.append(f"binary dist/{path}: incremental {a[:16]}, clean {b[:16]}")
    for path in sorted(set(inc.rendered) | set(clean.rendered)):
        a, b = inc.rendered.get(path, "missing"), clean.rendered.get(path, "missing")
        if a != b:
            diffs.append(f"rendered dist/{path}: incremental {a[:16]}, clean {b[:16]}")
    if inc.steps.get("test") == clean.steps.get("test") and inc.junit != clean.junit:
        only_inc = sorted(set(inc.junit or []) - set(clean.junit or []))
        only_clean = sorted(set(clean.junit or []) - set(inc.junit or []))
        diffs.append(f"junit: only incremental {only_inc}, only clean {only_clean}")
    for step in sorted(set(inc.images) | set(clean.images)):
        if inc.steps.get(step) == "ok" == clean.steps.get(step) and inc.images.get(step) != clean.images.get(step):
            diffs.append(f"{step}: incremental {inc.images.get(step)}, clean {clean.images.get(step)}")
    return diffs


def fresh_copy(area: Path, dest: Path) -> Path:
    """``area`` copied to ``dest`` (emptied first) without wgobuild's state and outputs: a from-scratch build."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(area, dest, symlinks=True,
                    ignore=lambda folder, names: [n for n in names if n in (".wgobuild", "dist")
                                                  and Path(folder).name == "mod"])
    return dest


def reset_state(mod: Path) -> None:
    """Forget the incremental side's state and outputs (after a divergence, so later rounds stand on their own)."""
    for name in (".wgobuild", "dist"):
        shutil.rmtree(mod / name, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# Rounds


@dataclass
class Divergence:
    seed: int
    variant: str
    round: int
    edits: list[str]
    diffs: list[str]
    inc: Outcome
    clean: Outcome

    def report(self) -> str:
        lines = [f"DIVERGENCE seed={self.seed} variant={self.variant} after edit {self.round} "
                 f"(incremental: {self.inc.entry} image, clean: {self.clean.entry} image)", "edits so far:"]
        lines += [f"  {i}. {e}" for i, e in enumerate(self.edits, 1)] or ["  (none: first build)"]
        lines += ["differences:", *(f"  {d}" for d in self.diffs)]
        if self.inc.exit != self.clean.exit:
            for side in (self.inc, self.clean):
                lines.append(f"last lines of {side.entry} ({'incremental' if side is self.inc else 'clean'}):")
                lines += [f"    {ln}" for ln in side.output.splitlines()[-6:]]
        lines.append(f"reproduce: python bench/incremental_oracle.py --seed {self.seed} --variant {self.variant} "
                     f"--edits {self.round} --stop")
        return "\n".join(lines)


@dataclass
class VariantRun:
    seed: int
    variant: str
    edits: list[str] = field(default_factory=list)
    divergences: list[Divergence] = field(default_factory=list)
    inc_seconds: list[float] = field(default_factory=list)
    clean_seconds: list[float] = field(default_factory=list)
    exits: list[int] = field(default_factory=list)  # the from-scratch build's exit code, per round
    shortcuts: int = 0  # no-op re-runs answered by the no-op shortcut (wgobuild.fastpath) rather than by doit
    seconds: float = 0.0

    @property
    def failing_rounds(self) -> int:
        return sum(code != 0 for code in self.exits)


Sabotage = Callable[[Tree, int], None]  # (tree, round) -> None: spoils the incremental side only (negative controls)


def build_both(tree: Tree, clean_area: Path, entries: tuple[str, str]) -> tuple[Outcome, Outcome]:
    """The incremental build (in a thread) and the from-scratch build of a fresh copy, side by side."""
    found: list[Outcome] = []
    clean = fresh_copy(tree.area, clean_area)  # before the incremental run writes anything
    worker = threading.Thread(target=lambda: found.append(build(tree.mod, tree.env, entries[0])))
    worker.start()
    try:
        cln = build(clean / "mod", tree.env, entries[1])
    finally:
        worker.join()
    if not found:
        raise RuntimeError(f"the incremental build in {tree.mod} did not finish")
    return found[0], cln


def run_variant(variant: str, seed: int, edits: int, work: Path, *, mains: int = 2, stop: bool = True,
                choose: Callable[[Tree, random.Random], str] = apply_edit, sabotage: Sabotage | None = None,
                log: Callable[[str], None] = print) -> VariantRun:
    """Generate a module for ``variant``, build it, then apply ``edits`` seeded edits comparing after each one.

    ``stop``: end at the first divergence; else reset the incremental side and go on. ``choose`` picks and applies
    each edit (default: a random one of the catalogue); ``sabotage`` runs before each round's builds and may spoil
    the incremental side only (the negative controls).
    """
    start = time.perf_counter()
    rng = random.Random(f"{seed}:{variant}")
    base = windows_base(work / "winbase")
    tree = generate(work / variant / "inc", variant, rng, base, mains=mains)
    clean_area = work / variant / "clean"
    outcome = VariantRun(seed, variant)
    for round_no in range(edits + 1):
        if round_no:
            outcome.edits.append(choose(tree, rng))
        if sabotage is not None:
            sabotage(tree, round_no)
        entries = ("doit", "wgobuild") if round_no % 2 == 0 else ("wgobuild", "doit")
        inc, cln = build_both(tree, clean_area, entries)
        outcome.inc_seconds.append(inc.seconds)
        outcome.clean_seconds.append(cln.seconds)
        outcome.exits.append(cln.exit)
        diffs = compare(inc, cln)
        if not diffs:  # the same again with nothing changed: doit's no-op, or the no-op shortcut (wgobuild.fastpath)
            again = build(tree.mod, tree.env, entries[0])
            diffs = [f"no-op run after it: {diff}" for diff in compare(again, cln)]
            runs = sorted((tree.mod / "dist" / "reports" / "runs").glob("*.json"))
            outcome.shortcuts += bool(runs) and "shortcut" in json.loads(runs[-1].read_text(encoding="utf-8"))
        what = outcome.edits[-1] if round_no else "first build"
        log(f"[{variant} {round_no}/{edits}] {what}: exit {inc.exit}/{cln.exit}, {inc.seconds:.1f}s/"
            f"{cln.seconds:.1f}s" + (f", {len(diffs)} DIFFERENCES" if diffs else ""))
        if diffs:
            found = Divergence(seed, variant, round_no, list(outcome.edits), diffs, inc, cln)
            outcome.divergences.append(found)
            log(found.report())
            if stop:
                break
            reset_state(tree.mod)
    outcome.seconds = time.perf_counter() - start
    return outcome


# ---------------------------------------------------------------------------------------------------------------
# Negative controls: the incremental side made stale on purpose; the oracle must report a divergence


def stale_edit(tree: Tree, rng: random.Random) -> str:
    """A body edit that keeps the file's size and puts its old mtime back (as `rsync -t` or an unpacked archive
    may): a build tool that trusts (mtime, size) misses it; a from-scratch build does not."""
    path = tree.path(tree.lib_file("text"))  # the golden binary always imports internal/text
    before = path.stat()
    text = path.read_text(encoding="utf-8")
    match = REPEAT.search(text)
    assert match
    old = match.group(1)
    new = next(str(n) for n in rng.sample(range(1, 100), 99) if len(str(n)) == len(old) and str(n) != old)
    path.write_text(text[: match.start(1)] + new + text[match.end(1):], encoding="utf-8")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    return f"stale-body {tree.lib_file('text')}: body {old} -> {new}, same size, old mtime"


def no_edit(tree: Tree, rng: random.Random) -> str:
    return "nothing changed"


def corrupt_binary(tree: Tree, round_no: int) -> None:
    """Sabotage for round 1: flip one byte of the golden binary's linux build, size and mtime kept."""
    if round_no != 1:
        return
    path = tree.mod / "dist" / "linux-amd64" / tree.mains[0]
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def summary(runs: list[VariantRun]) -> str:
    lines = ["variant  seed  edits  failing-rounds  divergences  incremental-median  clean-median  time"]
    for r in runs:
        inc = sorted(r.inc_seconds)[len(r.inc_seconds) // 2] if r.inc_seconds else 0.0
        cln = sorted(r.clean_seconds)[len(r.clean_seconds) // 2] if r.clean_seconds else 0.0
        lines.append(f"{r.variant:<8} {r.seed:<5} {len(r.edits):<6} {r.failing_rounds:<15} {len(r.divergences):<12} "
                     f"{inc:<19.2f} {cln:<13.2f} {r.seconds:.0f}s")
    total = sum(len(r.divergences) for r in runs)
    lines.append(f"total: {sum(len(r.edits) for r in runs)} edits, {total} divergences, "
                 f"{sum(r.shortcuts for r in runs)} no-op re-runs answered by the shortcut, "
                 f"{sum(r.seconds for r in runs):.0f}s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edits", type=int, default=20, help="edits in all (split evenly over the variants)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--variant", choices=[*VARIANTS, "all"], default="all")
    parser.add_argument("--mains", type=int, choices=[2, 3], default=3, help="main packages per module")
    parser.add_argument("--stop", action="store_true", help="stop at the first divergence")
    parser.add_argument("--work", type=Path, help="keep the work areas in this folder (default: a temp folder)")
    parser.add_argument("--control", choices=["stale", "corrupt"],
                        help="negative control: one edit that makes the incremental side stale on purpose "
                             "(stale: same-size edit with its old mtime; corrupt: a flipped byte in a binary); "
                             "exits 0 only when the oracle reports it")
    args = parser.parse_args(argv)
    if args.control:
        work = args.work or Path(tempfile.mkdtemp(prefix="wgb-oracle-"))
        try:
            control = run_variant("plain", args.seed, 1, work, mains=args.mains,
                                  choose=stale_edit if args.control == "stale" else no_edit,
                                  sabotage=corrupt_binary if args.control == "corrupt" else None)
        finally:
            if args.work is None:
                shutil.rmtree(work, ignore_errors=True)
        print(summary([control]))
        print("the oracle caught it" if control.divergences else "the oracle MISSED it")
        return 0 if control.divergences else 1
    variants = list(VARIANTS) if args.variant == "all" else [args.variant]
    work = args.work or Path(tempfile.mkdtemp(prefix="wgb-oracle-"))
    work.mkdir(parents=True, exist_ok=True)
    runs = []
    try:
        for i, variant in enumerate(variants):
            share = args.edits // len(variants) + (i < args.edits % len(variants))
            runs.append(run_variant(variant, args.seed, share, work, mains=args.mains, stop=args.stop))
            if args.stop and runs[-1].divergences:
                break
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(summary(runs))
    return 1 if any(r.divergences for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
