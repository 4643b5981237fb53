"""``wgobuild.toml``: read, validate and freeze the project settings.

Each TOML table maps onto one frozen dataclass below. The loader is generic: it walks the dataclass fields, checks
types, rejects unknown keys and runs each section's ``check`` method, so a bad value is reported as
``wgobuild.toml: [build].platforms[1]: ...`` before anything is built. Keys are documented in ``docs/config.md``.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
_OS_VERSION = re.compile(r"^10\.0\.\d{5}(\.\d+)?$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_GO_PACKAGE = re.compile(r"^(\.|\./[A-Za-z0-9._/-]+|[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*)$")


# Settings sections: frozen, and without the generated __eq__/__hash__/__repr__ nothing uses; each generated method
# is compiled at import, on every run, no-op runs included.
section = dataclass(frozen=True, eq=False, repr=False)


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
            if not _OS_VERSION.match(version):
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


def _check_choice(where: str, value: str, choices: tuple[str, ...], path: Path) -> None:
    if value not in choices:
        raise ConfigError(path, where, f"{value!r} is not allowed; choose one of: {', '.join(choices)}")


def _check_name(where: str, value: str, path: Path) -> None:
    if not _NAME.match(value):
        raise ConfigError(path, where, f"{value!r} must be 1-63 letters, digits, '.', '_' or '-'")


@section
class Project:
    name: str = ""
    version: str = "git"
    source: str = ""

    def check(self, where: str, path: Path) -> None:
        _check_name(f"{where}.name", self.name, path)
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9.+_-]*$", self.version):
            raise ConfigError(path, f"{where}.version", f"{self.version!r}: use 'git' or a version such as 1.2.3")


@section
class Binary:
    name: str
    package: str = "."

    def check(self, where: str, path: Path) -> None:
        _check_name(f"{where}.name", self.name, path)
        if not _GO_PACKAGE.match(self.package) or ".." in self.package.split("/"):
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
            if not re.match(r"^[A-Za-z0-9_.]+$", tag):
                raise ConfigError(path, f"{where}.tags[{i}]", f"{tag!r} is not a Go build tag")
        if Path(self.out_dir).is_absolute() or ".." in Path(self.out_dir).parts:
            raise ConfigError(path, f"{where}.out_dir", "must be a folder inside the module, such as 'dist'")

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
        if not re.match(r"^\d+(ms|s|m|h)$", self.timeout):
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
        if self.repository and not re.match(
            r"^([a-z0-9.-]+(:\d+)?/)?[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$", self.repository
        ):
            raise ConfigError(path, f"{where}.repository", f"{self.repository!r} is not a valid image repository")
        if self.tag and not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", self.tag):
            raise ConfigError(path, f"{where}.tag", f"{self.tag!r} is not a valid image tag")
        for i, port in enumerate(self.expose):
            if not 0 < port < 65536:
                raise ConfigError(path, f"{where}.expose[{i}]", f"{port} is not a TCP port (1-65535)")
        for key in self.env:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise ConfigError(path, f"{where}.env.{key}", "environment variable names are letters, digits, '_'")
        for key, spec in self.bases.items():
            if not re.match(r"^(windows|linux)[-/](amd64|arm64|arm)(-\d{5})?$", key):
                raise ConfigError(path, f"{where}.bases.{key}", "use a platform key such as 'windows-amd64-17763' "
                                  "or 'linux/amd64'")
            if not spec.strip():
                raise ConfigError(path, f"{where}.bases.{key}", "name a registry image, oci:PATH, oci-archive:PATH, "
                                  "docker-archive:PATH or scratch")


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
        for key in ("max_age_days", "max_size_mb", "keep"):
            if getattr(self, key) < 0:
                raise ConfigError(path, f"{where}.{key}", "must be 0 or more")
        if not re.match(r"^([01]\d|2[0-3]):[0-5]\d$", self.schedule):
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
            match = re.match(r"^(?:(\d{1,5}):)?(\d{1,5})(/(tcp|udp))?$", spec)
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
        if self.user and not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_. \\-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$", self.user):
            raise ConfigError(path, f"{where}.user", f"{self.user!r} is not a user name, uid or uid:gid")
        if self.binary:
            _check_name(f"{where}.binary", self.binary, path)
        if self.network:
            _check_name(f"{where}.network", self.network, path)
        for key in self.env:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
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
}
_LISTS: dict[str, type] = {"binaries": Binary, "golden": Golden}


def parse_size(text: str) -> int:
    """``512MiB``/``1GB``/``64M`` -> bytes; ValueError naming the allowed units."""
    match = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?\s*$", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"{text!r} is not a size; use a number with KiB, MiB, GiB (or KB, MB, GB), such as 512MiB")
    number, unit, suffix = float(match[1]), match[2].upper(), (match[3] or "").lower()
    base = 1024 if suffix in ("ib", "") else 1000
    value = int(number * base ** " KMGT".index(unit or " "))
    if value <= 0:
        raise ValueError(f"{text!r} must be more than 0")
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
        return {str(k): _coerce(v, val_tp, f"{where}.{k}", path) for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (tp is int and isinstance(value, bool)) or not isinstance(value, tp):
        raise ConfigError(path, where, f"expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if tp is str and "\x00" in value:
        raise ConfigError(path, where, "must not contain a NUL character")
    return value


def _load_table(cls: type, table: Any, where: str, path: Path) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(path, where, f"expected a table, got {type(table).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(path, f"{where}.{unknown[0]}", f"unknown key; allowed keys: {', '.join(fields)}")
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
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, "", "not found; run 'wgobuild init' in the Go module root to write one") from None
    except UnicodeDecodeError:
        raise ConfigError(path, "", "is not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"malformed TOML: {exc}") from None
    return from_dict(data, root, path)


def from_dict(data: dict[str, Any], root: Path, path: Path) -> Config:
    """Validate an already-parsed TOML document (also used by tests and ``wgobuild init``)."""
    allowed = [*_SECTIONS, *_LISTS]
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ConfigError(path, unknown[0], f"unknown section; allowed: {', '.join(allowed)}")
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
    _unique(path, "golden", [g.name for g in lists["golden"]])
    names = {b.name for b in lists["binaries"]}
    for i, binary in enumerate(lists["binaries"]):
        if not _is_main_package(root / binary.package):
            raise ConfigError(path, f"binaries[{i}].package",
                              f"{binary.package!r}: no 'package main' Go file there (relative to {root})")
    for i, case in enumerate(lists["golden"]):
        if case.binary and case.binary not in names:
            raise ConfigError(path, f"golden[{i}].binary",
                              f"{case.binary!r} is not one of the binaries: {sorted(names)}")
        for key in ("input", "expected"):
            if not (root / getattr(case, key)).is_file():
                raise ConfigError(path, f"golden[{i}].{key}", f"{getattr(case, key)!r}: no such file")
    return Config(root=root, path=path, binaries=lists["binaries"], golden=lists["golden"], **sections)


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

