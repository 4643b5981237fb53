"""Render the Dockerfile and .dockerignore of each platform from the templates shipped in ``wgobuild/templates``.

Why templates plus small Python blocks: the templates keep each Dockerfile's shape readable, while every value
coming from ``wgobuild.toml`` goes through one of three doors here: exec-form arrays (``ENTRYPOINT``, ``CMD``,
``COPY``, ``RUN`` in builder stages) are JSON from ``json.dumps``; ``ENV``/``LABEL`` values are double-quoted with
the Dockerfile's escape character before ``"``, ``$`` and itself; everything else (images, paths, users, ports) is
validated against a strict pattern. Windows Dockerfiles use ``# escape=``` so ``C:\\app`` paths stay literal.
No PowerShell is ever rendered into a nanoserver stage: only the servercore runtime gets a ``SHELL`` and ``RUN``.

A small parser (:func:`parse`) reads Dockerfiles back instruction by instruction: the tests check structure with
it, and the engine uses it to find base images.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from wgobuild import files
from wgobuild.config import DEFAULT_BASES, LOCAL_BASE_PREFIXES, Binary, Config, Platform
from wgobuild.errors import ConfigError, WgobuildError

TEMPLATE_DIR = Path(__file__).parent / "templates"
SERVERCORE_SCRIPTS = ("harden.ps1", "cleanup.ps1")  # rendered into dist/powershell/ by the scripts step
WINDOWS_USER = "ContainerUser"  # nanoserver's (and servercore's) unprivileged account
LINUX_USER = "65532:65532"  # the usual "nonroot" uid:gid of distroless images
_SCRIPT_DIR = "C:\\wgobuild"

_REFERENCE = re.compile(
    r"\A(((localhost|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)(:\d+)?|[A-Za-z0-9-]+:\d+)/)?"
    r"[a-z0-9]+([._-]{1,2}[a-z0-9]+)*(/[a-z0-9]+([._-]{1,2}[a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?\Z"
)
_USER = re.compile(r"\A([A-Za-z_][A-Za-z0-9_.-]{0,31}|\d{1,10})(:([A-Za-z_][A-Za-z0-9_.-]{0,31}|\d{1,10}))?\Z")
_WINDOWS_DIR = re.compile(r"\A[A-Za-z]:(\\[A-Za-z0-9_.-]+)*\\?\Z")
_LINUX_DIR = re.compile(r"\A/([A-Za-z0-9_.-]+/?)*\Z")
_RELATIVE_FILE = re.compile(r"\A[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*\Z")
_LABEL_KEY = re.compile(r"\A[a-z0-9]([a-z0-9._/-]*[a-z0-9])?\Z")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


# ---------------------------------------------------------------------------------------------------------------
# Quoting and validation


def quote(value: str, escape: str = "\\") -> str:
    """A double-quoted Dockerfile word for ENV/LABEL: ``"``, ``$`` and the escape character are escaped.

    Control characters (a newline would end the instruction) are refused with ValueError.
    """
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError(f"{value!r} contains a control character (newline, tab, ...)")
    return '"' + "".join(escape + ch if ch in ('"', "$", escape) else ch for ch in value) + '"'


def exec_form(argv: list[str]) -> str:
    """JSON array for exec-form instructions (no shell, no variable expansion in ENTRYPOINT/CMD/RUN)."""
    return json.dumps([str(a) for a in argv])


def _value(config: Config, key: str, value: str, escape: str) -> str:
    try:
        return quote(value, escape)
    except ValueError as exc:
        raise ConfigError(config.path, key, str(exc)) from None


def _image(config: Config, key: str, reference: str) -> str:
    if reference != "scratch" and not _REFERENCE.match(reference):
        raise ConfigError(config.path, key, f"{reference!r} is not an image reference such as "
                                            "'mcr.microsoft.com/windows/nanoserver' or 'registry:5000/base:1.0'")
    return reference


def _with_tag(reference: str, tag: str) -> str:
    """``repo`` -> ``repo:tag``; a reference that already names a tag or digest is kept as it is."""
    last = reference.rsplit("/", 1)[-1]
    return reference if ":" in last or "@" in reference else f"{reference}:{tag}"


# Windows releases docker-library/golang publishes ``golang:<X.Y>-windowsservercore-<ltsc>`` tags for (checked
# against docker-library/golang's versions.json on 2026-11-29: Go 1.25 and 1.26, ltsc2022 and ltsc2025; the
# ltsc2019 tags were named ``-1809`` and were removed in May 2025). docs/windows.md keeps the table.
GOLANG_WINDOWS_RELEASES = ("ltsc2022", "ltsc2025")
_GO_LINE = re.compile(r"^\s*(?:go|toolchain\s+go)\s*(\d+)\.(\d+)", re.MULTILINE)


def go_release(root: Path) -> str:
    """``X.Y`` of the Go release the module asks for: its ``toolchain`` line, else its ``go`` line."""
    try:
        text = (root / "go.mod").read_text(encoding="utf-8", errors="replace")[:1 << 20]
    except OSError:
        return ""
    found = {m.group(0).split()[0]: f"{m[1]}.{m[2]}" for m in _GO_LINE.finditer(text)}
    return found.get("toolchain") or found.get("go") or ""


def builder_image(config: Config, platform: Platform) -> str:
    """The builder stage's image of the ``multistage`` style.

    A ``go_image`` that names a tag or digest is used as it is. Otherwise the tag follows go.mod (``toolchain``,
    else ``go``): ``golang:1.25`` on linux, ``golang:1.25-windowsservercore-ltsc2022`` on Windows, which
    docker-library publishes for ltsc2022 and ltsc2025 only: an ltsc2019 target needs a pinned ``go_image``.
    """
    key = "[image].go_image"
    reference = _image(config, key, config.image.go_image)
    if _with_tag(reference, "x") == reference:  # names a tag or a digest: the user's choice, left alone
        return reference
    release = go_release(config.root)
    if not release:
        raise ConfigError(config.path, key, f"no go line in {config.root / 'go.mod'} to pick the builder's tag "
                                            "from: set go_image with a tag, such as 'golang:1.25'")
    if platform.os != "windows":
        return f"{reference}:{release}"
    if platform.ltsc not in GOLANG_WINDOWS_RELEASES:
        raise ConfigError(config.path, key, f"golang images for {platform.ltsc} are no longer published (the "
                                            "-1809 tags were removed in May 2025): pin go_image to a builder "
                                            "image you keep for that release, with its tag")
    return f"{reference}:{release}-windowsservercore-{platform.ltsc}"


# Top-level folders of the Windows base images: the app layer may not put its folder under one of them, so it
# only ever declares directories the base lacks (hcsshim's importer fails on a directory created twice).
_WINDOWS_BASE_FOLDERS = {"windows", "users", "programdata", "program files", "program files (x86)", "perflogs"}


def image_workdir(config: Config, platform: Platform) -> str:
    """The folder the binaries go to inside the image (``[image].workdir``, default ``C:\\app`` or ``/app``).

    Windows containers have one volume, C:, and the Windows layer format can only place files there; the folder
    must be one of the app's own, not under a folder of the base (C:\\Windows\\app is refused).
    """
    windows = platform.os == "windows"
    workdir = config.image.workdir or ("C:\\app" if windows else "/app")
    example, key = ("C:\\app" if windows else "/app"), "[image].workdir"
    if not (_WINDOWS_DIR if windows else _LINUX_DIR).fullmatch(workdir):
        raise ConfigError(config.path, key, f"{workdir!r} is not an absolute {platform.os} folder such as {example} "
                                            "(letters, digits, '.', '_', '-')")
    parts = [p for p in re.split(r"[\\/]", workdir.split(":", 1)[-1]) if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise ConfigError(config.path, key, f"{workdir!r}: name a folder of the app's own, such as {example}")
    if windows and workdir[0].upper() != "C":
        raise ConfigError(config.path, key, f"{workdir!r}: Windows containers have a C: drive only; use a folder "
                                            f"of its own on C:, such as {example}")
    if windows and parts[0].lower() in _WINDOWS_BASE_FOLDERS:
        raise ConfigError(config.path, key, f"{workdir!r} lies under C:\\{parts[0]}, a folder of the base image: "
                                            f"use a folder of its own, such as {example}")
    return workdir


def _relative(config: Config, path: Path, key: str) -> str:
    """A context-relative, forward-slash path that needs no quoting in a Dockerfile."""
    try:
        rel = path.resolve().relative_to(config.root).as_posix()
    except ValueError:
        raise ConfigError(config.path, key, f"{path} is outside the module {config.root}") from None
    if not _RELATIVE_FILE.match(rel):
        raise ConfigError(config.path, key, f"{rel!r}: paths copied into images may hold only letters, digits, "
                                            "'.', '_', '-' and '/'")
    return rel


def build_labels(config: Config) -> dict[str, str]:
    """OCI labels known only when the image is built (passed through the API, so the Dockerfile stays stable):
    the git revision and, without ``SOURCE_DATE_EPOCH``, the creation time."""
    from wgobuild import proc, programs
    from wgobuild.image import rfc3339, source_date_epoch

    labels: dict[str, str] = {}
    if source_date_epoch() is None:
        labels["org.opencontainers.image.created"] = rfc3339(None)
    git = programs.find_program("git")  # from an absolute PATH folder, never a git.bat in the checkout
    if git is None:  # git not installed: no revision label
        return labels
    try:
        result = proc.run([git, "rev-parse", "HEAD"], cwd=config.root, quiet=True)
        if result.ok and re.fullmatch(r"[0-9a-f]{40,64}", result.output.strip()):
            labels["org.opencontainers.image.revision"] = result.output.strip()
    except WgobuildError:
        pass
    return labels


# ---------------------------------------------------------------------------------------------------------------
# Paths


def docker_dir(config: Config, platform: Platform) -> Path:
    """``dist/docker/<platform.key>/``: where this platform's Dockerfile and .dockerignore are written."""
    return config.out_dir / "docker" / platform.key


def binary_arcname(config: Config, binary: Binary, platform: Platform) -> str:
    """The binary's path in the build context: relative to the module root, as in ``docker build -f ... .``."""
    return _relative(config, config.binary_path(binary, platform), "[build].out_dir")


def script_files(config: Config) -> dict[str, Path]:
    """The rendered PowerShell scripts a servercore runtime stage runs: context name -> file."""
    from wgobuild import powershell

    folder = powershell.script_dir(config)
    return {_relative(config, folder / name, "[build].out_dir"): folder / name for name in SERVERCORE_SCRIPTS}


def source_files(config: Config, platform: Platform) -> dict[str, Path]:
    """The module's own files the binaries are built from (``go list``): the context of a multistage build."""
    from wgobuild import gotool

    packages = {b.name: b.package for b in config.image_binaries}
    deps = gotool.list_dependencies(config.root, packages, platform, config.build.tags, config.build.cgo)
    found = {Path(p) for paths in deps.values() for p in paths}
    return {_relative(config, p, "binaries"): p for p in sorted(found)}


def template_paths(config: Config, platform: Platform) -> list[Path]:
    """Templates a platform's rendering reads (for doit ``file_dep``)."""
    names = [f"Dockerfile.{config.image.style}.{_family(platform)}.tmpl", "Dockerfile.dockerignore.tmpl"]
    if platform.os == "windows" and config.image.runtime == "servercore":
        names.append("Dockerfile.servercore-hardening.tmpl")
    return [TEMPLATE_DIR / name for name in names]


def _family(platform: Platform) -> str:
    if platform.os not in ("windows", "linux"):
        raise WgobuildError(f"no container images for {platform}: only windows and linux targets have them")
    return platform.os


# ---------------------------------------------------------------------------------------------------------------
# Rendering


def _fill(name: str, values: dict[str, str]) -> str:
    """Replace ``{{key}}`` placeholders; a line holding only an empty placeholder disappears."""
    text = (TEMPLATE_DIR / name).read_text(encoding="utf-8")
    lines = []
    for line in text.splitlines():
        filled = _PLACEHOLDER.sub(lambda m: values[m[1]], line)
        if filled.strip() or not line.strip() or not _PLACEHOLDER.fullmatch(line.strip()):
            lines.append(filled)
    return "\n".join(lines).rstrip("\n") + "\n"


def render(config: Config, platform: Platform, version: str) -> dict[str, str]:
    """File name -> text of ``Dockerfile`` and ``.dockerignore`` for one platform."""
    image, family = config.image, _family(platform)
    windows = family == "windows"
    esc = "`" if windows else "\\"
    multistage = image.style == "multistage"
    servercore = windows and image.runtime == "servercore"

    base_key = "[image].bases" if config.base_source(platform) in image.bases.values() else (
        ("[image].servercore_base" if servercore else "[image].windows_base") if windows else "[image].linux_base")
    base = config.base_source(platform)
    if base.startswith(LOCAL_BASE_PREFIXES):
        # A local layout or archive feeds the daemonless backend; an engine build pulls the usual image instead.
        base = DEFAULT_BASES["servercore" if servercore else "nanoserver"] if windows else "scratch"
    runtime_base = _image(config, base_key, base)
    if windows:
        runtime_base = _with_tag(runtime_base, platform.ltsc)
    # go_image is checked even when unused, so a typo is caught before someone switches to multistage.
    go_base = builder_image(config, platform) if multistage else _image(config, "[image].go_image", image.go_image)

    workdir = image_workdir(config, platform)
    user = image.user or (WINDOWS_USER if windows else LINUX_USER)
    if not _USER.match(user):
        raise ConfigError(config.path, "[image].user", f"{user!r} is not a user name or uid[:gid]")

    sep = "\\" if windows else "/"
    target = workdir.rstrip(sep)
    copies, builds, allow = [], [], []
    for binary in config.image_binaries:
        exe = f"{binary.name}{platform.exe_suffix}"
        if multistage:
            out = f"C:/out/{exe}" if windows else f"/out/{exe}"
            builds.append("RUN " + exec_form(_go_build_argv(config, binary, version, out)))
            copies.append("COPY --from=build " + exec_form([out, f"{target}{sep}{exe}"]))
        else:
            source = binary_arcname(config, binary, platform)
            copies.append("COPY " + exec_form([source, f"{target}{sep}{exe}"]))
            allow.append(f"!{source}")
    entry = f"{target}{sep}{config.entrypoint.name}{platform.exe_suffix}"
    if multistage:
        allow += ["!go.mod", "!go.sum", "!**/*.go", "!vendor/**", "**/*_test.go"]  # vendor/: private modules

    labels = {"org.opencontainers.image.title": config.project.name, "org.opencontainers.image.version": version}
    if config.project.source:
        labels["org.opencontainers.image.source"] = config.project.source
    from wgobuild.image import rfc3339, source_date_epoch

    epoch = source_date_epoch()
    if epoch is not None:
        labels["org.opencontainers.image.created"] = rfc3339(epoch)
    for key, value in image.labels.items():
        if not _LABEL_KEY.match(key):
            raise ConfigError(config.path, f"[image].labels.{key}",
                              "label keys are lower-case letters, digits, '.', '_', '-', '/' (reverse DNS)")
        labels[key] = value
    label_lines = [f"{k}={_value(config, f'[image].labels.{k}', v, esc)}" for k, v in sorted(labels.items())]
    env_lines = [f"{k}={_value(config, f'[image].env.{k}', v, esc)}" for k, v in sorted(image.env.items())]

    hardening = ""
    if servercore:
        scripts = script_files(config)
        allow += [f"!{name}" for name in scripts]
        # No component-store clean-up in a container build: features disabled with -NoRestart leave a restart
        # pending, DISM /ResetBase then fails (0x800f0806), and in a derived layer it copies files up instead.
        args = {"cleanup.ps1": " -ComponentCleanup $false"}
        calls = [f"& '{_SCRIPT_DIR}\\{n}'{args.get(n, '')}; if ($LASTEXITCODE) {{ exit $LASTEXITCODE }}"
                 for n in SERVERCORE_SCRIPTS]
        hardening = _fill("Dockerfile.servercore-hardening.tmpl", {
            "scripts_copy": exec_form([*scripts, f"{_SCRIPT_DIR}\\"]),
            "scripts_run": "; ".join([*calls, f"Remove-Item -LiteralPath '{_SCRIPT_DIR}' -Recurse -Force"]),
        }).rstrip("\n")

    template = f"Dockerfile.{image.style}.{family}.tmpl"
    go_env = {"CGO_ENABLED": "0", "GOOS": platform.os, "GOARCH": platform.arch, "GOTOOLCHAIN": "local"}
    values = {
        "template": template,
        "runtime": runtime_base.split("/")[-1].split(":")[0],
        "runtime_base": runtime_base,
        "go_base": go_base,
        "go_env": " ".join(f"{k}={v}" for k, v in go_env.items()),
        "go_builds": "\n".join(builds),
        "hardening": hardening,
        "labels": _continued("LABEL", label_lines, esc),
        "env": _continued("ENV", env_lines, esc),
        "workdir": workdir,
        "copy_binaries": "\n".join(copies),
        "user": user,
        "expose": "EXPOSE " + " ".join(f"{int(p)}/tcp" for p in image.expose) if image.expose else "",
        "entrypoint": exec_form([entry]),
        "cmd": "CMD " + exec_form(list(image.args)) if image.args else "",
    }
    ignore = _fill("Dockerfile.dockerignore.tmpl", {"allow": "\n".join(allow)})
    return {"Dockerfile": _fill(template, values), ".dockerignore": ignore}


def _continued(instruction: str, items: list[str], esc: str) -> str:
    """``LABEL a="1" <esc>\\n      b="2"``: one instruction (one history entry), one item per line."""
    if not items:
        return ""
    pad = " " * (len(instruction) + 1)
    return f"{instruction} " + f" {esc}\n{pad}".join(items)


def _go_build_argv(config: Config, binary: Binary, version: str, output: str) -> list[str]:
    """``go build`` inside the builder stage; the same flags as the host build (stripped, version stamped)."""
    argv = ["go", "build", "-buildvcs=false"]
    if config.build.trimpath:
        argv.append("-trimpath")
    if config.build.tags:
        argv.append("-tags=" + ",".join(config.build.tags))
    ldflags = " ".join(["-s", "-w", "-buildid=", f"-X main.version={version}", *config.build.ldflags])
    package = binary.package if binary.package.startswith(".") else f"./{binary.package}"
    return [*argv, "-ldflags", ldflags, "-o", output, package]


def write(config: Config, platform: Platform, version: str, out_dir: Path | None = None) -> list[Path]:
    """Render and write ``Dockerfile`` and ``.dockerignore`` atomically into ``out_dir`` (default
    :func:`docker_dir`); returns the paths written."""
    out = Path(out_dir) if out_dir is not None else docker_dir(config, platform)
    written = []
    for name, text in render(config, platform, version).items():
        path = out / name
        files.write_text(path, text, newline="\n")
        written.append(path)
    return written


# ---------------------------------------------------------------------------------------------------------------
# Parsing (structure checks and base-image look-ups)


@dataclass
class Instruction:
    """One Dockerfile instruction: upper-case command, leading ``--flags``, the rest, and its first line number."""

    cmd: str
    args: str
    line: int
    flags: dict[str, str] = field(default_factory=dict)
    escape: str = "\\"

    @property
    def json(self) -> list[str] | None:
        """The exec-form array, or None for the shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return None
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None

    def words(self) -> list[str]:
        return words(self.args, self.escape)

    def pairs(self) -> dict[str, str]:
        """``key=value`` words of ENV/LABEL, unquoted."""
        return dict(word.split("=", 1) for word in self.words())


def parse(text: str) -> list[Instruction]:
    """Split a Dockerfile into instructions: parser directives, comments, continuation lines, ``--flags``."""
    lines = text.splitlines()
    escape, i = "\\", 0
    while i < len(lines) and (match := re.match(r"^#\s*([A-Za-z]+)\s*=\s*(\S+)\s*$", lines[i])):
        if match[1].lower() == "escape":
            escape = match[2]
        i += 1
    result: list[Instruction] = []
    while i < len(lines):
        start, line = i, lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = []
        while line.rstrip().endswith(escape):
            parts.append(line.rstrip()[: -len(escape)])
            while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
                i += 1
            line = lines[i] if i < len(lines) else ""
            i += 1
        parts.append(line)
        joined = " ".join(p.strip() for p in parts)
        cmd, _, rest = joined.partition(" ")
        flags = {}
        while match := re.match(r"^--([A-Za-z-]+)=(\S*)\s*", rest):
            flags[match[1]] = match[2]
            rest = rest[match.end():]
        result.append(Instruction(cmd.upper(), rest.strip(), start + 1, flags, escape))
    return result


def words(text: str, escape: str = "\\") -> list[str]:
    """Split and unquote like the engine's lexer: double quotes honour ``escape`` before ``"``/``$``/itself,
    single quotes are literal, unquoted ``escape`` escapes the next character."""
    result: list[str] = []
    word: list[str] = []
    in_word, i = False, 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            if in_word:
                result.append("".join(word))
                word, in_word = [], False
            i += 1
            continue
        in_word = True
        if ch == '"':
            i += 1
            while i < len(text) and text[i] != '"':
                if text[i] == escape and i + 1 < len(text) and text[i + 1] in ('"', "$", escape):
                    i += 1
                word.append(text[i])
                i += 1
            i += 1
        elif ch == "'":
            end = text.index("'", i + 1)
            word.append(text[i + 1 : end])
            i = end + 1
        elif ch == escape and i + 1 < len(text):
            word.append(text[i + 1])
            i += 2
        else:
            word.append(ch)
            i += 1
    if in_word:
        result.append("".join(word))
    return result


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """Instructions grouped by build stage (each list starts with its FROM)."""
    groups: list[list[Instruction]] = []
    for ins in instructions:
        if ins.cmd == "FROM" or not groups:
            groups.append([])
        groups[-1].append(ins)
    return groups


def base_images(text: str, final_only: bool = False) -> list[str]:
    """Images the Dockerfile's stages start from (not ``scratch``, not earlier stage names)."""
    names: set[str] = set()
    bases: list[str] = []
    for ins in parse(text):
        if ins.cmd != "FROM":
            continue
        parts = ins.words()
        image = parts[0]
        if len(parts) >= 3 and parts[1].lower() == "as":
            names.add(parts[2].lower())
        bases.append("" if image == "scratch" or image.lower() in names else image)
    if final_only:
        bases = bases[-1:]
    return [b for b in bases if b]
