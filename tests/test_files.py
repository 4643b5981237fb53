"""Atomic outputs: a failing writer leaves the old file (or none), never a partial one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wgobuild import files


def test_write_text_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "a" / "out.txt"
    files.write_text(target, "one")
    files.write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]
    assert target.stat().st_mode & 0o644 == 0o644


def test_failed_write_keeps_previous_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    files.write_bytes(target, b"good")
    with pytest.raises(RuntimeError), files.atomic_open(target) as handle:
        handle.write(b"partial")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_atomic_dir_swaps_whole_folder(tmp_path: Path) -> None:
    target = tmp_path / "layout"
    with files.atomic_dir(target) as tmp:
        (tmp / "index.json").write_text("{}")
    with pytest.raises(OSError), files.atomic_dir(target) as tmp:
        (tmp / "half").write_text("x")
        raise OSError("no space left on device")
    assert sorted(p.name for p in target.iterdir()) == ["index.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["layout"]


def test_sha256_file_streams(tmp_path: Path) -> None:
    target = tmp_path / "blob"
    target.write_bytes(b"abc")
    assert files.sha256_file(target, chunk=1) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_sha256_file_sees_an_in_place_rewrite_that_keeps_size_and_mtime(tmp_path: Path) -> None:
    path = tmp_path / "api"
    path.write_bytes(b"A" * 4096)
    before = path.stat()
    first = files.sha256_file(path)
    assert files.sha256_file(path) == first  # unchanged: answered without reading it again
    path.write_bytes(b"B" * 4096)  # same inode and size; the mtime is put back, the ctime moves on
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert files.sha256_file(path) != first
    assert files.sha256_file(path) == files.sha256_file(Path(str(path)))


def test_identical_output_keeps_the_old_file_and_its_mtime(tmp_path: Path) -> None:
    target = tmp_path / "bin"
    files.write_bytes(target, b"same bytes")
    os.utime(target, ns=(1_000_000_000, 1_000_000_000))
    files.write_bytes(target, b"same bytes")
    assert target.stat().st_mtime_ns == 1_000_000_000
    files.write_bytes(target, b"other byte")
    assert target.read_bytes() == b"other byte" and target.stat().st_mtime_ns != 1_000_000_000
    assert [p.name for p in tmp_path.iterdir()] == ["bin"]
