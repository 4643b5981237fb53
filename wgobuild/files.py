"""Atomic file output: write to a temporary name in the same folder, then ``os.replace``.

A failed or interrupted step therefore leaves the previous good file or none, never a partial one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_read_umask()  # what a plain open() would create; mkstemp alone gives 0600


def temp_path(target: Path) -> Path:
    """A fresh, unused name beside ``target`` (same folder, so ``os.replace`` is atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    os.chmod(name, _FILE_MODE)
    return Path(name)


def same_content(a: Path, b: Path, chunk: int = 1 << 20) -> bool:
    """True when both files exist with identical bytes (sizes compared first, then chunk by chunk)."""
    try:
        if a.stat().st_size != b.stat().st_size:
            return False
        with open(a, "rb") as fa, open(b, "rb") as fb:
            while True:
                block = fa.read(chunk)
                if block != fb.read(chunk):
                    return False
                if not block:
                    return True
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path; on success it replaces ``target``, on any error it is removed.

    When the new file is byte-identical to ``target`` the old file is kept, mtime and all ("move if changed"):
    doit then sees an unchanged file without re-hashing it on every later run.
    """
    tmp = temp_path(target)
    try:
        yield tmp
        if same_content(tmp, target):
            tmp.unlink()
        else:
            os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_open(target: Path, mode: str = "wb", **kwargs: object) -> Iterator[IO[Any]]:
    """Open a temporary file for writing that becomes ``target`` only when the block succeeds."""
    with atomic_path(target) as tmp, open(tmp, mode, **kwargs) as handle:  # type: ignore[call-overload]
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def write_text(target: Path, text: str, *, encoding: str = "utf-8", newline: str | None = None) -> None:
    with atomic_open(target, "w", encoding=encoding, newline=newline) as handle:
        handle.write(text)


def write_bytes(target: Path, data: bytes) -> None:
    with atomic_open(target, "wb") as handle:
        handle.write(data)


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Build a folder under a temporary name; it replaces ``target`` only when the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


_SHA256_SEEN: dict[tuple[str, int, int, int, int, int], str] = {}


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (memory does not grow with file size).

    A binary is hashed by its SBOM, its layer and its image's SBOM: a file whose device, inode, size, mtime and
    ctime are unchanged since this process hashed it is not read again (a rewrite changes the ctime).
    """
    stat = os.stat(path)
    key = (str(path), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if (known := _SHA256_SEEN.get(key)) is not None:
        return known
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    if len(_SHA256_SEEN) > 4096:  # a long-lived process (watch loops) keeps only recent files
        _SHA256_SEEN.clear()
    _SHA256_SEEN[key] = digest.hexdigest()
    return _SHA256_SEEN[key]


def remove(path: Path) -> None:
    """Remove a file or folder if present."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
