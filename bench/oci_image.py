"""Benchmark: the daemonless oci backend against the engine backend, cold/warm Windows builds, peak memory.

1. linux/amd64 image of ``examples/hello``: ``OciBackend.build`` (scratch base, default outputs: OCI layout and
   docker-save tar) against ``EngineBackend.build`` (classic builder, ``FROM scratch`` + ``COPY``) on the same
   engine. Each run gets a binary with a different trailing byte, so neither backend can reuse a cached layer.
2. windows/amd64 image on a synthetic Windows base (an OCI layout made here, with a 40 MB layer; no real
   nanoserver is reachable offline): cold (empty ``.wgobuild``: base blobs copied into the store, layer built)
   and warm (same binary: the layer comes from the content cache).
3. Peak RSS of a separate process assembling the Windows image around a 100 MB binary.
4. ko against wgobuild, side by side (samples interleaved, the order alternating): the windows/amd64 image of
   ``examples/hello`` on the 40 MB synthetic Windows base pushed to a private ``docker-registry``. Each side is one
   process doing the same work: compile the binary (same Go, same flags; Go's build cache warm for both), assemble
   the image, push it to the registry (wgobuild with no local outputs, as ko). Cold: a fresh copy of the module and
   a new repository (no state of either tool, the app layer not yet in the registry). Rebuild: the same again with
   nothing changed (the binary relinks to the same bytes; the registry already holds every blob). wgobuild is
   measured twice: as users run it (``wgobuild image --push``: on a rebuild it sees the unchanged inputs, skips
   the compile and the image and only pushes) and forced through the same work as ko (a Python process that
   compiles, assembles and pushes whatever the state says).

Run: ``python bench/oci_image.py [--runs N] [--json OUT] [--only ko]``. Uses ``DOCKER_HOST`` (or
/var/run/docker.sock) when an engine answers, else starts a private dockerd (vfs storage) the way the test suite
does; ``--only ko`` runs part 4 alone (no engine needed). ko comes from ``go install github.com/google/ko@v0.19.1``.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from engine_host import running_engine  # noqa: E402

from wgobuild import config as wconfig  # noqa: E402
from wgobuild import engine, gotool, proc  # noqa: E402
from wgobuild.image import ImageRequest  # noqa: E402
from wgobuild.oci.backend import OciBackend  # noqa: E402

VERSION = "1.0.0-bench"
RAWSD = "AQAAgBQAAAAkAAAAAAAAAAAAAAABAgAAAAAABSAAAAAhAgAAAQIAAAAAAAUgAAAAIQIAAA=="


def compile_hello(out: Path) -> dict[str, Path]:
    built = {}
    for text in ("linux/amd64", "windows/amd64"):
        plat = wconfig.Platform.parse(text)
        target = out / plat.key / f"hello{plat.exe_suffix}"
        gotool.build(REPO / "examples" / "hello", ".", plat, target, VERSION)
        built[plat.os] = target
    return built


def project(root: Path, platforms: list[str], **image: object) -> wconfig.Config:
    shutil.copytree(REPO / "examples" / "hello", root, ignore=shutil.ignore_patterns("dist", ".wgobuild"),
                    dirs_exist_ok=True)
    data = {"project": {"name": "hello", "version": VERSION}, "binaries": [{"name": "hello"}],
            "build": {"platforms": platforms}, "image": {"expose": [8080], **image}}
    return wconfig.from_dict(data, root, root / "wgobuild.toml")


def synthetic_windows_base(folder: Path, layer_mb: int = 40) -> Path:
    """An OCI layout holding one Windows-format image (ltsc2022) with an incompressible layer of ``layer_mb``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("Files", "Files/Windows", "Hives"):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        info = tarfile.TarInfo("Files/Windows/blob.bin")
        info.size, info.pax_headers = layer_mb << 20, {"MSWINDOWS.rawsd": RAWSD}
        tar.addfile(info, io.BytesIO(os.urandom(layer_mb << 20)))
    tar_bytes = raw.getvalue()
    layer = gzip.compress(tar_bytes, compresslevel=1, mtime=0)

    def blob(data: bytes) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        (folder / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (folder / "blobs" / "sha256" / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    config = json.dumps({"architecture": "amd64", "os": "windows", "os.version": "10.0.20348.2849",
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar_bytes).hexdigest()]},
                         "config": {"User": "ContainerUser"}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                       **blob(layer)}]}).encode()
    index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                                **blob(manifest), "platform": {"os": "windows",
                                                                               "architecture": "amd64",
                                                                               "os.version": "10.0.20348.2849"}}]}
    (folder / "index.json").write_text(json.dumps(index))
    (folder / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    return folder


def timed(action: Callable[[int], object], runs: int) -> list[float]:
    times = []
    for i in range(runs):
        start = time.perf_counter()
        action(i)
        times.append(time.perf_counter() - start)
    return times


def variant(binary: Path, folder: Path, i: int) -> Path:
    """A copy of ``binary`` with a distinct trailing byte (an ELF/PE file runs the same with data appended)."""
    target = folder / f"v{i}" / binary.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(binary, target)
    with open(target, "ab") as handle:
        handle.write(f"#{i}#{time.time_ns()}".encode())
    target.chmod(0o755)
    return target


# --- 4. ko side by side -----------------------------------------------------------------------------------------
WGOBUILD_CHILD = (
    "import sys; from pathlib import Path; from wgobuild import config as c, gotool; "
    "from wgobuild.image import ImageRequest; from wgobuild.oci.backend import OciBackend, publish; "
    "root = Path(sys.argv[1]); cfg = c.load(root); p = cfg.platforms[0]; out = root / 'dist' / 'hello.exe'; "
    "gotool.build(root, '.', p, out, cfg.project.version); "
    "r = OciBackend(cfg).build(ImageRequest(cfg, p, {'hello': out}, cfg.image_repository + ':1.0', "
    "cfg.project.version)); publish(cfg, [r], push=True)")


def push_layout(url: str, repo: str, layout: Path) -> str:
    """Push the single image of an OCI layout to ``url``/``repo`` as it is; its manifest digest."""
    import requests

    def blob(digest: str) -> None:
        data = (layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()
        start = requests.post(f"{url}/v2/{repo}/blobs/uploads/", timeout=10)
        start.raise_for_status()
        location = start.headers["Location"]
        location = location if location.startswith("http") else url + location
        sep = "&" if "?" in location else "?"
        requests.put(f"{location}{sep}digest={digest}", data=data, timeout=120,
                     headers={"Content-Type": "application/octet-stream"}).raise_for_status()

    entry = json.loads((layout / "index.json").read_text())["manifests"][0]
    data = (layout / "blobs" / "sha256" / entry["digest"].split(":")[1]).read_bytes()
    manifest = json.loads(data)
    for descriptor in [manifest["config"], *manifest["layers"]]:
        blob(descriptor["digest"])
    requests.put(f"{url}/v2/{repo}/manifests/{entry['digest']}", data=data, timeout=10,
                 headers={"Content-Type": manifest["mediaType"]}).raise_for_status()
    return str(entry["digest"])


def find_ko() -> Path:
    for folder in (os.environ.get("GOBIN"), str(Path(os.environ.get("GOPATH") or Path.home() / "go") / "bin")):
        if folder and (Path(folder) / "ko").is_file():
            return Path(folder) / "ko"
    found = shutil.which("ko")
    if found is None:
        raise SystemExit("ko not found: go install github.com/google/ko@v0.19.1")
    return Path(found)


def ko_comparison(work: Path, runs: int, base_layout: Path) -> dict[str, object]:
    """Part 4: medians (wall and CPU of the whole process tree) of ko and wgobuild, cold and rebuild."""
    import fixtures_registry

    ko = find_ko()
    registry_life = fixtures_registry._start("bench-registry", None)
    registry = next(registry_life)
    try:
        base = f"{registry.host}/base/windows@{push_layout(registry.url, 'base/windows', base_layout)}"
        env = {k: v for k, v in gotool.go_env_vars().items()
               if k not in ("SOURCE_DATE_EPOCH", "KO_DATA_DATE_EPOCH", "GOFLAGS", "PYTHONDONTWRITEBYTECODE")}
        (work / "docker").mkdir()
        env.update(KO_GO_PATH=str(gotool.find_go()), DOCKER_CONFIG=str(work / "docker"))

        def module(name: str, repository: str) -> Path:
            root = work / name
            shutil.copytree(REPO / "examples" / "hello", root, ignore=shutil.ignore_patterns("dist", ".wgobuild"))
            (root / ".ko.yaml").write_text(json.dumps({"defaultBaseImage": base, "builds": [{
                "id": "hello", "main": ".", "flags": ["-buildvcs=false"],
                "ldflags": ["-s", "-w", "-buildid=", f"-X main.version={VERSION}"]}]}))
            (root / "wgobuild.toml").write_text(
                f'[project]\nname = "hello"\nversion = "{VERSION}"\n[[binaries]]\nname = "hello"\n'
                f'[build]\nplatforms = ["windows/amd64:10.0.20348"]\n[image]\nbackend = "oci"\n'
                f'windows_base = "{base}"\nrepository = "{registry.host}/{repository}"\ntag = "1.0"\n'
                'outputs = []\n[test]\nenabled = false\n')  # ko runs no tests either
            return root

        def ko_build(root: Path, repository: str) -> proc.ProcResult:
            return proc.run([str(ko), "build", "--bare", "--platform", "windows/amd64", "--sbom=none",
                             "--insecure-registry", "."], cwd=root, quiet=True, check=True, step="ko build",
                            env={**env, "KO_DOCKER_REPO": f"{registry.host}/{repository}"})

        def wgobuild_build(root: Path) -> proc.ProcResult:
            return proc.run([sys.executable, "-c", WGOBUILD_CHILD, str(root)], cwd=root, env=env, quiet=True,
                            check=True, step="wgobuild build")

        def wgobuild_cli(root: Path) -> proc.ProcResult:
            """wgobuild as users run it: its own state decides what to redo."""
            return proc.run([str(Path(sys.executable).parent / "wgobuild"), "image", "--push"], cwd=root, env=env,
                            quiet=True, check=True, step="wgobuild image --push")

        def go_build(root: Path) -> proc.ProcResult:
            """The floor both sides stand on: the same ``go build`` alone (wgobuild's argv, which ko matches)."""
            platform = wconfig.Platform.parse("windows/amd64")
            argv = gotool.build_argv(".", root / "go-alone.exe", VERSION, ldflags=[], tags=[], trimpath=True)
            return proc.run(argv, cwd=root, env={**env, "GOOS": platform.os, "GOARCH": platform.arch}, quiet=True,
                            check=True, step="go build")

        ko_build(module("warmup-ko", "warmup/ko"), "warmup/ko")  # Go's build cache, warm for both sides
        wgobuild_build(module("warmup-wgb", "warmup/wgb"))
        wgobuild_cli(module("warmup-cli", "warmup/cli"))
        sides = {"ko": lambda root, i: ko_build(root, f"ko/c{i}"), "wgb": lambda root, i: wgobuild_build(root),
                 "cli": lambda root, i: wgobuild_cli(root)}
        samples: dict[str, list[proc.ProcResult]] = {f"{side}_{phase}": [] for side in sides
                                                     for phase in ("cold", "re")}
        samples["go_re"] = []
        for i in range(runs):
            roots = {side: module(f"{side}{i}", f"{side}/c{i}") for side in sides}
            order = list(sides) if i % 2 == 0 else list(reversed(sides))
            for phase in ("cold", "re"):
                for side in order:
                    samples[f"{side}_{phase}"].append(sides[side](roots[side], i))
            samples["go_re"].append(go_build(roots["wgb"]))
        out: dict[str, object] = {}
        for key, results in samples.items():
            out[f"{key}_s"] = round(statistics.median(r.wall_s for r in results), 3)
            out[f"{key}_cpu_s"] = round(statistics.median(r.cpu_s for r in results), 3)
        for side in ("wgb", "cli"):
            for phase in ("cold", "re"):
                for unit in ("s", "cpu_s"):
                    ratio = out[f"{side}_{phase}_{unit}"] / out[f"ko_{phase}_{unit}"]  # type: ignore[operator]
                    out[f"ratio_{side}_{phase}_{unit}"] = round(ratio, 2)
        return out
    finally:
        with contextlib.suppress(StopIteration):
            next(registry_life)  # runs the fixture's clean-up: stops the registry, removes its storage


def print_ko(figures: dict[str, object]) -> None:
    print(f"| ko vs wgobuild, windows/amd64 (median of {figures['runs']}) | ko | `wgobuild image --push` | ratio "
          "| wgobuild forced through ko's work | ratio |")
    print("|---|---|---|---|---|---|")
    for phase, label in (("cold", "cold"), ("re", "rebuild, unchanged binary")):
        for unit, name in (("s", "wall"), ("cpu_s", "CPU")):
            print(f"| {label}, {name} | {figures[f'ko_{phase}_{unit}']:.3f} s | "
                  f"{figures[f'cli_{phase}_{unit}']:.3f} s | {figures[f'ratio_cli_{phase}_{unit}']}x | "
                  f"{figures[f'wgb_{phase}_{unit}']:.3f} s | {figures[f'ratio_wgb_{phase}_{unit}']}x |")
    print(f"| `go build` alone (same flags, warm cache), wall / CPU | {figures['go_re_s']:.3f} s / "
          f"{figures['go_re_cpu_s']:.3f} s | | |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--only", choices=["ko"], help="run one part alone (ko: part 4, no engine)")
    options = parser.parse_args()
    figures: dict[str, object] = {"runs": options.runs}
    if options.only == "ko":
        work = Path(tempfile.mkdtemp(prefix="wgb-ko-bench-"))
        try:
            figures.update(ko_comparison(work, options.runs, synthetic_windows_base(work / "winbase")))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print_ko(figures)
        if options.json:
            options.json.write_text(json.dumps(figures, indent=2) + "\n")
        return 0
    stack = contextlib.ExitStack()
    stack.enter_context(running_engine())
    work = Path(tempfile.mkdtemp(prefix="wgb-oci-bench-"))
    try:
        binaries = compile_hello(work / "bin")
        linux = wconfig.Platform.parse("linux/amd64")

        # 1. daemonless vs engine, linux/amd64, a changed binary every run
        oci_cfg = project(work / "oci", ["linux/amd64"], backend="oci")
        eng_cfg = project(work / "eng", ["linux/amd64"], backend="engine")

        def oci_build(i: int) -> None:
            binary = variant(binaries["linux"], work / "vo", i)
            OciBackend(oci_cfg).build(ImageRequest(oci_cfg, linux, {"hello": binary}, "hello:bench", VERSION))

        def engine_build(i: int) -> None:
            engine.EngineBackend(eng_cfg).build(ImageRequest(eng_cfg, linux, {"hello": variant(
                binaries["linux"], work / "ve", i)}, "hello:bench-engine", VERSION))

        engine_build(-1)  # first build pays for nothing the later ones reuse except the engine's warm-up
        oci_times = timed(oci_build, options.runs)
        engine_times = timed(engine_build, options.runs)
        figures.update(oci_linux_s=round(statistics.median(oci_times), 3),
                       engine_linux_s=round(statistics.median(engine_times), 3))
        figures["speedup"] = round(figures["engine_linux_s"] / figures["oci_linux_s"], 1)  # type: ignore[operator]

        # 2. Windows image: cold and warm
        base = synthetic_windows_base(work / "winbase")
        windows = wconfig.Platform.parse("windows/amd64:10.0.20348")
        cold, warm = [], []
        for i in range(options.runs):
            cfg = project(work / f"win{i}", ["windows/amd64:10.0.20348"], backend="oci", windows_base=f"oci:{base}")
            request = ImageRequest(cfg, windows, {"hello": binaries["windows"]}, "hello:bench-win", VERSION)
            start = time.perf_counter()
            OciBackend(cfg).build(request)
            cold.append(time.perf_counter() - start)
            start = time.perf_counter()
            OciBackend(cfg).build(request)
            warm.append(time.perf_counter() - start)
        figures.update(windows_cold_s=round(statistics.median(cold), 3),
                       windows_warm_s=round(statistics.median(warm), 3), windows_base_layer_mb=40)

        # 3. peak RSS assembling around a 100 MB binary (a separate process, measured by proc.run)
        big = work / "big" / "hello.exe"
        big.parent.mkdir()
        shutil.copyfile(binaries["windows"], big)
        with open(big, "ab") as handle:
            while handle.tell() < 100 << 20:
                handle.write(os.urandom(1 << 20))
        script = (
            "import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; "
            "from wgobuild import config as c; from wgobuild.image import ImageRequest; "
            "from wgobuild.oci.backend import OciBackend; root = Path(sys.argv[2]); "
            "cfg = c.load(root); p = cfg.platforms[0]; "
            "OciBackend(cfg).build(ImageRequest(cfg, p, {'hello': Path(sys.argv[3])}, 'hello:big', '1')); "
            "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])")
        big_cfg = project(work / "bigproj", ["windows/amd64:10.0.20348"], backend="oci", windows_base=f"oci:{base}")
        (big_cfg.root / "wgobuild.toml").write_text(
            '[project]\nname = "hello"\nversion = "1.0.0"\n[[binaries]]\nname = "hello"\npackage = "."\n'
            f'[build]\nplatforms = ["windows/amd64:10.0.20348"]\n[image]\nbackend = "oci"\n'
            f'windows_base = "oci:{base.as_posix()}"\n')
        result = proc.run([sys.executable, "-c", script, str(REPO), str(big_cfg.root), str(big)], quiet=True,
                          check=True)
        # The child's own high-water mark: on Linux, wait4's ru_maxrss also counts this (large) parent process.
        peak = int(result.output.split()[-1]) * 1024
        figures.update(big_binary_mb=round(big.stat().st_size / 1e6, 1), big_peak_rss_mb=round(peak / 1e6, 1),
                       big_wall_s=round(result.wall_s, 2))

        # 4. ko side by side
        figures.update(ko_comparison(work / "ko", options.runs, base))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        stack.close()
    print(f"| measure (median of {figures['runs']}) | value |\n|---|---|")
    print(f"| linux/amd64, daemonless (oci) | {figures['oci_linux_s']:.3f} s |")
    print(f"| linux/amd64, engine backend (classic builder) | {figures['engine_linux_s']:.3f} s |")
    print(f"| speed-up | {figures['speedup']}x |")
    print(f"| windows/amd64 (40 MB base layer), cold | {figures['windows_cold_s']:.3f} s |")
    print(f"| windows/amd64, warm (cached layer) | {figures['windows_warm_s']:.3f} s |")
    print(f"| peak RSS, {figures['big_binary_mb']} MB binary | {figures['big_peak_rss_mb']} MB "
          f"({figures['big_wall_s']} s) |")
    print()
    print_ko(figures)
    if options.json:
        options.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
