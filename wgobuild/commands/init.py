"""``wgobuild init``: a starter ``wgobuild.toml`` and a two-line ``dodo.py`` for an existing Go module."""

from __future__ import annotations

import json
from pathlib import Path

from wgobuild import files, gotool, proc
from wgobuild.config import CONFIG_NAME
from wgobuild.errors import StepFailed, WgobuildError

DODO = 'from wgobuild.doit_tasks import load_tasks\nglobals().update(load_tasks("."))\n'


def main_packages(root: Path) -> list[tuple[str, str]]:
    """(binary name, ./relative/package) for every ``package main`` of the module, in path order."""
    lines: list[str] = []
    result = proc.run([gotool.find_go(), "list", "-e", "-json=Name,Dir,ImportPath", "./..."],
                      env=gotool.go_env_vars(), cwd=root, on_line=lines.append)
    if not result.ok:
        raise StepFailed(f"go list ./... failed in {root}; is it a Go module (go.mod)?\n{result.tail()}")
    decoder, text, pos, found = json.JSONDecoder(), "\n".join(lines), 0, []
    while (pos := _skip_space(text, pos)) < len(text):
        pkg, pos = decoder.raw_decode(text, pos)
        if pkg.get("Name") == "main":
            rel = Path(pkg["Dir"]).resolve().relative_to(root.resolve()).as_posix()
            name = Path(pkg["ImportPath"]).name if rel == "." else Path(rel).name
            found.append((name, "." if rel == "." else f"./{rel}"))
    return sorted(found, key=lambda item: item[1])


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def render_config(project: str, binaries: list[tuple[str, str]]) -> str:
    """The starter config: every main package, windows/amd64 and linux/amd64, tests of ./..."""
    lines = [
        "# wgobuild settings; every key is described in wgobuild's docs/config.md.",
        "[project]",
        f"name = {json.dumps(project)}",
        'version = "git"  # git describe --tags --always --dirty; or a literal such as "1.2.3"',
        "",
        "[build]",
        'platforms = ["windows/amd64", "linux/amd64"]',
        "",
        "[test]",
        'packages = ["./..."]',
        "",
    ]
    for name, package in binaries:
        lines += ["[[binaries]]", f"name = {json.dumps(name)}", f"package = {json.dumps(package)}", ""]
    return "\n".join(lines)


def run(root: Path, *, force: bool = False) -> int:
    root = root.resolve()
    if not (root / "go.mod").is_file():
        raise WgobuildError(f"{root}: no go.mod here; run 'wgobuild init' in the root of a Go module")
    targets = [root / CONFIG_NAME, root / "dodo.py"]
    existing = [t.name for t in targets if t.exists()]
    if existing and not force:
        raise WgobuildError(f"{', '.join(existing)} already exist in {root}; use --force to overwrite")
    binaries = main_packages(root)
    if not binaries:
        raise WgobuildError(f"{root}: no 'package main' in this module; wgobuild builds commands (main packages)")
    from wgobuild.config import _NAME  # the same rule the config applies to names

    project = root.name if _NAME.match(root.name) else binaries[0][0]
    files.write_text(targets[0], render_config(project, binaries))
    files.write_text(targets[1], DODO)
    print(f"wrote {targets[0]} ({len(binaries)} binaries: {', '.join(b for b, _ in binaries)}) and {targets[1]}")
    print("next: `doit image` (or `wgobuild image`) builds every binary for windows/amd64 and linux/amd64")
    return 0
