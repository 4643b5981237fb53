"""``wgobuild.toml``: read, validate and freeze the project settings.

Each TOML table maps onto one frozen dataclass below. The loader is generic: it walks the dataclass fields, checks
types, rejects unknown keys and runs each section's ``check`` method, so a bad value is reported as
``wgobuild.toml: [build].platforms[1]: ...`` before anything is built. Keys are documented in ``docs/config.md``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import stat
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, TypeVar, dataclass_transform

from wgobuild.errors import ConfigError

CONFIG_NAME = "wgobuild.toml"

# GOOS/GOARCH pairs wgobuild targets. Windows entries may carry an os.version (``windows/amd64:10.0.20348``).
SUPPORTED_PLATFORMS = (
    "windows/amd64",
    "windows/arm64",
    "linux/amd64",
    "linux/arm64",
    "linux/arm",
    "darwin/amd64",
    "darwin/arm64",
)
# Windows Server LTSC releases: build number -> image tag of nanoserver/servercore.
WINDOWS_RELEASES = {"10.0.17763": "ltsc2019", "10.0.20348": "ltsc2022", "10.0.26100": "ltsc2025"}
DEFAULT_WINDOWS_VERSION = "10.0.20348"
# Base images given as local files (air-gapped sites): only the daemonless backend reads these.
LOCAL_BASE_PREFIXES = ("oci:", "oci-archive:", "docker-archive:")
DEFAULT_BASES = {"nanoserver": "mcr.microsoft.com/windows/nanoserver",
                 "servercore": "mcr.microsoft.com/windows/servercore"}
# Every validation pattern is used with re.fullmatch: ``$`` would also accept a trailing newline.
_OS_VERSION = re.compile(r"10\.0\.\d{5}(\.\d{1,9})?")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_GO_PACKAGE = re.compile(r"(\.|\./[A-Za-z0-9._/-]+|[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*)")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_-]{0,127}")
_BUILD_TAG = re.compile(r"[A-Za-z0-9_.]{1,128}")
_GO_DURATION = re.compile(r"\d{1,9}(ms|s|m|h)")
_REPOSITORY = re.compile(r"([a-z0-9.-]+(:\d{1,5})?/)?[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
_BASE_KEY = re.compile(r"(windows|linux)[-/](amd64|arm64|arm)(-\d{5})?")
_SCHEDULE = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
_PORT_SPEC = re.compile(r"(?:(\d{1,5}):)?(\d{1,5})(/(tcp|udp))?")
_RUN_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_. \\-]{0,63}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,63})?")
_SIZE = re.compile(r"\s{0,8}(\d{1,15}(?:\.\d{1,9})?)\s{0,8}([KMGT]?)(i?B)?\s{0,8}", re.IGNORECASE)

# Limits on what is read (a hostile wgobuild.toml must cost little and end in one ConfigError).
MAX_CONFIG_BYTES = 1024 * 1024  # checked before parsing
MAX_KEY_PARTS = 16  # parts of one dotted key or table header (tomllib's memory grows with the square of this)
MAX_KEYS = 10_000  # key/value pairs in the file
MAX_TABLES = 1_000  # [table] and [[array]] headers (tomllib slows down more than linearly with many)
MAX_DEPTH = 8  # nesting of tables and arrays; the schema needs 4
MAX_INT = 2**31 - 1  # whole numbers: every setting fits in a signed 32-bit int (PowerShell [int], Windows APIs)
MAX_FLOAT = 1e9  # seconds and CPU counts; also keeps sleeps and timers finite
MAX_SIZE = 2**50  # 1 PiB: the largest [limits].memory
MAX_PATH_CHARS = 1024  # a configured path; each part at most 255 (NAME_MAX, and the Windows limit)


# Settings sections: frozen, and without the generated __eq__/__hash__/__repr__ nothing uses; each generated method
# is compiled at import, on every run, no-op runs included.
_Section = TypeVar("_Section")


@dataclass_transform(frozen_default=True)
def section(cls: type[_Section]) -> type[_Section]:
    return dataclass(frozen=True, eq=False, repr=False)(cls)


@dataclass(frozen=True)
class Platform:
    """One build target: GOOS, GOARCH and, for Windows images, the host os.version it is meant for."""

    os: str
    arch: str
    os_version: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``os/arch[:os.version]``; raise ValueError with what is allowed."""
        spec, _, version = text.partition(":")
        if spec not in SUPPORTED_PLATFORMS:
            raise ValueError(f"{text!r} is not a supported platform; allowed: {', '.join(SUPPORTED_PLATFORMS)}")
        goos, goarch = spec.split("/")
        if version:
            if goos != "windows":
                raise ValueError(f"{text!r}: only windows platforms take an os.version")
            if not _OS_VERSION.fullmatch(version):
                raise ValueError(f"{text!r}: os.version must look like 10.0.20348")
        return cls(goos, goarch, version)

    @classmethod
    def host(cls) -> Platform:
        """This machine's GOOS/GOARCH: golden cases and ``serve`` run binaries built for it."""
        import platform as py_platform
        import sys

        machine = py_platform.machine().lower()
        arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
        return cls({"win32": "windows", "darwin": "darwin"}.get(sys.platform, "linux"), arch)

    @property
    def key(self) -> str:
        """``os-arch`` (plus ``-<build>`` for an explicit os.version): the folder name under ``dist/``."""
        suffix = f"-{self.os_version.split('.')[2]}" if self.os_version else ""
        return f"{self.os}-{self.arch}{suffix}"

    @property
    def goos_goarch(self) -> str:
        return f"{self.os}/{self.arch}"

    @property
    def exe_suffix(self) -> str:
        return ".exe" if self.os == "windows" else ""

    @property
    def windows_version(self) -> str:
        """The os.version this Windows target is built for (the configured one, else ltsc2022's)."""
        return self.os_version or DEFAULT_WINDOWS_VERSION

    @property
    def ltsc(self) -> str:
        """nanoserver/servercore tag for this target's os.version (``ltsc2022``)."""
        build = ".".join(self.windows_version.split(".")[:3])
        try:
            return WINDOWS_RELEASES[build]
        except KeyError:
            raise ValueError(f"no known Windows Server LTSC release for os.version {build}") from None

    def __str__(self) -> str:
        return f"{self.goos_goarch}:{self.os_version}" if self.os_version else self.goos_goarch


def relative_path_problem(value: str) -> str:
    """Why ``value`` cannot be a path relative to the module ("" when it can): no absolute, Windows drive-relative
    (``C:foo``) or rooted (``\\foo``) path, no ``..``, no over-long path or part. Checked the same on every OS."""
    if not value.strip():
        return "is empty"
    if len(value) > MAX_PATH_CHARS:
        return f"is longer than {MAX_PATH_CHARS} characters"
    windows = PureWindowsPath(value)
    if windows.drive or windows.root or PurePosixPath(value).is_absolute():
        return "must be relative to the module (no drive, no leading slash or backslash)"
    if ".." in windows.parts:
        return "must not contain '..'"
    if any(len(part) > 255 for part in windows.parts):
        return "has a part longer than 255 characters"
    return ""


def inside_module(root: Path, value: str) -> Path:
    """``root / value`` with symlinks resolved; ValueError when it is not strictly inside ``root``."""
    problem = relative_path_problem(value)
    if problem:
        raise ValueError(f"{value!r} {problem}")
    real_root = root.resolve()
    try:
        target = (real_root / value).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop, or a path the OS refuses
        raise ValueError(f"{value!r} cannot be resolved: {exc}") from None
    if target == real_root or real_root not in target.parents:
        raise ValueError(f"{value!r} resolves to {target}, which is not inside the module {real_root}")
    return target


# Host folders a log folder may never be: the folder itself and everything below it ("trees"), or the folder itself
# only ("exact": a subfolder such as /var/log/svc or C:\ProgramData\svc is fine). Compared case-insensitively on
# Windows. The module root, its parents, and the module's .git, .wgobuild and out_dir are refused too.
POSIX_SYSTEM_TREES = ("/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot", "/dev",
                      "/proc", "/sys", "/run", "/root", "/snap", "/var/lib", "/var/run", "/var/lock", "/var/spool",
                      "/var/cache", "/var/db")
POSIX_SYSTEM_EXACT = ("/", "/var", "/var/log", "/home", "/opt", "/srv", "/mnt", "/media", "/tmp", "/var/tmp")
WINDOWS_SYSTEM_TREES = ("\\windows", "\\programdata\\microsoft", "\\users\\default", "\\recovery",
                        "\\system volume information", "\\$recycle.bin", "\\boot")
WINDOWS_SYSTEM_EXACT = ("\\", "\\program files", "\\program files (x86)", "\\programdata", "\\users",
                        "\\users\\public")


def system_folder_problem(value: str, windows: bool) -> str:
    """Why the absolute host folder ``value`` must not receive logs or ACL changes ("" when it may)."""
    trees: tuple[str, ...]
    exact: tuple[str, ...]
    if windows:
        pure = PureWindowsPath(value.replace("/", "\\"))
        parts = [part.rstrip(" .").lower() for part in pure.parts[1:]]  # Windows drops trailing dots and spaces
        if any("~" in part or ":" in part for part in parts):
            return f"{value!r}: no short names (PROGRA~1) or streams (':') in a folder name; write the full name"
        rest = "\\" + "\\".join(parts)
        rest = rest.rstrip("\\") or "\\"
        trees, exact, sep = WINDOWS_SYSTEM_TREES, WINDOWS_SYSTEM_EXACT, "\\"
    else:
        rest = "/" + str(PurePosixPath(value)).lstrip("/")  # POSIX keeps a leading '//': /etc all the same
        rest = rest.rstrip("/") or "/"
        trees, exact, sep = POSIX_SYSTEM_TREES, POSIX_SYSTEM_EXACT, "/"
    if rest in exact or any(rest == tree or rest.startswith(tree + sep) for tree in trees):
        return f"{value!r} is a system folder (or inside one); use a folder of its own such as " + (
            "C:\\logs\\<service>" if windows else "/var/log/<service>")
    return ""


def log_folder_problem(folder: Path, root: Path, out_dir: Path, windows: bool = False) -> str:
    """Why the resolved host ``folder`` must not be mounted read-write for a container's logs ("" when it may)."""
    problem = system_folder_problem(str(folder), windows)
    if problem:
        return problem
    try:
        home = Path.home().resolve()
    except (OSError, RuntimeError):
        home = None
    if folder == home:
        return f"{str(folder)!r} is a home folder; use a folder of its own"
    real_root = root.resolve()
    if folder == real_root or folder in real_root.parents:
        return f"{str(folder)!r} holds the module itself; use a folder of its own such as 'logs'"
    for own in (real_root / ".git", real_root / ".wgobuild", out_dir.resolve()):
        if folder == own or own in folder.parents or folder in own.parents:
            return f"{str(folder)!r} overlaps {own}, which wgobuild or git writes; use a folder of its own"
    return ""


def _check_choice(where: str, value: str, choices: tuple[str, ...], path: Path) -> None:
    if value not in choices:
        raise ConfigError(path, where, f"{value!r} is not allowed; choose one of: {', '.join(choices)}")


def _check_name(where: str, value: str, path: Path) -> None:
    if not _NAME.fullmatch(value):
        raise ConfigError(path, where, f"{value!r} must be 1-63 letters, digits, '.', '_' or '-'")


@section
class Project:
    name: str = ""
    version: str = "git"
    source: str = ""

    def check(self, where: str, path: Path) -> None:
        _check_name(f"{where}.name", self.name, path)
        if not _VERSION.fullmatch(self.version):
            raise ConfigError(path, f"{where}.version", f"{self.version!r}: use 'git' or a version such as 1.2.3")


@section
class Binary:
    name: str
    package: str = "."
    image: bool = True  # false: built (and tested) but not shipped in the image

    def check(self, where: str, path: Path) -> None:
        _check_name(f"{where}.name", self.name, path)
        if not _GO_PACKAGE.fullmatch(self.package) or ".." in self.package.split("/") or len(self.package) > 255:
            raise ConfigError(path, f"{where}.package", f"{self.package!r} is not a Go package path such as ./cmd/svc")


@section
class Build:
    platforms: list[str] = field(default_factory=lambda: ["windows/amd64", "linux/amd64"])
    ldflags: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    cgo: bool = False
    trimpath: bool = True
    out_dir: str = "dist"

    def check(self, where: str, path: Path) -> None:
        if not self.platforms:
            raise ConfigError(path, f"{where}.platforms", "list at least one platform such as 'windows/amd64'")
        seen = set()
        for i, text in enumerate(self.platforms):
            try:
                plat = Platform.parse(text)
                if plat.os == "windows":
                    plat.ltsc  # noqa: B018 - validates the os.version
            except ValueError as exc:
                raise ConfigError(path, f"{where}.platforms[{i}]", str(exc)) from None
            if plat.key in seen:
                raise ConfigError(path, f"{where}.platforms[{i}]", f"{text!r} is listed twice")
            seen.add(plat.key)
        for i, tag in enumerate(self.tags):
            if not _BUILD_TAG.fullmatch(tag):
                raise ConfigError(path, f"{where}.tags[{i}]", f"{tag!r} is not a Go build tag")
        problem = relative_path_problem(self.out_dir)
        if problem or self.out_dir.strip("/\\. ") == "":
            raise ConfigError(path, f"{where}.out_dir", f"{self.out_dir!r}: {problem or 'is the module root'}; use "
                              "a folder inside the module, such as 'dist'")

    @property
    def targets(self) -> list[Platform]:
        return [Platform.parse(p) for p in self.platforms]


@section
class Test:
    packages: list[str] = field(default_factory=lambda: ["./..."])
    flags: list[str] = field(default_factory=list)
    timeout: str = "10m"
    enabled: bool = True

    def check(self, where: str, path: Path) -> None:
        if not _GO_DURATION.fullmatch(self.timeout):
            raise ConfigError(path, f"{where}.timeout", f"{self.timeout!r}: use a Go duration such as 90s or 10m")


@section
class Golden:
    name: str
    input: str
    expected: str
    binary: str = ""
    args: list[str] = field(default_factory=list)

    def check(self, where: str, path: Path) -> None:
        _check_name(f"{where}.name", self.name, path)


@section
class Image:
    backend: str = "auto"  # auto | engine | oci
    repository: str = ""  # default: project name
    tag: str = ""  # default: project version
    style: str = "prebuilt"  # prebuilt | multistage
    runtime: str = "nanoserver"  # nanoserver | servercore (Windows runtime stage)
    windows_base: str = "mcr.microsoft.com/windows/nanoserver"
    servercore_base: str = "mcr.microsoft.com/windows/servercore"
    linux_base: str = "scratch"
    go_image: str = "golang"  # no tag: the tag follows go.mod (dockerfile.builder_image)
    workdir: str = ""  # default: C:\app on Windows, /app on linux
    args: list[str] = field(default_factory=list)
    expose: list[int] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    user: str = ""  # default: ContainerUser on Windows, 65532 on linux
    push: bool = False
    isolation: str = ""  # "" | process | hyperv
    pull: str = "missing"  # missing | always | never
    build_args: dict[str, str] = field(default_factory=dict)
    cache_from: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=lambda: ["oci-layout", "docker-archive"])
    insecure_registries: list[str] = field(default_factory=list)
    offline: bool = False
    # Per-platform base override, keyed by platform key or os/arch ("windows-amd64-17763", "linux/amd64"); values
    # like windows_base: a registry reference, "oci:PATH", "oci-archive:PATH", "docker-archive:PATH" or "scratch".
    bases: dict[str, str] = field(default_factory=dict)

    def check(self, where: str, path: Path) -> None:
        _check_choice(f"{where}.backend", self.backend, ("auto", "engine", "oci"), path)
        _check_choice(f"{where}.style", self.style, ("prebuilt", "multistage"), path)
        _check_choice(f"{where}.runtime", self.runtime, ("nanoserver", "servercore"), path)
        _check_choice(f"{where}.isolation", self.isolation, ("", "process", "hyperv"), path)
        _check_choice(f"{where}.pull", self.pull, ("missing", "always", "never"), path)
        for i, out in enumerate(self.outputs):
            _check_choice(f"{where}.outputs[{i}]", out, ("oci-layout", "oci-tar", "docker-archive"), path)
        if self.repository and (not _REPOSITORY.fullmatch(self.repository) or len(self.repository) > 255):
            raise ConfigError(path, f"{where}.repository", f"{self.repository!r} is not a valid image repository")
        if self.tag and not _TAG.fullmatch(self.tag):
            raise ConfigError(path, f"{where}.tag", f"{self.tag!r} is not a valid image tag")
        for i, port in enumerate(self.expose):
            if not 0 < port < 65536:
                raise ConfigError(path, f"{where}.expose[{i}]", f"{port} is not a TCP port (1-65535)")
        for key in self.env:
            if not _ENV_NAME.fullmatch(key):
                raise ConfigError(path, f"{where}.env.{key}", "environment variable names are letters, digits, '_'")
        for key, spec in self.bases.items():
            if not _BASE_KEY.fullmatch(key):
                raise ConfigError(path, f"{where}.bases.{key}", "use a platform key such as 'windows-amd64-17763' "
                                  "or 'linux/amd64'")
            if not spec.strip():
                raise ConfigError(path, f"{where}.bases.{key}", "name a registry image, oci:PATH, oci-archive:PATH, "
                                  "docker-archive:PATH or scratch")


_CACHE_REGISTRY = re.compile(r"([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?"  # host[:port] / repository
                             r"/[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*")


@section
class Cache:
    """The team-wide build cache (wgobuild/teamcache.py): a repository in a registry, read-write or read-only."""

    registry: str = ""  # host[:port]/repository; "" = no team cache
    mode: str = "readwrite"  # readwrite | read

    def check(self, where: str, path: Path) -> None:
        _check_choice(f"{where}.mode", self.mode, ("readwrite", "read"), path)
        if self.registry and (not _CACHE_REGISTRY.fullmatch(self.registry) or len(self.registry) > 255):
            raise ConfigError(path, f"{where}.registry", f"{self.registry!r}: use host[:port]/repository, such as "
                              "'registry.example.com/team/wgobuild-cache' (a registry host and a lower-case path)")


@section
class Sign:
    """Signing on push (wgobuild/signing.py): the cosign-format private key written by ``wgobuild keygen``."""

    key: str = ""  # path of the encrypted private key, relative to the module root; "" = pushed images are unsigned

    def check(self, where: str, path: Path) -> None:
        if self.key and not self.key.strip():
            raise ConfigError(path, f"{where}.key", f"{self.key!r}: name the key file wgobuild keygen wrote, such as "
                              "'wgobuild.key'")


_DLL_NAME = re.compile(r"[A-Za-z0-9_.+-]{1,200}\.dll", re.IGNORECASE)


@section
class Policy:
    """What an image must satisfy before it ships (wgobuild/policy.py, wgobuild/secrets.py): checked by the image
    steps, before anything is pushed."""

    require_signature: bool = False  # push refused unless [sign] key is set
    max_image_mb: int = 0  # largest image (the size table's size, in MB of 10^6 bytes); 0 = no limit
    forbid_dlls: list[str] = field(default_factory=list)  # DLLs no shipped Windows executable may import
    allow_secrets: list[str] = field(default_factory=list)  # "path-glob:rule" keys the secret scan lets through

    def check(self, where: str, path: Path) -> None:
        if self.max_image_mb < 0:
            raise ConfigError(path, f"{where}.max_image_mb", "must be 0 (no limit) or a size in MB, such as 300")
        for i, dll in enumerate(self.forbid_dlls):
            if not _DLL_NAME.fullmatch(dll):
                raise ConfigError(path, f"{where}.forbid_dlls[{i}]", f"{dll!r}: name a DLL file, such as "
                                  "'opengl32.dll'")
        for i, key in enumerate(self.allow_secrets):
            pattern, sep, rule = key.rpartition(":")
            if not sep or not pattern.strip() or not rule.strip():
                raise ConfigError(path, f"{where}.allow_secrets[{i}]", f"{key!r}: use 'path-glob:rule' as the "
                                  "secret scan prints it, such as 'certs/test.pem:Private Key'")


@section
class Harden:
    service_name: str = ""  # default: project name
    services: list[str] = field(default_factory=lambda: ["Spooler"])
    features: list[str] = field(default_factory=lambda: ["SMB1Protocol", "MicrosoftWindowsPowerShellV2"])
    smb1_server: bool = False
    identity: str = "virtual"  # virtual | local-user
    account: str = ""  # local user name when identity = local-user
    install_dir: str = "C:\\app"
    log_dir: str = "C:\\logs"

    def check(self, where: str, path: Path) -> None:
        _check_choice(f"{where}.identity", self.identity, ("virtual", "local-user"), path)
        if self.identity == "local-user" and not self.account:
            raise ConfigError(path, f"{where}.account", "identity = 'local-user' needs an account name")


@section
class Logs:
    dir: str = "C:\\logs"
    pattern: str = "*.log"
    max_age_days: int = 1
    max_size_mb: int = 100
    keep: int = 14
    delaycompress: bool = True
    copytruncate: bool = True
    post_rotate: str = ""  # command name or absolute path, run with the call operator after a rotation
    post_rotate_args: list[str] = field(default_factory=list)
    schedule: str = "03:00"

    def check(self, where: str, path: Path) -> None:
        for key, most in (("max_age_days", 36500), ("max_size_mb", 1048576), ("keep", 100000)):
            if not 0 <= getattr(self, key) <= most:  # the ranges rotate-logs.ps1 accepts
                raise ConfigError(path, f"{where}.{key}", f"must be 0-{most}")
        if not _SCHEDULE.fullmatch(self.schedule):
            raise ConfigError(path, f"{where}.schedule", f"{self.schedule!r}: use a time of day such as 03:00")


@section
class Service:
    display_name: str = ""
    description: str = ""
    args: list[str] = field(default_factory=list)
    start: str = "auto"  # auto | delayed-auto | demand
    restart_delay_s: int = 60
    stop_timeout_s: int = 30
    binary: str = ""  # which [[binaries]] entry runs as the service; default: the first

    def check(self, where: str, path: Path) -> None:
        _check_choice(f"{where}.start", self.start, ("auto", "delayed-auto", "demand"), path)
        if not 0 <= self.restart_delay_s <= 86400:
            raise ConfigError(path, f"{where}.restart_delay_s", "must be 0-86400 seconds")
        if not 1 <= self.stop_timeout_s <= 3600:
            raise ConfigError(path, f"{where}.stop_timeout_s", "must be 1-3600 seconds")


@section
class Limits:
    memory: str = ""  # e.g. "512MiB"; "" = no cap
    cpus: float = 0.0  # 0 = no cap
    handles: int = 0  # open handles / file descriptors; 0 = no cap
    affinity: list[int] = field(default_factory=list)
    priority: str = "normal"  # idle | below-normal | normal | above-normal | high
    pids: int = 0  # max processes in a linux container; 0 = no cap

    def check(self, where: str, path: Path) -> None:
        _check_choice(
            f"{where}.priority", self.priority, ("idle", "below-normal", "normal", "above-normal", "high"), path
        )
        if self.memory:
            try:
                size = parse_size(self.memory)
            except ValueError as exc:
                raise ConfigError(path, f"{where}.memory", str(exc)) from None
            if size < 6 * 1024 * 1024:  # Docker's minimum; a Go service cannot start in less either
                raise ConfigError(path, f"{where}.memory", f"{self.memory!r} is below the 6MiB minimum, e.g. 256MiB")
        if not 0 <= self.cpus <= 1024:  # also rejects NaN
            raise ConfigError(path, f"{where}.cpus", f"{self.cpus}: use 0 (no cap) or a CPU count such as 1.5")
        if self.handles < 0 or 0 < self.handles < 32:
            raise ConfigError(path, f"{where}.handles", f"{self.handles}: use 0 (no cap) or 32 or more")
        if self.pids < 0 or 0 < self.pids < 4:
            raise ConfigError(path, f"{where}.pids", f"{self.pids}: use 0 (no cap) or 4 or more")
        for i, cpu in enumerate(self.affinity):
            if cpu < 0 or cpu in self.affinity[:i]:
                raise ConfigError(path, f"{where}.affinity[{i}]", f"{cpu}: CPU numbers are 0 or more, each listed once")


@section
class Run:
    name: str = ""  # container name; default: project name
    ports: list[str] = field(default_factory=list)  # "8080:8080"
    restart: str = "on-failure"  # no | always | unless-stopped | on-failure
    retries: int = 5
    read_only: bool = True
    log_dir: str = ""  # host folder mounted for logs
    args: list[str] = field(default_factory=list)
    stop_grace_s: int = 10
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    max_restarts: int = 10
    log_max_mb: int = 10
    log_keep: int = 5
    image: str = ""  # image to run; default: this project's image for the engine's platform
    user: str = ""  # container user; default: [image].user, else the image's own USER
    log_mount: str = ""  # where log_dir appears in the container; default C:\\logs (Windows) or /logs (linux)
    binary: str = ""  # binary `serve` runs; default: the first [[binaries]] entry
    env: dict[str, str] = field(default_factory=dict)
    healthy_after_s: float = 30.0  # a run this long resets the back-off and the restart count
    network: str = ""  # container network; default: the engine's (bridge on linux, nat on Windows)

    def check(self, where: str, path: Path) -> None:
        _check_choice(f"{where}.restart", self.restart, ("no", "always", "unless-stopped", "on-failure"), path)
        hosts: set[str] = set()
        for i, spec in enumerate(self.ports):
            match = _PORT_SPEC.fullmatch(spec)
            if not match:
                raise ConfigError(path, f"{where}.ports[{i}]", f"{spec!r}: use 'HOST:CONTAINER' such as '8080:8080'")
            if not all(0 < int(n) < 65536 for n in match.group(1, 2) if n):
                raise ConfigError(path, f"{where}.ports[{i}]", f"{spec!r}: ports are 1-65535")
            host = f"{match[1]}{match[3] or '/tcp'}"
            if match[1] and host in hosts:
                raise ConfigError(path, f"{where}.ports[{i}]", f"{spec!r}: host port {match[1]} is published twice")
            hosts.add(host)
        for key in ("retries", "stop_grace_s", "max_restarts", "log_keep"):
            if getattr(self, key) < 0:
                raise ConfigError(path, f"{where}.{key}", "must be 0 or more")
        if self.log_max_mb < 1:
            raise ConfigError(path, f"{where}.log_max_mb", "must be 1 or more")
        for key in ("backoff_initial_s", "healthy_after_s"):
            if not getattr(self, key) > 0:
                raise ConfigError(path, f"{where}.{key}", "must be more than 0 seconds")
        if not self.backoff_max_s >= self.backoff_initial_s:
            raise ConfigError(path, f"{where}.backoff_max_s", "must be at least backoff_initial_s")
        if self.user and not _RUN_USER.fullmatch(self.user):
            raise ConfigError(path, f"{where}.user", f"{self.user!r} is not a user name, uid or uid:gid")
        if self.binary:
            _check_name(f"{where}.binary", self.binary, path)
        if self.network:
            _check_name(f"{where}.network", self.network, path)
        for key in self.env:
            if not _ENV_NAME.fullmatch(key):
                raise ConfigError(path, f"{where}.env.{key}", "environment variable names are letters, digits, '_'")


@section
class Config:
    """The whole validated configuration of one Go module."""

    root: Path
    path: Path
    project: Project
    binaries: list[Binary]
    build: Build
    test: Test
    golden: list[Golden]
    image: Image
    harden: Harden
    logs: Logs
    service: Service
    limits: Limits
    run: Run
    engines: dict[str, str]  # [engines]: platform -> docker context name or engine URL (see engine_for)
    cache: Cache
    sign: Sign
    policy: Policy

    @property
    def out_dir(self) -> Path:
        return self.root / self.build.out_dir

    @property
    def state_dir(self) -> Path:
        """Tool folder for doit's state DB and caches (never the user's cwd)."""
        return self.root / ".wgobuild"

    @property
    def reports_dir(self) -> Path:
        return self.out_dir / "reports"

    @property
    def platforms(self) -> list[Platform]:
        return self.build.targets

    @property
    def image_repository(self) -> str:
        return self.image.repository or self.project.name.lower()

    @property
    def service_name(self) -> str:
        return self.harden.service_name or self.project.name

    @property
    def entrypoint(self) -> Binary:
        """The first ``[[binaries]]`` entry: what the image runs, the default service and ``invoke serve`` binary."""
        return self.binaries[0]

    @property
    def image_binaries(self) -> list[Binary]:
        """The binaries shipped in the image (``image = false`` ones are only built); the entrypoint comes first."""
        return [b for b in self.binaries if b.image]

    def base_source(self, platform: Platform) -> str:
        """The configured base of ``platform`` as written: ``[image].bases`` override, else the os's default
        (``servercore_base`` for a servercore runtime). A registry reference, ``oci:``/``oci-archive:``/
        ``docker-archive:`` PATH, or ``scratch``."""
        image = self.image
        if platform.os == "windows":
            default = image.servercore_base if image.runtime == "servercore" else image.windows_base
        else:
            default = image.linux_base
        return image.bases.get(platform.key) or image.bases.get(platform.goos_goarch) or default

    def engine_for(self, platform: Platform) -> str:
        """The engine ``[engines]`` maps ``platform`` to: a docker context name or an engine URL; "" for the default
        engine (``DOCKER_HOST``, else the current docker context). A key with an os.version wins over a bare
        ``os/arch`` key."""
        found = ""
        for key, engine in self.engines.items():
            wanted = Platform.parse(key)
            if wanted.goos_goarch != platform.goos_goarch:
                continue
            if not wanted.os_version:
                found = found or engine
            elif _build_number(wanted) == _build_number(platform):
                return engine
        return found

    def binary_path(self, binary: Binary, platform: Platform) -> Path:
        """``dist/<os>-<arch>/<name>[.exe]``: one binary per GOOS/GOARCH, shared by every os.version image."""
        return self.out_dir / f"{platform.os}-{platform.arch}" / f"{binary.name}{platform.exe_suffix}"


_SECTIONS: dict[str, type] = {
    "project": Project,
    "build": Build,
    "test": Test,
    "image": Image,
    "harden": Harden,
    "logs": Logs,
    "service": Service,
    "limits": Limits,
    "run": Run,
    "cache": Cache,
    "sign": Sign,
    "policy": Policy,
}
_LISTS: dict[str, type] = {"binaries": Binary, "golden": Golden}


def parse_size(text: str) -> int:
    """``512MiB``/``1GB``/``64M`` -> bytes; ValueError naming the allowed units."""
    match = _SIZE.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not a size; use a number with KiB, MiB, GiB (or KB, MB, GB), such as 512MiB")
    number, unit, suffix = float(match[1]), match[2].upper(), (match[3] or "").lower()
    base = 1024 if suffix in ("ib", "") else 1000
    value = int(number * base ** " KMGT".index(unit or " "))
    if value <= 0:
        raise ValueError(f"{text!r} must be more than 0")
    if value > MAX_SIZE:
        raise ValueError(f"{text!r} is more than 1PiB")
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str, path: Path) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(path, where, f"expected a list of {_type_name(item_tp)}, got {type(value).__name__}")
        return [_coerce(v, item_tp, f"{where}[{i}]", path) for i, v in enumerate(value)]
    if origin is dict:
        _, val_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(path, where, f"expected a table, got {type(value).__name__}")
        for k in value:
            if "\x00" in k or not k.isprintable():
                raise ConfigError(path, f"{where}.{k!r}", "keys must be printable text (no NUL or control characters)")
        return {str(k): _coerce(v, val_tp, f"{where}.{k}", path) for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > MAX_FLOAT:
            raise ConfigError(path, where, f"must be between {-MAX_FLOAT:g} and {MAX_FLOAT:g}")
        return float(value)
    if (tp is int and isinstance(value, bool)) or not isinstance(value, tp):
        shown = repr(value) if isinstance(value, str | bool) else type(value).__name__
        if isinstance(value, int | float) and not isinstance(value, bool):
            shown = f"{value:.6g}" if isinstance(value, float) else ("a number" if abs(value) > MAX_INT else str(value))
        raise ConfigError(path, where, f"expected {_type_name(tp)}, got {type(value).__name__} {shown[:80]}")
    if tp is str and "\x00" in value:
        raise ConfigError(path, where, "must not contain a NUL character")
    if tp is int and not -MAX_INT - 1 <= value <= MAX_INT:
        raise ConfigError(path, where, f"must be between {-MAX_INT - 1} and {MAX_INT}")
    if tp is float and not (math.isfinite(value) and abs(value) <= MAX_FLOAT):
        raise ConfigError(path, where, f"must be a finite number between {-MAX_FLOAT:g} and {MAX_FLOAT:g}")
    return value


def _shown_key(key: str) -> str:
    """A key as it may appear in a one-line message: quoted when it holds anything but printable text."""
    return key if key.isprintable() and len(key) <= 80 else repr(key[:80])


def check_field(cls: type, name: str, value: Any, where: str, path: Path) -> Any:
    """``value`` for field ``name`` of section ``cls`` with the file's type checks and bounds (flag overrides)."""
    return _coerce(value, typing.get_type_hints(cls)[name], where, path)


def _load_table(cls: type, table: Any, where: str, path: Path) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(path, where, f"expected a table, got {type(table).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(path, f"{where}.{_shown_key(unknown[0])}", f"unknown key; allowed keys: {', '.join(fields)}")
    values = {}
    for name, f in fields.items():
        if name in table:
            values[name] = _coerce(table[name], hints[name], f"{where}.{name}", path)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(path, f"{where}.{name}", "is required")
    obj = cls(**values)
    obj.check(where, path)
    return obj


def load(root: Path | str = ".", path: Path | str | None = None) -> Config:
    """Load and validate ``wgobuild.toml`` of the module at ``root``; raise ConfigError naming the key."""
    root = Path(root).resolve()
    path = Path(path).resolve() if path else root / CONFIG_NAME
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO would block, a device never end
            os.close(fd)
            raise ConfigError(path, "", "is not a regular file")
        with open(fd, "rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)  # the size cap holds for growing files too
    except FileNotFoundError:
        raise ConfigError(path, "", "not found; run 'wgobuild init' in the Go module root to write one") from None
    except OSError as exc:
        raise ConfigError(path, "", f"cannot be read: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(path, "", f"is larger than {MAX_CONFIG_BYTES // 1024} KiB; a wgobuild.toml is a few KiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, "", f"is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    _check_shape(text, path)
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:  # RecursionError: only if _check_shape missed nesting
        why = f"nested more than {MAX_DEPTH} levels deep" if isinstance(exc, RecursionError) else str(exc)
        raise ConfigError(path, "", f"malformed TOML: {why}") from None
    _check_depth(data, path)
    return from_dict(data, root, path)


def _check_shape(text: str, path: Path) -> None:
    """Before parsing: at most MAX_KEYS keys, MAX_TABLES headers and MAX_KEY_PARTS parts per dotted key or header,
    nesting at most MAX_DEPTH. One linear pass that skips strings and comments; a bound, not a parser (tomllib
    judges the rest)."""
    i, n, keys, tables, dots, depth, line_start = 0, len(text), 0, 0, 0, 0, True
    while i < n:
        ch = text[i]
        if ch == "[" and line_start and depth == 0:
            tables += 1
            if tables > MAX_TABLES:
                raise ConfigError(path, "", f"has more than {MAX_TABLES} [tables]")
        line_start = ch == "\n" or (line_start and ch in " \t")
        if ch in "\"'":
            triple = text.startswith(ch * 3, i)
            end_quote = ch * 3 if triple else ch
            i += 3 if triple else 1
            while i < n and not text.startswith(end_quote, i):
                if ch == '"' and text[i] == "\\":
                    i += 1
                elif not triple and text[i] == "\n":
                    break  # an unterminated one-line string: tomllib reports it
                i += 1
            i += len(end_quote)
            while triple and i < n and text[i] == ch and text.startswith(end_quote, i - 2):
                i += 1  # up to two quotes may end a multi-line string's content: """a""""
            continue
        if ch == "#":
            while i < n and text[i] != "\n":
                i += 1
            continue
        if ch == ".":
            dots += 1
            if dots >= MAX_KEY_PARTS:
                raise ConfigError(path, "", f"a dotted key or table name has more than {MAX_KEY_PARTS} parts")
        elif ch in "=,{}\n":
            dots = 0
            if ch == "=":
                keys += 1
                if keys > MAX_KEYS:
                    raise ConfigError(path, "", f"has more than {MAX_KEYS} keys")
        if ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigError(path, "", f"nested more than {MAX_DEPTH} levels deep")
        elif ch in "]}":
            depth = max(0, depth - 1)
        i += 1


def _check_depth(data: dict[str, Any], path: Path) -> None:
    """After parsing: no table or array nested deeper than MAX_DEPTH (iterative: no recursion to exhaust)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ConfigError(path, "", f"nested more than {MAX_DEPTH} levels deep")
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def from_dict(data: dict[str, Any], root: Path, path: Path) -> Config:
    """Validate an already-parsed TOML document (also used by tests and ``wgobuild init``)."""
    allowed = [*_SECTIONS, *_LISTS, "engines"]
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ConfigError(path, _shown_key(unknown[0]), f"unknown section; allowed: {', '.join(allowed)}")
    project_table = dict(data.get("project", {})) if isinstance(data.get("project", {}), dict) else data["project"]
    if isinstance(project_table, dict):
        project_table.setdefault("name", root.name)
    sections = {name: _load_table(cls, data.get(name, {}) if name != "project" else project_table, f"[{name}]", path)
                for name, cls in _SECTIONS.items()}
    lists: dict[str, list[Any]] = {}
    for name, cls in _LISTS.items():
        raw = data.get(name, [])
        if not isinstance(raw, list):
            raise ConfigError(path, name, f"expected an array of tables ([[{name}]]), got {type(raw).__name__}")
        lists[name] = [_load_table(cls, item, f"{name}[{i}]", path) for i, item in enumerate(raw)]
    if not lists["binaries"]:
        raise ConfigError(path, "binaries", "list at least one [[binaries]] entry with name and package")
    _unique(path, "binaries", [b.name for b in lists["binaries"]])
    if not lists["binaries"][0].image:
        raise ConfigError(path, "binaries[0].image", "the first [[binaries]] entry is the image's entrypoint and "
                          "must be shipped in it; list the binary the image runs first")
    _unique(path, "golden", [g.name for g in lists["golden"]])
    names = {b.name for b in lists["binaries"]}
    for i, binary in enumerate(lists["binaries"]):
        folder = root / binary.package
        if binary.package not in (".", "./"):
            try:
                folder = inside_module(root, binary.package)
            except ValueError as exc:
                raise ConfigError(path, f"binaries[{i}].package", str(exc)) from None
        if not _is_main_package(folder):
            raise ConfigError(path, f"binaries[{i}].package",
                              f"{binary.package!r}: no 'package main' Go file there (relative to {root})")
    for i, case in enumerate(lists["golden"]):
        if case.binary and case.binary not in names:
            raise ConfigError(path, f"golden[{i}].binary",
                              f"{case.binary!r} is not one of the binaries: {sorted(names)}")
        for key in ("input", "expected"):
            try:
                target = inside_module(root, getattr(case, key))
            except ValueError as exc:
                raise ConfigError(path, f"golden[{i}].{key}", str(exc)) from None
            if not target.is_file():
                raise ConfigError(path, f"golden[{i}].{key}", f"{getattr(case, key)!r}: no such file")
    _check_folders(sections, root, path)
    engines = _load_engines(data.get("engines", {}), sections["build"].targets, path)
    return Config(root=root, path=path, binaries=lists["binaries"], golden=lists["golden"], engines=engines,
                  **sections)


# [engines] values: an engine URL of these schemes, or a docker context name (the docker CLI's own name rule).
ENGINE_SCHEMES = ("unix", "tcp", "ssh", "npipe")
_CONTEXT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}")
_ENGINE_URL = re.compile(r"([a-z]+)://([^\s]{1,1000})")


def _build_number(platform: Platform) -> str:
    """``10.0.17763`` of a Windows platform (its os.version without the revision), "" for other OSes."""
    return ".".join(platform.windows_version.split(".")[:3]) if platform.os == "windows" else ""


def _load_engines(table: Any, targets: list[Platform], path: Path) -> dict[str, str]:
    """``[engines]``: each key a platform this project builds (``os/arch`` or ``os/arch:os.version``), each value a
    docker context name or an engine URL (unix://, tcp://, ssh://, npipe://). Whether a context exists is checked
    when a build starts (``engine.check_contexts``): other commands (``invoke harden`` on a server) need none."""
    engines: dict[str, str] = _coerce(table, dict[str, str], "[engines]", path)
    for key, value in engines.items():
        where = f'[engines]."{_shown_key(key)}"'
        try:
            wanted = Platform.parse(key)
        except ValueError as exc:
            raise ConfigError(path, where, f"{exc}; a key is a platform of [build].platforms") from None
        if not any(p.goos_goarch == wanted.goos_goarch and (not wanted.os_version or
                   _build_number(p) == _build_number(wanted)) for p in targets):
            raise ConfigError(path, where, f"{key!r} is not built by this project ([build].platforms: "
                              f"{', '.join(str(p) for p in targets)}); map only platforms it builds")
        match = _ENGINE_URL.fullmatch(value)
        if match:
            if match[1] not in ENGINE_SCHEMES:
                raise ConfigError(path, where, f"{value!r}: an engine URL starts with "
                                  f"{', '.join(s + '://' for s in ENGINE_SCHEMES)}")
        elif "://" in value or not _CONTEXT_NAME.fullmatch(value):
            raise ConfigError(path, where, f"{value!r} is neither a docker context name (letters, digits, '_', '.', "
                              f"'+', '-') nor an engine URL ({', '.join(s + '://' for s in ENGINE_SCHEMES)})")
    return engines


def _check_folders(sections: dict[str, Any], root: Path, path: Path) -> None:
    """Folders that need the module root: out_dir strictly inside it (symlinks resolved), log folders by the rule
    of :func:`log_folder_problem`."""
    build, run = sections["build"], sections["run"]
    try:
        out_dir = inside_module(root, build.out_dir)
    except ValueError as exc:
        raise ConfigError(path, "[build].out_dir", str(exc)) from None
    if out_dir.name in (".git", ".wgobuild") or out_dir in (root.resolve() / ".git", root.resolve() / ".wgobuild"):
        raise ConfigError(path, "[build].out_dir", f"{build.out_dir!r} is a folder git or wgobuild keeps; use 'dist'")
    if run.log_dir:
        windows = PureWindowsPath(run.log_dir)
        if windows.drive or run.log_dir.startswith("\\"):  # a folder on a Windows engine's host: judged as text
            problem = system_folder_problem(run.log_dir, windows=True) or _path_text_problem(run.log_dir)
            if not (windows.drive and windows.root) or windows.drive.startswith("\\"):
                problem = f"{run.log_dir!r}: use a local path with a drive letter (C:\\logs\\svc) or a relative one"
        elif PurePosixPath(run.log_dir).is_absolute():
            problem = _path_text_problem(run.log_dir)
            if not problem:
                try:
                    problem = log_folder_problem(Path(run.log_dir).resolve(), root, out_dir)
                except (OSError, RuntimeError) as exc:
                    problem = f"{run.log_dir!r} cannot be resolved: {exc}"
        else:
            try:
                problem = log_folder_problem(inside_module(root, run.log_dir), root, out_dir)
            except ValueError as exc:
                problem = str(exc)
        if problem:
            raise ConfigError(path, "[run].log_dir", problem)


def _path_text_problem(value: str) -> str:
    if len(value) > MAX_PATH_CHARS or any(len(part) > 255 for part in PurePosixPath(value).parts):
        return f"{value[:60]!r}... is longer than {MAX_PATH_CHARS} characters or has a part over 255"
    return ""


def _unique(path: Path, key: str, names: list[str]) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise ConfigError(path, f"{key}[{i}].name", f"{name!r} is used twice")
        seen.add(name)


_PACKAGE_MAIN = re.compile(rb"^\s*package\s+main\b", re.MULTILINE)


def _is_main_package(folder: Path) -> bool:
    """True when ``folder`` holds a non-test Go file declaring ``package main``."""
    if not folder.is_dir():
        return False
    for file in folder.glob("*.go"):
        if not file.name.endswith("_test.go") and _PACKAGE_MAIN.search(file.read_bytes()):
            return True
    return False

