"""One wgobuild run at a time per project: an exclusive OS lock on ``<state_dir>/run.lock``.

The lock is taken before doit opens its state DB and before ``git``/``go list`` run, and held until the process
ends; the OS releases it however the process ends (SIGKILL included), so a lock is never stale. The holder's pid
and start time are written beside it (``run.owner``) only so that a second run can say whom it waits for:

    waiting for another wgobuild run, pid 4242, since 14:03:07

then it waits and proceeds, finding the first run's work done. Ctrl-C while waiting ends the wait at once.
POSIX uses ``fcntl.flock`` (advisory, whole file); Windows ``msvcrt.locking`` on the file's first byte.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from wgobuild.errors import Interrupted

LOCK_NAME = "run.lock"
OWNER_NAME = "run.owner"
_held: dict[Path, IO[bytes]] = {}  # state folders this process holds, with the open lock file


def _try_lock(handle: IO[bytes]) -> bool:
    if os.name == "nt":
        import msvcrt

        handle.seek(0)
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _wait_lock(handle: IO[bytes]) -> None:
    """Block until the lock is ours; Ctrl-C raises KeyboardInterrupt here."""
    if os.name == "nt":  # msvcrt's blocking mode gives up after 10 s: poll instead
        while not _try_lock(handle):
            time.sleep(0.1)
        return
    import fcntl

    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)


def owner(state_dir: Path) -> tuple[int, float] | None:
    """The pid and start time (epoch seconds) the last holder wrote, or None."""
    try:
        data = json.loads((state_dir / OWNER_NAME).read_text(encoding="utf-8"))
        return int(data["pid"]), float(data["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _current_owner(state_dir: Path) -> tuple[int, float] | None:
    """The holder as written beside the lock. A holder that took the lock an instant ago may not have written
    yet (the file then names a dead run): look again for a moment."""
    import psutil  # imported only when waiting: the no-op shortcut (wgobuild.fastpath) takes the lock too

    deadline = time.monotonic() + 1.0
    while True:
        found = owner(state_dir)
        if found and psutil.pid_exists(found[0]):
            return found
        if time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def hold(state_dir: Path, say: Callable[[str], None] | None = None) -> None:
    """Take the run lock of the project whose state lives in ``state_dir``, waiting for another run if needed.

    Held for the rest of this process's life; a second call for the same folder returns at once. Raises
    :class:`Interrupted` (exit code 130) when Ctrl-C arrives while waiting.
    """
    state_dir = state_dir.resolve()
    if state_dir in _held:
        return
    said = False
    try:
        while True:
            state_dir.mkdir(parents=True, exist_ok=True)
            handle = open(state_dir / LOCK_NAME, "a+b")  # noqa: SIM115 - held open until the process ends
            try:
                if not _try_lock(handle):
                    if not said:
                        found = _current_owner(state_dir)
                        who = (f"pid {found[0]}, since {time.strftime('%H:%M:%S', time.localtime(found[1]))}"
                               if found else "pid unknown")
                        (say or _stderr)(f"waiting for another wgobuild run, {who}")
                        said = True
                    _wait_lock(handle)
            except BaseException:
                handle.close()
                raise
            if _still_there(handle, state_dir / LOCK_NAME):
                break
            handle.close()  # the holder removed the state folder (`wgobuild clean --state`): lock the new file
    except KeyboardInterrupt:
        raise Interrupted("interrupted while waiting for another wgobuild run; nothing was built") from None
    _held[state_dir] = handle
    import psutil

    _write_owner(state_dir, psutil.Process().create_time())


def try_hold(state_dir: Path) -> bool:
    """Take the run lock only when no other run holds it: no waiting, no message. True when it is held (for the
    rest of this process's life, like :func:`hold`); the owner note gets the time it was taken."""
    state_dir = state_dir.resolve()
    if state_dir in _held:
        return True
    try:
        handle = open(state_dir / LOCK_NAME, "a+b")  # noqa: SIM115 - held open until the process ends
    except OSError:
        return False
    if not _try_lock(handle) or not _still_there(handle, state_dir / LOCK_NAME):
        handle.close()
        return False
    _held[state_dir] = handle
    _write_owner(state_dir, time.time())
    return True


def _write_owner(state_dir: Path, started: float) -> None:
    data = (json.dumps({"pid": os.getpid(), "started": started}) + "\n").encode()
    with contextlib.suppress(OSError):  # only feeds the waiting message: a plain write (a reader retries a torn one)
        fd = os.open(state_dir / OWNER_NAME, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def _still_there(handle: IO[bytes], path: Path) -> bool:
    """Is the locked file still the one at ``path`` (not removed or replaced while this process waited)?"""
    try:
        ours, now = os.fstat(handle.fileno()), os.stat(path)
    except OSError:
        return False
    return (ours.st_dev, ours.st_ino) == (now.st_dev, now.st_ino)


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
