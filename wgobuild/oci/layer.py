"""The app layer: one tar+gzip blob holding the compiled binaries, in the Windows layer format or plain.

Windows layers put every file under ``Files/`` (``C:\\app\\svc.exe`` is ``Files/app/svc.exe``), carry ``Files`` and
``Hives`` directory entries, use PAX headers with an ``MSWINDOWS.rawsd`` security descriptor (owner and group
BUILTIN\\Users) on regular files and mode 0555; without this Docker on Windows cannot register the layer.

Reproducible: sorted entries, fixed mtimes (``SOURCE_DATE_EPOCH`` or 0), no user or group names, gzip with mtime 0
and no file name. Compressed by ISA-L (``isal``): about 5 times faster than zlib's fastest level at the same size,
which was most of an image step's time after an edit; like zlib's, its bytes are stable for one version of it.
Streamed: tar -> sha256 (diff_id) -> gzip -> sha256 (digest) -> blob file, so memory does not grow with the binary.
Cached by the binaries' content, so an unchanged binary is neither re-tarred nor re-compressed.
"""

from __future__ import annotations

import contextlib
import json
import os
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from isal import igzip

from wgobuild import files
from wgobuild.oci import OciError
from wgobuild.oci.blobs import BlobStore, HashingWriter
from wgobuild.oci.manifest import digest_of

WINDOWS_RAWSD = "AQAAgBQAAAAkAAAAAAAAAAAAAAABAgAAAAAABSAAAAAhAgAAAQIAAAAAAAUgAAAAIQIAAA=="
GZIP_LEVEL = 2  # ISA-L's levels are 0-3; 2 is as fast as 1 and within 1% of zlib's level 1 in size
COMPRESSOR = f"isal {GZIP_LEVEL}"  # in cache keys and reuse fingerprints: other bytes, other layers
LAYER_FORMAT = 1  # bump when the layer layout changes, so cached layers (and reused images) are rebuilt


@dataclass(frozen=True)
class LayerBlob:
    digest: str  # of the compressed blob
    diff_id: str  # of the uncompressed tar
    size: int


def _entries(content: dict[str, Path], windows: bool) -> list[tuple[str, Path | None]]:
    """Sorted (tar name, source or None for a directory) pairs, parents before children."""
    prefix = PurePosixPath("Files") if windows else PurePosixPath()
    names: dict[str, Path | None] = {"Files": None, "Hives": None} if windows else {}
    for dest, src in content.items():
        path = prefix / PurePosixPath(dest.replace("\\", "/").lstrip("/"))
        for parent in reversed(path.parents):
            if str(parent) != ".":
                names.setdefault(str(parent), None)
        names[str(path)] = src
    return sorted(names.items())


def write_tar(out: HashingWriter, content: dict[str, Path], windows: bool, mtime: int) -> None:
    mode = 0o555 if windows else 0o755
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name, src in _entries(content, windows):
            info = tarfile.TarInfo(name)
            info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = mtime, mode, 0, 0, "", ""
            if src is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                continue
            info.size = src.stat().st_size
            if windows:
                info.pax_headers = {"MSWINDOWS.rawsd": WINDOWS_RAWSD}
            with open(src, "rb") as handle:
                tar.addfile(info, handle)


def build(store: BlobStore, cache_dir: Path, content: dict[str, Path], *, windows: bool, mtime: int) -> LayerBlob:
    """The app layer holding ``content`` (image path such as ``app/svc.exe`` -> local file), from cache if unchanged."""
    for src in content.values():
        if not src.is_file():
            raise OciError(f"{src}: binary not found; build it first (doit build)")
    key_doc = {"format": LAYER_FORMAT, "windows": windows, "mtime": mtime, "gzip": COMPRESSOR,
               "files": sorted((dest, files.sha256_file(src)) for dest, src in content.items())}
    key = json.dumps(key_doc, sort_keys=True)
    cache_file = cache_dir / f"{digest_of(key.encode()).split(':')[1]}.json"
    if cache_file.is_file():
        cached = LayerBlob(**json.loads(cache_file.read_text(encoding="utf-8")))
        if store.has(cached.digest):
            with contextlib.suppress(OSError):
                os.utime(cache_file)  # used again: among the recent layers :func:`prune` keeps
            return cached
    with store.writer() as compressed, igzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0,
                                                       compresslevel=GZIP_LEVEL) as gz:
        raw = HashingWriter(gz)  # type: ignore[arg-type]
        write_tar(raw, content, windows, mtime)
    blob = LayerBlob(compressed.digest, raw.digest, compressed.size)
    files.write_text(cache_file, json.dumps(asdict(blob), sort_keys=True))
    return blob


def prune(store: BlobStore, cache_dir: Path, keep: set[str], recent: int = 8) -> int:
    """Remove the app layers no image record names (``keep``) but the ``recent`` most recently used ones, with
    their cache entries: every edit makes a new layer, and the edit loop would otherwise grow the store without end
    (1.3 GB after about 150 builds of a two-binary module). Base layers are never in this cache. Returns the bytes
    freed."""
    entries: list[tuple[float, Path, str]] = []
    for entry in cache_dir.glob("*.json"):
        try:
            digest = str(json.loads(entry.read_text(encoding="utf-8"))["digest"])
            entries.append((entry.stat().st_mtime, entry, digest))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    spare = [e for e in sorted(entries, reverse=True) if e[2] not in keep][recent:]
    freed = 0
    for _, entry, digest in spare:
        blob = store.path(digest)
        with contextlib.suppress(OSError):
            freed += blob.stat().st_size
            blob.unlink()
        with contextlib.suppress(OSError):
            entry.unlink()
    return freed
