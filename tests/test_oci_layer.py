"""The app layer tar, checked entry by entry: Windows layer format, reproducibility, streaming, content cache."""

import gzip
import hashlib
import io
import os
import sys
import tarfile
from pathlib import Path

import pytest

from wgobuild import proc
from wgobuild.oci import layer
from wgobuild.oci.blobs import BlobStore


def _open(store, blob):
    raw = gzip.decompress(store.read(blob.digest))
    return raw, tarfile.open(fileobj=io.BytesIO(raw), mode="r:")


def test_windows_layer_format(tmp_path):
    exe = tmp_path / "svc.exe"
    exe.write_bytes(b"MZ" + b"\0" * 5000)
    store = BlobStore(tmp_path / "state")
    blob = layer.build(store, tmp_path / "cache", {"app/svc.exe": exe}, windows=True, mtime=0)
    raw, tar = _open(store, blob)
    members = tar.getmembers()
    assert [(m.name, m.type) for m in members] == [
        ("Files", tarfile.DIRTYPE), ("Files/app", tarfile.DIRTYPE), ("Files/app/svc.exe", tarfile.REGTYPE),
        ("Hives", tarfile.DIRTYPE)]
    for m in members:
        assert (m.mode, m.mtime, m.uid, m.gid, m.uname, m.gname) == (0o555, 0, 0, 0, "", "")
    exe_entry = members[2]
    assert exe_entry.pax_headers == {"MSWINDOWS.rawsd": layer.WINDOWS_RAWSD}
    assert all(m.pax_headers == {} for m in members if m.isdir())
    assert tar.extractfile(exe_entry).read() == exe.read_bytes()
    # PAX on disk: an extended header ('x') holding the record precedes the file entry
    assert b"MSWINDOWS.rawsd=" + layer.WINDOWS_RAWSD.encode() in raw
    record = raw.index(b"MSWINDOWS.rawsd")
    header = raw[record - record % 512 - 512: record - record % 512]
    assert header[156:157] == b"x"
    assert blob.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()


def test_linux_layer_and_gzip_header(tmp_path):
    binary = tmp_path / "svc"
    binary.write_bytes(b"\x7fELF" + b"\1" * 100)
    store = BlobStore(tmp_path / "state")
    blob = layer.build(store, tmp_path / "cache", {"app/svc": binary}, windows=False, mtime=1700000000)
    _, tar = _open(store, blob)
    assert [(m.name, m.mode, m.mtime) for m in tar.getmembers()] == [
        ("app", 0o755, 1700000000), ("app/svc", 0o755, 1700000000)]
    data = store.read(blob.digest)
    assert data[:3] == b"\x1f\x8b\x08" and data[3] & 0x08 == 0  # no FNAME
    assert data[4:8] == b"\0\0\0\0"  # mtime 0


def test_reproducible_and_cached(tmp_path):
    exe = tmp_path / "svc.exe"
    exe.write_bytes(b"MZ-reproducible" * 1000)
    first = layer.build(BlobStore(tmp_path / "a"), tmp_path / "ca", {"app/svc.exe": exe}, windows=True, mtime=0)
    second = layer.build(BlobStore(tmp_path / "b"), tmp_path / "cb", {"app/svc.exe": exe}, windows=True, mtime=0)
    assert first == second
    store = BlobStore(tmp_path / "a")
    stamp = store.path(first.digest).stat().st_mtime_ns
    again = layer.build(store, tmp_path / "ca", {"app/svc.exe": exe}, windows=True, mtime=0)
    assert again == first and store.path(first.digest).stat().st_mtime_ns == stamp  # cache hit: not rewritten
    exe.write_bytes(b"MZ-changed")
    changed = layer.build(store, tmp_path / "ca", {"app/svc.exe": exe}, windows=True, mtime=0)
    assert changed.digest != first.digest
    other_time = layer.build(store, tmp_path / "ca", {"app/svc.exe": exe}, windows=True, mtime=5)
    assert other_time.digest != changed.digest


def test_an_edit_loop_keeps_the_current_layers_and_a_few_recent_ones(tmp_path):
    store, cache = BlobStore(tmp_path / "state"), tmp_path / "state" / "oci" / "layers"
    exe = tmp_path / "svc"
    built = []
    for edit in range(14):  # every edit makes a new layer; its cache entry is dated by the edit's number
        exe.write_bytes(b"ELF-edit-%d" % edit * 500)
        before = set(cache.glob("*.json"))
        built.append(layer.build(store, cache, {"app/svc": exe}, windows=False, mtime=0))
        (entry,) = set(cache.glob("*.json")) - before
        os.utime(entry, ns=((edit + 1) * 10**9, (edit + 1) * 10**9))
    exe.write_bytes(b"ELF-edit-%d" % 11 * 500)  # an edit undone: the layer of edit 11 is used again, so it is recent
    undone = layer.build(store, cache, {"app/svc": exe}, windows=False, mtime=0)
    assert undone == built[11]
    current = built[0]  # an image record still names the first one: it stays whatever its age
    freed = layer.prune(store, cache, {current.digest}, recent=3)
    kept = {i for i, b in enumerate(built) if store.has(b.digest)}
    assert kept == {0, 11, 13, 12}, kept
    assert freed > 0 and len(list(cache.glob("*.json"))) == 4
    exe.write_bytes(b"ELF-edit-%d" % 4 * 500)  # a pruned one is built again, the same bytes
    assert layer.build(store, cache, {"app/svc": exe}, windows=False, mtime=0) == built[4]


def test_missing_binary_is_one_clear_error(tmp_path):
    from wgobuild.oci import OciError

    with pytest.raises(OciError, match="binary not found"):
        layer.build(BlobStore(tmp_path), tmp_path, {"app/x.exe": tmp_path / "x.exe"}, windows=True, mtime=0)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak from /proc (Linux)")
def test_memory_does_not_grow_with_binary_size(tmp_path):
    big = tmp_path / "big.exe"
    with open(big, "wb") as handle:  # 100 MB, mostly sparse
        handle.write(b"MZ" + bytes(range(256)) * 4096)
        handle.truncate(100 * 1024 * 1024)
    script = ("import sys; from pathlib import Path; from wgobuild.oci import layer; from wgobuild.oci.blobs import "
              "BlobStore; p = Path(sys.argv[1]); "
              "layer.build(BlobStore(p.parent / 's'), p.parent / 'c', {'app/big.exe': p}, windows=True, mtime=0); "
              "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])")
    result = proc.run([sys.executable, "-c", script, big], quiet=True, check=True)
    # VmHWM is the child's own peak; proc's peak_rss would also count this (large) pytest process on Linux
    peak = int(result.output.split()[-1]) * 1024
    assert peak < 100 * 1024 * 1024, peak
