"""Where a base image comes from: a registry, a local OCI layout (folder or tar) or a docker-save tar.

The last two serve air-gapped sites. ``scratch`` means no base (empty rootfs, OCI family). A base reference names
an image or an index; the entry for the target is chosen by os/arch and, for Windows, os.version (X.Y.Z matches
X.Y.Z.R, the newest revision wins). Registry manifests are cached in the blob store with a small ref file, so
``pull = "missing"`` and offline runs resolve a base without the network.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from wgobuild import files
from wgobuild.config import LOCAL_BASE_PREFIXES, Config, Platform
from wgobuild.oci import OciError
from wgobuild.oci import manifest as mf
from wgobuild.oci.blobs import BlobStore, HashingWriter, hex_of

TRANSPORTS = LOCAL_BASE_PREFIXES


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


# --- platform selection -----------------------------------------------------------------------------------------
def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def matches(plat: dict[str, Any], platform: Platform) -> bool:
    if plat.get("os") != platform.os or plat.get("architecture") != platform.arch:
        return False
    have = plat.get("os.version", "")
    if platform.os != "windows" or not have:
        return True
    want = platform.windows_version.split(".")
    return have.split(".")[: len(want)] == want


def describe(plat: dict[str, Any]) -> str:
    text = f"{plat.get('os', '?')}/{plat.get('architecture', '?')}"
    return text + (f" {plat['os.version']}" if plat.get("os.version") else "")


def choose(candidates: list[tuple[dict[str, Any], Any]], platform: Platform, source: str) -> Any:
    """The payload of the best candidate for ``platform``; an error listing what the base offers otherwise."""
    fitting = [(plat, payload) for plat, payload in candidates if matches(plat, platform)]
    if not fitting:
        offers = ", ".join(describe(plat) for plat, _ in candidates) or "nothing"
        want = f"{platform.goos_goarch}" + (f" {platform.windows_version}" if platform.os == "windows" else "")
        raise OciError(f"base {source} has no image for {want}; it offers: {offers}")
    return max(fitting, key=lambda item: _version_key(item[0].get("os.version", "")))[1]


# --- sources --------------------------------------------------------------------------------------------------
class _Source:
    """Reads the top document and verified blobs of one base source."""

    name: str

    def top(self) -> bytes:
        raise NotImplementedError

    def open_blob(self, digest: str) -> IO[bytes]:
        raise NotImplementedError

    def doc(self, digest: str, store: BlobStore, manifest: bool = False) -> bytes:
        """A small JSON blob (manifest or config), checked against its digest and kept in the store."""
        if store.has(digest):
            return store.read(digest)
        with self._open_doc(digest, manifest) as handle:
            data = handle.read()
        if mf.digest_of(data) != digest:
            raise OciError(f"base {self.name}: blob {digest} does not match its digest; the base is corrupted "
                           "or truncated: copy it again")
        store.put_bytes(data)
        return data

    def _open_doc(self, digest: str, manifest: bool) -> IO[bytes]:
        return self.open_blob(digest)

    def fetch(self, digest: str, store: BlobStore) -> None:
        with self.open_blob(digest) as handle:
            try:
                store.put_stream(handle, expected=digest)
            except OciError as exc:
                raise OciError(f"base {self.name}: {exc}") from None


def _pick(source: _Source, platform: Platform, store: BlobStore) -> Base:
    try:
        raw = source.top()
        data = _walk(source, raw, platform, store)
        doc = json.loads(data)
        media = mf.media_type_of(doc)
        config = json.loads(source.doc(doc["config"]["digest"], store))
        layers = list(doc["layers"])
    except (ValueError, KeyError, TypeError) as exc:
        raise OciError(f"base {source.name}: malformed manifest or config ({exc}); the base is corrupted") from None
    if not matches(mf.platform_of(config), platform):
        raise OciError(f"base {source.name} is {describe(mf.platform_of(config))}, not {platform}")
    base = Base(source.name, mf.family_of(media), doc, config, source.fetch, getattr(source, "ref", None), layers)
    return base


def _walk(source: _Source, raw: bytes, platform: Platform, store: BlobStore) -> bytes:
    """Descend from an index (or an OCI layout's index.json) to the manifest bytes for ``platform``."""
    doc = json.loads(raw)
    if "manifests" not in doc:
        return raw
    candidates = []
    for desc in doc["manifests"]:
        if desc.get("mediaType") in mf.INDEXES:
            child = json.loads(source.doc(desc["digest"], store, manifest=True))
            nested = [(d.get("platform") or {}, d) for d in child["manifests"]]
            candidates.extend(nested)
        else:
            plat = desc.get("platform")
            if plat is None:  # an OCI layout entry without platform: read it from the config
                child = json.loads(source.doc(desc["digest"], store, manifest=True))
                plat = mf.platform_of(json.loads(source.doc(child["config"]["digest"], store)))
            candidates.append((plat, desc))
    desc = choose(candidates, platform, source.name)
    return source.doc(desc["digest"], store, manifest=True)


class _Registry(_Source):
    def __init__(self, config: Config, spec: str, store: BlobStore) -> None:
        from wgobuild.oci.registry import Reference

        self.name, self.ref, self.config, self.store = spec, Reference.parse(spec), config, store
        self._client: Any = None
        self.cache = config.state_dir / "oci" / "refs" / (mf.digest_of(spec.encode()).split(":")[1] + ".json")

    @property
    def client(self) -> Any:
        if self._client is None:
            from wgobuild.oci.registry import Client

            self._client = Client(self.ref.registry, self.config.image.insecure_registries)
        return self._client

    def top(self) -> bytes:
        cached = None
        if self.cache.is_file():
            cached = json.loads(self.cache.read_text(encoding="utf-8"))["digest"]
        if cached and self.store.has(cached) and (offline(self.config) or self.config.image.pull == "missing"):
            return self.store.read(cached)
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
        digest = self.store.put_bytes(data)
        if self.ref.digest and digest != self.ref.digest:
            raise OciError(f"base {self.name}: the registry sent a manifest with digest {digest}")
        files.write_text(self.cache, json.dumps({"ref": self.name, "digest": digest}))
        return data

    def open_blob(self, digest: str) -> IO[bytes]:
        response = self.client.open_blob(self.ref.repository, digest)
        response.raw.decode_content = False
        return response.raw  # type: ignore[no-any-return]

    def _open_doc(self, digest: str, manifest: bool) -> IO[bytes]:
        if manifest:
            return io.BytesIO(self.client.get_manifest(self.ref.repository, digest)[0])
        return self.open_blob(digest)


class _LayoutDir(_Source):
    def __init__(self, path: Path, name: str) -> None:
        self.path, self.name = path, name

    def top(self) -> bytes:
        try:
            return (self.path / "index.json").read_bytes()
        except OSError:
            raise OciError(f"base {self.name}: {self.path} has no index.json; it is not an OCI image layout") from None

    def open_blob(self, digest: str) -> IO[bytes]:
        try:
            return open(self.path / "blobs" / "sha256" / hex_of(digest), "rb")
        except OSError:
            raise OciError(f"base {self.name}: blob {digest} is missing; the layout is incomplete: copy it again") \
                from None


class _LayoutTar(_Source):
    def __init__(self, path: Path, name: str) -> None:
        self.path, self.name = path, name
        try:
            self.tar = tarfile.open(path, "r:*")  # noqa: SIM115 - lives as long as the base
            self.members = {m.name.removeprefix("./"): m for m in self.tar.getmembers()}
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise OciError(f"base {name}: cannot read {path} ({exc}); the archive is corrupted or truncated") from None

    def _member(self, name: str) -> IO[bytes]:
        member = self.members.get(name)
        handle = self.tar.extractfile(member) if member is not None else None
        if handle is None:
            raise OciError(f"base {self.name}: {name} is missing from {self.path}; the archive is incomplete")
        return handle

    def top(self) -> bytes:
        return self._member("index.json").read()

    def open_blob(self, digest: str) -> IO[bytes]:
        return self._member(f"blobs/sha256/{hex_of(digest)}")

    def fetch(self, digest: str, store: BlobStore) -> None:
        try:
            super().fetch(digest, store)
        except (tarfile.TarError, EOFError) as exc:
            raise OciError(f"base {self.name}: {exc}; the archive is corrupted or truncated") from None


def _docker_archive(path: Path, platform: Platform, store: BlobStore, state_dir: Path) -> Base:
    """A ``docker save`` tar: its layers are uncompressed, so they are gzipped (reproducibly) into the store."""
    name = f"docker-archive:{path}"
    source = _LayoutTar(path, name)
    try:
        entries = json.loads(source._member("manifest.json").read())
        candidates = []
        for entry in entries:
            cfg_bytes = source._member(entry["Config"]).read()
            cfg = json.loads(cfg_bytes)
            candidates.append((mf.platform_of(cfg), (entry, cfg_bytes, cfg)))
    except (ValueError, KeyError, TypeError) as exc:
        raise OciError(f"base {name}: malformed manifest.json or config ({exc}); the archive is corrupted") from None
    entry, cfg_bytes, cfg = choose(candidates, platform, name)
    store.put_bytes(cfg_bytes)
    diff_ids = cfg.get("rootfs", {}).get("diff_ids", [])
    if len(diff_ids) != len(entry["Layers"]):
        raise OciError(f"base {name}: {len(entry['Layers'])} layers but {len(diff_ids)} diff_ids; corrupted archive")
    layers = [_gzip_layer(source, member, diff_id, store, state_dir) for member, diff_id in
              zip(entry["Layers"], diff_ids, strict=True)]
    return Base(name, "docker", {"layers": layers}, cfg, None, None, layers)


def _gzip_layer(source: _LayoutTar, member: str, diff_id: str, store: BlobStore, state_dir: Path) -> dict[str, Any]:
    memo = state_dir / "oci" / "gzipped" / f"{hex_of(diff_id)}.json"
    if memo.is_file():
        desc = json.loads(memo.read_text(encoding="utf-8"))
        if store.has(desc["digest"]):
            return desc  # type: ignore[no-any-return]
    handle = source._member(member)
    if handle.read(2) == b"\x1f\x8b":  # already compressed: stored as is, diff_id checked below
        handle = source._member(member)
        handle = gzip.GzipFile(fileobj=handle, mode="rb")  # type: ignore[assignment]
    else:
        handle = source._member(member)
    with store.writer() as out:
        with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6) as gz:
            raw = HashingWriter(gz)  # type: ignore[arg-type]
            try:
                while block := handle.read(1 << 20):
                    raw.write(block)
            except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as exc:
                raise OciError(f"base {source.name}: {member}: {exc}; the archive is corrupted or truncated") \
                    from None
        if raw.digest != diff_id:
            raise OciError(f"base {source.name}: layer {member} does not match its diff_id {diff_id}; "
                           "the archive is corrupted")
    desc = {"mediaType": mf.DOCKER_LAYER, "digest": out.digest, "size": out.size}
    files.write_text(memo, json.dumps(desc))
    return desc

