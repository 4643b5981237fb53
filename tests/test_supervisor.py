"""``serve``'s supervisor against real misbehaving Go programs, checked with psutil from the test."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import gofixtures
import psutil
import pytest

from wgobuild import config, proc, supervisor
from wgobuild.config import Platform
from wgobuild.errors import ConfigError, WgobuildError
from wgobuild.supervisor import RotatingLog, ServeGaveUp, ServeSpec, Supervisor


@pytest.fixture(scope="session")
def gofix(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return gofixtures.build(tmp_path_factory.mktemp("gofixtures"))


def _fixture_procs(folder: Path) -> list[psutil.Process]:
    """Fixture programs of this session, wherever they are."""
    return [p for p in psutil.process_iter(["exe"]) if (p.info.get("exe") or "").startswith(str(folder))]


@pytest.fixture(autouse=True)
def no_leftovers(gofix: dict[str, Path]) -> Iterator[None]:
    """Every test must leave no fixture program running."""
    folder = next(iter(gofix.values())).parent
    yield
    left = [p for p in _fixture_procs(folder) if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    deadline = time.monotonic() + 10
    while left and time.monotonic() < deadline:  # a killed supervisor's watchdog may still be stopping them
        time.sleep(0.1)
        left = [p for p in left if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for p in left:
        proc.kill_tree(p.pid, grace_s=1)
    assert not left, f"processes left running: {[(p.pid, p.info) for p in left]}"


def _spec(tmp_path: Path, argv: list, **kw: object) -> ServeSpec:
    base = {"grace_s": 1.0, "backoff_initial_s": 0.1, "backoff_max_s": 0.4, "max_restarts": 3, "poll_s": 0.05,
            "healthy_after_s": 30.0}
    base.update(kw)
    return ServeSpec(argv=[str(a) for a in argv], name="svc", state_dir=tmp_path / ".wgobuild",
                     log_dir=tmp_path / "logs", **base)  # type: ignore[arg-type]


def _wait(cond: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _in_thread(sup: Supervisor) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["rc"] = sup.serve()
        except BaseException as exc:  # recorded for the test to assert on
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def _events(spec: ServeSpec) -> str:
    return (spec.log_dir / f"{spec.name}.supervisor.log").read_text()


def _gone(pids: list[int]) -> bool:
    return not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)


def test_crash_loop_backs_off_and_gives_up(tmp_path: Path, gofix: dict[str, Path]) -> None:
    spec = _spec(tmp_path, [gofix["crasher"]])
    sup = Supervisor(spec, echo=lambda _m: None)
    start = time.monotonic()
    with pytest.raises(ServeGaveUp, match=r"failed 4 times in a row.*exit code 3.*cap 0.4s.*giving up"):
        sup.serve()
    elapsed = time.monotonic() - start
    assert sup.starts == 4 and sup.restarts == 3
    assert elapsed >= 0.1 + 0.2 + 0.4 - 0.05, "back-off delays were not waited (hot loop)"
    status = json.loads(spec.status_path.read_text())
    assert status["state"] == "gave-up" and status["last_exit"] == 3 and status["restarts"] == 3
    assert "restart 3/3 in 0.4s" in _events(spec)
    assert "crasher: starting" in (spec.log_dir / "svc.out.log").read_text()
    assert "crasher: about to fail" in (spec.log_dir / "svc.err.log").read_text()


def test_clean_exit_is_not_restarted(tmp_path: Path, gofix: dict[str, Path]) -> None:
    sup = Supervisor(_spec(tmp_path, [gofix["crasher"], "-code", "0"]), echo=lambda _m: None)
    assert sup.serve() == 0
    assert sup.starts == 1


def test_memory_leak_past_cap_is_stopped_and_restarted(tmp_path: Path, gofix: dict[str, Path]) -> None:
    spec = _spec(tmp_path, [gofix["grower"], "-step", "8"], memory_cap=48 * 1024 * 1024, max_restarts=1)
    sup = Supervisor(spec, echo=lambda _m: None)
    pids: list[int] = []
    sampled: list[int] = []

    def watch() -> None:  # sample from the test side with psutil, independently of the supervisor
        while not done.is_set():
            status = supervisor.read_status(spec.state_dir)
            pid = status.get("child_pid")
            if pid and pid not in pids:
                pids.append(pid)
            if pid:
                with contextlib.suppress(psutil.Error):
                    sampled.append(psutil.Process(pid).memory_info().rss)
            time.sleep(0.02)

    done = threading.Event()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with pytest.raises(ServeGaveUp, match="memory-cap"):
        sup.serve()
    done.set()
    watcher.join()
    assert sup.starts == 2
    events = _events(spec)
    assert events.count("memory cap exceeded") == 2 and "restart 1/1" in events
    assert max(sampled) > 24 * 1024 * 1024, "the grower never grew; the test would prove nothing"
    assert _gone(pids)


def test_handle_leak_past_cap(tmp_path: Path, gofix: dict[str, Path]) -> None:
    spec = _spec(tmp_path, [gofix["grower"], "-files", "10"], handle_cap=64, max_restarts=0)
    sup = Supervisor(spec, echo=lambda _m: None)
    with pytest.raises(ServeGaveUp, match="handle-cap"):
        sup.serve()
    assert "handle cap exceeded" in _events(spec)


def test_child_ignoring_polite_stop_is_killed(tmp_path: Path, gofix: dict[str, Path]) -> None:
    spec = _spec(tmp_path, [gofix["ignoreterm"]], grace_s=0.5)
    sup = Supervisor(spec, echo=lambda _m: None)
    thread, outcome = _in_thread(sup)
    out_log = spec.log_dir / "svc.out.log"
    _wait(lambda: out_log.exists() and "ready" in out_log.read_text(), what="ignoreterm ready")
    pid = _wait(lambda: supervisor.read_status(spec.state_dir).get("child_pid"), what="service pid")
    assert psutil.Process(pid).is_running()
    t0 = time.monotonic()
    message = supervisor.request_stop(spec.state_dir, grace_s=spec.grace_s)
    thread.join(10)
    assert outcome == {"rc": 0}, outcome
    assert message.startswith("serve: stopped")
    assert time.monotonic() - t0 >= 0.5, "the grace period was not given"
    assert _gone([pid])
    events = _events(spec)
    assert "did not stop within 0.5s" in events and "killed after the grace period" in events
    assert supervisor.read_status(spec.state_dir)["state"] == "stopped"


def test_stop_takes_the_whole_tree(tmp_path: Path, gofix: dict[str, Path]) -> None:
    spec = _spec(tmp_path, [gofix["spawner"]], grace_s=2.0)
    sup = Supervisor(spec, echo=lambda _m: None)
    thread, outcome = _in_thread(sup)
    pid = _wait(lambda: supervisor.read_status(spec.state_dir).get("child_pid"), what="service pid")
    kids = _wait(lambda: psutil.Process(pid).children(), what="spawned child")
    sup.request_stop()
    thread.join(10)
    assert outcome == {"rc": 0}
    assert _gone([pid, *(k.pid for k in kids)])
    assert "stopped (gracefully)" in _events(spec)  # spawner dies on SIGTERM; its child is killed as leftover
    assert "killing leftover process" in _events(spec)


def test_closed_console_does_not_stop_supervision(tmp_path: Path, gofix: dict[str, Path]) -> None:
    """A console that went away (broken pipe) must neither kill the supervisor nor orphan the service."""

    def broken(_message: str) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    spec = _spec(tmp_path, [gofix["spawner"]])
    sup = Supervisor(spec, echo=broken)
    thread, outcome = _in_thread(sup)
    pid = _wait(lambda: supervisor.read_status(spec.state_dir).get("child_pid"), what="service pid")
    kids = _wait(lambda: psutil.Process(pid).children(), what="spawned child")
    sup.request_stop()
    thread.join(10)
    assert outcome == {"rc": 0}, outcome
    assert _gone([pid, *(k.pid for k in kids)])
    assert "stop requested" in _events(spec)


def test_interrupt_inside_the_loop_still_stops_the_service(tmp_path: Path, gofix: dict[str, Path]) -> None:
    """KeyboardInterrupt at any point (Ctrl-C without our handlers) leaves no service running."""
    started: list[str] = []

    def interrupt_after_start(message: str) -> None:
        if message.startswith("started"):
            started.append(message)
            raise KeyboardInterrupt

    spec = _spec(tmp_path, [gofix["spawner"]])
    with pytest.raises(KeyboardInterrupt):
        Supervisor(spec, echo=interrupt_after_start).serve()
    pid = int(started[0].split(" pid ")[1].split()[0])
    _wait(lambda: _gone([pid]), timeout=5, what="the service to be stopped")


_SUPERVISOR_SCRIPT = """
import sys
from pathlib import Path
from wgobuild.supervisor import ServeSpec, Supervisor
spec = ServeSpec(argv=[sys.argv[1]], name="svc", state_dir=Path(sys.argv[2]), log_dir=Path(sys.argv[3]), poll_s=0.05,
                 grace_s=float(sys.argv[4]))
sup = Supervisor(spec)
sup.install_signal_handlers()
sys.exit(sup.serve())
"""


def test_killed_supervisor_leaves_no_orphans(tmp_path: Path, gofix: dict[str, Path]) -> None:
    state = tmp_path / ".wgobuild"
    argv = [sys.executable, "-c", _SUPERVISOR_SCRIPT, gofix["spawner"], state, tmp_path / "logs", "2"]
    results: list[proc.ProcResult] = []
    runner = threading.Thread(target=lambda: results.append(proc.run(argv, quiet=True, timeout=60)), daemon=True)
    runner.start()
    status = _wait(lambda: supervisor.read_status(state).get("child_pid") and supervisor.read_status(state),
                   what="supervised service")
    pid = status["child_pid"]
    kids = _wait(lambda: psutil.Process(pid).children(), what="spawned child")
    tree = [pid, *(k.pid for k in kids)]
    assert supervisor.format_status(supervisor.read_status(state)).startswith("serve: svc running")
    psutil.Process(status["supervisor_pid"]).kill()  # no chance to clean up
    runner.join(10)
    assert results and results[0].returncode != 0
    _wait(lambda: _gone(tree), timeout=10, what="the watchdog to stop the orphaned tree")
    assert supervisor.read_status(state)["state"].startswith("dead")


def test_stop_request_from_another_process(tmp_path: Path, gofix: dict[str, Path]) -> None:
    """``invoke stop`` in another console: the stop file reaches a supervisor that is a separate process."""
    state = tmp_path / ".wgobuild"
    argv = [sys.executable, "-c", _SUPERVISOR_SCRIPT, gofix["ignoreterm"], state, tmp_path / "logs", "0.5"]
    results: list[proc.ProcResult] = []
    runner = threading.Thread(target=lambda: results.append(proc.run(argv, quiet=True, timeout=60)), daemon=True)
    runner.start()
    pid = _wait(lambda: supervisor.read_status(state).get("child_pid"), what="service pid")
    assert supervisor.read_status(state)["alive"]
    message = supervisor.request_stop(state, grace_s=0.5, wait_s=20)
    runner.join(20)
    assert message.startswith("serve: stopped"), message
    assert results[0].returncode == 0, results[0].output
    assert _gone([pid])


def test_already_running_is_refused(tmp_path: Path, gofix: dict[str, Path]) -> None:
    spec = _spec(tmp_path, [gofix["ignoreterm"]], grace_s=0.2)
    first = Supervisor(spec, echo=lambda _m: None)
    thread, _ = _in_thread(first)
    _wait(lambda: supervisor.read_status(spec.state_dir).get("child_pid"), what="first service")
    try:
        with pytest.raises(WgobuildError, match="already running under supervisor pid"):
            Supervisor(spec, echo=lambda _m: None).serve()
    finally:
        first.request_stop()
        thread.join(10)


def test_affinity_and_priority_are_applied(tmp_path: Path, gofix: dict[str, Path]) -> None:
    """Set in the child before exec: the child the service spawns in its first instant inherits them too."""
    if not hasattr(psutil.Process, "cpu_affinity"):
        pytest.skip("this OS has no CPU affinity in psutil (macOS)")
    cpu = max(psutil.Process().cpu_affinity() or [0])
    spec = _spec(tmp_path, [gofix["spawner"]], affinity=(cpu,), priority="below-normal")
    sup = Supervisor(spec, echo=lambda _m: None)
    thread, _ = _in_thread(sup)
    try:
        pid = _wait(lambda: supervisor.read_status(spec.state_dir).get("child_pid"), what="service pid")
        service = psutil.Process(pid)
        kid = _wait(lambda: service.children(), what="spawned child")[0]
        assert service.cpu_affinity() == [cpu] and kid.cpu_affinity() == [cpu]
        expected = psutil.BELOW_NORMAL_PRIORITY_CLASS if os.name == "nt" else 10
        assert service.nice() == expected and kid.nice() == expected
    finally:
        sup.request_stop()
        thread.join(10)
    assert "warning" not in _events(spec)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads its limits from Linux /proc")
def test_the_service_runs_its_first_instruction_under_its_limits(tmp_path: Path) -> None:
    """``cat`` as the service reads its own limits as its first act and exits: nothing set afterwards can count."""
    cpu = max(psutil.Process().cpu_affinity() or [0])
    spec = _spec(tmp_path, ["cat", "/proc/self/status", "/proc/self/stat"], affinity=(cpu,), priority="idle")
    assert Supervisor(spec, echo=lambda _m: None).serve() == 0
    text = (spec.log_dir / "svc.out.log").read_text()
    assert re.search(r"^Cpus_allowed_list:\s*(\S+)$", text, re.MULTILINE).group(1) == str(cpu), text  # type: ignore[union-attr]
    stat = text.splitlines()[-1]
    assert int(stat[stat.rindex(")") + 2:].split()[16]) == 19, stat  # nice, field 19 of /proc/<pid>/stat


def test_rotating_log_keeps_size_and_count(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "x.log", max_bytes=100, keep=2)
    for i in range(50):
        log.write(f"line {i:03d} ........\n".encode())
    log.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["x.log", "x.log.1", "x.log.2"]
    assert all(p.stat().st_size <= 100 for p in tmp_path.iterdir())
    assert "line 049" in (tmp_path / "x.log").read_text()


def _module(tmp_path: Path) -> Path:
    (tmp_path / "main.go").write_text("package main\n\nfunc main() {}\n")
    return tmp_path


@pytest.mark.parametrize(
    ("section", "values", "key", "problem"),
    [
        ("limits", {"memory": "512XB"}, "[limits].memory", "is not a size"),
        ("limits", {"memory": "1MiB"}, "[limits].memory", "below the 6MiB minimum"),
        ("limits", {"memory": 512}, "[limits].memory", "expected str"),
        ("limits", {"cpus": -1}, "[limits].cpus", "CPU count"),
        ("limits", {"handles": 3}, "[limits].handles", "32 or more"),
        ("limits", {"affinity": [0, 0]}, "[limits].affinity[1]", "each listed once"),
        ("limits", {"priority": "realtime"}, "[limits].priority", "not allowed"),
        ("run", {"ports": ["70000:80"]}, "[run].ports[0]", "1-65535"),
        ("run", {"ports": ["8080:80", "8080:81"]}, "[run].ports[1]", "published twice"),
        ("run", {"backoff_initial_s": 5, "backoff_max_s": 1}, "[run].backoff_max_s", "at least"),
        ("run", {"backoff_initial_s": 0}, "[run].backoff_initial_s", "more than 0"),
        ("run", {"stop_grace_s": -1}, "[run].stop_grace_s", "0 or more"),
        ("run", {"user": "x; rm -rf /"}, "[run].user", "not a user name"),
    ],
)
def test_bad_limits_name_the_key(tmp_path: Path, section: str, values: dict, key: str, problem: str) -> None:
    root = _module(tmp_path)
    data = {"binaries": [{"name": "svc"}], section: values}
    with pytest.raises(ConfigError, match=problem) as info:
        config.from_dict(data, root, root / "wgobuild.toml")
    assert info.value.key == key


def test_spec_from_config(tmp_path: Path, gofix: dict[str, Path]) -> None:
    root = _module(tmp_path)
    data = {"binaries": [{"name": "svc"}], "limits": {"memory": "64MiB", "handles": 100, "cpus": 1.5},
            "run": {"args": ["-x"], "log_max_mb": 2, "env": {"A": "1"}}}
    cfg = config.from_dict(data, root, root / "wgobuild.toml")
    with pytest.raises(WgobuildError, match="does not exist; build it first"):
        supervisor.spec_from_config(cfg)
    exe = cfg.binary_path(cfg.binaries[0], Platform.host())
    exe.parent.mkdir(parents=True)
    exe.write_bytes(gofix["crasher"].read_bytes())
    spec = supervisor.spec_from_config(cfg)
    assert spec.argv == [str(exe), "-x"] and spec.memory_cap == 64 * 1024 * 1024 and spec.handle_cap == 100
    assert spec.log_dir == root / ".wgobuild" / "logs" and spec.log_max_bytes == 2 * 1024 * 1024
    assert spec.env is not None and spec.env["A"] == "1"
    assert any("NOT enforced" in line for line in supervisor.describe_limits(spec))
    bad = config.from_dict({**data, "limits": {"affinity": [psutil.cpu_count()]}}, root, root / "wgobuild.toml")
    with pytest.raises(ConfigError, match="does not exist here") as info:
        supervisor.spec_from_config(bad)
    assert info.value.key == "[limits].affinity[0]"
