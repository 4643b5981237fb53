"""Console output: live lines of running steps on a terminal (a real pseudo-terminal), plain lines elsewhere, and
no line of parallel steps ever broken by another."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fixtures_go import run_doit, write_module

from wgobuild import proc, progress

LIVE = re.compile(r"^  +\d+\.\ds  (\S+)(?:  .*)?$")


def screen(raw: str) -> list[str]:
    """What a terminal shows after ``raw``: handles CR, LF, ESC[K (clear to end of line) and ESC[1A (cursor up)."""
    lines = [""]
    row = col = 0
    i = 0
    while i < len(raw):
        if raw.startswith("\x1b[K", i):
            lines[row] = lines[row][:col]
            i += 3
            continue
        if raw.startswith("\x1b[1A", i):
            row = max(0, row - 1)
            i += 4
            continue
        ch = raw[i]
        i += 1
        if ch == "\r":
            col = 0
        elif ch == "\n":
            row += 1
            col = 0
            if row == len(lines):
                lines.append("")
        else:
            line = lines[row]
            lines[row] = line[:col].ljust(col) + ch + line[col + 1:]
            col += 1
    return lines


def run_on_terminal(root: Path, *args: str) -> tuple[int, str]:
    """``doit <args>`` with stdout and stderr on a pseudo-terminal, as in an interactive shell."""
    controller, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    child = subprocess.Popen([sys.executable, "-m", "doit", *args], cwd=root, stdin=subprocess.DEVNULL,
                             stdout=terminal, stderr=terminal, env=env)
    os.close(terminal)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 1.0)
        if not ready:
            if child.poll() is not None:
                break
            continue
        try:
            data = os.read(controller, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    code = child.wait(timeout=60)
    os.close(controller)
    return code, b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")


@pytest.mark.slow
def test_live_lines_on_a_terminal_and_plain_lines_otherwise(tmp_path: Path) -> None:
    root = write_module(tmp_path / "multi", platforms='["linux/amd64", "windows/amd64"]')
    code, raw = run_on_terminal(root, "compile", "test")
    assert code == 0, raw
    written = re.sub(r"\x1b\[(K|1A)", "", raw).replace("\r", "\n").split("\n")  # every line as written
    drawn = {m[1] for line in written if (m := LIVE.match(line))}
    ran = {line[3:].split(" (")[0] for line in written if line.startswith(".  ")}
    assert {"compile:api-linux-amd64", "compile:worker-windows-amd64", "test"} <= ran
    assert ran <= drawn, f"every running step gets a live line: missing {ran - drawn}"
    shown = screen(raw)
    assert not [line for line in shown if LIVE.match(line)], "live lines are gone when the run ends"
    assert {line for line in shown if line.startswith(".  ")} == {line for line in written if line.startswith(".  ")}, (
        "no line was broken")
    assert any(line.startswith("step ") and line.rstrip().endswith("why") for line in shown)

    jobs = root / "lib/jobs/jobs.go"
    jobs.write_text(jobs.read_text().replace("return 1", "return 2 - 1"))
    plain = run_doit(root, "compile", "test", env={"CI": ""})  # stdout is a pipe: plain lines only
    assert plain.returncode == 0 and "compile:worker-linux-amd64" in plain.ran, plain.output
    assert "\x1b" not in plain.output and "\r" not in plain.output
    assert not [line for line in plain.output.splitlines() if LIVE.match(line)]


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_parallel_lines_never_interleave_with_live_lines_drawn(monkeypatch: pytest.MonkeyPatch) -> None:
    out = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(progress, "TICK_S", 0.001)
    expected: set[str] = set()

    def worker(n: int) -> None:
        step = f"compile:w{n}"
        progress.start(step)
        for i in range(150):
            line = f"line {i} of worker {n} " + "x" * (n * 7)
            proc.echo(line, step)
        progress.finish(step)

    for n in range(6):
        expected |= {f"[compile:w{n}] line {i} of worker {n} " + "x" * (n * 7) for i in range(150)}
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    progress.close()
    raw = out.getvalue()
    assert "\x1b[K" in raw, "live lines were drawn"
    final = [line for line in screen(raw) if line]
    assert set(final) == expected and len(final) == len(expected), "every line whole, once, nothing left over"


def test_plain_output_says_a_long_step_still_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()  # not a terminal
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(progress, "TICK_S", 0.01)
    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.05)
    progress.start("test")
    deadline = time.monotonic() + 10
    while "still running" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    progress.finish("test")
    progress.close()
    assert re.search(r"^\[test\] still running \(\d+s\)$", out.getvalue(), re.MULTILINE), out.getvalue()
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue()


def test_a_live_line_shows_the_steps_last_output(monkeypatch: pytest.MonkeyPatch) -> None:
    out = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.delenv("CI", raising=False)
    progress.start("image-platform:linux-amd64")
    progress.start("test")
    proc.echo("pulling: 3 layers, 12.0 of 40.0 MB", "image-platform:linux-amd64")
    shown = screen(out.getvalue())
    assert shown[0] == "[image-platform:linux-amd64] pulling: 3 layers, 12.0 of 40.0 MB"
    assert re.fullmatch(r"  +\d+\.\ds  image-platform:linux-amd64  pulling: 3 layers, 12\.0 of 40\.0 MB", shown[1])
    assert re.fullmatch(r"  +\d+\.\ds  test", shown[2]), shown
    progress.finish("image-platform:linux-amd64")
    progress.close()
    assert [line for line in screen(out.getvalue()) if line] == [shown[0]], "nothing left below the output"
