"""The one process runner: every external program wgobuild starts goes through :func:`run`.

Why one runner: it is the single place that (a) streams a child's output as it comes, (b) kills the child's whole
process tree on Ctrl-C, SIGTERM or a timeout, so no orphaned ``go``/``compile`` processes survive, and (c) measures
wall time, CPU time and peak RSS of the tree for the run report. Process trees are walked with psutil, which works
the same on Windows and Linux (no ``os.killpg``).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from wgobuild import progress
from wgobuild.errors import Interrupted, StepFailed, ToolMissing

_OUTPUT_TAIL_LINES = 4000
_live: set[int] = set()
_live_lock = threading.Lock()
_stopping = threading.Event()  # set by the first Ctrl-C/SIGTERM: running trees are killed, new runs refused
# Where finished runs are recorded (per doit task); set by the task wiring, empty elsewhere.
_collector: contextvars.ContextVar[list[ProcResult] | None] = contextvars.ContextVar("wgobuild_proc", default=None)


@dataclass
class ProcResult:
    """What one program run did: exit code, output tail and resource figures of its whole process tree."""

    argv: list[str]
    returncode: int
    wall_s: float
    cpu_s: float
    peak_rss: int
    output: str = ""
    timed_out: bool = False
    interrupted: bool = False
    lines: list[str] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def tail(self, count: int = 40) -> str:
        return "\n".join(self.output.splitlines()[-count:])


def echo(text: str, label: str | None = None) -> None:
    """Print one line (prefixed with ``[label]`` when given) without interleaving with other threads.

    Goes through :func:`wgobuild.progress.write`: one lock for every line, below which live step lines are kept.
    """
    progress.write(f"[{label}] {text}\n" if label else f"{text}\n")


@contextlib.contextmanager
def collecting() -> Iterator[list[ProcResult]]:
    """Record every run inside the block (used by the task wiring to report per-task figures)."""
    runs: list[ProcResult] = []
    token = _collector.set(runs)
    try:
        yield runs
    finally:
        _collector.reset(token)


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return []


def kill_tree(pid: int, grace_s: float = 3.0) -> None:
    """Terminate ``pid`` and every descendant; kill what is still alive after ``grace_s`` seconds."""
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    procs = _tree(root)
    for p in reversed(procs):  # children first, so a parent cannot respawn them
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=grace_s)


def kill_all_live() -> None:
    """Kill every process tree this runner started and has not seen finish (signal handlers, exit)."""
    with _live_lock:
        pids = list(_live)
    for pid in pids:
        kill_tree(pid, grace_s=2.0)


def stopping() -> bool:
    """True once Ctrl-C/SIGTERM arrived; long-running steps check it between units of work."""
    return _stopping.is_set()


def check_stopping() -> None:
    """Raise :class:`Interrupted` when a stop was requested."""
    if _stopping.is_set():
        raise Interrupted("interrupted (Ctrl-C or SIGTERM): running programs were stopped; run again to resume")


def _on_signal(signum: int, _frame: object) -> None:
    if _stopping.is_set():  # second signal: stop waiting for an orderly end
        kill_all_live()
        raise KeyboardInterrupt(f"signal {signum}")
    _stopping.set()
    kill_all_live()


def install_signal_handlers(handler: Callable[[int, object], None] | None = None) -> None:
    """Turn the first SIGINT/SIGTERM (CTRL_BREAK on Windows) into an orderly stop.

    Running process trees are killed at once and every later :func:`run` raises :class:`Interrupted`, which the
    task wiring reports as a failed step; worker threads of ``doit -P thread`` see it too, unlike a
    KeyboardInterrupt, which only reaches the main thread. A second signal raises KeyboardInterrupt.
    ``handler`` replaces that behaviour (the ``serve`` supervisor stops its service instead).
    Only the main thread may install handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for name in ("SIGINT", "SIGTERM", "SIGBREAK", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            with contextlib.suppress(OSError, ValueError):
                signal.signal(sig, handler or _on_signal)


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    stdin: object = subprocess.DEVNULL,
    stdout: object = subprocess.PIPE,
    stderr: object = subprocess.STDOUT,
) -> subprocess.Popen:
    """Start ``argv`` (a list, never a shell string) in its own process group (Windows) or session (POSIX).

    The console's Ctrl-C then reaches wgobuild alone, which stops the child's whole tree in order. :func:`run` uses
    it for programs it waits for; the ``serve`` supervisor for the long-lived service it watches.
    """
    kwargs: dict[str, object] = {}
    if os.name == "nt":
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
    else:
        kwargs["start_new_session"] = True
    try:
        return subprocess.Popen(
            [str(a) for a in argv], stdin=stdin, stdout=stdout, stderr=stderr,
            env=dict(env) if env is not None else None, cwd=cwd, **kwargs,
        )
    except FileNotFoundError:
        raise ToolMissing(f"{argv[0]}: program not found; install it or put it on PATH") from None


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    timeout: float | None = None,
    label: str | None = None,
    quiet: bool = False,
    on_line: Callable[[str], None] | None = None,
    stdin_path: Path | None = None,
    check: bool = False,
    step: str = "",
) -> ProcResult:
    """Run ``argv`` (a list, never a shell string) and return its :class:`ProcResult`.

    Output lines are echoed (prefixed with ``[label]``) unless ``quiet``; ``on_line`` receives each line instead
    when given. On timeout, Ctrl-C or SIGTERM the whole tree is stopped; KeyboardInterrupt propagates.
    With ``check`` a non-zero exit raises :class:`StepFailed` naming ``step`` and showing the output's tail.
    """
    check_stopping()
    argv = [str(a) for a in argv]
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL  # noqa: SIM115
    start = time.perf_counter()
    try:
        popen = spawn(argv, env=env, cwd=cwd, stdin=stdin)
    finally:
        if stdin_path:
            stdin.close()  # type: ignore[union-attr]
    with _live_lock:
        _live.add(popen.pid)
    tail: deque[str] = deque(maxlen=_OUTPUT_TAIL_LINES)

    def pump() -> None:
        assert popen.stdout is not None
        for raw in popen.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            tail.append(line)
            if on_line is not None:
                on_line(line)
            elif not quiet:
                echo(line, label)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    sampler = _TreeSampler(popen.pid)
    sampler.sample()  # Popen returns after exec: this sees the program itself, even one that ends at once
    timed_out = interrupted = False
    rusage_cpu = 0.0
    try:
        delay = 0.002
        while True:
            if os.name != "nt":
                try:
                    pid, status, usage = os.wait4(popen.pid, os.WNOHANG)
                except ChildProcessError:  # already reaped by kill_tree after a timeout
                    popen.returncode = -signal.SIGKILL
                    break
                if pid:
                    popen.returncode = os.waitstatus_to_exitcode(status)
                    # CPU from the kernel's accounting (covers children the program waited for). Its ru_maxrss
                    # is not used: it counts the parent's pages the child held between fork and exec.
                    rusage_cpu = usage.ru_utime + usage.ru_stime
                    break
            elif popen.poll() is not None:
                break
            sampler.sample()
            if timeout is not None and time.perf_counter() - start > timeout:
                timed_out = True
                kill_tree(popen.pid)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
    except BaseException:
        interrupted = True
        kill_tree(popen.pid)
        popen.wait()
        raise
    finally:
        with _live_lock:
            _live.discard(popen.pid)
        reader.join(timeout=5)
        result = ProcResult(
            argv=argv,
            returncode=popen.returncode if popen.returncode is not None else -1,
            wall_s=time.perf_counter() - start,
            cpu_s=max(rusage_cpu, sampler.cpu()),
            peak_rss=sampler.peak,
            output="\n".join(tail),
            timed_out=timed_out,
            interrupted=interrupted,
        )
        runs = _collector.get()
        if runs is not None:
            runs.append(result)
    check_stopping()
    if check and not result.ok:
        what = "timed out" if timed_out else f"exited with code {result.returncode}"
        raise StepFailed(f"{step or argv[0]}: {' '.join(argv[:3])} ... {what}\n{result.tail()}")
    return result


class _TreeSampler:
    """Samples RSS (summed over the live tree) and CPU (per pid, last value seen) of a process tree."""

    def __init__(self, pid: int) -> None:
        self.peak = 0
        self._cpu: dict[tuple[int, float], float] = {}
        try:
            self._root: psutil.Process | None = psutil.Process(pid)
        except psutil.Error:
            self._root = None

    def sample(self) -> None:
        if self._root is None:
            return
        rss = 0
        for p in _tree(self._root):
            with contextlib.suppress(psutil.Error), p.oneshot():
                rss += p.memory_info().rss
                times = p.cpu_times()
                self._cpu[(p.pid, p.create_time())] = times.user + times.system
        self.peak = max(self.peak, rss)

    def cpu(self) -> float:
        return sum(self._cpu.values())
