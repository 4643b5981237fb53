"""The process runner on real programs: output, exit codes, figures, and whole-tree kills."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from wgobuild import proc
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
    with pytest.raises(StepFailed, match="boom"):
        proc.run([PY, "-c", "import sys; print('boom'); sys.exit(1)"], quiet=True, check=True, step="demo")


def test_missing_program_is_a_clear_error() -> None:
    with pytest.raises(ToolMissing, match="no-such-program"):
        proc.run(["no-such-program-xyz"])


def test_figures_cover_the_whole_tree() -> None:
    burn = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.4: pass\nx=bytearray(80*2**20)\n" \
           "time.sleep(0.3)"
    code = f"import subprocess,sys; subprocess.run([sys.executable,'-c',{burn!r}])"
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
