"""Benchmark: the daemonless oci backend against the engine backend, cold/warm Windows builds, peak memory.

1. linux/amd64 image of ``examples/hello``: ``OciBackend.build`` (scratch base, default outputs: OCI layout and
   docker-save tar) against ``EngineBackend.build`` (classic builder, ``FROM scratch`` + ``COPY``) on the same
   engine. Each run gets a binary with a different trailing byte, so neither backend can reuse a cached layer.
2. windows/amd64 image on a synthetic Windows base (an OCI layout made here, with a 40 MB layer; no real
   nanoserver is reachable offline): cold (empty ``.wgobuild``: base blobs copied into the store, layer built)
   and warm (same binary: the layer comes from the content cache).
3. Peak RSS of a separate process assembling the Windows image around a 100 MB binary.

Run: ``python bench/oci_image.py [--runs N] [--json OUT]``. Uses ``DOCKER_HOST`` (or /var/run/docker.sock) when an
engine answers, else starts a private dockerd (vfs storage) the way the test suite does.
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


def timed(action, runs: int) -> list[float]:
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    options = parser.parse_args()
    stack = contextlib.ExitStack()
    stack.enter_context(running_engine())
    work = Path(tempfile.mkdtemp(prefix="wgb-oci-bench-"))
    figures: dict[str, object] = {"runs": options.runs}
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
        result = proc.run([sys.executable, "-c", script, REPO, big_cfg.root, big], quiet=True, check=True)
        # The child's own high-water mark: on Linux, wait4's ru_maxrss also counts this (large) parent process.
        peak = int(result.output.split()[-1]) * 1024
        figures.update(big_binary_mb=round(big.stat().st_size / 1e6, 1), big_peak_rss_mb=round(peak / 1e6, 1),
                       big_wall_s=round(result.wall_s, 2))
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
    if options.json:
        options.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
