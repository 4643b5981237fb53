"""Team cache benchmark: a cold CI-like ``doit image`` without and with a warm team cache in a registry.

Run: python bench/cache.py [--runs N]. The module is bench/pipeline.py's two-binary net/http module (2 binaries x
linux/amd64 and windows/amd64, go test, a golden case, both images daemonless: no engine, as on a CI runner) on a
small synthetic Windows base. Every sample is a fresh copy of the module in a new folder with an empty ``.wgobuild``
and an empty Go build cache (``GOCACHE``), as a CI runner starts:

- cold: no ``[cache]`` section: every go build, go test and golden case runs;
- cold + upload: ``[cache]`` on an empty cache repository (what the first CI run of a commit pays);
- warm cache: ``[cache]`` on the repository the previous run filled: every compile, test and golden step fetches.

A private ``docker-registry`` on 127.0.0.1 (with htpasswd auth, as a team's would be) holds the cache. Samples are
interleaved; medians of wall time and of the CPU time of the whole process tree. Target: warm >= 10x faster than
cold. Prints a Markdown table (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench"), str(REPO / "tests")]

from incremental_oracle import windows_base  # noqa: E402
from pipeline import BASE_ENV, children_cpu, two_binary_module  # noqa: E402


def doit_image(root: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall s, CPU s of the whole tree) of one ``doit image`` in ``root``."""
    start, cpu = time.perf_counter(), children_cpu()
    result = subprocess.run([sys.executable, "-m", "doit", "image"], cwd=root, env=env, capture_output=True,
                            text=True)
    wall, used = time.perf_counter() - start, children_cpu() - cpu
    if result.returncode != 0:
        raise SystemExit(f"doit image failed in {root}:\n{result.stdout}\n{result.stderr}")
    return wall, used


def go_programs(root: Path) -> int:
    """Programs the compile, test and golden steps started (run.json): 0 when all of them came from the cache."""
    steps = json.loads((root / "dist" / "reports" / "run.json").read_text())["steps"]
    return sum(int(s["programs"]) for s in steps if s["step"].split(":")[0] in ("compile", "test", "golden"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    import fixtures_registry

    with tempfile.TemporaryDirectory(prefix="wgobuild-bench-cache-") as tmp:
        work = Path(tmp)
        htpasswd = work / "htpasswd"
        line = subprocess.run(["htpasswd", "-Bbn", "bench", "bench-pass"], capture_output=True, text=True,
                              check=True).stdout.strip()
        htpasswd.write_text(line + "\n")
        life = fixtures_registry._start("bench-cache-registry", {"htpasswd": {"realm": "bench",
                                                                              "path": str(htpasswd)}})
        registry = next(life)
        registry.user, registry.password = "bench", "bench-pass"
        try:
            base = windows_base(work / "winbase")
            env = {**BASE_ENV, "DOCKER_HOST": f"unix://{work}/no-engine.sock",
                   "DOCKER_CONFIG": str(registry.docker_config(work / "docker"))}
            env.pop("GOFLAGS", None)
            samples: dict[str, list[tuple[float, float]]] = {"cold": [], "upload": [], "warm": []}
            programs: list[int] = []

            def fresh(name: str, cache: str) -> tuple[Path, dict[str, str]]:
                root = two_binary_module(work / name / "duo", base)
                if cache:
                    with (root / "wgobuild.toml").open("a") as handle:
                        handle.write(f'\n[cache]\nregistry = "{registry.host}/{cache}"\n')
                gocache = work / name / "gocache"
                gocache.mkdir()
                return root, {**env, "GOCACHE": str(gocache)}

            for i in range(args.runs):
                order = ("cold", "upload", "warm") if i % 2 == 0 else ("upload", "warm", "cold")
                for kind in order:
                    repository = f"ci/cache{i}"
                    root, run_env = fresh(f"{kind}{i}", "" if kind == "cold" else repository)
                    samples[kind].append(doit_image(root, run_env))
                    if kind == "warm":
                        programs.append(go_programs(root))
                    shutil.rmtree(work / f"{kind}{i}", ignore_errors=True)
                    print(f"  run {i + 1} {kind}: {samples[kind][-1][0]:.2f} s", file=sys.stderr, flush=True)
        finally:
            with contextlib.suppress(StopIteration):
                next(life)
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in samples.items()}
    cold, warm = med["cold"], med["warm"]
    print(f"| cold CI-like `doit image`, two-binary net/http module x 2 platforms, tests, empty GOCACHE "
          f"(median of {args.runs}, {os.cpu_count()} CPUs) | wall | CPU |")
    print("|---|---|---|")
    print(f"| no team cache | {cold[0]:.2f} s | {cold[1]:.2f} s |")
    print(f"| empty team cache (runs everything, uploads) | {med['upload'][0]:.2f} s | {med['upload'][1]:.2f} s |")
    print(f"| warm team cache (fetches every compile, test, golden) | {warm[0]:.2f} s | {warm[1]:.2f} s |")
    print(f"| speed-up with a warm cache (target >= 10x) | {cold[0] / warm[0]:.1f}x | {cold[1] / warm[1]:.1f}x |")
    print(f"\nprograms run by compile/test/golden steps with a warm cache: {programs}")


if __name__ == "__main__":
    main()
