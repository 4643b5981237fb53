"""The content-addressed blob store: a blob under its name is complete and correct."""

import errno
import io
from pathlib import Path
from typing import Any

import pytest

from wgobuild.oci import OciError
from wgobuild.oci.blobs import BlobStore, disk_error, hex_of
from wgobuild.oci.manifest import digest_of


def test_put_and_read(tmp_path):
    store = BlobStore(tmp_path)
    digest = store.put_bytes(b"hello")
    assert digest == digest_of(b"hello") and store.has(digest)
    assert store.path(digest) == tmp_path / "blobs" / "sha256" / hex_of(digest)
    assert store.read(digest) == b"hello"
    assert store.put_stream(io.BytesIO(b"x" * 3_000_000), expected=digest_of(b"x" * 3_000_000))[1] == 3_000_000


def test_digest_mismatch_leaves_nothing(tmp_path):
    store = BlobStore(tmp_path)
    wrong = digest_of(b"other")
    with pytest.raises(OciError, match="digest mismatch"):
        store.put_stream(io.BytesIO(b"hello"), expected=wrong)
    assert not store.has(wrong) and not store.has(digest_of(b"hello"))
    assert list((tmp_path / "blobs" / "sha256").iterdir()) == []


def test_bad_digest_and_missing_blob(tmp_path):
    with pytest.raises(OciError, match="not a sha256 digest"):
        hex_of("sha256:../../etc/passwd")
    with pytest.raises(OciError) as caught:
        BlobStore(tmp_path).open(digest_of(b"absent"))
    assert str(caught.value) == (f"blob {digest_of(b'absent')} is missing from {tmp_path / 'blobs' / 'sha256'}; "
                                 "run the build again")


def test_disk_full_message(tmp_path):
    message = str(disk_error(OSError(errno.ENOSPC, "No space left on device"), tmp_path))
    assert message.startswith("no space left while writing") and "free disk space" in message


class _Endless(io.RawIOBase):
    """A stream that never ends (what /dev/zero or a hostile server gives); counts what was read from it."""

    def __init__(self) -> None:
        self.served = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self.served += len(buffer)
        return len(buffer)


def test_stream_is_read_to_its_declared_size_and_no_further(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    endless = _Endless()
    with pytest.raises(OciError, match=r"blob sha256:\w+ is larger than the 1000 bytes its descriptor declares"):
        store.put_stream(endless, expected=digest_of(bytes(1000)), size=1000)
    assert endless.served <= 1001
    with pytest.raises(OciError, match=r"is shorter than the 10 bytes its descriptor declares"):
        store.put_stream(io.BytesIO(b"hello"), expected=digest_of(b"hello"), size=10)
    assert list((tmp_path / "blobs" / "sha256").iterdir()) == []
    assert store.put_stream(io.BytesIO(b"hello"), expected=digest_of(b"hello"), size=5) == (digest_of(b"hello"), 5)


def test_a_blob_larger_than_the_free_space_is_refused_before_reading(tmp_path: Path) -> None:
    endless = _Endless()
    with pytest.raises(OciError, match=r"needs \d+ bytes and .* has \d+ free: free disk space"):
        BlobStore(tmp_path).put_stream(endless, expected=digest_of(b"x"), size=1 << 60)
    assert endless.served == 0


def test_bounded_read_of_a_stored_document(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = store.put_bytes(b"x" * 100)
    assert store.read(digest, limit=100) == b"x" * 100
    with pytest.raises(OciError, match="is larger than 99 bytes"):
        store.read(digest, limit=99)
