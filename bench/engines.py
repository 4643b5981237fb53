"""Benchmark: image builds on two engines, one after the other against both at once (``[engines]``).

Two private dockerds (vfs, as the test suite starts them) stand in for two build hosts. Each round builds the
linux/amd64 image of ``examples/hello`` through ``EngineBackend`` on engine A and on engine B, first serially, then
in two threads as doit's parallel image steps do; each build gets a binary with a fresh trailing byte so neither
engine answers from its layer cache. The figure is serial wall / parallel wall: 2.0 would be perfect overlap; on a
2-core machine the two dockerds and the two build-context tars share the CPUs, so expect less.

Run: ``python bench/engines.py [--runs N] [--json OUT]``. Needs dockerd (Debian docker.io) and root.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from fixtures_docker import Dockerd  # noqa: E402

from wgobuild import config, engine, gotool  # noqa: E402
from wgobuild.config import Platform  # noqa: E402
from wgobuild.image import ImageRequest  # noqa: E402

LINUX = Platform.parse("linux/amd64")
DODO = 'from wgobuild.doit_tasks import load_tasks\nglobals().update(load_tasks("."))\n'


def project(dest: Path, name: str) -> config.Config:
    """examples/hello copied to ``dest``, linux/amd64 only, engine backend, its own repository name."""
    shutil.copytree(REPO / "examples" / "hello", dest, ignore=shutil.ignore_patterns("dist", ".wgobuild", "dodo.py"))
    text = (dest / "wgobuild.toml").read_text()
    text = re.sub(r"platforms = \[.*\]", 'platforms = ["linux/amd64"]', text)
    text = text.replace('version = "git"', 'version = "1.0.0"')
    text = text.replace("[image]\n", f'[image]\nbackend = "engine"\nrepository = "{name}"\n')
    (dest / "wgobuild.toml").write_text(text)
    return config.load(dest)


def build(cfg: config.Config, where: str, binary: Path, round_no: int, spans: dict[str, tuple[float, float]]) -> None:
    variant = binary.with_name(f"hello-{where.rsplit('/', 2)[-2]}-{round_no}")
    variant.write_bytes(binary.read_bytes() + round_no.to_bytes(4, "big") + where.encode())  # a cache miss per build
    request = ImageRequest(config=cfg, platform=LINUX, binaries={"hello": variant},
                           reference=f"{cfg.image_repository}:r{round_no}", version="1.0.0")
    start = time.perf_counter()
    engine.EngineBackend(cfg, where).build(request)
    spans[where] = (start, time.perf_counter())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    daemons = [Dockerd(), Dockerd()]
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        for daemon in daemons:
            daemon.start()
            stack.callback(daemon.stop)
        a, b = (d.url for d in daemons)
        cfg = {a: project(Path(tmp) / "a", "bench-engine-a"), b: project(Path(tmp) / "b", "bench-engine-b")}
        binary = Path(tmp) / "hello"
        gotool.build(cfg[a].root, ".", LINUX, binary, "1.0.0", label="go build")
        for where in (a, b):  # warm-up: the first build on an engine pays for its builder's start-up
            build(cfg[where], where, binary, 0, {})
        serial, parallel, overlap = [], [], []
        for run in range(1, args.runs + 1):
            spans: dict[str, tuple[float, float]] = {}
            start = time.perf_counter()
            for where in (a, b):
                build(cfg[where], where, binary, 2 * run - 1, spans)
            serial.append(time.perf_counter() - start)
            spans = {}
            threads = [threading.Thread(target=build, args=(cfg[w], w, binary, 2 * run, spans)) for w in (a, b)]
            start = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            parallel.append(time.perf_counter() - start)
            (a0, a1), (b0, b1) = spans[a], spans[b]
            overlap.append(max(0.0, min(a1, b1) - max(a0, b0)))
    result = {"runs": args.runs, "serial_s": [round(s, 3) for s in serial],
              "parallel_s": [round(s, 3) for s in parallel], "overlap_s": [round(s, 3) for s in overlap],
              "speedup_median": round(statistics.median(serial) / statistics.median(parallel), 2)}
    print(f"two engines, one linux/amd64 image each: serial median {statistics.median(serial):.2f}s, both at once "
          f"{statistics.median(parallel):.2f}s ({result['speedup_median']}x), builds overlapping "
          f"{statistics.median(overlap):.2f}s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
