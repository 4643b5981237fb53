"""End to end: the real ``invoke`` CLI running ``serve``/``run``/``stop``/``status`` on a copy of examples/hello."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from test_containers import hello_image  # noqa: F401 - the shared module-scoped image fixture

from wgobuild import config, gotool, proc, supervisor
from wgobuild.config import Platform

REPO = Path(__file__).resolve().parents[1]
HELLO = REPO / "examples" / "hello"


def invoke(*args: str, timeout: float = 60) -> proc.ProcResult:
    return proc.run([sys.executable, "-m", "invoke", "-r", str(REPO), *args], quiet=True, timeout=timeout)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def hello_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The native build of examples/hello (what `doit build` puts in dist/<host platform>/)."""
    out = tmp_path_factory.mktemp("native") / f"hello{Platform.host().exe_suffix}"
    gotool.build(HELLO, ".", Platform.host(), out, "serve-test")
    return out


@pytest.fixture
def project(tmp_path: Path, hello_exe: Path) -> Iterator[Path]:
    """A copy of examples/hello with its native binary in place; no process of it may survive the test."""
    root = tmp_path / "hello"
    shutil.copytree(HELLO, root, ignore=shutil.ignore_patterns("dist", ".wgobuild"))
    cfg = config.load(root)
    exe = cfg.binary_path(cfg.binaries[0], Platform.host())
    exe.parent.mkdir(parents=True)
    shutil.copy2(hello_exe, exe)
    yield root
    supervisor.request_stop(root / ".wgobuild", grace_s=2, wait_s=5)  # a failed test may leave `serve` running
    left = [p for p in psutil.process_iter(["exe"]) if (p.info.get("exe") or "").startswith(str(root))]
    for p in left:
        proc.kill_tree(p.pid)
    assert not left, f"processes left running: {left}"


def _configure(root: Path, text: str) -> None:
    """Append ``text``; the example's own ``[run]`` (its last section) gives way to the test's."""
    toml = root / "wgobuild.toml"
    toml.write_text(toml.read_text(encoding="utf-8").split("\n[run]\n")[0] + "\n\n" + text, encoding="utf-8")


def _serve_in_background(root: Path, *flags: str) -> tuple[threading.Thread, list[proc.ProcResult]]:
    results: list[proc.ProcResult] = []
    thread = threading.Thread(target=lambda: results.append(invoke("serve", "--root", str(root), *flags)),
                              daemon=True)
    thread.start()
    return thread, results


def _get(url: str, timeout: float = 15) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _service_status(root: Path, timeout: float = 10) -> dict:
    """The supervisor's status once it has recorded the service pid."""
    deadline = time.monotonic() + timeout
    while not (status := supervisor.read_status(root / ".wgobuild")).get("child_pid"):
        assert time.monotonic() < deadline, f"no service pid recorded: {status}"
        time.sleep(0.05)
    return status


def test_invoke_lists_the_tasks() -> None:
    listing = invoke("--list")
    assert listing.ok, listing.output
    for name in ("run", "serve", "stop", "status"):
        assert f"\n  {name} " in listing.output
    assert "RSS cap of the process tree" in invoke("serve", "--help").output


def test_serve_hello_status_and_stop(project: Path) -> None:
    port = _free_port()
    _configure(project, f'[limits]\nmemory = "256MiB"\nhandles = 512\n\n[run]\nargs = ["-addr", "127.0.0.1:{port}"]\n'
                        "stop_grace_s = 5\nlog_max_mb = 1\n")
    thread, results = _serve_in_background(project)
    body = _get(f"http://127.0.0.1:{port}/hello?name=serve")
    assert b"serve" in body
    status = _service_status(project)
    service = psutil.Process(status["child_pid"])
    assert Path(service.exe()).name.startswith("hello") and service.memory_info().rss > 0
    time.sleep(1.2)  # the status file is refreshed about once a second
    shown = invoke("status", "--root", str(project), "--what", "serve")
    assert shown.ok, shown.output
    assert "serve: hello running" in shown.output and f"service pid {service.pid}" in shown.output
    assert "RSS" in shown.output and "open handles" in shown.output
    stopped = invoke("stop", "--root", str(project), "--what", "serve")
    assert "serve: stopped" in stopped.output, stopped.output
    thread.join(20)
    assert results and results[0].returncode == 0, results[0].output if results else "serve did not finish"
    assert "memory: 256.0MiB RSS" in results[0].output  # the limits in force were shown
    assert not service.is_running()
    assert "listening on" in (project / ".wgobuild" / "logs" / "hello.err.log").read_text()


@pytest.mark.skipif(os.name == "nt", reason="SIGINT to another process is POSIX; Windows delivers Ctrl-C to a console")
def test_serve_stops_gracefully_on_ctrl_c(project: Path) -> None:
    port = _free_port()
    _configure(project, f'[run]\nargs = ["-addr", "127.0.0.1:{port}"]\n')
    thread, results = _serve_in_background(project)
    _get(f"http://127.0.0.1:{port}/version")
    status = _service_status(project)
    service = psutil.Process(status["child_pid"])
    psutil.Process(status["supervisor_pid"]).send_signal(signal.SIGINT)
    thread.join(20)
    assert results and results[0].returncode == 0, results
    assert "stop requested" in results[0].output and "stopped (gracefully)" in results[0].output
    assert not service.is_running()


def test_serve_crash_loop_gives_up(project: Path) -> None:
    _configure(project, '[run]\nargs = ["-no-such-flag"]\nbackoff_initial_s = 0.05\nbackoff_max_s = 0.1\n'
                        "max_restarts = 2\n")
    result = invoke("serve", "--root", str(project))
    assert result.returncode == 1, result.output
    assert "failed 3 times in a row" in result.output and "giving up" in result.output
    assert "Traceback" not in result.output
    assert supervisor.read_status(project / ".wgobuild")["state"] == "gave-up"


def test_serve_port_in_use_gives_up_with_the_reason_logged(project: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        _configure(project, f'[run]\nargs = ["-addr", "127.0.0.1:{port}"]\nbackoff_initial_s = 0.05\n'
                            "backoff_max_s = 0.05\nmax_restarts = 1\n")
        result = invoke("serve", "--root", str(project))
    assert result.returncode == 1 and "giving up" in result.output, result.output
    assert "address already in use" in (project / ".wgobuild" / "logs" / "hello.err.log").read_text()


@pytest.mark.parametrize(
    ("toml", "flags", "key"),
    [
        ('[limits]\nmemory = "12 parsecs"\n', [], "[limits].memory"),
        ("", ["--memory", "1KiB"], "command line: --memory: '1KiB' is below the 6MiB minimum"),
        ("", ["--handles", "lots"], "--handles"),
        ("[run]\nbackoff_initial_s = 5.0\nbackoff_max_s = 1.0\n", [], "[run].backoff_max_s"),
    ],
)
def test_serve_bad_limits_exit_2_naming_the_key(project: Path, toml: str, flags: list[str], key: str) -> None:
    _configure(project, toml)
    result = invoke("serve", "--root", str(project), *flags)
    assert result.returncode == 2, result.output
    assert key in result.output and "Traceback" not in result.output
    assert not (project / ".wgobuild" / supervisor.STATUS_NAME).exists()


@pytest.mark.docker
def test_run_status_stop_via_invoke(project: Path, hello_image: str) -> None:  # noqa: F811
    port = _free_port()
    _configure(project, f'[limits]\nmemory = "64MiB"\ncpus = 1\n\n[run]\nname = "wgotest-invoke"\nnetwork = "host"\n'
                        f'ports = ["{port}:{port}"]\nargs = ["-addr", "127.0.0.1:{port}"]\nstop_grace_s = 2\n')
    too_many = invoke("run", "--root", str(project), "--image", hello_image, "--cpus", "64")
    assert too_many.returncode == 2 and "[limits].cpus" in too_many.output and "engine has" in too_many.output
    started = invoke("run", "--root", str(project), "--image", hello_image)
    assert started.ok, started.output
    assert "applies  memory: 64MiB" in started.output and "applies  restart: on-failure (up to 5 retries)" in (
        started.output)
    assert b"invoke" in _get(f"http://127.0.0.1:{port}/hello?name=invoke")
    shown = invoke("status", "--root", str(project))
    assert "serve: not started here" in shown.output and "container wgotest-invoke" in shown.output
    assert ": running, restarts 0" in shown.output and "memory" in shown.output
    stopped = invoke("stop", "--root", str(project))
    assert "container wgotest-invoke: stopped" in stopped.output, stopped.output
    assert ": exited" in invoke("status", "--root", str(project), "--what", "container").output
