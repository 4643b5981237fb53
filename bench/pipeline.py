"""Pipeline benchmarks: no-op `doit image` vs Go's own no-op, the Makefile flow vs an incremental run, matrix -n 2.

Run: python bench/pipeline.py [--runs N]. Prints figures and ratios against baselines measured in the same run.

1. No-op `doit image` (and `wgobuild image`) on examples/hello and on a generated module of 2,000 Go files in
   200 packages, against `go build` of the same binary with Go's warm cache (the real go binary, not a wrapper).
2. The baseline Makefile flow (`make build`: clean, compile, test, golden) against `doit image` after a one-file
   change, on examples/hello.
3. A 4-platform matrix, serial vs `doit -n 2 -P thread`, each run after a version bump (every binary relinks).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from wgobuild import gotool  # noqa: E402

DODO = 'from wgobuild.doit_tasks import load_tasks\nglobals().update(load_tasks("."))\n'
MAKEFILE = REPO / "bench" / "baseline" / "Makefile"  # the hand-written flow wgobuild replaces
PYTHON_BIN = Path(sys.executable).parent


# Python's usual setting: bytecode cached in __pycache__ (some shells export PYTHONDONTWRITEBYTECODE=1, which makes
# every run recompile wgobuild and doit; no user's `doit` runs that way by default).
BASE_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(argv: list[object], cwd: Path, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    result = subprocess.run([str(a) for a in argv], cwd=cwd, env=env or BASE_ENV, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{argv} failed in {cwd}:\n{result.stdout}\n{result.stderr}")
    return elapsed


def median(argv: list[object], cwd: Path, runs: int, env: dict[str, str] | None = None) -> float:
    timed(argv, cwd, env)  # warm-up: caches filled, state written
    return statistics.median(timed(argv, cwd, env) for _ in range(runs))


def generated_module(root: Path, files: int = 2000, packages: int = 200) -> Path:
    """A module of ``files`` Go files in ``packages`` packages, all imported by one binary."""
    per_package = files // packages
    (root / "cmd/svc").mkdir(parents=True)
    (root / "go.mod").write_text("module example.com/big\n\ngo 1.22\n")
    imports, uses = [], []
    for p in range(packages):
        folder = root / "pkg" / f"p{p:03d}"
        folder.mkdir(parents=True)
        for f in range(per_package):
            (folder / f"f{f:02d}.go").write_text(
                f"package p{p:03d}\n\n// F{f} returns a number.\nfunc F{f}(x int) int {{ return x*{f} + {p} }}\n")
        imports.append(f'\t"example.com/big/pkg/p{p:03d}"')
        uses.append(f"p{p:03d}.F0(1)")
    (root / "cmd/svc/main.go").write_text(
        'package main\n\nimport (\n\t"fmt"\n\n' + "\n".join(imports) + '\n)\n\nvar version = "dev"\n\n'
        "func main() {\n\tfmt.Println(version, " + " + ".join(uses) + ")\n}\n")
    (root / "wgobuild.toml").write_text(
        '[project]\nname = "big"\nversion = "1.0.0"\n\n[build]\nplatforms = ["linux/amd64"]\n\n'
        '[test]\nenabled = false\n\n[[binaries]]\nname = "svc"\npackage = "./cmd/svc"\n\n[image]\nbackend = "oci"\n')
    (root / "dodo.py").write_text(DODO)
    return root


def hello_copy(root: Path) -> Path:
    shutil.copytree(REPO / "examples/hello", root, ignore=shutil.ignore_patterns("dist", ".wgobuild"))
    (root / "dodo.py").write_text(DODO)  # the example as shipped: backend auto, as the README's first command
    return root


def noop(root: Path, package: str, runs: int) -> None:
    """Interleaved samples (go, doit, wgobuild, go, ...), so all three see the same machine noise."""
    go, env = gotool.find_go(), gotool.go_env_vars(None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["GOOS"], env["GOARCH"] = "linux", "amd64"
    out = root / "gobuild-out"
    commands = {
        "go build no-op (warm cache)": ([go, "build", "-trimpath", "-ldflags", "-s -w -X main.version=1.0.0", "-o",
                                         out, package], env),
        "doit image no-op": ([PYTHON_BIN / "doit", "image"], None),
        "wgobuild image no-op": ([PYTHON_BIN / "wgobuild", "image"], None),
    }
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for argv, cmd_env in commands.values():
        timed(argv, root, cmd_env)  # warm-up: caches filled, state written
    for _ in range(runs):
        for name, (argv, cmd_env) in commands.items():
            samples[name].append(timed(argv, root, cmd_env))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    base = medians["go build no-op (warm cache)"]
    for name, value in medians.items():
        ratio = "" if value is base else f"   {value / base:.2f}x go build"
        print(f"  {name:30} {value * 1000:7.0f} ms{ratio}")


def makefile_vs_incremental(root: Path, runs: int) -> None:
    if not MAKEFILE.exists():
        print(f"  skipped: {MAKEFILE} not found")
        return
    go_dir = str(gotool.find_go().parent)
    env = {**gotool.go_env_vars(None), "PATH": go_dir + os.pathsep + os.environ["PATH"]}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    make = ["make", "-f", MAKEFILE, "build", "APP=hello", "GOOS=linux", "GOARCH=amd64"]
    make_s = median(make, root, runs, env)
    main = root / "main.go"
    original = main.read_text()
    timed([PYTHON_BIN / "doit", "image"], root)
    samples = []
    for i in range(runs):  # a real code change (the log line), so the binary and the image change too
        main.write_text(original.replace('"hello %s listening on %s"', f'"hello %s listening on %s ({i})"'))
        samples.append(timed([PYTHON_BIN / "doit", "image"], root))
    main.write_text(original)
    doit_s = statistics.median(samples)
    # The same scope as `make build`: one platform, compile + go test + golden, after the same one-file change.
    toml = root / "wgobuild.toml"
    full = toml.read_text()
    toml.write_text(full.replace('["windows/amd64", "linux/amd64"]', '["linux/amd64"]'))
    same = []
    for i in range(runs):
        main.write_text(original.replace('"hello %s listening on %s"', f'"hello %s listening on %s [{i}]"'))
        same.append(timed([PYTHON_BIN / "doit", "golden"], root))
    main.write_text(original)
    toml.write_text(full)
    same_s = statistics.median(same)
    print(f"  make build (clean+compile+test+golden, linux/amd64)             {make_s:6.2f} s")
    print(f"  doit golden, same scope, after a one-file change                {same_s:6.2f} s"
          f"   make/doit = {make_s / same_s:.2f}x")
    print(f"  doit image after a one-file change (2 platforms, images too)    {doit_s:6.2f} s"
          f"   make/doit = {make_s / doit_s:.2f}x")
    print(f"  no-op: make build {make_s:.2f} s every time; doit image nothing to do (see above)")


def matrix(root: Path, runs: int) -> None:
    toml = root / "wgobuild.toml"
    base = toml.read_text().replace('platforms = ["windows/amd64", "linux/amd64"]',
                                    'platforms = ["windows/amd64", "windows/arm64", "linux/amd64", "linux/arm64"]')
    results: dict[str, float] = {}
    for label, extra in (("-n 1 (serial)", ["-n", "1"]), ("-n 2 -P thread", ["-n", "2", "-P", "thread"])):
        samples = []
        for i in range(runs):
            toml.write_text(base.replace('version = "git"', f'version = "9.{len(samples)}.{i}{len(label)}"'))
            samples.append(timed([PYTHON_BIN / "doit", *extra, "compile"], root))
        results[label] = statistics.median(samples)
        print(f"  4-platform compile after a version bump, {label:15} {results[label]:6.2f} s")
    print(f"  speed-up with -n 2: {results['-n 1 (serial)'] / results['-n 2 -P thread']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wgobuild-bench-") as tmp:
        hello = hello_copy(Path(tmp) / "hello")
        print("no-op, examples/hello:")
        noop(hello, ".", args.runs)
        big = generated_module(Path(tmp) / "big")
        print("no-op, generated module (2,000 files, 200 packages):")
        noop(big, "./cmd/svc", args.runs)
        print("Makefile flow vs incremental, examples/hello:")
        makefile_vs_incremental(hello, max(3, args.runs // 3))
        print("platform matrix, examples/hello:")
        matrix(hello, max(2, args.runs // 5))


if __name__ == "__main__":
    main()
