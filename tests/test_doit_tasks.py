"""End to end: `doit` as a Go developer runs it, on examples/hello and on generated modules."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from fixtures_go import copy_hello, run_doit, write_module

pytestmark = pytest.mark.slow


def compiled(run_output: set[str]) -> set[str]:
    return {t for t in run_output if t.startswith("compile:")}


def test_second_run_does_nothing_and_says_so(hello: Path) -> None:
    first = run_doit(hello, "image")
    assert first.returncode == 0, first.output
    assert {"compile:hello-windows-amd64", "compile:hello-linux-amd64", "test", "golden:greetings",
            "image-platform:linux-amd64", "image"} <= first.ran
    assert (hello / "dist/windows-amd64/hello.exe").read_bytes()[:2] == b"MZ"
    assert (hello / "dist/reports/junit.xml").exists()
    run = json.loads((hello / "dist/reports/run.json").read_text())
    compile_step = next(s for s in run["steps"] if s["step"] == "compile:hello-linux-amd64")
    assert compile_step["status"] == "ran" and compile_step["cpu_s"] > 0 and compile_step["peak_rss"] > 0
    images = json.loads((hello / "dist/reports/images.json").read_text())
    linux = next(i for i in images["images"] if i["platform"] == "linux/amd64")
    assert linux["backend"] == "oci" and linux["digest"].startswith("sha256:") and linux["app_size"] > 0
    windows = next(i for i in images["images"] if i["platform"] == "windows/amd64")
    assert windows["backend"] == "oci" and windows["base_size"] > 0 and windows["app_size"] > 0
    assert images["tag"]["digest"].startswith("sha256:")
    second = run_doit(hello, "image")
    assert second.returncode == 0, second.output
    assert second.ran == set(), second.output
    assert "nothing to do" in second.output
    assert not (hello / ".doit.db").exists() and not list(hello.glob(".doit.db*"))
    assert (hello / ".wgobuild/doit-state.sqlite3").exists()


def test_only_what_depends_on_an_edit_runs_again(multi: Path) -> None:
    assert run_doit(multi, "image").returncode == 0
    # A package no binary imports: nothing compiles again.
    unused = multi / "lib/unused/unused.go"
    unused.write_text(unused.read_text().replace("42", "43"))
    result = run_doit(multi, "image")
    assert result.returncode == 0, result.output
    assert compiled(result.ran) == set(), result.output
    assert "test" in result.ran  # go test ./... covers it
    # The embedded file of the api binary: only api compiles.
    (multi / "lib/web/page.html").write_text("<p>changed</p>\n")
    result = run_doit(multi, "image")
    assert compiled(result.ran) == {"compile:api-linux-amd64"}, result.output
    assert "image-platform:linux-amd64" in result.ran
    # A comment-only edit in the worker's package: worker compiles to the same bytes, image steps are skipped.
    jobs = multi / "lib/jobs/jobs.go"
    jobs.write_text(jobs.read_text().replace("next job number", "number of the next job"))
    result = run_doit(multi, "image")
    assert compiled(result.ran) == {"compile:worker-linux-amd64"}, result.output
    assert "image-platform:linux-amd64" in result.skipped and "image" in result.skipped, result.output
    # A build setting changes: everything is rebuilt.
    toml = multi / "wgobuild.toml"
    toml.write_text(toml.read_text().replace('version = "1.0.0"', 'version = "1.0.1"'))
    result = run_doit(multi, "image")
    assert compiled(result.ran) == {"compile:api-linux-amd64", "compile:worker-linux-amd64"}, result.output
    out = subprocess.run([multi / "dist/linux-amd64/worker"], capture_output=True, text=True).stdout
    assert out.split()[0] == "1.0.1"


def test_compile_error_fails_and_leaves_no_current_binary(hello: Path) -> None:
    assert run_doit(hello, "compile").returncode == 0
    (hello / "main.go").write_text((hello / "main.go").read_text().replace("flag.Parse()", "flag.Parse() + 1"))
    result = run_doit(hello, "compile")
    assert result.returncode != 0
    assert "main.go" in result.output and "flag.Parse() (no value) used as value" in result.output
    assert "Traceback" not in result.output
    # doit stops at the first failed task (windows is built first): its old binary is gone, not left as current.
    assert "taskid:compile:hello-windows-amd64" in result.output
    assert not (hello / "dist/windows-amd64/hello.exe").exists()
    assert not list((hello / "dist/windows-amd64").iterdir()), "no partial binary either"


def test_failing_go_test_stops_before_the_image(hello: Path) -> None:
    test_file = hello / "internal/greet/greet_test.go"
    test_file.write_text(test_file.read_text().replace('"Hello, Ada!"', '"Hi, Ada!"'))
    result = run_doit(hello, "image")
    assert result.returncode != 0
    assert "FAIL example.com/hello/internal/greet TestGreeting" in result.output
    assert 'Greeting("Ada") = "Hello, Ada!", want "Hi, Ada!"' in result.output
    assert "image" not in result.ran


def test_golden_mismatch_shows_a_diff(hello: Path) -> None:
    (hello / "testdata/expected.txt").write_text("Hello, Ada!\nHello, Grace!\nHello, nobody!\nHello, Linus!\n")
    result = run_doit(hello, "golden")
    assert result.returncode != 0
    assert "-Hello, nobody!" in result.output and "+Hello, world!" in result.output


def write_slow_module(root: Path, salt: int) -> Path:
    """A module whose one package takes the compiler seconds (thousands of functions); ``salt`` defeats Go's cache."""
    funcs = "".join(f"func F{i}(x int) int {{ if x > {i} {{ return x * {i + salt} }}; return F{i + 1}(x + 1) }}\n"
                    for i in range(6000))
    sources = {
        "go.mod": "module example.com/slow\n\ngo 1.22\n",
        "big/big.go": f"package big\n\n{funcs}func F6000(x int) int {{ return x }}\n",
        "main.go": 'package main\n\nimport (\n\t"fmt"\n\n\t"example.com/slow/big"\n)\n\n'
        "func main() { fmt.Println(big.F0(1)) }\n",
        "wgobuild.toml": '[project]\nname = "slow"\nversion = "1"\n\n[build]\nplatforms = ["linux/amd64"]\n\n'
        '[[binaries]]\nname = "slow"\npackage = "."\n',
        "dodo.py": 'from wgobuild.doit_tasks import load_tasks\nglobals().update(load_tasks("."))\n',
    }
    for name, text in sources.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_during_go_build_leaves_nothing_behind(tmp_path: Path, sig: signal.Signals) -> None:
    root = write_slow_module(tmp_path / "slow", salt=int(time.time() * 1000) % 100000 + int(sig))
    runner = subprocess.Popen([sys.executable, "-m", "doit", "compile"], cwd=root,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    def name(process: psutil.Process) -> str:  # a short-lived child may end between listing and asking
        try:
            return process.name()
        except psutil.Error:
            return ""

    deadline = time.monotonic() + 60
    tree: list[psutil.Process] = []
    while time.monotonic() < deadline:
        tree = psutil.Process(runner.pid).children(recursive=True)
        if any(name(p) == "compile" for p in tree):
            break
        time.sleep(0.05)
    assert any(name(p) == "compile" for p in tree), "the Go compiler never started"
    os.kill(runner.pid, sig)
    output, _ = runner.communicate(timeout=60)
    assert runner.returncode != 0, output
    assert "interrupted" in output and "Traceback" not in output
    _, alive = psutil.wait_procs(tree, timeout=10)
    def live(process: psutil.Process) -> bool:
        try:
            return process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    assert [p for p in alive if live(p)] == [], output
    assert not (root / "dist/linux-amd64").exists() or not list((root / "dist/linux-amd64").iterdir())
    resumed = run_doit(root, "compile")
    assert resumed.returncode == 0, resumed.output
    assert compiled(resumed.ran) == {"compile:slow-linux-amd64"}


def test_two_runs_at_once_neither_crash_nor_corrupt(hello: Path) -> None:
    procs = [subprocess.Popen([sys.executable, "-m", "doit", "image"], cwd=hello, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    again = run_doit(hello, "image")
    assert again.returncode == 0 and again.ran == set(), again.output


def test_parallel_matrix_output_is_labelled(multi: Path) -> None:
    toml = multi / "wgobuild.toml"
    toml.write_text(toml.read_text().replace('platforms = ["linux/amd64"]',
                                             'platforms = ["linux/amd64", "windows/amd64"]'))
    result = run_doit(multi, "-n", "2", "-P", "thread", "compile")
    assert result.returncode == 0, result.output
    assert compiled(result.ran) == {f"compile:{b}-{p}" for b in ("api", "worker")
                                    for p in ("linux-amd64", "windows-amd64")}
    assert (multi / "dist/windows-amd64/api.exe").exists() and (multi / "dist/linux-amd64/worker").exists()


def test_doit_clean_removes_outputs(hello: Path) -> None:
    assert run_doit(hello, "compile").returncode == 0
    result = run_doit(hello, "clean", "-a")
    assert result.returncode == 0, result.output
    assert not (hello / "dist/linux-amd64/hello").exists()


def test_unbuildable_platform_is_one_line_in_auto_mode_and_an_error_when_named(tmp_path: Path) -> None:
    root = copy_hello(tmp_path / "hello", windows_base='"127.0.0.1:9/windows/nanoserver"')
    toml = root / "wgobuild.toml"
    toml.write_text(toml.read_text().replace('["windows/amd64", "linux/amd64"]', '["windows/amd64"]'))
    no_engine = {"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    auto = run_doit(root, "image", env=no_engine)
    assert auto.returncode == 0, auto.output
    line = next(x for x in auto.output.splitlines() if x.startswith("windows/amd64: not built:"))
    assert "127.0.0.1:9" in line and "windows_base" in line and "Traceback" not in auto.output
    toml.write_text(toml.read_text().replace("[image]\n", '[image]\nbackend = "engine"\n'))
    named = run_doit(root, "image", env=no_engine)
    assert named.returncode == 1, named.output
    assert "cannot reach the Docker engine" in named.output and "Traceback" not in named.output


def test_local_base_goes_daemonless_and_a_missing_one_is_an_error(hello: Path, tmp_path: Path) -> None:
    toml = hello / "wgobuild.toml"
    toml.write_text(toml.read_text().replace('backend = "oci"\n', "").replace(
        'windows_base = "', f'bases = {{ "linux/amd64" = "oci:{tmp_path}/missing-layout" }}\nwindows_base = "'))
    result = run_doit(hello, "image", env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"})
    assert result.returncode == 1, result.output
    assert f"{tmp_path}/missing-layout does not exist" in result.output and "Traceback" not in result.output
    assert "FROM scratch" in (hello / "dist/docker/linux-amd64/Dockerfile").read_text()


def test_push_puts_one_index_for_every_platform_in_the_registry(hello: Path, seeded_bases: Any) -> None:
    from fixtures_registry import skopeo

    repository = f"{seeded_bases.registry.host}/team/pushed"
    toml = hello / "wgobuild.toml"
    toml.write_text(toml.read_text().replace("[image]\n", f'[image]\nrepository = "{repository}"\ntag = "v1"\n'))
    result = run_doit(hello, "image", "--push")
    assert result.returncode == 0, result.output
    assert f"pushed {repository}@sha256:" in result.output
    raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{repository}:v1").output)
    assert sorted(m["platform"]["os"] for m in raw["manifests"]) == ["linux", "windows"]
    again = run_doit(hello, "image")
    assert again.ran == set(), "pushing does not make the next plain run do anything"


def test_every_step_says_why_it_runs(multi: Path) -> None:
    first = run_doit(multi, "image")
    assert first.returncode == 0, first.output
    assert set(first.reasons.values()) == {"first build"}, first.output
    jobs = multi / "lib/jobs/jobs.go"
    jobs.write_text(jobs.read_text().replace("return 1", "return 2 - 1"))
    edited = run_doit(multi, "image")
    assert edited.reasons["compile:worker-linux-amd64"] == "lib/jobs/jobs.go changed", edited.output
    assert edited.reasons["test"] == "lib/jobs/jobs.go changed"
    (multi / "lib/web/page.html").write_text("<p>changed</p>\n")
    web = multi / "lib/web/web.go"
    web.write_text(web.read_text().replace("Page is served", "Page is what is served"))
    both = run_doit(multi, "compile")
    assert both.reasons == {"compile:api-linux-amd64": "2 files under lib/web changed"}, both.output
    toml = multi / "wgobuild.toml"
    toml.write_text(toml.read_text().replace('version = "1.0.0"', 'version = "1.0.1"'))
    settings = run_doit(multi, "compile")
    assert settings.reasons == {f"compile:{b}-linux-amd64": "settings changed: version" for b in ("api", "worker")}
    more = multi / "lib/jobs/more.go"
    more.write_text("package jobs\n\n// More is one more job.\nfunc More() int { return 3 }\n")
    added = run_doit(multi, "compile")
    assert added.reasons == {"compile:worker-linux-amd64": "lib/jobs/more.go changed"}, added.output
    more.unlink()
    removed = run_doit(multi, "compile")
    assert removed.reasons == {"compile:worker-linux-amd64": "1 input removed"}, removed.output
    (multi / "dist/linux-amd64/api").unlink()
    missing = run_doit(multi, "compile")
    assert missing.reasons == {"compile:api-linux-amd64": "output missing: dist/linux-amd64/api"}, missing.output
    forced = run_doit(multi, "-a", "compile:worker-linux-amd64")
    assert forced.reasons == {"compile:worker-linux-amd64": "forced"}, forced.output
    steps = json.loads((multi / "dist/reports/run.json").read_text())["steps"]
    assert [(s["step"], s["reason"]) for s in steps] == [("compile:worker-linux-amd64", "forced")]
    assert any(line.startswith("compile:worker-linux-amd64  ran") and line.endswith("  forced")
               for line in forced.output.splitlines()), "the table says why too"


def test_the_tests_queue_for_the_cores_after_every_compile(tmp_path: Path) -> None:
    """Go builds and tests take the cores in the order steps start: every compile first, so that the image steps
    run beside the tests, which only publishing waits for. One worker thread shows that order."""
    module = write_module(tmp_path / "two", platforms='["linux/amd64", "linux/arm64"]')
    result = run_doit(module, "-n", "1", "image")
    assert result.returncode == 0, result.output
    steps = json.loads((module / "dist/reports/run.json").read_text())["steps"]
    order = [s["step"] for s in sorted(steps, key=lambda s: s["start"])]
    compiles = [i for i, name in enumerate(order) if name.startswith("compile:")]
    assert len(compiles) == 4 and order.index("test") > max(compiles), order
    assert order[0].endswith("-linux-amd64"), "this machine's platform leads: the golden cases run its binaries"


def test_a_no_op_run_keeps_the_last_builds_report_and_trace(multi: Path) -> None:
    built = run_doit(multi, "image")
    assert built.returncode == 0, built.output
    reports = multi / "dist/reports"
    run_json, trace_json = (reports / "run.json").read_bytes(), (reports / "trace.json").read_bytes()
    events = json.loads(trace_json)["traceEvents"]
    complete = [e for e in events if e["ph"] == "X"]
    assert sorted(e["name"] for e in complete) == sorted(built.ran), "one complete event per step that ran"
    for event in complete:
        assert {"name", "ph", "ts", "dur", "pid", "tid", "args"} <= set(event)
        assert isinstance(event["ts"], int) and event["ts"] >= 0 and event["dur"] > 0
        assert event["args"]["reason"] == "first build" and event["args"]["status"] == "ran"
    compiles = [e["args"] for e in complete if e["name"].startswith("compile:")]  # both linked by one go build
    assert sorted(c["programs"] for c in compiles) == [0, 1] and max(c["cpu_s"] for c in compiles) > 0
    assert len({e["tid"] for e in complete}) >= 2, "steps ran on several worker threads"
    noop = run_doit(multi, "image")
    assert noop.ran == set() and "nothing to do" in noop.output
    assert (reports / "run.json").read_bytes() == run_json, "a no-op run keeps the figures of the last build"
    assert (reports / "trace.json").read_bytes() == trace_json
    records = sorted((reports / "runs").glob("*.json"))
    assert len(records) == 2
    assert json.loads(records[-1].read_text())["ran"] == {}
    assert set(json.loads(records[0].read_text())["ran"]) == built.ran


def test_clean_all_removes_every_file_wgobuild_wrote(hello: Path) -> None:
    built = run_doit(hello, "image")
    assert built.returncode == 0, built.output
    dist = hello / "dist"
    written = {p.relative_to(dist).as_posix() for p in dist.rglob("*") if p.is_file()}
    assert {"images/linux-amd64.docker.tar", "reports/run.json", "reports/trace.json",
            "docker/windows-amd64/Dockerfile"} <= written, written
    assert any(name.startswith("images/linux-amd64/oci/blobs/") for name in written)
    cleaned = run_doit(hello, "clean", "-a")
    assert cleaned.returncode == 0, cleaned.output
    assert not dist.exists(), sorted(p.as_posix() for p in dist.rglob("*"))
    assert f"removed dist/ ({len(written)} files)" in cleaned.output
    assert "kept .wgobuild/" in cleaned.output and "wgobuild clean --state" in cleaned.output
    assert (hello / ".wgobuild").is_dir()
    again = run_doit(hello, "image")
    assert again.returncode == 0 and "image-platform:linux-amd64" in again.ran, again.output
    state = subprocess.run([sys.executable, "-m", "wgobuild.cli", "clean", "--state"], cwd=hello,
                           capture_output=True, text=True, timeout=300)
    assert state.returncode == 0, state.stdout + state.stderr
    assert not dist.exists() and not (hello / ".wgobuild").exists()
    assert "removed .wgobuild/" in state.stdout


def test_an_edit_loop_does_not_fill_the_state_folder(multi: Path) -> None:
    """Every edit makes a new app layer in .wgobuild/blobs; publishing keeps the current ones and a few recent."""
    page = multi / "lib/web/page.html"  # embedded by the api: each edit relinks it and rebuilds the image
    layers = multi / ".wgobuild/oci/layers"
    for edit in range(12):
        page.write_text(f"<p>edit {edit}</p>\n")
        run = run_doit(multi, "image")
        assert run.returncode == 0 and "image-platform:linux-amd64" in run.ran, run.output
    digests = {json.loads(entry.read_text())["digest"] for entry in layers.glob("*.json")}
    assert 1 <= len(digests) <= 9, len(digests)  # the current layer and the 8 most recent others
    blobs = multi / ".wgobuild/blobs/sha256"
    record = json.loads((multi / "dist/images/linux-amd64.json").read_text())
    assert (blobs / record["layers"][-1]["digest"].removeprefix("sha256:")).is_file()
    assert sum(p.stat().st_size for p in blobs.iterdir()) < 12 * record["app_size"], "old layers were removed"


def test_an_image_step_on_the_default_engine_does_not_load_the_docker_sdk(tmp_path: Path) -> None:
    """No DOCKER_HOST and no docker context: the engine is the default socket, spoken to without the SDK (importing
    it costs about as much CPU as a whole image step)."""
    root = copy_hello(tmp_path / "hello")  # as shipped: backend auto
    toml = root / "wgobuild.toml"
    toml.write_text(toml.read_text().replace('["windows/amd64", "linux/amd64"]', '["linux/amd64"]'))
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT")}
    env["DOCKER_CONFIG"] = str(tmp_path / "docker-config")  # no contexts
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "doit", "image"], cwd=root, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "image-platform:linux-amd64" in result.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "wgobuild.oci.layer" in imported, "the image step ran in this process"
    assert not {name for name in imported if name == "docker" or name.startswith("docker.")}, "the SDK was loaded"
