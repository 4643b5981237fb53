"""The orphan watchdog (POSIX): when wgobuild ends by any means, SIGKILL included, its children's trees end too.

:mod:`wgobuild.proc` starts this file once per process, lazily at the first child, as ``python -I -S watchdog.py``
(standard library only, so it imports neither site-packages nor wgobuild). Its stdin is a pipe whose only write end
is held by wgobuild. Every child :func:`wgobuild.proc.spawn` starts leads its own session, hence its own process
group, and the programs it starts (``go`` → ``compile``, ``link``) stay in that group. wgobuild writes one line per
child:

- ``+PGID TICKS GRACE``: watch group PGID, whose leader started at TICKS (``-`` when unknown); on wgobuild's end stop
  it with SIGKILL at once (GRACE 0) or SIGTERM, then SIGKILL after GRACE seconds;
- ``-PGID``: the child was reaped; forget its group.

When the pipe closes (the kernel closes it when wgobuild dies), every group still watched is stopped and the
watchdog exits. A leader pid that now belongs to a process started at other TICKS was reused: that group is not
ours and is left alone (Linux keeps a pid unused while its number is still a live process group's id).
"""

from __future__ import annotations

import os
import signal
import sys
import time

TYPE_CHECKING = False  # not typing's: importing typing (and re with it) would double this program's start-up
if TYPE_CHECKING:
    from collections.abc import Iterable


def start_ticks(pid: int) -> str:
    """When ``pid`` started, in clock ticks since boot (Linux ``/proc``); ``""`` where that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return ""
    fields = data[data.rindex(b")") + 2 :].split()  # the command name may hold spaces and parentheses
    return fields[19].decode() if len(fields) > 19 else ""


def parse(lines: Iterable[bytes]) -> dict[int, tuple[str, float]]:
    """Fold registration lines into the groups still watched: PGID -> (TICKS, GRACE)."""
    groups: dict[int, tuple[str, float]] = {}
    for raw in lines:
        parts = raw.decode("ascii", "replace").split()
        try:
            if parts[0].startswith("+"):
                groups[int(parts[0][1:])] = ("" if parts[1] == "-" else parts[1], float(parts[2]))
            elif parts[0].startswith("-"):
                groups.pop(int(parts[0][1:]), None)
        except (ValueError, IndexError):
            continue
    return groups


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def stop_groups(groups: dict[int, tuple[str, float]]) -> list[int]:
    """Stop every watched group that is still ours; return the groups signalled."""
    ours = {pgid: grace for pgid, (ticks, grace) in groups.items()
            if not ticks or start_ticks(pgid) in ("", ticks)}
    for pgid, grace in ours.items():
        _signal(pgid, signal.SIGTERM if grace > 0 else signal.SIGKILL)
    polite = [pgid for pgid, grace in ours.items() if grace > 0]
    deadline = time.monotonic() + max((ours[p] for p in polite), default=0.0)
    while polite and time.monotonic() < deadline:
        time.sleep(0.05)
        polite = [pgid for pgid in polite if _group_alive(pgid)]
    for pgid in ours:
        _signal(pgid, signal.SIGKILL)
    return sorted(ours)


def _signal(pgid: int, sig: int) -> None:
    try:  # noqa: SIM105 - contextlib is not loaded at start-up
        os.killpg(pgid, sig)
    except OSError:  # the group is gone already
        pass


def main() -> int:
    for name in ("SIGINT", "SIGHUP"):  # a Ctrl-C or a closed terminal meant for wgobuild must not end the watch
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    stop_groups(parse(sys.stdin.buffer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
