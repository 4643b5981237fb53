"""A content-addressed blob store (``.wgobuild/blobs/sha256/<hex>``) shared by bases, layers and writers.

Blobs are written under a temporary name and renamed to their digest only after the digest (and, when a descriptor
declared one, the size) checked out, so a blob present under its name is always complete and correct. Reads from
outside are bounded: a blob is read to its declared size and no further, a JSON document to ``MAX_DOCUMENT``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from wgobuild import files
from wgobuild.oci import OciError

CHUNK = 1 << 20
MAX_DOCUMENT = 4 << 20  # manifests, indexes, image configs, token answers: real ones are a few KiB
_NO_SPACE = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def hex_of(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or not all(c in "0123456789abcdef" for c in hexpart):
        raise OciError(f"{digest!r} is not a sha256 digest")
    return hexpart


def disk_error(exc: OSError, where: Path) -> OciError:
    """Turn an OSError while writing into one plain line (disk full gets its own advice)."""
    if exc.errno in _NO_SPACE:
        return OciError(f"no space left while writing {where}: free disk space there (or set build.out_dir) "
                        "and run again")
    return OciError(f"cannot write {where}: {exc.strerror or exc}")


def read_at_most(handle: IO[bytes], limit: int) -> bytes:
    """Up to ``limit + 1`` bytes of ``handle``: more than ``limit`` tells the caller the source is too large."""
    parts, left = [], limit + 1
    while left > 0 and (block := handle.read(min(CHUNK, left))):
        parts.append(block)
        left -= len(block)
    return b"".join(parts)


class HashingWriter(io.RawIOBase):
    """Forward writes to ``inner`` while counting bytes and computing their sha256."""

    def __init__(self, inner: IO[bytes] | None = None) -> None:
        self.inner, self.hash, self.size = inner, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.hash.update(data)
        self.size += len(data)
        if self.inner is not None:
            self.inner.write(data)
        return len(data)

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root / "blobs" / "sha256"

    def path(self, digest: str) -> Path:
        return self.root / hex_of(digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def open(self, digest: str) -> IO[bytes]:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise OciError(f"blob {digest} is missing from {self.root}; run the build again") from None

    def read(self, digest: str, limit: int | None = None) -> bytes:
        with self.open(digest) as handle:
            if limit is None:
                return handle.read()
            data = read_at_most(handle, limit)
        if len(data) > limit:
            raise OciError(f"blob {digest} in {self.root} is larger than {limit} bytes; it is not a manifest or "
                           "config: delete it and run again")
        return data

    def put_bytes(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.has(digest):
            with self.writer(digest) as out:
                out.write(data)
        return digest

    @contextlib.contextmanager
    def writer(self, expected: str | None = None, size: int | None = None) -> Iterator[HashingWriter]:
        """Write a blob; it lands under its digest when the block ends (checked against ``expected`` and
        ``size``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = files.temp_path(self.root / "incoming")
        try:
            with open(tmp, "wb") as handle:
                out = HashingWriter(handle)
                yield out
            if size is not None and out.size != size:
                how = "larger" if out.size > size else "shorter"
                raise OciError(f"blob {expected or out.digest} is {how} than the {size} bytes its descriptor "
                               "declares; the source is corrupted, truncated or tampered with")
            if expected is not None and out.digest != expected:
                raise OciError(f"blob digest mismatch: expected {expected}, got {out.digest} ({out.size} bytes); "
                               "the source is corrupted or truncated")
            os.replace(tmp, self.path(out.digest))
        except OSError as exc:
            raise disk_error(exc, self.root) from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def put_stream(self, stream: IO[bytes], expected: str | None = None, size: int | None = None) -> tuple[str, int]:
        """Copy ``stream`` into the store; with ``size`` (a descriptor's) at most ``size + 1`` bytes are read."""
        if size is not None:
            self.root.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(self.root).free
            if size > free:
                raise OciError(f"blob {expected} needs {size} bytes and {self.root} has {free} free: free disk "
                               "space there (or set build.out_dir) and run again")
        left = None if size is None else size + 1
        with self.writer(expected, size) as out:
            while left is None or left > 0:
                block = stream.read(CHUNK if left is None else min(CHUNK, left))
                if not block:
                    break
                out.write(block)
                if left is not None:
                    left -= len(block)
        return out.digest, out.size
