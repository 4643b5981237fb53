"""The content-addressed blob store: a blob under its name is complete and correct."""

import errno
import io

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
    with pytest.raises(OciError, match="missing"):
        BlobStore(tmp_path).open(digest_of(b"absent"))


def test_disk_full_message(tmp_path):
    message = str(disk_error(OSError(errno.ENOSPC, "No space left on device"), tmp_path))
    assert message.startswith("no space left while writing") and "free disk space" in message
