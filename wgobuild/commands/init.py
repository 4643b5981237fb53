"""``wgobuild init``: a starter ``wgobuild.toml``, a two-line ``dodo.py`` and a two-line ``tasks.py`` for a Go module.

init chooses as a person would and says why. The project is named after the module path. The entrypoint (the
first ``[[binaries]]`` entry: what the image runs, the Windows service, what ``invoke serve`` runs) is the main
package named like the module, else the one that serves, else the first. Development helpers (main packages under
tools/, hack/, examples/, ...) and ``//go:build tools`` commands are written commented out, with the reason.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from wgobuild import files, gotool, proc
from wgobuild.config import _NAME, CONFIG_NAME
from wgobuild.errors import StepFailed, WgobuildError

DODO = 'from wgobuild.doit_tasks import load_tasks\nglobals().update(load_tasks("."))\n'
TASKS = ('"""Admin tasks of this module (`invoke --list`): harden, audit, scripts, run, serve, ..."""\n'
         "from wgobuild.invoke_collection import ns  # noqa: F401\n")

# Folders whose main packages are development helpers, not part of the service: folder -> what they usually hold.
HELPER_FOLDERS = {"tools": "a development helper", "hack": "a development helper", "scripts": "a development helper",
                  "examples": "example code", "test": "test support", "tests": "test support"}
# A call that opens a listener: the package serves.
_LISTENS = re.compile(rb"\b((?:net|tls)\.Listen(?:TCP|Unix|Packet|Config)?|(?:http\.)?ListenAndServe(?:TLS)?|"
                      rb"http\.Serve(?:TLS)?)\s*\(")
TOOLS_TAG = "//go:build tools, built only with -tags tools"
_MODULE = re.compile(r"^\s*module\s+\"?([^\s\"]+)\"?", re.MULTILINE)
_MAJOR = re.compile(r"^v\d+$")


@dataclass(frozen=True)
class MainPackage:
    """One ``package main`` of the module, with what init decided about it and why."""

    name: str  # binary name
    package: str  # ./relative/path, or "."
    imports: tuple[str, ...] = ()
    listens: str = ""  # "http.ListenAndServe (cmd/x/main.go)" when a Go file opens a listener
    left_out: str = ""  # why it is written commented out ("" = built)

    @property
    def folder(self) -> str:
        return self.package.removeprefix("./")


@dataclass(frozen=True)
class Plan:
    """What init writes: the project name, the binaries (entrypoint first) and the ones left out."""

    module: str
    project: str
    binaries: list[MainPackage]
    entry_reason: str
    left_out: list[MainPackage]


def module_path(root: Path) -> str:
    """The module path declared in ``go.mod`` (``example.com/acme/shop``)."""
    match = _MODULE.search((root / "go.mod").read_text(encoding="utf-8", errors="replace"))
    if not match:
        raise WgobuildError(f"{root / 'go.mod'}: no 'module' line; is it a Go module? (`go mod init NAME` makes one)")
    return match[1]


def module_name(module: str) -> str:
    """The last element of a module path, skipping a major-version suffix (``example.com/shop/v2`` -> ``shop``)."""
    parts = [p for p in module.split("/") if p]
    if len(parts) > 1 and _MAJOR.match(parts[-1]):
        parts.pop()
    return parts[-1] if parts else ""


def _go_list(root: Path, *flags: str) -> list[dict[str, Any]]:
    """The packages ``go list -e -json ./...`` reports (each JSON object starts and ends at column 0)."""
    lines: list[str] = []
    argv = [str(gotool.find_go()), "list", "-e", *flags, "-json=Name,Dir,ImportPath,Imports,GoFiles", "./..."]
    result = proc.run(argv, env=gotool.go_env_vars(), cwd=root, on_line=lines.append)
    if not result.ok:
        raise StepFailed(f"go list ./... failed in {root}; is it a Go module (go.mod)?\n{result.tail()}")
    packages, current = [], []
    for line in lines:
        if line == "{":
            current = [line]
        elif current:
            current.append(line)
            if line == "}":
                packages.append(json.loads("\n".join(current)))
                current = []
    return packages


def main_packages(root: Path, module: str = "") -> list[MainPackage]:
    """Every ``package main`` of the module in path order, with its imports, listener call and helper folder."""
    root = root.resolve()
    module = module or module_path(root)
    found = []
    for pkg in _go_list(root):
        if pkg.get("Name") != "main":
            continue
        folder = Path(str(pkg["Dir"])).resolve().relative_to(root).as_posix()
        listens = ""
        for name in pkg.get("GoFiles") or []:
            match = _LISTENS.search((root / folder / str(name)).read_bytes())
            if match:
                where = name if folder == "." else f"{folder}/{name}"
                listens = f"{match[1].decode()} ({where})"
                break
        parts = folder.split("/")
        helper = next((p for p in parts if p in HELPER_FOLDERS), "")
        if folder.startswith("internal/tools"):
            helper = "internal/tools"
        left_out = f"under {helper}/, {HELPER_FOLDERS.get(helper, 'a development helper')}" if helper else ""
        found.append(MainPackage(
            name=module_name(module) if folder == "." else parts[-1],
            package="." if folder == "." else f"./{folder}",
            imports=tuple(str(i) for i in pkg.get("Imports") or []),
            listens=listens, left_out=left_out))
    return sorted(found, key=lambda p: p.package)


def tools_only_packages(root: Path, built: list[MainPackage]) -> list[MainPackage]:
    """Main packages that exist only with ``-tags tools`` (every file is ``//go:build tools``)."""
    seen = {p.package for p in built}
    extra = []
    for pkg in _go_list(root.resolve(), "-tags", "tools"):
        folder = Path(str(pkg["Dir"])).resolve().relative_to(root.resolve()).as_posix()
        package = "." if folder == "." else f"./{folder}"
        if pkg.get("Name") == "main" and package not in seen:
            extra.append(MainPackage(name=folder.split("/")[-1], package=package,
                                     left_out=TOOLS_TAG))
    return sorted(extra, key=lambda p: p.package)


def _unique_names(packages: list[MainPackage]) -> list[MainPackage]:
    """Binary names are unique: a clash (cmd/gen and tools/gen) takes the folder path joined by '-'."""
    counts: dict[str, int] = {}
    for p in packages:
        counts[p.name] = counts.get(p.name, 0) + 1
    out = []
    for p in packages:
        name = p.name if counts[p.name] == 1 else p.folder.replace("/", "-")
        if not _NAME.match(name):
            name = re.sub(r"[^A-Za-z0-9._-]", "-", name).strip("-._")[:63] or "app"
        out.append(replace(p, name=name))
    return out


def choose_entrypoint(packages: list[MainPackage], module_last: str) -> tuple[MainPackage, str]:
    """The binary the image runs, and why: named like the module, else the one that serves, else the first."""
    for p in packages:
        if p.name == module_last:
            return p, f"named like the module's last path element ({module_last!r})"
    for p in packages:
        if p.listens:
            return p, f"it serves: calls {p.listens}"
    for p in packages:
        if "net/http" in p.imports:
            return p, "it imports net/http (no main package opens a listener)"
    return packages[0], "the first main package in path order (none is named like the module or serves)"


def plan(root: Path, entrypoint: str = "") -> Plan:
    """Decide what init writes, without writing anything."""
    root = root.resolve()
    module = module_path(root)
    found = main_packages(root, module)
    tools = tools_only_packages(root, found)
    packages = _unique_names([*found, *tools])
    buildable, tools_only = packages[:len(found)], packages[len(found):]
    if not buildable:
        raise WgobuildError(f"{root}: every main package is //go:build tools; nothing to build" if tools else
                            f"{root}: no 'package main' in this module; wgobuild builds commands (main packages)")
    kept = [p for p in buildable if not p.left_out]
    helpers = [p for p in buildable if p.left_out]
    if not kept:  # nothing but helpers: they are what this module builds
        kept, helpers = [replace(p, left_out="") for p in helpers], []
    last = module_name(module)
    if entrypoint:
        wanted = entrypoint.removeprefix("./").rstrip("/") or "."
        found_one = next((p for p in buildable if wanted in (p.name, p.folder)), None)
        if found_one is None:
            choices = ", ".join(f"{p.name} ({p.package})" for p in buildable)
            raise WgobuildError(f"--entrypoint {entrypoint}: no such main package; choose one of: {choices}")
        chosen, reason = replace(found_one, left_out=""), "you chose it with --entrypoint"
        helpers = [p for p in helpers if p.package != chosen.package]
    else:
        chosen, reason = choose_entrypoint(kept, last)
    binaries = [chosen, *[p for p in kept if p.package != chosen.package]]
    project = last if _NAME.match(last) else (root.name if _NAME.match(root.name) else chosen.name)
    return Plan(module=module, project=project, binaries=binaries, entry_reason=reason,
                left_out=[*helpers, *tools_only])


def render_config(the_plan: Plan) -> str:
    """The starter config: the chosen binaries (entrypoint first), windows/amd64 and linux/amd64, tests of ./..."""
    entry = the_plan.binaries[0]
    lines = [
        "# wgobuild settings. Every key is described in docs/config.md of wgobuild's source;",
        "# `wgobuild --help` lists the commands.",
        "[project]",
        f"name = {json.dumps(the_plan.project)}  # from the module path {the_plan.module}",
        'version = "git"  # git describe --tags --always; or a literal such as "1.2.3"',
        "",
        "[build]",
        'platforms = ["windows/amd64", "linux/amd64"]',
        "",
        "[test]",
        'packages = ["./..."]',
        "",
        "# The first binary is the image's entrypoint, the Windows service and what `invoke serve` runs:",
        f"# {entry.name}, because {the_plan.entry_reason}.",
        "# Every binary listed is built for every platform; `image = false` builds one without shipping it.",
    ]
    for p in the_plan.binaries:
        lines += ["[[binaries]]", f"name = {json.dumps(p.name)}", f"package = {json.dumps(p.package)}", ""]
    for p in the_plan.left_out:
        how = ('uncomment and add "tools" to [build].tags to build it' if p.left_out == TOOLS_TAG
               else "uncomment to build it; add image = false to keep it out of the image")
        lines += [f"# Left out: {p.left_out}. {how[0].upper()}{how[1:]}:", "# [[binaries]]",
                  f"# name = {json.dumps(p.name)}", f"# package = {json.dumps(p.package)}", ""]
    return "\n".join(lines)


def _count(count: int, one: str, many: str) -> str:
    """``1 binary``, ``2 binaries``."""
    return f"{count} {one if count == 1 else many}"


def run(root: Path, *, force: bool = False, entrypoint: str = "") -> int:
    """Write ``wgobuild.toml``, ``dodo.py`` and ``tasks.py``; an existing file is kept unless ``force``."""
    root = root.resolve()
    if not (root / "go.mod").is_file():
        raise WgobuildError(f"{root}: no go.mod here; run 'wgobuild init' in the root of a Go module")
    contents = {CONFIG_NAME: "", "dodo.py": DODO, "tasks.py": TASKS}
    existing = [name for name in contents if (root / name).exists()]
    if not force and len(existing) == len(contents):
        raise WgobuildError(f"{', '.join(existing)} already exist in {root}; use --force to overwrite them")
    written, kept = [], []
    if force or CONFIG_NAME not in existing:
        the_plan = plan(root, entrypoint)
        contents[CONFIG_NAME] = render_config(the_plan)
        entry = the_plan.binaries[0]
        print(f"module {the_plan.module}: project {the_plan.project!r}, "
              f"{_count(len(the_plan.binaries), 'binary', 'binaries')}")
        print(f"  entrypoint  {entry.name:14} {entry.package:22} {the_plan.entry_reason}")
        for p in the_plan.binaries[1:]:
            print(f"  binary      {p.name:14} {p.package:22} built and shipped in the image too")
        for p in the_plan.left_out:
            print(f"  left out    {p.name:14} {p.package:22} {p.left_out}: commented out in {CONFIG_NAME}")
    elif entrypoint:
        raise WgobuildError(f"--entrypoint: {CONFIG_NAME} already exists in {root}; add --force to write it again")
    for name, text in contents.items():
        path = root / name
        if name in existing and not force:
            same = name != CONFIG_NAME and path.read_text(encoding="utf-8", errors="replace") == text
            kept.append(f"{name} (unchanged)" if same else f"{name} (exists; --force overwrites it)")
            continue
        files.write_text(path, text)
        written.append(name)
    print(f"wrote {', '.join(written)} in {root}" + (f"; kept {', '.join(kept)}" if kept else ""))
    print("next: doit image      builds every binary for windows/amd64 and linux/amd64, tests, makes the images")
    print("      invoke --list   the admin tasks (harden, audit, scripts, run, serve); `wgobuild --help` for more")
    return 0
