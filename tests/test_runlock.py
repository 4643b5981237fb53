"""One run at a time, and no orphans: real ``doit`` processes on generated Go modules, checked with psutil."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest
from fixtures_go import run_doit, write_module

from wgobuild import runlock
from wgobuild.errors import Interrupted

WAITING = re.compile(r"^waiting for another wgobuild run, pid (\d+), since (\d\d:\d\d:\d\d)$", re.MULTILINE)
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}  # daemonless digests of two folders can only match with a fixed epoch
# Holds the run lock of a state folder in a separate process until killed: the "other run".
HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from wgobuild import runlock
    runlock.hold(Path(sys.argv[1]))
    print("held", flush=True)
    time.sleep(600)
    """
)


def add_big_package(root: Path, funcs: int = 6000) -> Path:
    """Make ``cmd/api`` import a generated package that the compiler needs a few seconds for (new code each time,
    so Go's build cache cannot answer)."""
    salt = time.time_ns() % 1_000_000_007
    body = "".join(f"func F{i}(x int) int {{ if x > {i} {{ return x * {i + salt} }}; return F{i + 1}(x + 1) }}\n"
                   for i in range(funcs))
    (root / "lib/big").mkdir(parents=True, exist_ok=True)
    (root / "lib/big/big.go").write_text(f"package big\n\n{body}func F{funcs}(x int) int {{ return x }}\n")
    main = root / "cmd/api/main.go"
    main.write_text(main.read_text().replace('"example.com/multi/lib/web"', '"example.com/multi/lib/big"\n\t'
                                             '"example.com/multi/lib/web"')
                    .replace("len(web.Page))", "len(web.Page), big.F0(1))"))
    return root


class Reader:
    """Collects a child's output lines as they come (so a test can wait for one line)."""

    def __init__(self, popen: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._pump, args=(popen,), daemon=True)
        self._thread.start()

    def _pump(self, popen: subprocess.Popen[str]) -> None:
        assert popen.stdout is not None
        for line in popen.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: re.Pattern[str] | str, seconds: float = 60) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if re.search(pattern, line):
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r} in {self.lines}")

    @property
    def output(self) -> str:
        self._thread.join(30)
        return "\n".join(self.lines)


def start(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], Reader]:
    popen = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env={**os.environ, **EPOCH, **(env or {})})
    return popen, Reader(popen)


def start_doit(root: Path, *args: str) -> tuple[subprocess.Popen[str], Reader]:
    return start([sys.executable, "-m", "doit", *args], root)


def ran(output: str) -> set[str]:
    """Steps doit ran (``.  name``, maybe followed by why)."""
    return set(re.findall(r"^\.  (\S+)", output, re.MULTILINE))


def compiled(output: str) -> set[str]:
    return {name for name in ran(output) if name.startswith("compile:")}


def outputs(root: Path) -> dict[str, str]:
    """sha256 of every binary, and the digest of every daemonless image record, under ``root/dist``."""
    found = {}
    for path in sorted((root / "dist/linux-amd64").iterdir()):
        found[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    for record in sorted((root / "dist/images").glob("*.json")):
        found[record.relative_to(root).as_posix()] = json.loads(record.read_text())["digest"]
    return found


def live(pids: list[int]) -> list[psutil.Process]:
    """Which of ``pids`` still run (zombies are dead: only their exit status is left)."""
    alive = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
    return alive


def survivors(pids: list[int], seconds: float) -> list[psutil.Process]:
    deadline = time.monotonic() + seconds
    while (left := live(pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


# -- one run at a time ------------------------------------------------------------------------------------------

def test_two_concurrent_runs_build_once_and_equal_a_serial_build(tmp_path: Path) -> None:
    root = add_big_package(write_module(tmp_path / "multi"))
    fresh = shutil.copytree(root, tmp_path / "fresh")
    first, first_out = start_doit(root, "image")
    first_out.wait_for(r"^\.  compile:", seconds=120)  # the first run holds the lock and is compiling
    second, second_out = start_doit(root, "image")
    assert first.wait(600) == 0, first_out.output
    assert second.wait(600) == 0, second_out.output
    one, two = first_out.output, second_out.output
    assert compiled(one) == {"compile:api-linux-amd64", "compile:worker-linux-amd64"}, one
    assert "image" in ran(one) and ran(two) == set(), two  # the second found the work done
    waits = WAITING.findall(two)
    assert waits == [(str(first.pid), waits[0][1])], two
    assert not WAITING.search(one)
    serial = run_doit(fresh, "image", env=EPOCH)
    assert serial.returncode == 0, serial.output
    assert outputs(root) == outputs(fresh) and len(outputs(root)) >= 3, (outputs(root), outputs(fresh))


def test_wgobuild_command_waits_too(tmp_path: Path) -> None:
    root = write_module(tmp_path / "multi")
    holder, holder_out = start([sys.executable, "-c", HOLDER, str(root / ".wgobuild")], root)
    try:
        holder_out.wait_for("^held$")
        runner, out = start([sys.executable, "-m", "wgobuild.cli", "image"], root)
        line = out.wait_for(WAITING)
        assert line.startswith(f"waiting for another wgobuild run, pid {holder.pid}, since ")
        since = time.strftime("%H:%M:%S", time.localtime(psutil.Process(holder.pid).create_time()))
        assert line.endswith(since)
        time.sleep(1)
        assert runner.poll() is None and not (root / "dist").exists(), "the second run must wait, not build"
    finally:
        holder.kill()
        holder.wait()
    assert runner.wait(600) == 0, out.output
    assert len(WAITING.findall(out.output)) == 1, out.output
    assert (root / "dist/linux-amd64/api").is_file()


def test_ctrl_c_while_waiting_exits_at_once_with_130(tmp_path: Path) -> None:
    root = write_module(tmp_path / "multi")
    holder, holder_out = start([sys.executable, "-c", HOLDER, str(root / ".wgobuild")], root)
    try:
        holder_out.wait_for("^held$")
        runner, out = start_doit(root, "image")
        out.wait_for(WAITING)
        sent = time.monotonic()
        runner.send_signal(signal.SIGINT)
        code = runner.wait(30)
        took = time.monotonic() - sent
    finally:
        holder.kill()
        holder.wait()
    assert code == 130, out.output
    assert took < 3, f"took {took:.1f}s to stop"
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert len(lines) == 2 and WAITING.match(lines[0]), out.output
    assert lines[1] == "wgobuild: interrupted while waiting for another wgobuild run; nothing was built", out.output
    assert not (root / "dist").exists()


def test_a_killed_holder_and_its_stale_owner_file_never_block(tmp_path: Path) -> None:
    root = write_module(tmp_path / "multi")
    holder, holder_out = start([sys.executable, "-c", HOLDER, str(root / ".wgobuild")], root)
    holder_out.wait_for("^held$")
    assert runlock.owner(root / ".wgobuild") == (holder.pid, pytest.approx(psutil.Process(holder.pid).create_time()))
    holder.kill()  # SIGKILL: no clean-up; run.owner still names it
    holder.wait()
    assert (root / ".wgobuild" / runlock.OWNER_NAME).is_file()
    result = run_doit(root, "compile", timeout=300)
    assert result.returncode == 0, result.output
    assert not WAITING.search(result.output), result.output


def test_a_state_folder_removed_by_its_holder_is_locked_anew(tmp_path: Path) -> None:
    """``wgobuild clean --state`` removes .wgobuild/ under its own lock: the run that waited must lock the new file,
    or a third run would find it free and build beside it."""
    state, go_on = tmp_path / "state", tmp_path / "go-on"
    wait_then_remove = (f"while not Path({str(go_on)!r}).exists():\n    time.sleep(0.05)\n"
                        "import shutil\nshutil.rmtree(sys.argv[1])\nsys.exit(0)\n")
    cleaner = HOLDER.replace("time.sleep(600)\n", wait_then_remove)
    assert cleaner != HOLDER
    started = [start([sys.executable, "-c", cleaner, str(state)], tmp_path)]
    try:
        started[0][1].wait_for("^held$")
        started.append(start([sys.executable, "-c", HOLDER, str(state)], tmp_path))
        started[1][1].wait_for(WAITING)
        go_on.write_text("")
        assert started[0][0].wait(30) == 0
        started[1][1].wait_for("^held$")  # the waiter now holds the lock of the new .wgobuild/run.lock
        assert (state / runlock.LOCK_NAME).is_file()
        started.append(start([sys.executable, "-c", HOLDER, str(state)], tmp_path))
        line = started[2][1].wait_for(WAITING)
        assert line.startswith(f"waiting for another wgobuild run, pid {started[1][0].pid}, since "), line
    finally:
        for popen, _ in started:
            popen.kill()
            popen.wait()


def test_hold_twice_in_one_process_returns_at_once(tmp_path: Path) -> None:
    said: list[str] = []
    runlock.hold(tmp_path / "state", say=said.append)
    runlock.hold(tmp_path / "state", say=said.append)
    assert said == []
    assert runlock.owner(tmp_path / "state") == (os.getpid(), pytest.approx(psutil.Process().create_time()))


def test_interrupt_while_waiting_raises_interrupted(tmp_path: Path) -> None:
    """In-process: a KeyboardInterrupt in the wait becomes one Interrupted (exit code 130), the lock not taken."""
    state = tmp_path / "state"
    holder, holder_out = start([sys.executable, "-c", HOLDER, str(state)], tmp_path)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        holder_out.wait_for("^held$")
        said: list[str] = []

        def say(line: str) -> None:
            said.append(line)
            signal.raise_signal(signal.SIGINT)  # Ctrl-C right as the wait begins

        with pytest.raises(Interrupted, match=r"^interrupted while waiting for another wgobuild run; nothing was "
                                              r"built$") as info:
            runlock.hold(state, say=say)
        assert info.value.exit_code == 130
        assert len(said) == 1 and said[0].startswith(f"waiting for another wgobuild run, pid {holder.pid}, since ")
    finally:
        signal.signal(signal.SIGINT, previous)
        holder.kill()
        holder.wait()


# -- no orphans -------------------------------------------------------------------------------------------------

def _tree_once_compiling(runner: subprocess.Popen[str], seconds: float = 120) -> list[int]:
    """Wait until the Go compiler runs under ``runner``; return the pids of its whole tree (runner excluded)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(psutil.Error):
            tree = psutil.Process(runner.pid).children(recursive=True)
            if any(p.name() == "compile" for p in tree):
                time.sleep(0.3)  # let the compiler get going
                return [p.pid for p in psutil.Process(runner.pid).children(recursive=True)]
        time.sleep(0.05)
    raise AssertionError("the Go compiler never started")


@pytest.mark.skipif(sys.platform != "linux", reason="the watchdog is Linux's; Windows uses the job object")
def test_sigkill_of_doit_leaves_no_live_descendant(tmp_path: Path) -> None:
    root = add_big_package(write_module(tmp_path / "multi"), funcs=12000)
    runner, _ = start_doit(root, "-n", "2", "compile")
    tree = _tree_once_compiling(runner)
    names = {p.name() for p in live(tree)}
    assert {"go", "compile"} <= names, names
    runner.kill()
    runner.wait()
    left = survivors(tree, seconds=5)
    assert left == [], [(p.pid, p.name()) for p in left]
    again = run_doit(root, "compile", timeout=600)  # the next run resumes
    assert again.returncode == 0 and "compile:api-linux-amd64" in compiled(again.output), again.output


def test_negative_control_a_child_started_outside_proc_survives_sigkill(tmp_path: Path) -> None:
    """The check above would see an orphan: a plain subprocess of a killed parent is still running after 5 s."""
    pid_file = tmp_path / "child.pid"
    parent_code = textwrap.dedent(
        f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
        open({str(pid_file)!r}, "w").write(str(child.pid))
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code])
    try:
        deadline = time.monotonic() + 30
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int(pid_file.read_text())
        parent.kill()
        parent.wait()
        left = survivors([child], seconds=5)
        assert [p.pid for p in left] == [child]
    finally:
        with contextlib.suppress(psutil.Error):
            psutil.Process(int(pid_file.read_text())).kill()
