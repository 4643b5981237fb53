"""Benchmark: a no-op ``doit image`` (engine backend) against the ``docker build`` the baseline Makefile runs.

The baseline flow (``bench/baseline/Makefile``, ``make image``) ends with ``docker build -t IMAGE .`` in the
module root on every run, even when nothing changed: the CLI tars and sends the whole folder, and the engine walks
its cache step by step. A no-op ``doit image`` checks file stats and asks the engine one question (is the recorded
image ID still there). Both run here on the same engine and the same unchanged tree of ``examples/hello``
(linux/amd64, the platform a Linux engine can build). The build contexts are compared too: what wgobuild sends
against a naive ``docker build .`` of the module and of the whole repository.

Run: ``python bench/engine_noop.py [--runs N] [--json OUT]``. Uses ``DOCKER_HOST`` (or /var/run/docker.sock) when an
engine answers, else starts a private dockerd (vfs storage) the way the test suite does.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from engine_host import running_engine  # noqa: E402

from wgobuild import engine, gotool, proc  # noqa: E402

BASELINES = [REPO / "bench" / "baseline" / "Makefile"]
DODO = 'from wgobuild.doit_tasks import load_tasks\nglobals().update(load_tasks("."))\n'


class _Counter:
    """A write-only sink that counts bytes (the size of a tar without keeping it)."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size


def naive_context_size(folder: Path) -> int:
    """Bytes of the tar ``docker build .`` sends from ``folder`` when no .dockerignore trims it."""
    sink = _Counter()
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        tar.add(folder, arcname=".")
    return sink.size


def prepare(root: Path) -> Path:
    shutil.copytree(REPO / "examples" / "hello", root, ignore=shutil.ignore_patterns("dist", ".wgobuild", "dodo.py"))
    (root / "dodo.py").write_text(DODO)
    text = (root / "wgobuild.toml").read_text()
    text = re.sub(r"platforms = \[.*\]", 'platforms = ["linux/amd64"]', text)
    text = text.replace('version = "git"', 'version = "1.0.0"').replace("[image]\n", '[image]\nbackend = "engine"\n')
    (root / "wgobuild.toml").write_text(text)
    return root


def timed(argv: list[str], cwd: Path, runs: int, expect: str, env: dict[str, str] | None = None) -> list[float]:
    times = []
    for _ in range(runs):
        result = proc.run(argv, cwd=cwd, quiet=True, timeout=600, env=env)
        if not result.ok or expect not in result.output:
            raise SystemExit(f"{' '.join(argv)} failed or did not say {expect!r}:\n{result.tail()}")
        times.append(result.wall_s)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--makefile", type=Path, default=next((p for p in BASELINES if p.is_file()), BASELINES[0]),
                        help="the baseline Makefile (default: shared/baseline/Makefile)")
    options = parser.parse_args()
    # Measure as on a developer machine: Python caches compiled modules (some sandboxes turn that off).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

    stack = contextlib.ExitStack()
    stack.enter_context(running_engine())
    work = Path(tempfile.mkdtemp(prefix="wgb-bench-"))
    try:
        root = prepare(work / "hello")
        doit = [sys.executable, "-m", "doit", "image"]
        first = proc.run(doit, cwd=root, quiet=True, timeout=900)
        if not first.ok:
            raise SystemExit(f"first doit image failed:\n{first.tail()}")
        record = json.loads((root / "dist" / "images" / "linux-amd64.json").read_text())
        noop = timed(doit, root, options.runs, "nothing to do")

        # The baseline: a hand-written Dockerfile at the module root (the same instructions, copying the binary the
        # Makefile writes there), `docker build -t hello:latest .`, and the whole `make image` flow around it.
        rendered = (root / "dist" / "docker" / "linux-amd64" / "Dockerfile").read_text()
        (root / "Dockerfile").write_text(rendered.replace('"dist/linux-amd64/hello"', '"hello"'))
        make_env = {**gotool.go_env_vars(), "PATH": f"{gotool.find_go().parent}{os.pathsep}{os.environ['PATH']}"}
        make = [shutil.which("make") or "make", "-f", str(options.makefile), "image", "GOOS=linux", "GOARCH=amd64"]
        docker = [shutil.which("docker") or "docker", "build", "-t", "hello:latest", "."]
        have_make = options.makefile.is_file() and shutil.which("make") is not None
        if have_make:
            timed(make, root, 1, "hello:latest", make_env)  # warm Go's and the engine's caches
            make_times = timed(make, root, options.runs, "hello:latest", make_env)
        else:
            proc.run([gotool.find_go(), "build", "-o", "hello", "."], cwd=root, env=make_env, quiet=True, check=True)
            timed(docker, root, 1, "hello:latest")
            make_times = []
        baseline = timed(docker, root, options.runs, "hello:latest")
        figures = {
            "runs": options.runs,
            "engine": engine.engine_address(),
            "doit_image_noop_s": round(statistics.median(noop), 3),
            "docker_build_unchanged_s": round(statistics.median(baseline), 3),
            "speedup": round(statistics.median(baseline) / statistics.median(noop), 1),
            "make_image_unchanged_s": round(statistics.median(make_times), 3) if make_times else None,
            "speedup_vs_make_image": round(statistics.median(make_times) / statistics.median(noop), 1)
            if make_times else None,
            "first_doit_image_s": round(first.wall_s, 2),
            "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
            "cpus": os.cpu_count(),
            "context_bytes_wgobuild": record["extra"]["context_bytes"],
            "context_bytes_naive_module": naive_context_size(root),
            "context_bytes_naive_repository": naive_context_size(REPO),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
        stack.close()
    mb = 1e6
    print(f"| measure (median of {figures['runs']}; {figures['cpus']} CPUs, load {figures['load_average_1m']}) "
          "| value |\n|---|---|")
    print(f"| `doit image`, nothing changed | {figures['doit_image_noop_s']:.3f} s |")
    print(f"| `docker build -t hello:latest .`, nothing changed | {figures['docker_build_unchanged_s']:.3f} s |")
    print(f"| speed-up against the docker build step | {figures['speedup']}x |")
    if figures["make_image_unchanged_s"] is not None:
        print(f"| baseline `make image` (clean, compile, test, docker build), nothing changed | "
              f"{figures['make_image_unchanged_s']:.3f} s |")
        print(f"| speed-up against `make image` | {figures['speedup_vs_make_image']}x |")
    print(f"| build context sent by wgobuild | {figures['context_bytes_wgobuild'] / mb:.2f} MB |")
    print(f"| naive `docker build .` of the module | {figures['context_bytes_naive_module'] / mb:.2f} MB |")
    print(f"| naive `docker build .` of the repository | {figures['context_bytes_naive_repository'] / mb:.2f} MB |")
    if options.json:
        options.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
