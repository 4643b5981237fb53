"""The one process runner: every external program wgobuild starts goes through :func:`spawn` (and :func:`run`).

Why one runner: it is the single place that (a) streams a child's output as it comes, (b) kills the child's whole
process tree on Ctrl-C, SIGTERM or a timeout, (c) makes the children die with wgobuild when wgobuild itself is
killed (SIGKILL, Task Manager), so no orphaned ``go``/``compile``/``link`` survives, (d) applies CPU affinity and
priority before the child runs any code of its own, and (e) measures wall time, CPU time and peak RSS of the tree
for the run report. Process trees are walked with psutil, which works the same on Windows and Linux (samples on
Linux read the tree's own /proc entries instead, see :func:`_proc_tree`).

Children of a killed wgobuild: every child carries a mark in its environment, inherited by whatever it starts,
and one watchdog process per wgobuild process (:mod:`wgobuild.watchdog`, started lazily at the first child) kills
every process so marked when wgobuild's end closes its pipe without a normal goodbye. On Windows this process
joins a kill-on-close job object (:mod:`wgobuild.winjob`) before its first child, so every descendant is born
inside the job.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

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
    progress.write(f"[{label}] {text}\n" if label else f"{text}\n", label)


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
    A signal ignored when wgobuild started stays ignored, as Python itself does for SIGINT: ``nohup`` ignores
    SIGHUP and a shell without job control starts background jobs with SIGINT ignored, on purpose.
    Only the main thread may install handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for name in ("SIGINT", "SIGTERM", "SIGBREAK", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:
            with contextlib.suppress(OSError, ValueError):
                signal.signal(sig, handler or _on_signal)


# [limits].priority words: Linux nice values and Windows priority classes (subprocess' creation flags).
PRIORITY_NICE = {"idle": 19, "below-normal": 10, "normal": 0, "above-normal": -5, "high": -10}
PRIORITY_CLASS = {
    "idle": "IDLE_PRIORITY_CLASS",
    "below-normal": "BELOW_NORMAL_PRIORITY_CLASS",
    "normal": "NORMAL_PRIORITY_CLASS",
    "above-normal": "ABOVE_NORMAL_PRIORITY_CLASS",
    "high": "HIGH_PRIORITY_CLASS",
}
_PR_SET_PDEATHSIG = 1


class _Guard:
    """Makes children die with this process: the watchdog (Linux) or the kill-on-close job (Windows); elsewhere
    (macOS, BSD: no ``/proc/PID/environ`` to find marked processes by) children are stopped in order only.

    Started lazily at the first child, once per process; a process that never starts a child pays nothing, and a
    child costs one environment entry, nothing on the spawn path (``subprocess`` keeps its fast vfork path).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pipe: int | None = None  # write end of the watchdog's stdin (POSIX)
        self._started_in = 0  # pid that started the watchdog (a forked copy of this process starts its own)
        self._job: object | None = None  # winjob.Job (Windows)
        self._prctl: Callable[..., int] | None = None
        self.token = ""
        self.watchdog: subprocess.Popen[bytes] | None = None

    def prepare(self) -> None:
        """Before a child starts: the watchdog or the job exists (a failure leaves children unguarded, not broken)."""
        with self._lock:
            if os.name == "nt":
                if self._job is None:
                    from wgobuild import winjob

                    with contextlib.suppress(OSError):
                        self._job = winjob.Job()
                return
            if sys.platform != "linux" or (self._pipe is not None and self._started_in == os.getpid()):
                return
            from wgobuild import watchdog

            token = f"{os.getpid()}.{time.time_ns()}"
            read_end, write_end = os.pipe()
            env = {k: v for k, v in os.environ.items() if k != watchdog.MARK}  # an outer run's sweep spares it
            try:
                self.watchdog = subprocess.Popen(
                    [sys.executable, "-I", "-S", watchdog.__file__, token], stdin=read_end, env=env,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            except OSError:
                os.close(write_end)
                return
            finally:
                os.close(read_end)
            if self._started_in == 0:
                atexit.register(self.bye)
            self._pipe, self._started_in, self.token = write_end, os.getpid(), token

    def mark(self, env: Mapping[str, str] | None, grace_s: float) -> dict[str, str] | None:
        """The child's environment with the watchdog's mark (``TOKEN`` or ``TOKEN:GRACE``)."""
        if not self.token or self._started_in != os.getpid():
            return dict(env) if env is not None else None
        from wgobuild.watchdog import MARK

        value = f"{self.token}:{grace_s:g}" if grace_s > 0 else self.token
        return {**(os.environ if env is None else env), MARK: value}

    def bye(self) -> None:
        """This process ends normally, its children waited for: the watchdog has nothing to sweep."""
        with self._lock:
            if self._pipe is not None and self._started_in == os.getpid():
                with contextlib.suppress(OSError):
                    os.write(self._pipe, b"bye\n")

    def adopt(self, pid: int) -> None:
        """Windows, where this process could not join the job: put the child in right after it starts."""
        if self._job is not None:
            self._job.adopt(pid)  # type: ignore[attr-defined]

    def child_setup(self, deathsig: int, affinity: Sequence[int], nice: int | None) -> Callable[[], None]:
        """What a POSIX child with limits runs between fork and exec: die with this thread, affinity, priority."""
        if self._prctl is None and sys.platform == "linux":  # PR_SET_PDEATHSIG through libc's prctl
            import ctypes

            with contextlib.suppress(OSError, AttributeError):
                self._prctl = ctypes.CDLL(None, use_errno=True).prctl
        prctl, parent = self._prctl, os.getpid()
        set_affinity = getattr(os, "sched_setaffinity", None)
        cpus = set(affinity)

        def setup() -> None:
            if prctl is not None:
                prctl(_PR_SET_PDEATHSIG, deathsig, 0, 0, 0)
                if os.getppid() != parent:  # the parent died before prctl took effect
                    os.kill(os.getpid(), signal.SIGKILL)
            # A limit the OS refuses (a CPU outside this cgroup, a raise of priority without privileges) is left
            # unset rather than failing the start; the caller reads the limits back and reports (supervisor).
            if cpus and set_affinity is not None:
                with contextlib.suppress(OSError):
                    set_affinity(0, cpus)
            if nice is not None:
                with contextlib.suppress(OSError):
                    os.setpriority(os.PRIO_PROCESS, 0, nice)

        return setup


_guard = _Guard()


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    stdin: int | IO[bytes] | None = subprocess.DEVNULL,
    stdout: int | IO[bytes] | None = subprocess.PIPE,
    stderr: int | IO[bytes] | None = subprocess.STDOUT,
    affinity: Sequence[int] = (),
    priority: str = "normal",
    kill_grace_s: float = 0.0,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` (a list, never a shell string) in its own process group (Windows) or session (POSIX).

    The console's Ctrl-C then reaches wgobuild alone, which stops the child's whole tree in order. When wgobuild
    dies without that chance, the child's tree dies too: at once, or (``kill_grace_s`` > 0) politely first, then
    killed after that many seconds. ``affinity`` (CPU numbers) and ``priority`` (a ``[limits].priority`` word) are
    set before the program runs: in the child before exec on POSIX; on Windows the priority class at creation and
    the affinity right after start (Popen cannot create a suspended process), before it has had a time slice to
    speak of. The child's environment gains ``WGOBUILD_GUARD`` (the watchdog's mark, Linux). :func:`run` uses it
    for programs it waits for; the ``serve`` supervisor for the long-lived service it watches.
    """
    _guard.prepare()
    flags, setup = 0, None
    if os.name == "nt":
        flags = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
        if priority != "normal":
            flags |= getattr(subprocess, PRIORITY_CLASS[priority])
    elif affinity or priority != "normal":  # only then: a preexec makes subprocess fork instead of vfork
        deathsig = signal.SIGTERM if kill_grace_s > 0 else signal.SIGKILL
        nice = PRIORITY_NICE[priority] if priority != "normal" else None
        setup = _guard.child_setup(deathsig, affinity, nice)
    try:
        popen = subprocess.Popen(
            [str(a) for a in argv], stdin=stdin, stdout=stdout, stderr=stderr, env=_guard.mark(env, kill_grace_s),
            cwd=cwd, creationflags=flags, start_new_session=os.name != "nt", preexec_fn=setup,
        )
    except FileNotFoundError:
        raise ToolMissing(f"{argv[0]}: program not found; install it or put it on PATH") from None
    if os.name == "nt":
        _guard.adopt(popen.pid)
        if affinity:
            with contextlib.suppress(psutil.Error):
                psutil.Process(popen.pid).cpu_affinity(list(affinity))
    return popen


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
    exited = _ExitWaiter(popen)
    try:
        delay = 0.005
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
            exited(delay)  # returns at once when the program ends: no step waits out a polling interval
            delay = min(delay * 2, 0.2)  # each sample walks all of /proc (1-2 ms of CPU): few per step
    except BaseException:
        interrupted = True
        kill_tree(popen.pid)
        popen.wait()
        raise
    finally:
        exited.close()
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


class _ExitWaiter:
    """Sleeps up to a given time, waking as soon as the child ends: on Linux through a pidfd, which does not reap
    it (:func:`run` still reads its resource usage with ``wait4``); on Windows through the process handle."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self._fd: int | None = None
        if hasattr(os, "pidfd_open"):
            with contextlib.suppress(OSError):  # an old kernel: plain sleeps
                self._fd = os.pidfd_open(popen.pid)

    def __call__(self, timeout: float) -> None:
        if self._fd is not None:
            import select

            select.select([self._fd], [], [], timeout)
        elif os.name == "nt":
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout=timeout)
        else:
            time.sleep(timeout)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class _TreeSampler:
    """Samples RSS (summed over the live tree) and CPU (per process, last value seen) of a process tree."""

    def __init__(self, pid: int) -> None:
        self.peak = 0
        self._pid = pid
        self._cpu: dict[tuple[int, float], float] = {}
        self._root: psutil.Process | None = None
        if not _CHILDREN_LISTS:
            with contextlib.suppress(psutil.Error):
                self._root = psutil.Process(pid)

    def sample(self) -> None:
        tree = _proc_tree(self._pid) if _CHILDREN_LISTS else _psutil_tree(self._root)
        for pid, started, cpu, _ in tree:
            self._cpu[(pid, started)] = cpu
        self.peak = max(self.peak, sum(rss for *_, rss in tree))

    def cpu(self) -> float:
        return sum(self._cpu.values())


_TreeEntry = tuple[int, float, float, int]  # pid, start, CPU seconds, RSS bytes


def _psutil_tree(root: psutil.Process | None) -> list[_TreeEntry]:
    entries: list[_TreeEntry] = []
    for p in _tree(root) if root is not None else []:
        with contextlib.suppress(psutil.Error), p.oneshot():
            times = p.cpu_times()
            entries.append((p.pid, p.create_time(), times.user + times.system, p.memory_info().rss))
    return entries


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# Linux lists each thread's children (CONFIG_PROC_CHILDREN, on in distribution kernels); elsewhere psutil walks.
_CHILDREN_LISTS = sys.platform == "linux" and os.path.exists(f"/proc/self/task/{os.getpid()}/children")


def _proc_tree(pid: int) -> list[_TreeEntry]:
    """Linux: the tree from each process's own ``stat`` and its threads' ``children`` lists, so a sample reads the
    tree alone (psutil finds children by reading the stat of every process on the machine: milliseconds per sample
    on a busy desktop). A process that ends meanwhile is left out."""
    entries: list[_TreeEntry] = []
    todo, seen = [pid], set()
    while todo:
        current = todo.pop()
        if current in seen:  # a pid reused while the tree was read
            continue
        seen.add(current)
        try:
            with open(f"/proc/{current}/stat", "rb") as handle:
                fields = handle.read().rpartition(b")")[2].split()
            tasks = os.listdir(f"/proc/{current}/task")
            # fields[0] is proc(5)'s field 3 (state): utime is field 14, stime 15, starttime 22, rss 24 (pages)
            entries.append((current, int(fields[19]) / _TICKS, (int(fields[11]) + int(fields[12])) / _TICKS,
                            int(fields[21]) * _PAGE))
        except (OSError, ValueError, IndexError):  # ended meanwhile (a figure is not worth failing a step for)
            continue
        for task in tasks:
            with contextlib.suppress(OSError), open(f"/proc/{current}/task/{task}/children", "rb") as handle:
                todo.extend(int(child) for child in handle.read().split())
    return entries
