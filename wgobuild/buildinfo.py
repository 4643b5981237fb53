"""The Go build information inside a compiled binary, read from its bytes.

Go (1.18 and newer) writes a ``\\xff Go buildinf:`` header into every binary, followed by the Go version and the
module information ``go version -m`` prints: the main module, every dependency module with its version and go.sum
hash, replacements, and the build settings (``-trimpath``, ``-tags``, ``-ldflags``, ``CGO_ENABLED``, ``GOOS``,
``GOARCH``, ...). It is read here without running the binary or ``go``, so a Windows exe is read on linux the same
way (the layout of the header does not depend on the executable format). ``go version -m -json`` is the reference
the tests compare against (tests/test_sbom.py).
"""

from __future__ import annotations

import ast
import mmap
from dataclasses import dataclass, field
from pathlib import Path

from wgobuild.errors import StepFailed

MAGIC = b"\xff Go buildinf:"
_HEADER = 32  # magic (14), pointer size (1), flags (1), padding to 32
_FLAG_INLINE = 0x2  # Go 1.18+: the version and module strings follow the header (no pointers to follow)
_SENTINEL = 16  # the module string is wrapped in 16 bytes of sentinel at each end


@dataclass(frozen=True)
class Module:
    """A module as the build info names it: ``replace`` is the module that took its place, if any."""

    path: str
    version: str
    sum: str = ""
    replace: Module | None = None


@dataclass(frozen=True)
class BuildInfo:
    go_version: str
    path: str  # the main package's import path
    main: Module
    deps: list[Module] = field(default_factory=list)
    settings: list[tuple[str, str]] = field(default_factory=list)  # in the binary's order

    def setting(self, key: str, default: str = "") -> str:
        return next((value for k, value in self.settings if k == key), default)


def read(binary: Path) -> BuildInfo:
    """The build info of ``binary``; :class:`StepFailed` naming the file when it has none Go 1.18+ wrote."""
    try:
        with open(binary, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            start = data.find(MAGIC)
            while start != -1:
                found = _at(data, start)
                if found is not None:
                    return parse(*found)
                start = data.find(MAGIC, start + 1)
    except (OSError, ValueError) as exc:  # ValueError: an empty file cannot be mapped
        raise StepFailed(f"{binary}: cannot read its Go build info: {exc}") from None
    raise StepFailed(f"{binary}: no Go build info found (not a Go binary, or built by Go older than 1.18); "
                     "rebuild it with a current Go toolchain")


def _at(data: mmap.mmap, start: int) -> tuple[str, str] | None:
    """(Go version, module text) of the header at ``start``, or None when it is not a well-formed one."""
    header = data[start:start + _HEADER]
    if len(header) < _HEADER or header[14] not in (4, 8) or not header[15] & _FLAG_INLINE:
        return None
    pos = start + _HEADER
    strings: list[bytes] = []
    for _ in range(2):
        length, pos = _uvarint(data, pos)
        if length < 0 or pos + length > len(data):
            return None
        strings.append(data[pos:pos + length])
        pos += length
    version, mod = strings
    if not version.startswith(b"go"):
        return None
    wrapped = len(mod) >= 2 * _SENTINEL + 1 and mod[-_SENTINEL - 1:-_SENTINEL] == b"\n"  # sentinels are bytes
    return version.decode("utf-8", "replace"), mod[_SENTINEL:-_SENTINEL].decode("utf-8", "replace") if wrapped else ""


def _uvarint(data: mmap.mmap, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while pos < len(data) and shift < 64:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    return -1, pos


def parse(go_version: str, text: str) -> BuildInfo:
    """Build info from the module text (the format of Go's ``debug.BuildInfo.String``, without its ``go`` line)."""
    path, main = "", Module("", "")
    deps: list[Module] = []
    settings: list[tuple[str, str]] = []
    last: str | None = None  # "mod" or "dep": what a "=>" line replaces
    for line in text.splitlines():
        kind, _, rest = line.partition("\t")
        fields = rest.split("\t")
        if kind == "path":
            path = rest
        elif kind in ("mod", "dep") and len(fields) >= 2:
            module = Module(fields[0], fields[1], fields[2] if len(fields) > 2 else "")
            if kind == "mod":
                main = module
            else:
                deps.append(module)
            last = kind
        elif kind == "=>" and len(fields) >= 2 and last is not None:
            replace = Module(fields[0], fields[1], fields[2] if len(fields) > 2 else "")
            if last == "mod":
                main = Module(main.path, main.version, main.sum, replace)
            else:
                old = deps[-1]
                deps[-1] = Module(old.path, old.version, old.sum, replace)
            last = None
        elif kind == "build":
            settings.append(_setting(rest))
    return BuildInfo(go_version=go_version, path=path, main=main, deps=deps, settings=settings)


def _setting(text: str) -> tuple[str, str]:
    """``key=value`` where either side may be a Go-quoted string (when it holds spaces, quotes or ``=``)."""
    if text.startswith('"'):
        end = _quoted_end(text)
        key, rest = _unquote(text[:end]), text[end:]
        value = rest[1:] if rest.startswith("=") else rest
    else:
        key, _, value = text.partition("=")
    if value.startswith('"'):
        value = _unquote(value)
    return key, value


def _quoted_end(text: str) -> int:
    i = 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i + 1
        i += 1
    return len(text)


def _unquote(text: str) -> str:
    """A Go ``strconv.Quote`` string: its escapes are a subset of Python's string literal escapes."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return value if isinstance(value, str) else text
