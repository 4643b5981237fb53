"""The orphan watchdog (Linux): when wgobuild ends by any means, SIGKILL included, every process it started ends too.

:mod:`wgobuild.proc` starts this file once per process, lazily at the first child, as
``python -I -S watchdog.py TOKEN`` (standard library only: it imports neither site-packages nor wgobuild). Every
child :func:`wgobuild.proc.spawn` starts carries ``WGOBUILD_GUARD=TOKEN`` in its environment (``TOKEN:GRACE`` for a
child to be stopped politely, a ``serve`` service), and every program it starts inherits it: ``go`` → ``compile``,
``link``, even one that leaves the process group or session. The watchdog's stdin is a pipe whose only write end is
held by wgobuild; the kernel closes it when wgobuild ends. Then:

- ``bye`` was written (wgobuild ended normally, having waited for all its children): nothing to do;
- otherwise every live process marked with TOKEN gets SIGTERM (those with a GRACE) or SIGKILL, and after the
  longest GRACE whatever is still marked gets SIGKILL. Processes are found by reading ``/proc/PID/environ``, so a
  process started an instant before wgobuild died is found too, with no registration to race.

Nothing happens while wgobuild runs: the watchdog only waits on the pipe.
"""

from __future__ import annotations

import os
import signal
import sys
import time

MARK = "WGOBUILD_GUARD"
TYPE_CHECKING = False  # not typing's: importing typing (and re with it) would double this program's start-up
if TYPE_CHECKING:
    from collections.abc import Iterable


def marked(token: str, proc_dir: str = "/proc") -> dict[int, float]:
    """Live processes whose environment holds ``WGOBUILD_GUARD=token[:grace]``: pid -> grace seconds."""
    prefix = f"{MARK}={token}".encode()
    me = os.getpid()
    found: dict[int, float] = {}
    try:
        names = os.listdir(proc_dir)
    except OSError:
        return found
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"{proc_dir}/{name}/environ", "rb") as handle:
                entries = handle.read().split(b"\0")
        except OSError:  # gone, or not ours to read
            continue
        for entry in entries:
            if entry == prefix or entry.startswith(prefix + b":"):
                grace = entry[len(prefix) + 1 :]
                try:
                    found[int(name)] = float(grace) if grace else 0.0
                except ValueError:
                    found[int(name)] = 0.0
                break
    return found


def sweep(token: str, proc_dir: str = "/proc", rounds: int = 5) -> list[int]:
    """Stop every process marked with ``token``; return the pids signalled."""
    signalled: set[int] = set()
    targets = marked(token, proc_dir)
    polite = {pid: grace for pid, grace in targets.items() if grace > 0}
    for pid in polite:
        _signal(pid, signal.SIGTERM)
        signalled.add(pid)
    deadline = time.monotonic() + max(polite.values(), default=0.0)
    while polite and time.monotonic() < deadline:
        time.sleep(0.05)
        polite = {pid: g for pid, g in marked(token, proc_dir).items() if pid in polite}
    for _ in range(rounds):  # again until none is left: a marked process may fork while it is being killed
        targets = marked(token, proc_dir)
        if not targets:
            break
        for pid in targets:
            _signal(pid, signal.SIGKILL)
            signalled.add(pid)
        time.sleep(0.02)
    return sorted(signalled)


def _signal(pid: int, sig: int) -> None:
    try:  # noqa: SIM105 - contextlib is not loaded at start-up
        os.kill(pid, sig)
    except OSError:  # gone already
        pass


def wait_for_end(lines: Iterable[bytes]) -> bool:
    """Read the pipe until it closes; True when wgobuild said ``bye`` (it ended normally)."""
    said_bye = False
    for raw in lines:
        said_bye = raw.strip() == b"bye"
    return said_bye


def main(argv: list[str]) -> int:
    for name in ("SIGINT", "SIGHUP"):  # a Ctrl-C or a closed terminal meant for wgobuild must not end the watch
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    if len(argv) != 2 or not argv[1]:
        sys.stderr.write("usage: watchdog.py TOKEN\n")
        return 2
    if not wait_for_end(sys.stdin.buffer):
        sweep(argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
