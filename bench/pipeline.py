"""Pipeline benchmarks: no-op runs and the edit loop against Go's own speed, the Makefile flow, matrix -n 2.

Run: python bench/pipeline.py [--runs N] [--only noop,edit,edit-engine,makefile,matrix]. Prints figures and ratios
against baselines measured in the same run, samples interleaved.

1. No-op `doit image` and `wgobuild image` on examples/hello and on a two-binary module importing net/http, against
   Go's own no-op `go build` of the same binary with a warm cache (the real go binary, same flags, into an existing
   output). Targets: `wgobuild image` <= 0.5x; `doit image` <= 1.3x (hello), <= 1.0x (two-binary module).
2. The edit loop on the two-binary module (2 binaries x 2 platforms, go test, a golden case, a linux image on
   scratch and a Windows image on a small synthetic base, backend auto): a one-line body edit in the package both
   binaries import, then `doit image`, against Go alone doing the same work (the four `go build`s two at a time,
   then `go test` of the changed package). Target <= 1.3x, with no engine (edit) and with a local engine running
   (edit-engine: bench/engine_host.py starts one when none answers).
3. The baseline Makefile flow (`make build`: clean, compile, test, golden) against `doit image` after a one-file
   change, on examples/hello.
4. A 4-platform matrix, serial vs `doit -n 2 -P thread`, each run after a version bump (every binary relinks).
"""

from __future__ import annotations

import argparse
import json
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
sys.path.insert(0, str(REPO))
from wgobuild import gotool  # noqa: E402

DODO = 'from wgobuild.doit_tasks import load_tasks\nglobals().update(load_tasks("."))\n'
MAKEFILE = REPO / "bench" / "baseline" / "Makefile"  # the hand-written flow wgobuild replaces
PYTHON_BIN = Path(sys.executable).parent


# Python's usual setting: bytecode cached in __pycache__ (some shells export PYTHONDONTWRITEBYTECODE=1, which makes
# every run recompile wgobuild and doit; no user's `doit` runs that way by default).
BASE_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


LAST_CPU = [0.0]  # CPU seconds (user + system) of the last timed command and everything it started


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fresh() -> str:
    """A value no earlier edit wrote, in this run or any before: Go's build and test caches outlive a run, and an
    edit that repeats an earlier one's bytes is a cache hit for Go and for wgobuild alike, not an edit loop."""
    return f"{time.time_ns():x}"


def timed(argv: list[object], cwd: Path, env: dict[str, str] | None = None) -> float:
    start, cpu = time.perf_counter(), children_cpu()
    result = subprocess.run([str(a) for a in argv], cwd=cwd, env=env or BASE_ENV, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    LAST_CPU[0] = children_cpu() - cpu
    if result.returncode != 0:
        raise SystemExit(f"{argv} failed in {cwd}:\n{result.stdout}\n{result.stderr}")
    return elapsed


def median(argv: list[object], cwd: Path, runs: int, env: dict[str, str] | None = None) -> float:
    timed(argv, cwd, env)  # warm-up: caches filled, state written
    return statistics.median(timed(argv, cwd, env) for _ in range(runs))


def hello_copy(root: Path) -> Path:
    shutil.copytree(REPO / "examples/hello", root, ignore=shutil.ignore_patterns("dist", ".wgobuild"))
    (root / "dodo.py").write_text(DODO)  # the example as shipped: backend auto, as the README's first command
    return root


SHARED_GO = """package shared

import (
\t"fmt"
\t"net/http"
)

// Greeting is what both binaries say.
func Greeting(name string) string { return "hello " + name }

// Handler answers /hello?name=x.
func Handler() http.Handler {
\treturn http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
\t\tw.Header().Set("X-Build", "0")
\t\tfmt.Fprintln(w, Greeting(r.URL.Query().Get("name")))
\t})
}
"""
EDIT_LINE = '\t\tw.Header().Set("X-Build", "0")'  # the one-line body edit: a new value changes code, not behaviour


def two_binary_module(root: Path, windows_base: Path) -> Path:
    """Two binaries (an HTTP server and an HTTP client) that both import internal/shared (net/http), a test of
    internal/shared, a golden case, linux/amd64 and windows/amd64 (a small synthetic Windows base: no real
    nanoserver is reachable offline), backend auto."""
    files = {
        "go.mod": "module example.com/duo\n\ngo 1.22\n",
        "internal/shared/shared.go": SHARED_GO,
        "internal/shared/shared_test.go": 'package shared\n\nimport "testing"\n\nfunc TestGreeting(t *testing.T) '
        '{\n\tif Greeting("x") != "hello x" {\n\t\tt.Fatal(Greeting("x"))\n\t}\n}\n',
        "cmd/api/main.go": 'package main\n\nimport (\n\t"bufio"\n\t"fmt"\n\t"net/http"\n\t"os"\n\n'
        '\t"example.com/duo/internal/shared"\n)\n\nvar version = "dev"\n\nfunc main() {\n'
        '\tif len(os.Args) > 1 && os.Args[1] == "greet" {\n\t\ts := bufio.NewScanner(os.Stdin)\n'
        '\t\tfor s.Scan() {\n\t\t\tfmt.Println(shared.Greeting(s.Text()))\n\t\t}\n\t\treturn\n\t}\n'
        '\tfmt.Println("api", version)\n\t_ = http.ListenAndServe(":8080", shared.Handler())\n}\n',
        "cmd/worker/main.go": 'package main\n\nimport (\n\t"fmt"\n\t"net/http"\n\n'
        '\t"example.com/duo/internal/shared"\n)\n\nvar version = "dev"\n\nfunc main() {\n'
        '\tresp, err := http.Get("http://localhost:8080/hello?name=worker")\n\tif err == nil {\n'
        '\t\tresp.Body.Close()\n\t}\n\tfmt.Println(shared.Greeting("worker"), version, err == nil)\n}\n',
        "golden/input.txt": "world\n",
        "golden/expected.txt": "hello world\n",
        "wgobuild.toml": '[project]\nname = "duo"\nversion = "1.0.0"\n\n[build]\n'
        'platforms = ["linux/amd64", "windows/amd64"]\n\n[[binaries]]\nname = "api"\npackage = "./cmd/api"\n\n'
        '[[binaries]]\nname = "worker"\npackage = "./cmd/worker"\n\n[[golden]]\nname = "greet"\nbinary = "api"\n'
        'args = ["greet"]\ninput = "golden/input.txt"\nexpected = "golden/expected.txt"\n\n'
        f'[image]\nwindows_base = "oci:{windows_base.as_posix()}"\n',
        "dodo.py": DODO,
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def go_build_argv(package: str, out: Path) -> list[object]:
    """Exactly the go build wgobuild runs (gotool.build_argv: -trimpath, -buildid=, version stamp)."""
    return list(gotool.build_argv(package, out, "1.0.0", ldflags=[], tags=[], trimpath=True))


def noop(root: Path, package: str, runs: int) -> dict[str, float]:
    """Interleaved samples (go, doit, wgobuild, go, ...), so all three see the same machine noise."""
    env = gotool.go_env_vars(None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["GOOS"], env["GOARCH"] = "linux", "amd64"
    commands = {
        # Go's output lives outside the module: a file rewritten inside it is an edit any build tool must notice.
        "go build no-op (warm cache)": (go_build_argv(package, root.parent / f"{root.name}-gobuild-out"), env),
        "doit image no-op": ([PYTHON_BIN / "doit", "image"], None),
        "wgobuild image no-op": ([PYTHON_BIN / "wgobuild", "image"], None),
    }
    samples: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(2):  # warm-up: caches filled, state and no-op snapshots written
        for argv, cmd_env in commands.values():
            timed(argv, root, cmd_env)
    for _ in range(runs):
        for name, (argv, cmd_env) in commands.items():
            samples[name].append(timed(argv, root, cmd_env))
            cpu[name].append(LAST_CPU[0])
    medians = {name: statistics.median(values) for name, values in samples.items()}
    cpu_medians = {name: statistics.median(values) for name, values in cpu.items()}
    base, cpu_base = medians["go build no-op (warm cache)"], cpu_medians["go build no-op (warm cache)"]
    for name, value in medians.items():
        ratio = "" if value is base else f"   {value / base:.2f}x go build"
        cpu_ratio = "" if value is base else f" ({cpu_medians[name] / cpu_base:.2f}x)"
        print(f"  {name:30} {value * 1000:7.0f} ms{ratio:20}   cpu {cpu_medians[name] * 1000:5.0f} ms{cpu_ratio}")
    return medians


def edit_loop(root: Path, runs: int, label: str) -> None:
    """One-line body edit in internal/shared, then `doit image`, against Go alone doing the same work."""
    shared = root / "internal/shared/shared.go"
    env = gotool.go_env_vars(None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    out = root.parent / f"{root.name}-go-alone"
    builds = [(goos, binary) for goos in ("linux", "windows") for binary in ("api", "worker")]

    def edit() -> None:
        shared.write_text(SHARED_GO.replace(EDIT_LINE, EDIT_LINE.replace('"0"', f'"{fresh()}"')))

    def go_alone() -> float:
        start = time.perf_counter()
        for pair in (builds[:2], builds[2:]):  # two at a time, as wgobuild runs two links at once on 2 cores
            running = []
            for goos, binary in pair:
                suffix = ".exe" if goos == "windows" else ""
                argv = go_build_argv(f"./cmd/{binary}", out / goos / f"{binary}{suffix}")
                running.append(subprocess.Popen([str(a) for a in argv], cwd=root, env={**env, "GOOS": goos,
                                                "GOARCH": "amd64"}))
            if any(p.wait() != 0 for p in running):
                raise SystemExit("go build failed")
        test = subprocess.run([str(gotool.find_go()), "test", "./internal/shared"], cwd=root, env=env,
                              capture_output=True)
        if test.returncode != 0:
            raise SystemExit(f"go test failed: {test.stdout!r}")
        return time.perf_counter() - start

    def doit() -> float:
        return timed([PYTHON_BIN / "doit", "image"], root)

    for _ in range(3):  # warm-up: Go's cache and wgobuild's state filled (one round left the first section slower)
        for measure in (go_alone, doit):
            edit()
            measure()
    go_s: list[float] = []
    doit_s: list[float] = []
    go_cpu: list[float] = []
    doit_cpu: list[float] = []
    for _ in range(runs):
        edit()
        cpu = children_cpu()
        go_s.append(go_alone())
        go_cpu.append(children_cpu() - cpu)
        edit()
        doit_s.append(doit())
        doit_cpu.append(LAST_CPU[0])
    go_m, doit_m = statistics.median(go_s), statistics.median(doit_s)
    go_c, doit_c = statistics.median(go_cpu), statistics.median(doit_cpu)
    record = json.loads((root / "dist/images/linux-amd64.json").read_text())
    loaded = json.loads((root / "dist/reports/images.json").read_text()).get("loaded", {})
    print(f"  Go alone (4 go builds two at a time + go test of the package)   {go_m:6.2f} s   cpu {go_c:5.2f} s")
    print(f"  doit image (2 binaries x 2 platforms, test, golden, images)     {doit_m:6.2f} s   "
          f"{doit_m / go_m:.2f}x Go alone  [{label}; linux image: {record['backend']}"
          f"{', loaded into the engine' if 'linux/amd64' in loaded else ''}]"
          f"   cpu {doit_c:5.2f} s ({doit_c / go_c:.2f}x)")


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
    for _ in range(runs):  # a real code change (the log line), so the binary and the image change too
        main.write_text(original.replace('"hello %s listening on %s"', f'"hello %s listening on %s ({fresh()})"'))
        samples.append(timed([PYTHON_BIN / "doit", "image"], root))
    main.write_text(original)
    doit_s = statistics.median(samples)
    # The same scope as `make build`: one platform, compile + go test + golden, after the same one-file change.
    toml = root / "wgobuild.toml"
    full = toml.read_text()
    toml.write_text(full.replace('["windows/amd64", "linux/amd64"]', '["linux/amd64"]'))
    same = []
    for _ in range(runs):
        main.write_text(original.replace('"hello %s listening on %s"', f'"hello %s listening on %s [{fresh()}]"'))
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
    parser.add_argument("--only", default="noop,edit,edit-engine,makefile,matrix",
                        help="comma-separated: noop, edit, edit-engine, makefile, matrix")
    args = parser.parse_args()
    only = set(args.only.split(","))
    from incremental_oracle import windows_base

    with tempfile.TemporaryDirectory(prefix="wgobuild-bench-") as tmp:
        hello = hello_copy(Path(tmp) / "hello")
        base = windows_base(Path(tmp) / "winbase")
        duo = two_binary_module(Path(tmp) / "duo", base)
        if "noop" in only:
            print("no-op, examples/hello:")
            noop(hello, ".", args.runs)
            print("no-op, two-binary module importing net/http:")
            noop(duo, "./cmd/api", args.runs)
        if "edit" in only:
            print("edit loop, two-binary module, no engine:")
            no_engine = os.environ.get("DOCKER_HOST")
            os.environ["DOCKER_HOST"] = f"unix://{tmp}/no-engine.sock"
            BASE_ENV["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
            edit_loop(duo, max(3, args.runs // 2), "no engine")
            if no_engine is None:
                os.environ.pop("DOCKER_HOST")
                BASE_ENV.pop("DOCKER_HOST")
            else:
                os.environ["DOCKER_HOST"] = BASE_ENV["DOCKER_HOST"] = no_engine
        if "edit-engine" in only:
            from engine_host import running_engine

            with running_engine():
                BASE_ENV.update({k: v for k, v in os.environ.items() if k == "DOCKER_HOST"})
                print(f"edit loop, two-binary module, engine at {os.environ.get('DOCKER_HOST', 'default socket')}:")
                edit_loop(duo, max(3, args.runs // 2), "engine running")
        if "makefile" in only:
            print("Makefile flow vs incremental, examples/hello:")
            makefile_vs_incremental(hello, max(3, args.runs // 3))
        if "matrix" in only:
            print("platform matrix, examples/hello:")
            matrix(hello, max(2, args.runs // 5))


if __name__ == "__main__":
    main()
