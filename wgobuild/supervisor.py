"""``serve``: run a built binary directly on a host, supervised with psutil.

Why a supervisor of our own: on a host without containers (or before a service is registered) the admin still needs
the limits set in ``wgobuild.toml`` enforced: restart on failure with exponential back-off and a give-up point, a
memory cap over the RSS of the whole process tree, a handle/file-descriptor cap, CPU affinity and priority, a
graceful stop (polite signal, wait, kill the tree) and size-rotated stdout/stderr logs. psutil gives the same
process-tree view on Windows and Linux.

Long-lived children cannot go through :func:`wgobuild.proc.run` (it waits for the program to finish), so this module
starts them itself through :func:`wgobuild.proc.spawn`; stopping trees reuses :func:`wgobuild.proc.kill_tree`. When the
supervisor dies by any means, even a hard kill, the service's tree dies too, by the same mechanism as every child
of wgobuild (see :mod:`wgobuild.proc`): politely first, killed after ``grace_s``. Affinity and priority are set by
``proc.spawn`` before the service runs (in the child before exec on POSIX), so its own children inherit them.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import IO, Any

import psutil

from wgobuild import files, proc
from wgobuild.config import Config, Platform, parse_size
from wgobuild.errors import ConfigError, WgobuildError

STATUS_NAME = "serve-status.json"
STOP_NAME = "serve.stop"
_MiB = 1024 * 1024


class ServeGaveUp(WgobuildError):
    """The service kept failing: the back-off reached its cap and the restart budget is spent."""


@dataclass(frozen=True)
class ServeSpec:
    """Everything the supervisor needs, as plain values (built from the config by :func:`spec_from_config`)."""

    argv: list[str]
    name: str
    state_dir: Path
    log_dir: Path
    cwd: Path | None = None
    env: dict[str, str] | None = None
    memory_cap: int = 0  # bytes of RSS over the whole tree; 0 = none
    handle_cap: int = 0  # open handles (Windows) / file descriptors (POSIX) over the tree; 0 = none
    affinity: tuple[int, ...] = ()
    priority: str = "normal"
    grace_s: float = 10.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    max_restarts: int = 10
    healthy_after_s: float = 30.0
    log_max_bytes: int = 10 * _MiB
    log_keep: int = 5
    poll_s: float = 0.25
    cpus: float = 0.0  # not enforceable here; reported as such

    @property
    def status_path(self) -> Path:
        return self.state_dir / STATUS_NAME

    @property
    def stop_path(self) -> Path:
        return self.state_dir / STOP_NAME


def spec_from_config(
    cfg: Config, *, binary: str = "", args: list[str] | None = None, poll_s: float = 0.25
) -> ServeSpec:
    """Turn ``[limits]``/``[run]`` into a :class:`ServeSpec`; check what only this host can tell (CPUs, binary)."""
    names = [b.name for b in cfg.binaries]
    wanted = binary or cfg.run.binary or (names[0] if names else "")
    match = [b for b in cfg.binaries if b.name == wanted]
    if not match:
        raise ConfigError(cfg.path, "[run].binary", f"{wanted!r} is not one of the binaries: {names}")
    exe = cfg.binary_path(match[0], Platform.host())
    if not exe.is_file():
        raise WgobuildError(f"serve: {exe} does not exist; build it first with `doit build` (native platform "
                            f"{Platform.host()} must be in [build].platforms)")
    ncpu = psutil.cpu_count() or 1
    for i, cpu in enumerate(cfg.limits.affinity):
        if cpu >= ncpu:
            raise ConfigError(cfg.path, f"[limits].affinity[{i}]", f"CPU {cpu} does not exist here ({ncpu} CPUs)")
    log_dir = Path(cfg.run.log_dir) if cfg.run.log_dir else cfg.state_dir / "logs"
    env = {**os.environ, **cfg.run.env} if cfg.run.env else None
    return ServeSpec(
        argv=[str(exe), *(cfg.run.args if args is None else args)],
        name=wanted,
        state_dir=cfg.state_dir,
        log_dir=log_dir if log_dir.is_absolute() else cfg.root / log_dir,
        cwd=cfg.root,
        env=env,
        memory_cap=parse_size(cfg.limits.memory) if cfg.limits.memory else 0,
        handle_cap=cfg.limits.handles,
        affinity=tuple(cfg.limits.affinity),
        priority=cfg.limits.priority,
        grace_s=cfg.run.stop_grace_s,
        backoff_initial_s=cfg.run.backoff_initial_s,
        backoff_max_s=cfg.run.backoff_max_s,
        max_restarts=cfg.run.max_restarts,
        healthy_after_s=cfg.run.healthy_after_s,
        log_max_bytes=cfg.run.log_max_mb * _MiB,
        log_keep=cfg.run.log_keep,
        poll_s=poll_s,
        cpus=cfg.limits.cpus,
    )


def describe_limits(spec: ServeSpec) -> list[str]:
    """One line per limit saying how ``serve`` enforces it (or that it cannot)."""
    lines = [
        f"restart: on failure, back-off {spec.backoff_initial_s:g}s doubling to {spec.backoff_max_s:g}s, "
        f"give up after {spec.max_restarts} restarts without {spec.healthy_after_s:g}s of healthy running",
        f"memory: {_mib(spec.memory_cap)} RSS of the process tree (over it: stop, restart)"
        if spec.memory_cap else "memory: no cap",
        f"handles: {spec.handle_cap} open {'handles' if os.name == 'nt' else 'file descriptors'} over the tree"
        if spec.handle_cap else "handles: no cap",
        f"affinity: CPUs {list(spec.affinity)}" if spec.affinity else "affinity: all CPUs",
        f"priority: {spec.priority}",
        f"stop: polite signal, {spec.grace_s:g}s grace, then kill the tree",
        f"logs: {spec.log_dir} ({_mib(spec.log_max_bytes)} per file, {spec.log_keep} kept)",
    ]
    if spec.cpus:
        lines.append(f"cpus: {spec.cpus:g} is NOT enforced by serve (use `invoke run` or a Windows job object)")
    return lines


def open_log(path: Path) -> IO[bytes]:
    """``path`` opened for appending, never through a symbolic link (O_NOFOLLOW) and only as a regular file, so a
    link planted in the log folder cannot make the supervisor append to another file. Windows has no O_NOFOLLOW: a
    link is refused by a check just before opening."""
    if os.name == "nt" and path.is_symlink():
        raise WgobuildError(f"serve: {path} is a symbolic link; logs are never written through one: remove it")
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_NONBLOCK", 0), 0o640)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise WgobuildError(f"serve: {path} is a symbolic link; logs are never written through one: remove "
                                "it") from None
        raise WgobuildError(f"serve: cannot open the log {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise WgobuildError(f"serve: {path} is not a regular file; remove it")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "ab")


class RotatingLog:
    """Append-only log file rotated by size (``x.log`` -> ``x.log.1`` ... ``x.log.<keep>``); one writer thread."""

    def __init__(self, path: Path, max_bytes: int, keep: int) -> None:
        self.path, self.max_bytes, self.keep = path, max_bytes, keep
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._handle: IO[bytes] = open_log(path)  # held open for the service's life

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._handle.tell() + len(data) > self.max_bytes and self._handle.tell() > 0:
                self._rotate()
            self._handle.write(data)
            self._handle.flush()

    def _rotate(self) -> None:
        self._handle.close()
        for i in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.keep:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()
        self._handle = open_log(self.path)

    def close(self) -> None:
        with self._lock:
            self._handle.close()


def _spawn(spec: ServeSpec) -> subprocess.Popen[bytes]:
    """Start the service through :func:`proc.spawn` (own group/session, limits set before it runs)."""
    argv = spec.argv
    try:
        return proc.spawn(argv, env=spec.env, cwd=spec.cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          affinity=spec.affinity, priority=spec.priority, kill_grace_s=spec.grace_s)
    except (OSError, WgobuildError) as exc:
        raise WgobuildError(f"serve: cannot start {argv[0]}: {exc}") from None


def _polite_stop(pid: int) -> None:
    """Windows: CTRL_BREAK to the child's process group; elsewhere SIGTERM."""
    with contextlib.suppress(OSError, psutil.Error):
        if os.name == "nt":
            os.kill(pid, signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
        else:
            psutil.Process(pid).terminate()


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def stop_tree(pid: int, grace_s: float, log: Callable[[str], None] = lambda _m: None) -> bool:
    """Ask ``pid`` to stop, wait ``grace_s``, then kill whatever is left of its tree. True if it stopped politely.

    Leftovers are found two ways, because children a stopping parent leaves behind are reparented and no longer
    appear under it: the tree listed before the signal, and (POSIX) every process still in the service's session
    (the service is started as a session leader, so the session id is its pid), which also catches a child
    spawned in the instant before the stop.
    """
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return True
    tree = _tree(root)
    _polite_stop(pid)
    try:
        root.wait(grace_s)
        polite = True
    except psutil.TimeoutExpired:
        log(f"pid {pid} did not stop within {grace_s:g}s; killing its process tree")
        polite = False
    except psutil.Error:
        polite = True
    seen = {p.pid for p in tree}
    for p in [*tree, *(m for m in _session_members(pid) if m.pid not in seen)]:
        with contextlib.suppress(psutil.Error):
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                if p.pid != pid:
                    log(f"killing leftover process {p.pid} ({_name(p)})")
                proc.kill_tree(p.pid, grace_s=1.0)
    return polite


def _session_members(sid: int) -> list[psutil.Process]:
    """Live processes of session ``sid`` (POSIX only; Windows has no sessions to ask)."""
    if os.name == "nt":
        return []
    members = []
    for p in psutil.process_iter():
        with contextlib.suppress(OSError, psutil.Error):
            if p.pid != sid and os.getsid(p.pid) == sid:
                members.append(p)
    return members


def _name(p: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return p.name()
    return "?"


def _mib(n: int) -> str:
    return f"{n / _MiB:.1f}MiB"


@dataclass
class _Sample:
    rss: int = 0
    handles: int = 0
    cpu_s: float = 0.0
    pids: list[int] = field(default_factory=list)


def sample_tree(pid: int) -> _Sample:
    """RSS, open handles/fds and CPU seconds summed over ``pid`` and its descendants."""
    out = _Sample()
    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return out
    for p in _tree(root):
        with contextlib.suppress(psutil.Error), p.oneshot():
            out.rss += p.memory_info().rss
            out.handles += getattr(p, "num_handles")() if os.name == "nt" else p.num_fds()  # noqa: B009 - Windows only
            times = p.cpu_times()
            out.cpu_s += times.user + times.system
            out.pids.append(p.pid)
    return out


class Supervisor:
    """Runs one :class:`ServeSpec` until it is stopped, exits cleanly, or fails too often (:class:`ServeGaveUp`)."""

    def __init__(self, spec: ServeSpec, echo: Callable[[str], None] | None = None) -> None:
        self.spec = spec
        self._echo = echo or (lambda m: proc.echo(m, "serve"))
        self._stop = threading.Event()
        self._events: RotatingLog | None = None
        self.starts = 0
        self.restarts = 0
        self._status: dict[str, Any] = {}
        self._last_write = 0.0
        self._child: subprocess.Popen[bytes] | None = None

    # -- public -------------------------------------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        """Ctrl-C / SIGTERM / Ctrl-Break: stop the service gracefully (main thread only)."""
        proc.install_signal_handlers(lambda *_a: self._stop.set())

    def serve(self) -> int:
        """Supervise until stopped (returns 0) or the service exits 0 (returns 0); raise ServeGaveUp otherwise."""
        spec = self.spec
        secure_state_dir(spec.state_dir, create=True)
        existing = read_status(spec.state_dir)
        if existing.get("alive"):
            raise WgobuildError(f"serve: already running under supervisor pid {existing['supervisor_pid']}; "
                                "use `invoke stop` first")
        spec.log_dir.mkdir(parents=True, exist_ok=True)
        files.remove(spec.stop_path)
        self._events = RotatingLog(spec.log_dir / f"{spec.name}.supervisor.log", spec.log_max_bytes, spec.log_keep)
        me = psutil.Process()
        self._status = {
            "name": spec.name, "argv": spec.argv, "supervisor_pid": me.pid, "supervisor_created": me.create_time(),
            "supervisor_cmdline": me.cmdline(),
            "started_at": time.time(), "restarts": 0, "state": "starting", "limits": describe_limits(spec),
            "logs": str(spec.log_dir),
        }
        for line in describe_limits(spec):
            self._log(f"limit {line}")
        try:
            return self._loop()
        finally:
            child = self._child
            if child is not None and child.poll() is None:  # an error or interrupt left the service running
                stop_tree(child.pid, spec.grace_s, self._log)
                child.wait()
            files.remove(spec.stop_path)
            self._events.close()

    # -- internals ----------------------------------------------------------------------------------------------
    def _log(self, message: str) -> None:
        """Event log and console; a closed console (broken pipe) or a vanished log folder must not stop supervision."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        with contextlib.suppress(OSError, ValueError):
            if self._events is not None:
                self._events.write(f"{stamp} {message}\n".encode())
        with contextlib.suppress(OSError, ValueError):
            self._echo(message)

    def _write_status(self, force: bool = False, **changes: Any) -> None:
        self._status.update(changes)
        now = time.monotonic()
        if force or now - self._last_write >= 1.0:
            self._last_write = now
            self._status["updated_at"] = time.time()
            text = json.dumps(self._status, indent=2)
            for _ in range(5):  # on Windows a reader holding the file open makes the replace fail for a moment
                try:
                    files.write_text(self.spec.status_path, text)
                    break
                except OSError:  # status is advisory: a failed write must not stop supervision
                    time.sleep(0.05)

    def _stopping(self) -> bool:
        if self.spec.stop_path.exists():
            self._stop.set()
        return self._stop.is_set()

    def _loop(self) -> int:
        spec = self.spec
        failures = 0
        while True:
            child, pumps, logs = self._start()
            started = time.monotonic()
            reason = self._watch(child)
            if child.poll() is None:
                polite = stop_tree(child.pid, spec.grace_s, self._log)
                self._log(f"service stopped ({'gracefully' if polite else 'killed after the grace period'})")
            code = child.wait()
            for t in pumps:
                t.join(timeout=5)
            for log in logs:
                log.close()
            ran = time.monotonic() - started
            if reason == "stop":
                self._write_status(True, state="stopped", child_pid=None, last_exit=code)
                return 0
            if reason == "exited":
                self._log(f"service exited with code {code} after {ran:.1f}s")
                if code == 0:
                    self._write_status(True, state="exited", child_pid=None, last_exit=0)
                    return 0
            failures = 1 if ran >= spec.healthy_after_s else failures + 1
            if failures > spec.max_restarts:
                message = (f"serve: {spec.name} failed {failures} times in a row (last: {reason}, exit code {code}); "
                           f"back-off reached {self._delay(failures):g}s (cap {spec.backoff_max_s:g}s) and "
                           f"max_restarts = {spec.max_restarts} is spent; giving up. See {spec.log_dir}")
                self._log(message)
                self._write_status(True, state="gave-up", child_pid=None, last_exit=code, message=message)
                raise ServeGaveUp(message)
            delay = self._delay(failures)
            self.restarts += 1
            self._log(f"restart {failures}/{spec.max_restarts} in {delay:g}s")
            self._write_status(True, state="backoff", child_pid=None, last_exit=code, restarts=self.restarts)
            if self._sleep(delay):
                self._write_status(True, state="stopped")
                return 0

    def _sleep(self, seconds: float) -> bool:
        """Wait out a back-off delay; True when a stop was requested meanwhile."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._stopping():
                return True
            self._stop.wait(min(left, self.spec.poll_s))
        return self._stopping()

    def _delay(self, failures: int) -> float:
        return float(min(self.spec.backoff_initial_s * 2 ** (failures - 1), self.spec.backoff_max_s))

    def _start(self) -> tuple[subprocess.Popen[bytes], list[threading.Thread], list[RotatingLog]]:
        spec = self.spec
        child = self._child = _spawn(spec)
        self.starts += 1
        self._check_process_limits(child.pid)
        logs = [RotatingLog(spec.log_dir / f"{spec.name}.{kind}.log", spec.log_max_bytes, spec.log_keep)
                for kind in ("out", "err")]
        pumps = [threading.Thread(target=_pump, args=(stream, log), daemon=True)
                 for stream, log in zip((child.stdout, child.stderr), logs, strict=True)]
        for t in pumps:
            t.start()
        self._log(f"started {spec.name} pid {child.pid} (start {self.starts})")
        self._write_status(True, state="running", child_pid=child.pid, child_started_at=time.time())
        return child, pumps, logs

    def _check_process_limits(self, pid: int) -> None:
        """Read back what ``proc.spawn`` set before the service ran; say which limit the OS refused."""
        spec = self.spec
        try:
            p = psutil.Process(pid)
            if spec.affinity and hasattr(p, "cpu_affinity") and sorted(p.cpu_affinity()) != sorted(spec.affinity):
                self._log(f"warning: affinity {list(spec.affinity)} was refused here; the service runs on "
                          f"CPUs {p.cpu_affinity()}")
            if spec.priority != "normal":
                want = (getattr(psutil, proc.PRIORITY_CLASS[spec.priority]) if os.name == "nt"
                        else proc.PRIORITY_NICE[spec.priority])
                if p.nice() != want:
                    self._log(f"warning: priority {spec.priority!r} needs administrator rights here; left unchanged")
        except psutil.Error:  # the service already ended: the loop reports that
            pass

    def _watch(self, child: subprocess.Popen[bytes]) -> str:
        """Poll the tree until it exits, breaks a cap or a stop is requested; return why."""
        spec = self.spec
        last_cpu, last_t = 0.0, time.monotonic()
        while True:
            if child.poll() is not None:
                return "exited"
            if self._stopping():
                self._log("stop requested")
                self._write_status(True, state="stopping")
                return "stop"
            s = sample_tree(child.pid)
            now = time.monotonic()
            cpu_pct = max(0.0, (s.cpu_s - last_cpu) / max(now - last_t, 1e-3) * 100) if last_cpu else 0.0
            last_cpu, last_t = s.cpu_s, now
            self._write_status(rss=s.rss, handles=s.handles, cpu_percent=round(cpu_pct, 1), pids=s.pids)
            if spec.memory_cap and s.rss > spec.memory_cap:
                self._log(f"memory cap exceeded: RSS {_mib(s.rss)} > {_mib(spec.memory_cap)} over pids {s.pids}; "
                          "stopping the service to restart it")
                return "memory-cap"
            if spec.handle_cap and s.handles > spec.handle_cap:
                self._log(f"handle cap exceeded: {s.handles} open > {spec.handle_cap}; stopping the service to "
                          "restart it")
                return "handle-cap"
            self._stop.wait(spec.poll_s)


def _pump(stream: IO[bytes] | None, log: RotatingLog) -> None:
    if stream is None:
        return
    with stream:
        for line in stream:  # keep draining even when the log cannot be written, or the service would block
            with contextlib.suppress(OSError, ValueError, WgobuildError):
                log.write(line)


def _same_start(now: float, recorded: float) -> bool:
    """psutil's create time is the kernel's boot time (whole seconds, recomputed from the wall clock, so a VM's
    clock sync moves it by one second now and then) plus a start counted in clock ticks: a step of exactly one
    second is the same start; a reused pid starts at another tick."""
    step = abs(now - recorded)
    return step < 0.01 or abs(step - 1.0) < 0.01


def _alive(pid: Any, created: Any, cmdline: Any = None) -> bool:
    """Is ``pid`` still the process that was recorded: same create time and (when recorded) command line?"""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1:
        return False
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        if created is not None and not (isinstance(created, int | float) and _same_start(p.create_time(), created)):
            return False
        return cmdline is None or p.cmdline() == cmdline
    except psutil.Error:
        return False


def secure_state_dir(state_dir: Path, create: bool = False) -> None:
    """The folder of the status and stop files must be this user's alone: whoever can write the status file could
    name any process for ``stop`` to signal. POSIX: owned by the user, not writable by group or others (refused),
    tightened to 0700. Windows: the folder inherits the module's ACL (the checkout must be the admin's alone)."""
    if create:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if os.name == "nt":
        return
    try:
        info = os.lstat(state_dir)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        raise WgobuildError(f"serve: {state_dir} is not a folder (a symbolic link?); remove it and run again")
    if info.st_uid != os.geteuid():
        raise WgobuildError(f"serve: {state_dir} belongs to uid {info.st_uid}, not to this user (uid {os.geteuid()}); "
                            "run as its owner, or remove the folder")
    if info.st_mode & 0o022:
        raise WgobuildError(f"serve: {state_dir} is writable by group or others (mode {stat.S_IMODE(info.st_mode):o}); "
                            "anyone who can write it could make `stop` signal any process: chmod 700 it and check "
                            "its files")
    if info.st_mode & 0o077:
        os.chmod(state_dir, 0o700)


def is_supervisor_cmdline(cmdline: list[str]) -> bool:
    """A wgobuild supervisor's command line: ``invoke ... serve`` or a Python process running wgobuild."""
    names = {PureWindowsPath(arg).stem.lower() for arg in cmdline}
    return ("serve" in cmdline and bool(names & {"invoke", "inv"})) or any("wgobuild" in arg for arg in cmdline)


def signal_refusal(status: dict[str, Any]) -> str:
    """Why the supervisor ``status`` names must not be signalled ("" when it may): never PID 1 or below, this
    process or one of its ancestors, nor a process whose create time or command line differ from the recorded ones
    or that is no wgobuild supervisor."""
    pid = status.get("supervisor_pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1:
        return f"pid {pid!r} is not a process wgobuild may signal"
    me = psutil.Process()
    try:
        ancestors = {p.pid for p in me.parents()}
    except psutil.Error:
        ancestors = set()
    if pid == me.pid or pid in ancestors:
        return f"pid {pid} is this process or one of its ancestors"
    if not isinstance(status.get("supervisor_created"), int | float) or not isinstance(
            status.get("supervisor_cmdline"), list):
        return f"the status file does not record pid {pid}'s create time and command line"
    if not _alive(pid, status["supervisor_created"], status["supervisor_cmdline"]):
        return f"pid {pid} is no longer the recorded supervisor (create time or command line differ)"
    if not is_supervisor_cmdline(status["supervisor_cmdline"]):
        return f"pid {pid} is not a wgobuild supervisor ({' '.join(status['supervisor_cmdline'])[:120]})"
    return ""


def read_status(state_dir: Path) -> dict[str, Any]:
    """The last status the supervisor wrote, plus ``alive`` (is that supervisor still running) and ``uptime_s``."""
    secure_state_dir(state_dir)
    try:
        status = json.loads((state_dir / STATUS_NAME).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    if not isinstance(status, dict):
        return {}
    final = status.get("state") in ("stopped", "exited", "gave-up")
    pid, cmdline = status.get("supervisor_pid"), status.get("supervisor_cmdline")
    status["alive"] = not final and _alive(pid, status.get("supervisor_created"), cmdline) and (
        pid == os.getpid() or not isinstance(cmdline, list) or is_supervisor_cmdline(cmdline))
    if not status["alive"] and not final:
        status["state"] = "dead (the supervisor is no longer running)"
    child_up = status.get("child_started_at") if status["alive"] and status.get("child_pid") else None
    status["uptime_s"] = round(time.time() - child_up, 1) if child_up else 0.0
    return status


def format_status(status: dict[str, Any]) -> str:
    """A few human lines for ``invoke status``."""
    if not status:
        return "serve: not started here (no status file)"
    lines = [
        f"serve: {status.get('name')} {status.get('state')}",
        f"  supervisor pid {status.get('supervisor_pid')}, service pid {status.get('child_pid') or '-'}, "
        f"uptime {status.get('uptime_s', 0):.0f}s, restarts {status.get('restarts', 0)}, "
        f"last exit {status.get('last_exit', '-')}",
    ]
    if status.get("alive") and status.get("child_pid"):
        lines.append(f"  RSS {_mib(status.get('rss', 0))}, CPU {status.get('cpu_percent', 0)}%, "
                     f"open handles {status.get('handles', 0)}")
    if status.get("message"):
        lines.append(f"  {status['message']}")
    lines.append(f"  logs: {status.get('logs')}")
    return "\n".join(lines)


def request_stop(state_dir: Path, grace_s: float, wait_s: float = 15.0) -> str:
    """Ask a running supervisor to stop (a stop file it polls, so this works across consoles on Windows too)."""
    status = read_status(state_dir)
    if not status.get("alive"):
        return "serve: not running"
    pid = status["supervisor_pid"]
    files.write_text(state_dir / STOP_NAME, "stop\n")
    deadline = time.monotonic() + grace_s + wait_s
    while time.monotonic() < deadline:
        if not read_status(state_dir).get("alive"):
            return f"serve: stopped (supervisor pid {pid})"
        time.sleep(0.1)
    refusal = signal_refusal(read_status(state_dir) or status)
    if refusal:
        return f"serve: supervisor pid {pid} did not stop in time; not signalled: {refusal}"
    proc.kill_tree(pid, grace_s=2.0)  # its watchdog then stops what is left of the service's tree
    return f"serve: supervisor pid {pid} did not stop in time; killed it and its tree"
