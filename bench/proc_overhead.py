"""Benchmark: what ``proc.run`` adds to the wall time of a program it runs, against ``subprocess.run``.

Every step of a build (each ``go build``, ``go test``, golden case) goes through ``proc.run``, which streams the
output, samples the process tree's memory and CPU, and waits for the program's end while it samples. What it adds
lands on the critical path of every run once per step. The baseline is ``subprocess.run`` of the same program in
the same process, samples interleaved.

Run: ``python bench/proc_overhead.py [--runs N] [--seconds S]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wgobuild import proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=0.23, help="how long the program runs (sleep)")
    args = parser.parse_args()
    argv = ["sleep", str(args.seconds)]
    over: dict[str, list[float]] = {"subprocess.run": [], "proc.run": []}
    for _ in range(args.runs):
        for name in over:
            start = time.perf_counter()
            if name == "proc.run":
                proc.run(argv, quiet=True, check=True)
            else:
                subprocess.run(argv, check=True)
            over[name].append(time.perf_counter() - start - args.seconds)
    for name, values in over.items():
        print(f"  {name:15} median {statistics.median(values) * 1000:6.1f} ms over the program's {args.seconds} s")


if __name__ == "__main__":
    main()
