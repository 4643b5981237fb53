"""Where a base image comes from: a registry, a local OCI layout (folder or tar) or a docker-save tar.

The last two serve air-gapped sites. ``scratch`` means no base (empty rootfs, OCI family). A base reference names
an image or an index; the entry for the target is chosen by os/arch and, for Windows, os.version (X.Y.Z matches
X.Y.Z.R, the newest revision wins). Registry manifests are cached in the blob store with a small ref file, so
``pull = "missing"`` and offline runs resolve a base without the network.

Everything a base holds is hostile input until checked (docs/security.md): JSON documents are read through a 4 MiB
cap and type-checked (one error naming the base, the document and the key); every blob is read to the size its
descriptor declares and checked against it and its digest; a layout holds only regular files (opened without
following symlinks); an archive may hold at most ``MAX_MEMBERS`` members, no oversized pax or long-name header, and
may not unpack to more than ``bomb_limit`` of its size.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import os
import stat
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from wgobuild import files
from wgobuild.config import LOCAL_BASE_PREFIXES, Config, Platform
from wgobuild.oci import OciError
from wgobuild.oci import manifest as mf
from wgobuild.oci.blobs import MAX_DOCUMENT, BlobStore, HashingWriter, hex_of, read_at_most

TRANSPORTS = LOCAL_BASE_PREFIXES
MAX_MEMBERS = 100_000  # members of an OCI or docker-save archive (real ones hold a few dozen)
MAX_TAR_HEADER = 1 << 20  # one pax or GNU long-name header
MAX_ENTRIES = 1000  # images in one index, layers in one manifest, images in one docker-save manifest.json
MAX_CONTAINERS = 100_000  # JSON objects and arrays in one document (bounds the memory json.loads takes)
_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError, RecursionError)


@dataclass
class Base:
    """A resolved base image for one platform; ``manifest`` is None for scratch."""

    source: str
    family: str
    manifest: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    fetch: Callable[[str, BlobStore], None] | None = None  # copy one blob into the store
    registry: Any = None  # registry.Reference when the base lives in a registry (for mounts)
    layers: list[dict[str, Any]] = field(default_factory=list)
    digest: str = ""  # the base manifest's digest ("" for scratch and docker-save tars, which have none)

    def ensure_blobs(self, store: BlobStore) -> None:
        for layer in self.layers:
            if not store.has(layer["digest"]) and self.fetch is not None:
                self.fetch(layer["digest"], store)


def base_spec(config: Config, platform: Platform) -> str:
    """The configured base of ``platform``, a registry reference normalized (default tag: the ltsc release)."""
    spec = config.base_source(platform)
    if spec.startswith(TRANSPORTS) or spec == "scratch":
        return spec
    from wgobuild.oci.registry import Reference

    ref = Reference.parse(spec.removeprefix("docker://"), default_tag=platform.ltsc if platform.os == "windows"
                          else "latest")
    return str(ref)


def offline(config: Config) -> bool:
    return config.image.offline or config.image.pull == "never"


def resolve(config: Config, platform: Platform, store: BlobStore) -> Base:
    """Find the base of ``platform`` and its manifest and config (blobs are fetched later, when needed)."""
    spec = base_spec(config, platform)
    if spec == "scratch":
        return Base("scratch", "oci")
    for prefix, cls in (("oci:", _LayoutDir), ("oci-archive:", _LayoutTar), ("docker-archive:", None)):
        if spec.startswith(prefix):
            path = Path(spec[len(prefix):])
            path = path if path.is_absolute() else config.root / path
            if not path.exists():
                raise OciError(f"base {spec}: {path} does not exist; set image.windows_base/linux_base/bases "
                               "to an existing OCI layout or docker-save tar")
            if cls is None:
                return _docker_archive(path, platform, store, config.state_dir)
            return _pick(cls(path, spec), platform, store)
    return _pick(_Registry(config, spec, store), platform, store)


# --- documents: bounded parse and type checks ---------------------------------------------------------------------
_KINDS = {dict: "an object", list: "an array", str: "a string", bool: "true/false", int: "a number",
          float: "a number", type(None): "null"}


def _kind(value: Any) -> str:
    return _KINDS.get(type(value), type(value).__name__)


class _Doc:
    """Checks one JSON document of a base; each problem is one OciError naming the base, the document and the key."""

    def __init__(self, base: str, name: str) -> None:
        self.base, self.name = base, name

    def fail(self, where: str, problem: str) -> OciError:
        where = f"{where}: " if where else ""
        return OciError(f"base {self.base}: {self.name}: {where}{problem}; the base is malformed: copy or pull it "
                        "again from a trusted source")

    def parse(self, data: bytes) -> Any:
        if len(data) > MAX_DOCUMENT:
            raise self.fail("", f"larger than the {MAX_DOCUMENT >> 20} MiB limit for manifests and configs")
        if data.count(b"{") + data.count(b"[") > MAX_CONTAINERS:
            raise self.fail("", f"more than {MAX_CONTAINERS} JSON objects and arrays")
        try:
            return json.loads(data)
        except RecursionError:
            raise self.fail("", "JSON nested too deeply") from None
        except ValueError as exc:
            raise self.fail("", f"not valid JSON ({str(exc)[:100]})") from None

    def obj(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"must be an object, not {_kind(value)}")
        return value

    def array(self, value: Any, where: str, limit: int = MAX_ENTRIES) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(where, f"must be an array, not {_kind(value)}")
        if len(value) > limit:
            raise self.fail(where, f"more than {limit} entries")
        return value

    def text(self, value: Any, where: str, optional: bool = False) -> str:
        if optional and value is None:
            return ""
        if not isinstance(value, str):
            raise self.fail(where, f"must be a string, not {_kind(value)}")
        return value

    def texts(self, value: Any, where: str, optional: bool = True) -> list[str]:
        if optional and value is None:
            return []
        return [self.text(item, f"{where}[{i}]") for i, item in enumerate(self.array(value, where, MAX_CONTAINERS))]

    def digest(self, value: Any, where: str) -> str:
        text = self.text(value, where)
        try:
            hex_of(text)
        except OciError:
            raise self.fail(where, f"{text[:80]!r} is not a sha256 digest") from None
        return text

    def platform(self, value: Any, where: str) -> dict[str, Any]:
        plat = self.obj(value, where)
        prefix = f"{where}." if where else ""
        for key in ("os", "architecture"):
            self.text(plat.get(key), prefix + key)
        for key in ("os.version", "variant"):
            self.text(plat.get(key), prefix + key, optional=True)
        self.texts(plat.get("os.features"), prefix + "os.features")
        return plat

    def descriptor(self, value: Any, where: str) -> dict[str, Any]:
        desc = self.obj(value, where)
        self.text(desc.get("mediaType"), f"{where}.mediaType", optional=True)
        self.digest(desc.get("digest"), f"{where}.digest")
        size = desc.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise self.fail(f"{where}.size", f"must be a whole number of bytes, not {_kind(size)}")
        if desc.get("platform") is not None:
            self.platform(desc["platform"], f"{where}.platform")
        return desc

    def index(self, value: Any) -> dict[str, Any]:
        doc = self.obj(value, "")
        for i, desc in enumerate(self.array(doc.get("manifests"), "manifests")):
            self.descriptor(desc, f"manifests[{i}]")
        return doc

    def manifest(self, value: Any) -> dict[str, Any]:
        doc = self.obj(value, "")
        self.text(doc.get("mediaType"), "mediaType", optional=True)
        self.descriptor(doc.get("config"), "config")
        for i, desc in enumerate(self.array(doc.get("layers"), "layers")):
            self.descriptor(desc, f"layers[{i}]")
        return doc

    def config(self, value: Any) -> dict[str, Any]:
        """An image config: what platform matching and mf.image_config read from it."""
        cfg = self.platform(value, "") if isinstance(value, dict) else self.obj(value, "")
        rootfs = self.obj(cfg.get("rootfs"), "rootfs")
        for i, diff_id in enumerate(self.array(rootfs.get("diff_ids"), "rootfs.diff_ids", MAX_CONTAINERS)):
            self.digest(diff_id, f"rootfs.diff_ids[{i}]")
        self.text(cfg.get("created"), "created", optional=True)
        if cfg.get("history") is not None:
            self.array(cfg["history"], "history", MAX_CONTAINERS)
        if cfg.get("config") is not None:
            inner = self.obj(cfg["config"], "config")
            self.texts(inner.get("Env"), "config.Env")
            for key in ("ExposedPorts", "Labels", "Volumes"):
                if inner.get(key) is not None:
                    self.obj(inner[key], f"config.{key}")
            for key, label in (inner.get("Labels") or {}).items():
                self.text(label, f"config.Labels.{key}")
            for key in ("User", "WorkingDir"):
                self.text(inner.get(key), f"config.{key}", optional=True)
        return cfg


# --- platform selection -----------------------------------------------------------------------------------------
def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isascii() and p.isdigit() and len(p) <= 18)


def matches(plat: dict[str, Any], platform: Platform) -> bool:
    if plat.get("os") != platform.os or plat.get("architecture") != platform.arch:
        return False
    have = plat.get("os.version", "")
    if platform.os != "windows" or not have:
        return True
    want = platform.windows_version.split(".")
    return bool(have.split(".")[: len(want)] == want)


def describe(plat: dict[str, Any]) -> str:
    text = f"{plat.get('os', '?')}/{plat.get('architecture', '?')}"
    return text + (f" {plat['os.version']}" if plat.get("os.version") else "")


def choose(candidates: list[tuple[dict[str, Any], Any]], platform: Platform, source: str) -> Any:
    """The payload of the best candidate for ``platform``; an error listing what the base offers otherwise."""
    fitting = [(plat, payload) for plat, payload in candidates if matches(plat, platform)]
    if not fitting:
        offers = ", ".join(describe(plat) for plat, _ in candidates[:20]) or "nothing"
        offers += f" and {len(candidates) - 20} more" if len(candidates) > 20 else ""
        want = f"{platform.goos_goarch}" + (f" {platform.windows_version}" if platform.os == "windows" else "")
        raise OciError(f"base {source} has no image for {want}; it offers: {offers}")
    return max(fitting, key=lambda item: _version_key(item[0].get("os.version", "")))[1]


# --- sources --------------------------------------------------------------------------------------------------
class _Source:
    """Reads the top document and verified blobs of one base source.

    ``sizes`` holds the size every descriptor read so far declares for its digest: no blob is read without one.
    """

    name: str
    top_name = "index.json"

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}

    def top(self) -> bytes:
        raise NotImplementedError

    def open_blob(self, digest: str) -> IO[bytes]:
        raise NotImplementedError

    def declare(self, desc: dict[str, Any]) -> None:
        """Remember a (checked) descriptor's size for its digest."""
        digest, size = desc["digest"], desc["size"]
        if self.sizes.setdefault(digest, size) != size:
            raise OciError(f"base {self.name}: blob {digest} is declared with two sizes ({self.sizes[digest]} and "
                           f"{size}); the base is malformed")

    def size(self, digest: str) -> int:
        if digest not in self.sizes:
            raise OciError(f"base {self.name}: blob {digest} is not described by the base's manifests")
        return self.sizes[digest]

    def doc(self, digest: str, store: BlobStore, manifest: bool = False) -> bytes:
        """A small JSON blob (manifest or config): read to its declared size (at most 4 MiB), checked against it
        and its digest, and kept in the store."""
        size = self.size(digest)
        if size > MAX_DOCUMENT:
            raise OciError(f"base {self.name}: {'manifest' if manifest else 'config'} {digest} declares {size} "
                           f"bytes, more than the {MAX_DOCUMENT >> 20} MiB limit; the base is malformed")
        if store.has(digest):
            return store.read(digest, MAX_DOCUMENT)
        try:
            with self._open_doc(digest, manifest) as handle:
                data = read_at_most(handle, size)
        except _ARCHIVE_ERRORS as exc:
            raise OciError(f"base {self.name}: cannot read {digest} ({exc}); the base is corrupted or truncated: "
                           "copy it again") from None
        if len(data) != size:
            how = "larger" if len(data) > size else "shorter"
            raise OciError(f"base {self.name}: blob {digest} is {how} than the {size} bytes its descriptor declares; "
                           "the base is corrupted, truncated or tampered with")
        if mf.digest_of(data) != digest:
            raise OciError(f"base {self.name}: blob {digest} does not match its digest; the base is corrupted "
                           "or truncated: copy it again")
        store.put_bytes(data)
        return data

    def _open_doc(self, digest: str, manifest: bool) -> IO[bytes]:
        return self.open_blob(digest)

    def fetch(self, digest: str, store: BlobStore) -> None:
        size = self.size(digest)
        with self.open_blob(digest) as handle:
            try:
                store.put_stream(handle, expected=digest, size=size)
            except OciError as exc:
                raise OciError(f"base {self.name}: {exc}") from None


def _pick(source: _Source, platform: Platform, store: BlobStore) -> Base:
    raw = source.top()
    data, name = _walk(source, raw, platform, store)
    doc = _Doc(source.name, name).manifest(_Doc(source.name, name).parse(data))
    media = mf.media_type_of(doc)
    if media not in mf.MANIFESTS:
        raise _Doc(source.name, name).fail("mediaType", f"{media[:100]!r} is not an image manifest")
    for desc in (doc["config"], *doc["layers"]):
        source.declare(desc)
    config_name = f"config {doc['config']['digest']}"
    check = _Doc(source.name, config_name)
    config = check.config(check.parse(source.doc(doc["config"]["digest"], store)))
    if not matches(mf.platform_of(config), platform):
        raise OciError(f"base {source.name} is {describe(mf.platform_of(config))}, not {platform}")
    layers = list(doc["layers"])
    return Base(source.name, mf.family_of(media), doc, config, source.fetch, getattr(source, "ref", None), layers,
                "sha256:" + hashlib.sha256(data).hexdigest())


def _walk(source: _Source, raw: bytes, platform: Platform, store: BlobStore) -> tuple[bytes, str]:
    """Descend from an index (or an OCI layout's index.json) to the manifest bytes for ``platform`` (and the name
    of that document in errors)."""
    check = _Doc(source.name, source.top_name)
    doc = check.obj(check.parse(raw), "")
    if "manifests" not in doc:
        return raw, source.top_name
    check.index(doc)
    candidates: list[tuple[dict[str, Any], Any]] = []
    for desc in doc["manifests"]:
        source.declare(desc)
        if desc.get("mediaType") in mf.INDEXES:
            inner = _Doc(source.name, f"index {desc['digest']}")
            child = inner.index(inner.parse(source.doc(desc["digest"], store, manifest=True)))
            for nested in child["manifests"]:
                source.declare(nested)
                candidates.append((nested.get("platform") or {}, nested))
        else:
            plat = desc.get("platform")
            if plat is None:  # an OCI layout entry without platform: read it from the config
                inner = _Doc(source.name, f"manifest {desc['digest']}")
                child = inner.manifest(inner.parse(source.doc(desc["digest"], store, manifest=True)))
                source.declare(child["config"])
                cfg = _Doc(source.name, f"config {child['config']['digest']}")
                plat = mf.platform_of(cfg.config(cfg.parse(source.doc(child["config"]["digest"], store))))
            candidates.append((plat, desc))
        if len(candidates) > MAX_ENTRIES:
            raise check.fail("manifests", f"more than {MAX_ENTRIES} images")
    desc = choose(candidates, platform, source.name)
    return source.doc(desc["digest"], store, manifest=True), f"manifest {desc['digest']}"


class _Registry(_Source):
    def __init__(self, config: Config, spec: str, store: BlobStore) -> None:
        from wgobuild.oci.registry import Reference

        super().__init__()
        self.name, self.ref, self.config, self.store = spec, Reference.parse(spec), config, store
        self.top_name = f"manifest {self.ref.repository}:{self.ref.ref}"
        self._client: Any = None
        self.cache = config.state_dir / "oci" / "refs" / (mf.digest_of(spec.encode()).split(":")[1] + ".json")

    @property
    def client(self) -> Any:
        if self._client is None:
            from wgobuild.oci.registry import Client

            self._client = Client(self.ref.registry, self.config.image.insecure_registries)
        return self._client

    def _cached(self) -> str:
        """The digest the ref file of this base names ("" when there is none or it is damaged)."""
        try:
            digest = json.loads(self.cache.read_text(encoding="utf-8")).get("digest")
            hex_of(digest)
        except (OSError, ValueError, AttributeError, TypeError, OciError):
            return ""
        return digest  # type: ignore[no-any-return]

    def top(self) -> bytes:
        cached = self._cached()
        if cached and self.store.has(cached) and (offline(self.config) or self.config.image.pull == "missing"):
            return self.store.read(cached, MAX_DOCUMENT)
        if offline(self.config):
            raise OciError(f"base {self.name} is not in the local cache and image.offline (or pull = 'never') is "
                           "set: run once with network access, or point the base at a local OCI layout or "
                           "docker-save tar")
        try:
            data, _ = self.client.get_manifest(self.ref.repository, self.ref.ref)
        except OciError as exc:
            raise OciError(f"base {self.name}: {exc}; point image.windows_base (or linux_base/bases) at a "
                           "reachable registry, a local OCI layout (oci:PATH) or a docker-save tar "
                           "(docker-archive:PATH)") from None
        digest = mf.digest_of(data)
        if self.ref.digest and digest != self.ref.digest:
            raise OciError(f"base {self.name}: the registry sent a manifest with digest {digest}")
        self.store.put_bytes(data)
        files.write_text(self.cache, json.dumps({"ref": self.name, "digest": digest}))
        return data  # type: ignore[no-any-return]

    def open_blob(self, digest: str) -> IO[bytes]:
        try:
            response = self.client.open_blob(self.ref.repository, digest)
        except OciError as exc:
            raise OciError(f"base {self.name}: {exc}") from None
        response.raw.decode_content = False
        return response.raw  # type: ignore[no-any-return]

    def _open_doc(self, digest: str, manifest: bool) -> IO[bytes]:
        if manifest:
            return io.BytesIO(self.client.get_manifest(self.ref.repository, digest)[0])
        return self.open_blob(digest)


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a plain file"


_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


def open_regular(path: Path, base: str, what: str) -> IO[bytes]:
    """Open a file of an OCI layout: a regular file only; a symlink (to /dev/zero, say), FIFO or device is refused
    (``O_NOFOLLOW`` where the OS has it, and the opened file must be the one checked)."""
    try:
        before = os.lstat(path)
    except FileNotFoundError:
        raise OciError(f"base {base}: {what} ({path}) is missing; the layout is incomplete: copy it again") from None
    except OSError as exc:
        raise OciError(f"base {base}: cannot read {what} ({path}): {exc.strerror or exc}") from None
    if not stat.S_ISREG(before.st_mode):
        raise OciError(f"base {base}: {what} ({path}) is not a regular file ({_file_kind(before.st_mode)}); an "
                       "OCI layout holds only regular files")
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise OciError(f"base {base}: cannot open {what} ({path}): {exc.strerror or exc}") from None
    after = os.fstat(fd)
    if not stat.S_ISREG(after.st_mode) or (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        raise OciError(f"base {base}: {what} ({path}) changed while it was opened; copy the layout again")
    return os.fdopen(fd, "rb")


class _LayoutDir(_Source):
    def __init__(self, path: Path, name: str) -> None:
        super().__init__()
        self.path, self.name = path, name

    def top(self) -> bytes:
        index = self.path / "index.json"
        if not os.path.lexists(index):
            raise OciError(f"base {self.name}: {self.path} has no index.json; it is not an OCI image layout")
        with open_regular(index, self.name, "index.json") as handle:
            data = read_at_most(handle, MAX_DOCUMENT)
        if len(data) > MAX_DOCUMENT:
            raise _Doc(self.name, "index.json").fail("", f"larger than the {MAX_DOCUMENT >> 20} MiB limit")
        return data

    def open_blob(self, digest: str) -> IO[bytes]:
        return open_regular(self.path / "blobs" / "sha256" / hex_of(digest), self.name, f"blob {digest}")


def bomb_limit(compressed: int) -> int:
    """How far a compressed file may unpack: 100 times its size, at least 256 MiB (real layers: 2-5 times)."""
    return max(256 << 20, 100 * compressed)


_COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")
_META_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
               tarfile.GNUTYPE_LONGLINK)


class _TarLimit(Exception):
    """A header tarfile would read into memory is over the limit (not a TarError: tarfile must not swallow it)."""


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile reads pax and GNU long-name headers whole into memory, and a chain of them recursively (each frame
    keeping its header): refuse a member whose extended headers are over ``MAX_TAR_HEADER`` in all, first."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _META_TYPES:
            count, used = getattr(tarfile_, "_wgobuild_meta", (0, 0))
            count, used = count + 1, used + self.size
            if used > MAX_TAR_HEADER or count > 16:  # real members have one to three
                raise _TarLimit(f"more than 16 extended headers or {MAX_TAR_HEADER} bytes of them for one member")
            tarfile_._wgobuild_meta = (count, used)  # type: ignore[attr-defined]
        else:
            tarfile_._wgobuild_meta = (0, 0)  # type: ignore[attr-defined]
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise _TarLimit("a sparse member")
        return super()._proc_member(tarfile_)  # type: ignore[misc, no-any-return]


class _LayoutTar(_Source):
    """An OCI layout (or docker-save) tar, optionally compressed; its member list is read once, within limits."""

    def __init__(self, path: Path, name: str) -> None:
        super().__init__()
        self.path, self.name = path, name
        self.regular: dict[str, tuple[int, int]] = {}  # member name -> (offset of its data, size)
        self.other: dict[str, str] = {}  # member name -> what it is, for members that are not regular files
        try:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode):  # a FIFO would block, a device would never end
                raise OciError(f"base {name}: {path} is {_file_kind(info.st_mode)}, not a regular file; point the "
                               "base at an OCI layout tar or a docker-save tar")
            size = info.st_size
            with open(path, "rb") as handle:
                compressed = handle.read(6).startswith(_COMPRESSED)
            limit = bomb_limit(size) if compressed else 0
            self.tar = tarfile.open(path, "r:*", tarinfo=_BoundedTarInfo)  # noqa: SIM115 - lives as long as the base
            count = 0
            while (member := self.tar.next()) is not None:
                count += 1
                if count > MAX_MEMBERS:
                    raise OciError(f"base {name}: {path} has more than {MAX_MEMBERS} members; an image archive "
                                   "holds a few dozen: it is not an image archive")
                if limit and member.offset_data + member.size > limit:
                    raise OciError(f"base {name}: {path} unpacks to more than {limit >> 20} MiB from a file of "
                                   f"{size} bytes; refused as a compression bomb")
                self.tar.members.clear()  # type: ignore[attr-defined]  # keep (offset, size), not TarInfo objects
                key = member.name.removeprefix("./")
                if member.isreg():
                    self.regular[key] = (member.offset_data, member.size)
                    self.other.pop(key, None)
                else:
                    self.other[key] = "a folder" if member.isdir() else "a link" if member.issym() or \
                        member.islnk() else "a device or FIFO"
                    self.regular.pop(key, None)
        except _TarLimit as exc:
            raise OciError(f"base {name}: {path} holds {exc}; it is not an image archive") from None
        except _ARCHIVE_ERRORS as exc:
            raise OciError(f"base {name}: cannot read {path} ({exc}); the archive is corrupted or truncated") from None

    def member_size(self, name: str) -> int:
        if name in self.other:
            raise OciError(f"base {self.name}: {name} in {self.path} is {self.other[name]}, not a regular file; an "
                           "image archive holds only regular files")
        found = self.regular.get(name)
        if found is None:
            raise OciError(f"base {self.name}: {name} is missing from {self.path}; the archive is incomplete")
        return found[1]

    def member(self, name: str) -> IO[bytes]:
        self.member_size(name)
        info = tarfile.TarInfo(name)
        info.type, (info.offset_data, info.size) = tarfile.REGTYPE, self.regular[name]
        handle = self.tar.extractfile(info)
        assert handle is not None  # a regular member always has a file object
        return handle

    def small(self, name: str) -> bytes:
        """A JSON member (index.json, manifest.json, a config): at most 4 MiB."""
        size = self.member_size(name)
        if size > MAX_DOCUMENT:
            raise _Doc(self.name, name).fail("", f"{size} bytes, larger than the {MAX_DOCUMENT >> 20} MiB limit")
        try:
            return self.member(name).read()
        except _ARCHIVE_ERRORS as exc:
            raise OciError(f"base {self.name}: {name}: {exc}; the archive is corrupted or truncated") from None

    def top(self) -> bytes:
        return self.small("index.json")

    def open_blob(self, digest: str) -> IO[bytes]:
        name = f"blobs/sha256/{hex_of(digest)}"
        have, declared = self.member_size(name), self.size(digest)
        if have != declared:
            how = "larger" if have > declared else "shorter"
            raise OciError(f"base {self.name}: blob {digest} is {how} than the {declared} bytes its descriptor "
                           f"declares ({have} bytes in {self.path}); the archive is corrupted or tampered with")
        return self.member(name)

    def fetch(self, digest: str, store: BlobStore) -> None:
        try:
            super().fetch(digest, store)
        except _ARCHIVE_ERRORS as exc:
            raise OciError(f"base {self.name}: {exc}; the archive is corrupted or truncated") from None


def _docker_archive(path: Path, platform: Platform, store: BlobStore, state_dir: Path) -> Base:
    """A ``docker save`` tar: its layers are uncompressed, so they are gzipped (reproducibly) into the store."""
    name = f"docker-archive:{path}"
    source = _LayoutTar(path, name)
    check = _Doc(name, "manifest.json")
    candidates = []
    for i, value in enumerate(check.array(check.parse(source.small("manifest.json")), "")):
        entry = check.obj(value, f"[{i}]")
        config_name = check.text(entry.get("Config"), f"[{i}].Config")
        layers = [check.text(layer, f"[{i}].Layers[{j}]")
                  for j, layer in enumerate(check.array(entry.get("Layers"), f"[{i}].Layers"))]
        cfg_bytes = source.small(config_name)
        cfg_check = _Doc(name, config_name)
        cfg = cfg_check.config(cfg_check.parse(cfg_bytes))
        candidates.append((mf.platform_of(cfg), (layers, cfg_bytes, cfg)))
    layers, cfg_bytes, cfg = choose(candidates, platform, name)
    store.put_bytes(cfg_bytes)
    diff_ids = cfg["rootfs"]["diff_ids"]
    if len(diff_ids) != len(layers):
        raise OciError(f"base {name}: {len(layers)} layers but {len(diff_ids)} diff_ids; corrupted archive")
    descs = [_gzip_layer(source, member, diff_id, store, state_dir) for member, diff_id in
             zip(layers, diff_ids, strict=True)]
    return Base(name, "docker", {"layers": descs}, cfg, None, None, descs)


def _memo(path: Path, store: BlobStore) -> dict[str, Any] | None:
    """A remembered gzipped layer, when its record is sound and its blob is in the store."""
    try:
        desc = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(desc, dict) and isinstance(desc.get("size"), int) and store.has(desc["digest"]):
            return desc
    except (OSError, ValueError, KeyError, TypeError, OciError):
        pass
    return None


def _gzip_layer(source: _LayoutTar, member: str, diff_id: str, store: BlobStore, state_dir: Path) -> dict[str, Any]:
    memo = state_dir / "oci" / "gzipped" / f"{hex_of(diff_id)}.json"
    remembered = _memo(memo, store)
    if remembered is not None:
        return remembered
    packed = source.member_size(member)
    handle = source.member(member)
    compressed = handle.read(2) == b"\x1f\x8b"
    handle = source.member(member)
    limit = 0
    if compressed:  # already compressed: unpacked (within the bomb limit) and checked against the diff_id below
        limit = bomb_limit(packed)
        handle = gzip.GzipFile(fileobj=handle, mode="rb")  # type: ignore[assignment]
    with store.writer() as out:
        with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6) as gz:
            raw = HashingWriter(gz)  # type: ignore[arg-type]
            try:
                while block := handle.read(1 << 20):
                    raw.write(block)
                    if limit and raw.size > limit:
                        raise OciError(f"base {source.name}: layer {member} unpacks to more than {limit >> 20} MiB "
                                       f"from {packed} bytes; refused as a compression bomb")
            except _ARCHIVE_ERRORS as exc:
                raise OciError(f"base {source.name}: {member}: {exc}; the archive is corrupted or truncated") \
                    from None
        if raw.digest != diff_id:
            raise OciError(f"base {source.name}: layer {member} does not match its diff_id {diff_id}; "
                           "the archive is corrupted")
    desc = {"mediaType": mf.DOCKER_LAYER, "digest": out.digest, "size": out.size}
    files.write_text(memo, json.dumps(desc))
    return desc
