"""Benchmark: what the run lock and the child guard cost a no-op ``wgobuild image``.

The guard (``proc.spawn``): the watchdog process started at the first child, and one environment entry per child
(``subprocess`` keeps its vfork path: nothing runs in the child before exec). The run lock (``runlock.hold``): one
open, one ``flock``, one small file written. A no-op run on examples/hello starts ``git`` twice (the version
stamp), so it pays for both.

Both variants run the same checkout on two copies of examples/hello, interleaved; the "off" variant switches the
lock and the guard off inside its own process before ``wgobuild.cli.main`` runs (this script only; the product has
no such switch). Reported: median wall time, median CPU time of the run (user + system of wgobuild and the
programs it waited for), and the CPU time of the watchdog itself, measured apart (it outlives the timed process
by a few milliseconds and is nobody's waited child then).

Run: ``python bench/noop_guard.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HELLO = REPO / "examples" / "hello"
ON = "import sys; from wgobuild.cli import main; sys.exit(main(['image']))"
OFF = ("import sys; from wgobuild import proc, runlock; from wgobuild.cli import main\n"
       "runlock.hold = lambda *a, **k: None\n"
       "proc._guard.prepare = lambda: None\n"
       "sys.exit(main(['image']))")
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(code: str, cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one run (CPU: the run and every program it waited for)."""
    cpu, start = children_cpu(), time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0 or "nothing to do" not in result.stdout + result.stderr:
        raise SystemExit(f"not a no-op run in {cwd}:\n{result.stdout}\n{result.stderr}")
    return wall, children_cpu() - cpu


def watchdog_cpu(runs: int) -> float:
    """Median CPU seconds of one watchdog life after a normal run: start, wait, read ``bye``, end."""
    script = REPO / "wgobuild" / "watchdog.py"
    samples = []
    for _ in range(runs):
        cpu = children_cpu()
        subprocess.run([sys.executable, "-I", "-S", str(script), "bench"], input=b"bye\n", check=True)
        samples.append(children_cpu() - cpu)
    return statistics.median(samples)


def module_copy(dest: Path) -> Path:
    shutil.copytree(HELLO, dest, ignore=shutil.ignore_patterns("dist", ".wgobuild"))
    git = ["git", "-c", "user.email=bench@example.invalid", "-c", "user.name=bench"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run([*git, *args], cwd=dest, check=True)
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        roots = {"on": module_copy(Path(tmp) / "on"), "off": module_copy(Path(tmp) / "off")}
        codes = {"on": ON, "off": OFF}
        for name in ("on", "off"):  # first build, then one no-op to warm every cache
            subprocess.run([sys.executable, "-c", ON], cwd=roots[name], env=ENV, capture_output=True, check=True)
            timed(codes[name], roots[name])
        figures: dict[str, list[tuple[float, float]]] = {"on": [], "off": []}
        for i in range(args.runs):
            for name in (("on", "off") if i % 2 else ("off", "on")):
                figures[name].append(timed(codes[name], roots[name]))
    for name, label in (("off", "lock and guard off"), ("on", "lock and guard on (the product)")):
        walls, cpus = [w for w, _ in figures[name]], [c for _, c in figures[name]]
        print(f"no-op wgobuild image, {label:32} wall median {statistics.median(walls) * 1000:6.1f} ms, "
              f"CPU median {statistics.median(cpus) * 1000:6.1f} ms ({args.runs} runs)")
    diffs = [on[0] - off[0] for on, off in zip(figures["on"], figures["off"], strict=True)]
    print(f"paired wall difference (on - off): median {statistics.median(diffs) * 1000:+.1f} ms")
    print(f"watchdog CPU per life (another process, off the run's path): {watchdog_cpu(args.runs) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
