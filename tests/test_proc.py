"""The process runner on real programs: output, exit codes, figures, and whole-tree kills."""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from wgobuild import proc, watchdog, winjob
from wgobuild.errors import StepFailed, ToolMissing

PY = sys.executable

# A parent that starts a grandchild which writes its pid, then both sleep: the tree a `go build` makes.
TREE = textwrap.dedent(
    """
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    open(sys.argv[1], "w").write(str(child.pid))
    print("started", flush=True)
    time.sleep(300)
    """
)


def wait_for(path: Path, seconds: float = 20) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} never written")


def test_output_exit_code_and_lines() -> None:
    lines: list[str] = []
    result = proc.run([PY, "-c", "print('a'); print('b'); raise SystemExit(3)"], on_line=lines.append)
    assert lines == ["a", "b"]
    assert result.returncode == 3 and not result.ok
    assert result.output == "a\nb"


def test_check_raises_step_failed_with_output() -> None:
    with pytest.raises(StepFailed) as caught:
        proc.run([PY, "-c", "import sys; print('boom'); sys.exit(1)"], quiet=True, check=True, step="demo")
    assert str(caught.value) == f"demo: {PY} -c import sys; print('boom'); sys.exit(1) ... exited with code 1\nboom"


def test_missing_program_is_a_clear_error() -> None:
    with pytest.raises(ToolMissing, match="no-such-program"):
        proc.run(["no-such-program-xyz"])


@pytest.mark.parametrize("children_lists", [True, False], ids=["proc-children-lists", "psutil"])
def test_figures_cover_the_whole_tree(children_lists: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both tree walks (Linux's per-thread children lists, psutil's elsewhere) see a grandchild started by a
    thread other than the main one, as the go command starts compile and link."""
    if children_lists and sys.platform != "linux":
        pytest.skip("per-thread children lists are Linux's")
    on_linux = sys.platform == "linux"
    assert proc._CHILDREN_LISTS is on_linux, "a Linux kernel without CONFIG_PROC_CHILDREN?"
    monkeypatch.setattr(proc, "_CHILDREN_LISTS", children_lists)
    burn = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.4: pass\nx=bytearray(80*2**20)\n" \
           "time.sleep(0.3)"
    code = (f"import subprocess,sys,threading; t=threading.Thread(target=subprocess.run, "
            f"args=([sys.executable,'-c',{burn!r}],)); t.start(); t.join()")
    result = proc.run([PY, "-c", code], quiet=True)
    assert result.ok
    assert result.cpu_s >= 0.35, result
    assert result.peak_rss >= 80 * 2**20, result
    assert result.wall_s >= 0.6


def test_stdin_from_file(tmp_path: Path) -> None:
    data = tmp_path / "in.txt"
    data.write_text("x\ny\n")
    result = proc.run([PY, "-c", "import sys; print(len(sys.stdin.read().split()))"], stdin_path=data, quiet=True)
    assert result.output == "2"


def test_timeout_kills_the_whole_tree(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    result = proc.run([PY, "-c", TREE, pid_file], timeout=1.5, quiet=True)
    assert result.timed_out and not result.ok
    grandchild = int(wait_for(pid_file))
    time.sleep(0.2)
    assert not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE


@pytest.mark.skipif(os.name == "nt", reason="SIGHUP and inherited SIG_IGN are POSIX")
def test_signals_ignored_at_start_stay_ignored() -> None:
    """nohup ignores SIGHUP, a shell without job control starts background jobs with SIGINT ignored: wgobuild
    keeps those choices and handles the rest."""
    driver = ("import signal\nfrom wgobuild import proc\nproc.install_signal_handlers()\n"
              "print([signal.getsignal(s) is signal.SIG_IGN for s in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM)])")

    def start_with(disposition: signal.Handlers) -> subprocess.CompletedProcess[str]:
        def inherited() -> None:  # what the child finds at start, whatever this process was started with
            signal.signal(signal.SIGHUP, disposition)
            signal.signal(signal.SIGINT, disposition)

        return subprocess.run([PY, "-c", driver], capture_output=True, text=True, check=True, preexec_fn=inherited)

    ignored = start_with(signal.SIG_IGN)
    assert ignored.stdout.strip() == "[True, True, False]", ignored.stderr
    plain = start_with(signal.SIG_DFL)
    assert plain.stdout.strip() == "[False, False, False]", plain.stderr  # negative control: all handled


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_to_runner_stops_tree_and_exits_nonzero(tmp_path: Path, sig: signal.Signals) -> None:
    """A Python process using the runner gets Ctrl-C/SIGTERM: its children die with it, nothing is orphaned."""
    pid_file = tmp_path / "child.pid"
    driver = textwrap.dedent(
        f"""
        import sys
        from wgobuild import proc
        from wgobuild.errors import Interrupted
        proc.install_signal_handlers()
        try:
            proc.run([sys.executable, "-c", {TREE!r}, {str(pid_file)!r}])
        except Interrupted as exc:
            print("interrupted:", exc, flush=True)
            sys.exit(130)
        """
    )
    runner = subprocess.Popen([PY, "-c", driver], stdout=subprocess.PIPE, text=True)
    grandchild = int(wait_for(pid_file))
    tree = [p.pid for p in psutil.Process(runner.pid).children(recursive=True)]
    assert grandchild in tree
    os.kill(runner.pid, sig)
    out, _ = runner.communicate(timeout=30)
    assert runner.returncode == 130, out
    assert "interrupted" in out
    _, alive = psutil.wait_procs([psutil.Process(p) for p in tree if psutil.pid_exists(p)], timeout=10)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def test_collecting_records_runs() -> None:
    with proc.collecting() as runs:
        proc.run([PY, "-c", "pass"])
        proc.run([PY, "-c", "pass"])
    assert len(runs) == 2 and all(r.ok for r in runs)


# -- children die with the runner, however it ends -----------------------------------------------------------------

def _live(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.Error:
            pass
    return alive


def _survivors(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := _live(pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.mark.skipif(sys.platform != "linux", reason="the watchdog is Linux's; Windows uses the job object (winjob)")
@pytest.mark.parametrize("escape", [False, True], ids=["same-group", "grandchild-in-own-session"])
def test_sigkill_of_the_runner_kills_child_and_grandchild(tmp_path: Path, escape: bool) -> None:
    pid_file = tmp_path / "child.pid"
    tree = TREE.replace("time.sleep(300)\"])", "time.sleep(300)\"], start_new_session=True)") if escape else TREE
    assert tree != TREE or not escape
    driver = f"import sys\nfrom wgobuild import proc\nproc.run([sys.executable, '-c', {tree!r}, {str(pid_file)!r}])\n"
    runner = subprocess.Popen([PY, "-c", driver])
    grandchild = int(wait_for(pid_file))
    tree = [p.pid for p in psutil.Process(runner.pid).children(recursive=True)]
    assert grandchild in tree and len(tree) == 3, tree  # the child, its child, the watchdog
    runner.kill()
    runner.wait()
    assert _survivors(tree, seconds=5) == []


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity through os is Linux only")
def test_limits_are_in_place_before_the_program_runs() -> None:
    """``cat`` reads its own limits as its first act: they were set in the child before exec, not after start."""
    cpu = max(os.sched_getaffinity(0))
    popen = proc.spawn(["cat", "/proc/self/status", "/proc/self/stat"], affinity=[cpu], priority="below-normal")
    out, _ = popen.communicate(timeout=30)
    text = out.decode()
    allowed = re.search(r"^Cpus_allowed_list:\s*(\S+)$", text, re.MULTILINE)
    assert allowed and allowed.group(1) == str(cpu), text
    stat = text.splitlines()[-1]
    nice = int(stat[stat.rindex(")") + 2:].split()[16])  # field 19 of /proc/<pid>/stat
    assert nice == proc.PRIORITY_NICE["below-normal"] == 10


# -- the watchdog, driven as wgobuild drives it --------------------------------------------------------------------

def _sleeper(env: dict[str, str], ignore_term: bool = False) -> subprocess.Popen[bytes]:
    code = ("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else
            "import time\n") + "print('ready', flush=True)\ntime.sleep(60)\n"
    child = subprocess.Popen([PY, "-c", code], start_new_session=True, stdout=subprocess.PIPE,
                             env={**os.environ, **env})
    assert child.stdout is not None and child.stdout.readline() == b"ready\n"
    return child


@pytest.mark.skipif(sys.platform != "linux", reason="the watchdog reads /proc/PID/environ")
def test_watchdog_stops_marked_processes_when_its_pipe_closes() -> None:
    token = f"test.{time.time_ns()}"
    mark = watchdog.MARK
    killed = _sleeper({mark: token})
    stubborn = _sleeper({mark: f"{token}:1"}, ignore_term=True)  # a service: SIGTERM, then SIGKILL after 1 s
    other_run = _sleeper({mark: f"{token}0"})  # another wgobuild's child: its token only starts the same
    unmarked = _sleeper({})
    dog = subprocess.Popen([PY, "-I", "-S", watchdog.__file__, token], stdin=subprocess.PIPE, start_new_session=True)
    assert dog.stdin is not None
    try:
        time.sleep(0.5)
        assert dog.poll() is None and killed.poll() is None, "nothing happens while the pipe is open"
        started = time.monotonic()
        dog.stdin.close()  # what the kernel does when wgobuild is killed
        assert dog.wait(20) == 0
        waited = time.monotonic() - started
        assert killed.wait(5) == -signal.SIGKILL
        assert stubborn.wait(5) == -signal.SIGKILL and waited >= 0.9  # SIGTERM ignored: killed after its grace
        assert other_run.poll() is None and unmarked.poll() is None
    finally:
        for p in (killed, stubborn, other_run, unmarked):
            p.kill()
            p.wait()


@pytest.mark.skipif(sys.platform != "linux", reason="the watchdog reads /proc/PID/environ")
def test_watchdog_leaves_everything_after_a_normal_goodbye() -> None:
    token = f"test.{time.time_ns()}"
    child = _sleeper({watchdog.MARK: token})
    dog = subprocess.Popen([PY, "-I", "-S", watchdog.__file__, token], stdin=subprocess.PIPE, start_new_session=True)
    try:
        dog.communicate(b"bye\n", timeout=20)
        assert dog.returncode == 0
        time.sleep(0.3)
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()


def test_watchdog_reads_marks_from_environ_files(tmp_path: Path) -> None:
    """``marked`` on a made-up /proc: exact token, token with grace, a longer token, junk, an unreadable entry."""
    entries = {"10": b"A=1\0WGOBUILD_GUARD=t1\0", "11": b"WGOBUILD_GUARD=t1:2.5\0B=2\0", "12": b"WGOBUILD_GUARD=t10\0",
               "13": b"WGOBUILD_GUARD=t1:x\0", "14": b"PATH=/bin\0", "self": b"WGOBUILD_GUARD=t1\0"}
    for pid, data in entries.items():
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "environ").write_bytes(data)
    (tmp_path / "15").mkdir()  # no environ: gone or not ours
    assert watchdog.marked("t1", str(tmp_path)) == {10: 0.0, 11: 2.5, 13: 0.0}
    assert watchdog.wait_for_end([b"x\n", b"bye\n"]) and not watchdog.wait_for_end([b"bye\n", b"x\n"])


# -- Windows job object: the call sequence and structure layout, checked here ---------------------------------------

class FakeKernel32:
    """Records the kernel32 calls winjob makes; ``join_ok`` says whether this process may join the job."""

    def __init__(self, join_ok: bool = True, job: int = 77) -> None:
        self.calls: list[tuple[str, tuple[object, ...]]] = []
        self.join_ok, self.job = join_ok, job
        self.flags = 0

    def CreateJobObjectW(self, attributes: object, name: object) -> int:
        self.calls.append(("CreateJobObjectW", (attributes, name)))
        return self.job

    def SetInformationJobObject(self, job: int, info_class: int, info: object, size: int) -> int:
        obj = info._obj  # type: ignore[attr-defined]  # ctypes.byref keeps the structure here
        self.flags = obj.BasicLimitInformation.LimitFlags
        self.calls.append(("SetInformationJobObject", (job, info_class, size)))
        return 1

    def AssignProcessToJobObject(self, job: int, process: int) -> int:
        self.calls.append(("AssignProcessToJobObject", (job, process)))
        return 1 if process != winjob.CURRENT_PROCESS or self.join_ok else 0

    def OpenProcess(self, access: int, inherit: bool, pid: int) -> int:
        self.calls.append(("OpenProcess", (access, inherit, pid)))
        return 500 + pid

    def CloseHandle(self, handle: int) -> int:
        self.calls.append(("CloseHandle", (handle,)))
        return 1


def test_job_object_layout_matches_windows() -> None:
    info = winjob.kill_on_close_limits()
    assert info.BasicLimitInformation.LimitFlags == winjob.JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE == 0x2000
    assert winjob.JOBOBJECT_EXTENDED_LIMIT_INFORMATION.BasicLimitInformation.offset == 0
    assert winjob.JOBOBJECT_BASIC_LIMIT_INFORMATION.LimitFlags.offset == 16
    # Sizes from the Windows SDK (winnt.h): 144 bytes on 64-bit Windows, 112 on 32-bit.
    assert ctypes.sizeof(info) == (144 if ctypes.sizeof(ctypes.c_void_p) == 8 else 112)


def test_job_joins_this_process_so_children_are_born_inside() -> None:
    k = FakeKernel32()
    job = winjob.Job(k)
    assert job.holds_self and k.flags == winjob.JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
    assert [name for name, _ in k.calls] == ["CreateJobObjectW", "SetInformationJobObject",
                                             "AssignProcessToJobObject"]
    assert k.calls[1][1] == (77, 9, ctypes.sizeof(winjob.JOBOBJECT_EXTENDED_LIMIT_INFORMATION))
    assert k.calls[2][1] == (77, winjob.CURRENT_PROCESS)
    assert job.adopt(1234) and len(k.calls) == 3  # already inside: nothing more to do


def test_job_adopts_each_child_when_this_process_cannot_join() -> None:
    k = FakeKernel32(join_ok=False)
    job = winjob.Job(k)
    assert not job.holds_self
    assert job.adopt(1234)
    assert k.calls[3:] == [("OpenProcess", (winjob.PROCESS_SET_QUOTA | winjob.PROCESS_TERMINATE, False, 1234)),
                           ("AssignProcessToJobObject", (77, 1734)), ("CloseHandle", (1734,))]


def test_job_creation_failure_names_the_call() -> None:
    with pytest.raises(OSError, match=r"^CreateJobObjectW failed \(Windows error \d+\)$"):
        winjob.Job(FakeKernel32(job=0))
