"""Console output of a run: one lock for every line, and a live line per running step on a terminal.

Every line wgobuild prints goes through :func:`write` (:func:`wgobuild.proc.echo` and the doit reporter call it),
under one lock, so lines of parallel steps never interleave mid-line.

On a terminal (stdout is a TTY and ``CI`` is not ``true``) the steps that are running are shown below the output as
live lines with their elapsed time and last line of output (``  12.3s  image-platform:linux-amd64  pulling: 3
layers, 12.0 of 40.0 MB``), redrawn a few times a second: a cold compile, ``go test``, a pull or a push is never a
silent wait. Elsewhere (a pipe, a file, CI) output stays plain lines, and a step that
runs long says so every :data:`PLAIN_EVERY_S` seconds.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import threading
import time

TICK_S = 0.25  # redraw interval of the live lines
PLAIN_EVERY_S = 60.0  # plain output: a "still running" line this often per long step
MAX_LINES = 6  # live lines shown at most; the rest is counted

_lock = threading.RLock()
_running: dict[str, float] = {}  # step -> monotonic start
_detail: dict[str, str] = {}  # step -> its last output line, shown on its live line (pull/push progress)
_said: dict[str, float] = {}  # plain mode: step -> when it last said "still running"
_shown = 0  # live lines on screen now (the cursor sits at the end of the last one)
_ticker: threading.Thread | None = None
_closed = threading.Event()


def live() -> bool:
    """True when live lines are drawn: stdout is a terminal and this is not CI."""
    if os.environ.get("CI", "").lower() == "true":
        return False
    try:
        if not sys.stdout.isatty():
            return False
    except (AttributeError, ValueError):
        return False
    return os.name != "nt" or _windows_vt()


@functools.cache
def _windows_vt() -> bool:
    """Windows consoles understand the cursor sequences once virtual-terminal processing is on: turn it on."""
    try:
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel32.GetStdHandle(-11)  # STD_OUTPUT_HANDLE
        mode = ctypes.c_uint32()
        if not kernel32.GetConsoleMode(handle, ctypes.byref(mode)):
            return False
        return bool(kernel32.SetConsoleMode(handle, mode.value | 0x0004))  # ENABLE_VIRTUAL_TERMINAL_PROCESSING
    except (AttributeError, OSError):
        return False


def write(text: str, step: str | None = None) -> None:
    """Write ``text`` (whole lines) to stdout under the output lock, keeping the live lines below it; a line of a
    running ``step`` also becomes that step's live detail (``pulling: 3 layers, 12.0 of 40.0 MB``)."""
    with _lock:
        if step is not None and step in _running:
            last = text.strip().splitlines()[-1] if text.strip() else ""
            _detail[step] = last.removeprefix(f"[{step}] ")
        out = sys.stdout
        if _shown:
            out.write(_erase())
            out.write(text)
            out.write(_draw())
        else:
            out.write(text)
        out.flush()


def start(step: str) -> None:
    """``step`` started: it gets a live line (terminal) or "still running" lines (plain) until :func:`finish`."""
    global _ticker
    with _lock:
        _running[step] = time.monotonic()
        _said[step] = _running[step]
        _redraw()
        if _ticker is None or not _ticker.is_alive():
            _closed.clear()
            _ticker = threading.Thread(target=_tick, name="wgobuild-progress", daemon=True)
            _ticker.start()


def finish(step: str) -> None:
    with _lock:
        _running.pop(step, None)
        _said.pop(step, None)
        _detail.pop(step, None)
        _redraw()


def close() -> None:
    """End of the run: remove the live lines and stop redrawing."""
    global _ticker
    _closed.set()
    with _lock:
        _running.clear()
        _said.clear()
        _detail.clear()
        _redraw()
        ticker, _ticker = _ticker, None
    if ticker is not None and ticker is not threading.current_thread():
        ticker.join(timeout=2)


def running() -> dict[str, float]:
    """Seconds each running step has taken so far."""
    now = time.monotonic()
    with _lock:
        return {step: now - started for step, started in _running.items()}


def _tick() -> None:
    while not _closed.wait(TICK_S):
        with _lock:
            if not _running:
                continue
            if live():
                _redraw()
                continue
            now = time.monotonic()
            for step, last in list(_said.items()):
                if now - last >= PLAIN_EVERY_S:
                    _said[step] = now
                    sys.stdout.write(f"[{step}] still running ({now - _running[step]:.0f}s)\n")
                    sys.stdout.flush()


def _redraw() -> None:
    if not live() and not _shown:
        return
    sys.stdout.write(_erase() + _draw())
    sys.stdout.flush()


def _erase() -> str:
    """Move to the first live line and clear every live line (the cursor ends at its start)."""
    global _shown
    if not _shown:
        return ""
    text = "\r\x1b[K" + "\x1b[1A\x1b[K" * (_shown - 1)
    _shown = 0
    return text


def _draw() -> str:
    global _shown
    if not _running or not live():
        return ""
    width = max(20, shutil.get_terminal_size((100, 24)).columns - 1)
    now = time.monotonic()
    steps = sorted(_running.items(), key=lambda item: item[1])
    lines = [f"  {now - started:6.1f}s  {step}{'  ' + _detail[step] if _detail.get(step) else ''}"[:width]
             for step, started in steps[:MAX_LINES]]
    if len(steps) > MAX_LINES:
        lines.append(f"  … and {len(steps) - MAX_LINES} more"[:width])
    _shown = len(lines)
    return "\n".join(lines)
