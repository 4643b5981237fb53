"""doit's file checker as wgobuild configures it: each file state hashed once per run and shared with the SBOM,
layer and image fingerprint, every change still seen."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import IO, Any

import pytest
from fixtures_go import run_doit

from wgobuild import doit_tasks, files


@pytest.fixture()
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files :func:`files.sha256_file` reads, from an empty memory."""
    calls: list[str] = []

    def counting(path: Any, *args: Any) -> IO[bytes]:
        calls.append(str(path))
        return open(path, *args)

    monkeypatch.setattr(files, "_SHA256_SEEN", {})
    monkeypatch.setattr(files, "open", counting, raising=False)
    return calls


@pytest.mark.slow
def test_state_saved_by_doits_own_checker_leaves_nothing_to_rebuild(multi: Path) -> None:
    """doit stores the checker's class name and re-runs every step when it changes: a module built before this
    checker (doit's stock md5 one, same saved state) must not be rebuilt whole once."""
    stock = run_doit(multi, "--check_file_uptodate", "md5", "image")
    assert stock.returncode == 0 and "compile:api-linux-amd64" in stock.ran, stock.output
    ours = run_doit(multi, "image", env={"WGOBUILD_NO_FASTPATH": "1"})
    assert ours.returncode == 0 and ours.ran == set(), ours.output


def test_a_file_read_by_many_steps_is_hashed_once(tmp_path: Path, hashed: list[str]) -> None:
    binary = tmp_path / "api"
    binary.write_bytes(b"MZ" + b"\0" * 4096)
    checker = doit_tasks.MD5Checker()
    states = [checker.get_state(str(binary), None) for _ in range(4)]  # golden case, image steps, ...
    assert len(set(states)) == 1 and hashed == [str(binary)]
    assert files.sha256_file(binary) == states[0][2] and hashed == [str(binary)]  # its SBOM and layer read no more
    old = states[0]
    assert old is not None
    later = binary.stat().st_mtime_ns + 5 * 10**9
    os.utime(binary, ns=(later, later))  # touched: same bytes, new mtime
    assert not checker.check_modified(str(binary), os.stat(binary), old)
    assert not checker.check_modified(str(binary), os.stat(binary), old)
    assert hashed == [str(binary)] * 2


def test_a_same_size_rewrite_is_a_change(tmp_path: Path, hashed: list[str]) -> None:
    binary = tmp_path / "api"
    binary.write_bytes(b"A" * 4096)
    checker = doit_tasks.MD5Checker()
    old = checker.get_state(str(binary), None)
    assert old is not None
    later = binary.stat().st_mtime_ns + 10**9
    binary.write_bytes(b"B" * 4096)  # in place: same inode and size
    os.utime(binary, ns=(later, later))
    assert checker.check_modified(str(binary), os.stat(binary), old)
    new = checker.get_state(str(binary), old)
    assert new is not None and new[2] != old[2] and new[2] == hashlib.sha256(b"B" * 4096).hexdigest()
    assert not checker.check_modified(str(binary), os.stat(binary), new)
