"""The Docker Engine backend against a real dockerd (started by the suite when none answers; see fixtures_docker)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import re
import signal
import socket
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures_go import copy_hello, run_doit
from services import service_missing

from wgobuild import config, dockerfile, engine, gotool, proc
from wgobuild.config import Platform
from wgobuild.errors import ConfigError, StepFailed, WgobuildError
from wgobuild.image import ImageRequest, ImageResult

LINUX = Platform.parse("linux/amd64")
WINDOWS = Platform.parse("windows/amd64")
PREFIX = f"wgbtest-{uuid.uuid4().hex[:8]}"  # repositories of this session, removed at the end


def linux_hello(dest: Path, version: str = "1.0.0", **image: str) -> config.Config:
    """examples/hello copied to ``dest``: linux/amd64 only, engine backend, a literal version."""
    root = copy_hello(dest, backend='"engine"', **image)
    text = (root / "wgobuild.toml").read_text()
    text = re.sub(r"platforms = \[.*\]", 'platforms = ["linux/amd64"]', text)
    (root / "wgobuild.toml").write_text(text.replace('version = "git"', f'version = "{version}"'))
    return config.load(root)


def compile_hello(cfg: config.Config, version: str) -> dict[str, Path]:
    binary = cfg.binaries[0]
    out = cfg.binary_path(binary, LINUX)
    gotool.build(cfg.root, binary.package, LINUX, out, version, label="go build")
    return {binary.name: out}


def request(cfg: config.Config, binaries: dict[str, Path], version: str, tag: str) -> ImageRequest:
    return ImageRequest(config=cfg, platform=LINUX, binaries=binaries, reference=f"{PREFIX}/hello:{tag}",
                        version=version)


def run_image(reference: str, *args: str) -> str:
    client = engine.connect()
    with contextlib.closing(client):
        out = client.containers.run(reference, list(args), network_mode="none", remove=True)
    return out.decode().strip()


def tag_exists(reference: str) -> bool:
    import docker.errors

    client = engine.connect()
    with contextlib.closing(client):
        try:
            client.api.inspect_image(reference)
        except docker.errors.NotFound:
            return False
    return True


def containers_since(started: float) -> list[dict]:
    client = engine.connect()
    with contextlib.closing(client):
        return [c for c in client.api.containers(all=True) if c["Created"] >= int(started) - 1]


@pytest.fixture(scope="module")
def built(docker_host: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[config.Config, ImageResult]]:
    """examples/hello built once (binary 1.0.0) and its image built on the engine; images removed afterwards."""
    cfg = linux_hello(tmp_path_factory.mktemp("eng") / "hello")
    binaries = compile_hello(cfg, "1.0.0")
    dockerfile.write(cfg, LINUX, "1.0.0", dockerfile.docker_dir(cfg, LINUX))
    result = engine.EngineBackend(cfg).build(request(cfg, binaries, "1.0.0", "1.0.0"))
    assert not tag_exists(result.reference), "the build step leaves the tag to the publish step (after the tests)"
    engine.tag(result.reference, result.digest)
    yield cfg, result
    client = engine.connect()
    with contextlib.closing(client):
        for image in client.api.images():
            for ref in image.get("RepoTags") or []:
                if ref.startswith(PREFIX):
                    with contextlib.suppress(Exception):
                        client.api.remove_image(ref, force=True)


@pytest.mark.docker
def test_build_tags_runs_and_reports_sizes(built: tuple[config.Config, ImageResult]) -> None:
    cfg, result = built
    assert result.backend == "engine" and result.reference == f"{PREFIX}/hello:1.0.0"
    assert run_image(result.reference, "-version") == "1.0.0"
    client = engine.connect()
    with contextlib.closing(client):
        inspect = client.api.inspect_image(result.reference)
    assert inspect["Id"] == result.digest
    assert inspect["Config"]["User"] == "65532:65532"
    assert inspect["Config"]["Entrypoint"] == ["/app/hello"]
    labels = inspect["Config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == "1.0.0"
    assert labels["org.opencontainers.image.created"].endswith("Z")
    binary_size = cfg.binary_path(cfg.binaries[0], LINUX).stat().st_size
    assert result.size == inspect["Size"] and result.size >= binary_size
    assert result.base_size == 0 and result.app_size == result.size  # FROM scratch: everything is the app's
    assert [layer.digest for layer in result.layers] == inspect["RootFS"]["Layers"]
    # The context held the Dockerfile, .dockerignore and the binary: barely more than the binary.
    assert binary_size < result.extra["context_bytes"] < binary_size + 64 * 1024
    log = Path(str(result.extra["log"])).read_text()
    assert "Step 1/" in log and "Successfully built" in log
    assert engine.image_present(result.digest)
    assert not engine.image_present("sha256:" + "0" * 64)


@pytest.mark.docker
def test_base_share_and_gzip_context(built: tuple[config.Config, ImageResult], monkeypatch: pytest.MonkeyPatch) -> None:
    """An image on a local base: the base's layers are reported apart; the context can travel gzip-compressed."""
    base_cfg, base = built
    cfg = linux_hello(base_cfg.root.parent / "onbase", linux_base=f'"{base.reference}"')
    binaries = compile_hello(cfg, "2.0.0")  # another binary at the same path: the app layer replaces the base's
    monkeypatch.setattr(engine, "wants_gzip", lambda address: True)  # as for a tcp:// or ssh:// engine
    result = engine.EngineBackend(cfg).build(request(cfg, binaries, "2.0.0", "onbase"))
    engine.tag(result.reference, result.digest)
    assert run_image(result.reference, "-version") == "2.0.0"
    assert result.base_size == base.size and result.app_size > 0
    assert [layer.from_base for layer in result.layers] == [True] * len(base.layers) + [False]
    assert result.layers[0].digest == base.layers[0].digest
    assert result.size == result.base_size + result.app_size
    assert result.extra["context_bytes"] < binaries["hello"].stat().st_size  # compressed


@pytest.mark.docker
def test_image_present_needs_no_sdk(built: tuple[config.Config, ImageResult]) -> None:
    """The doit uptodate check on a local socket is one HTTP GET from the standard library: no SDK import."""
    _, result = built
    code = ("import sys; from wgobuild import engine; "
            f"print(engine.image_present({result.digest!r}), 'docker' in sys.modules)")
    out = proc.run([sys.executable, "-c", code], quiet=True, check=True, step="image_present")
    assert out.output.strip().splitlines()[-1] == "True False"


@pytest.mark.docker
def test_failing_step_fails_with_the_daemons_message(built: tuple[config.Config, ImageResult]) -> None:
    cfg, _ = built
    cfg = linux_hello(cfg.root.parent / "failing")
    binaries = compile_hello(cfg, "1.0.0")
    path = dockerfile.write(cfg, LINUX, "1.0.0", dockerfile.docker_dir(cfg, LINUX))[0]
    path.write_text(path.read_text() + 'RUN ["/app/hello", "-no-such-flag"]\n')
    started = time.time()
    with pytest.raises(StepFailed) as info:
        engine.EngineBackend(cfg).build(request(cfg, binaries, "1.0.0", "failing"))
    assert "returned a non-zero code: 2" in str(info.value)
    assert "image-linux-amd64.log" in str(info.value)
    assert not tag_exists(f"{PREFIX}/hello:failing")
    assert containers_since(started) == []  # forcerm removed the failed step's container
    path.write_text(path.read_text() + "NOSUCHINSTRUCTION x\n")  # refused by the engine before any step
    with pytest.raises(StepFailed, match="unknown instruction"):
        engine.EngineBackend(cfg).build(request(cfg, binaries, "1.0.0", "failing"))


@pytest.mark.docker
def test_base_image_that_cannot_be_pulled(built: tuple[config.Config, ImageResult]) -> None:
    cfg, _ = built
    cfg = linux_hello(cfg.root.parent / "nobase", linux_base='"127.0.0.1:1/nope:1"')
    binaries = compile_hello(cfg, "1.0.0")
    with pytest.raises(StepFailed, match=r"127\.0\.0\.1:1"):
        engine.EngineBackend(cfg).build(request(cfg, binaries, "1.0.0", "nobase"))
    assert not tag_exists(f"{PREFIX}/hello:nobase")
    never = dataclasses.replace(cfg, image=dataclasses.replace(cfg.image, pull="never"))
    with pytest.raises(WgobuildError, match="pull = 'never'"):
        engine.EngineBackend(never).build(request(never, binaries, "1.0.0", "nobase"))


@pytest.mark.docker
def test_ctrl_c_leaves_no_containers_and_no_tag(built: tuple[config.Config, ImageResult]) -> None:
    cfg, _ = built
    cfg = linux_hello(cfg.root.parent / "interrupted")
    binaries = compile_hello(cfg, "1.0.0")
    path = dockerfile.write(cfg, LINUX, "1.0.0", dockerfile.docker_dir(cfg, LINUX))[0]
    path.write_text(path.read_text() + 'RUN ["/app/hello", "-addr", "127.0.0.1:8080"]\n')  # never ends
    main = threading.main_thread().ident
    stop = threading.Event()

    def interrupt_when_running() -> None:
        client = engine.connect()
        with contextlib.closing(client):
            while not stop.is_set():
                running = client.api.containers(filters={"status": "running"})
                if any("-addr" in c.get("Command", "") for c in running):
                    signal.pthread_kill(main, signal.SIGINT)  # what Ctrl-C does
                    return
                time.sleep(0.2)

    watcher = threading.Thread(target=interrupt_when_running, daemon=True)
    started = time.time()
    watcher.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            engine.EngineBackend(cfg).build(request(cfg, binaries, "1.0.0", "interrupted"))
    finally:
        stop.set()
        watcher.join(timeout=10)
    assert containers_since(started) == []
    assert not tag_exists(f"{PREFIX}/hello:interrupted")
    assert "interrupted" in (cfg.reports_dir / "image-linux-amd64.log").read_text()


@pytest.mark.docker
def test_windows_target_refused_on_a_linux_engine(built: tuple[config.Config, ImageResult]) -> None:
    cfg, _ = built
    backend = engine.EngineBackend(cfg)
    if backend.engine_os != "linux":
        service_missing("a Linux engine (this one runs Windows containers)")
    reason = backend.unavailable(WINDOWS)
    assert reason is not None and "Windows engine" in reason and "oci" in reason
    assert backend.unavailable(LINUX) is None
    win = ImageRequest(config=cfg, platform=WINDOWS, binaries={}, reference=f"{PREFIX}/hello:win", version="1")
    (cfg.root / "dist" / "windows-amd64").mkdir(parents=True, exist_ok=True)
    (cfg.root / "dist" / "windows-amd64" / "hello.exe").write_bytes(b"MZ")
    with pytest.raises(WgobuildError, match="Windows engine"):
        backend.build(win)


@pytest.mark.docker
@pytest.mark.registry
def test_push_to_a_registry(built: tuple[config.Config, ImageResult], registry: object) -> None:
    import requests

    _, result = built
    host = registry.host  # type: ignore[attr-defined]
    reference = f"{host}/{PREFIX}/hello:1.0.0"
    client = engine.connect()
    with contextlib.closing(client):
        client.api.tag(result.digest, f"{host}/{PREFIX}/hello", "1.0.0")
    try:
        engine.push(reference)
        answer = requests.get(f"http://{host}/v2/{PREFIX}/hello/manifests/1.0.0", timeout=10, headers={
            "Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        assert answer.status_code == 200 and answer.json()["layers"]
        client = engine.connect()
        with contextlib.closing(client):
            client.api.tag(result.digest, "127.0.0.1:1/nowhere", "1")
        with pytest.raises(StepFailed) as failed:
            engine.push("127.0.0.1:1/nowhere:1")
        assert str(failed.value).startswith("docker push 127.0.0.1:1/nowhere:1 failed: "), str(failed.value)
        assert "connection refused" in str(failed.value), str(failed.value)
    finally:
        client = engine.connect()
        with contextlib.closing(client):
            for ref in (reference, "127.0.0.1:1/nowhere:1"):
                with contextlib.suppress(Exception):
                    client.api.remove_image(ref)


# -- no engine needed ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("host", "why"), [("unix:///nonexistent/wgobuild/docker.sock", "no such socket"),
                                           ("tcp://127.0.0.1:1", "connection refused")])
def test_unreachable_engine_is_one_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str,
                                                 why: str) -> None:
    monkeypatch.setenv("DOCKER_HOST", host)
    monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)
    with pytest.raises(engine.EngineUnreachable) as info:
        engine.connect(timeout=5)
    message = (f"cannot reach the Docker engine at {host}: {why}. Start Docker (Docker Desktop or dockerd), or point "
               "DOCKER_HOST (or 'docker context use') at a running engine.")
    assert str(info.value) == message
    assert info.value.exit_code == 1
    cfg = linux_hello(tmp_path / "h")
    backend = engine.EngineBackend(cfg)
    assert backend.unavailable(LINUX) == message
    with pytest.raises(WgobuildError) as built:
        engine.EngineBackend(cfg).build(request(cfg, _fake_binaries(cfg), "1.0.0", "x"))
    assert str(built.value) == f"cannot build the linux/amd64 image on the engine: {message}"
    assert not engine.image_present("sha256:" + "1" * 64)


def _fake_binaries(cfg: config.Config) -> dict[str, Path]:
    out = cfg.binary_path(cfg.binaries[0], LINUX)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(b"\x7fELF")
    return {cfg.binaries[0].name: out}


def test_cli_reports_an_unreachable_engine_without_traceback(tmp_path: Path) -> None:
    """``wgobuild image-platform`` (doit underneath) with the engine backend and no engine: one plain message."""
    cfg = linux_hello(tmp_path / "h")
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/wgobuild/docker.sock"}
    code = "import sys; from wgobuild.cli import main; sys.exit(main(['image-platform']))"
    result = proc.run([sys.executable, "-c", code], cwd=cfg.root, env=env, quiet=True, timeout=300)
    message = "cannot reach the Docker engine at unix:///nonexistent/wgobuild/docker.sock: no such socket."
    assert message in result.output, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("reference", "key"), [
    ("hello:bad tag!", "[image].tag"),
    ("Hello/Upper:1", "[image].repository"),
    ("hello:" + "x" * 200, "[image].tag"),
])
def test_invalid_reference_caught_before_contacting_the_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               reference: str, key: str) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/wgobuild/docker.sock")
    cfg = linux_hello(tmp_path / "h")
    req = ImageRequest(config=cfg, platform=LINUX, binaries=_fake_binaries(cfg), reference=reference, version="1")
    with pytest.raises(ConfigError) as info:  # not EngineUnreachable: nothing was contacted
        engine.EngineBackend(cfg).build(req)
    assert info.value.key == key


def test_invalid_repository_in_config(tmp_path: Path) -> None:
    root = copy_hello(tmp_path / "h", repository='"My Repo"')
    with pytest.raises(ConfigError, match=r"\[image\]\.repository"):
        config.load(root)


def test_context_holds_only_the_dockerfile_and_what_it_copies(tmp_path: Path) -> None:
    cfg = linux_hello(tmp_path / "h")
    binaries = _fake_binaries(cfg)
    folder = dockerfile.docker_dir(cfg, LINUX)
    dockerfile.write(cfg, LINUX, "1.0.0", folder)
    entries = engine.context_entries(cfg, LINUX, folder, binaries)
    assert sorted(entries) == [".dockerignore", "Dockerfile", "dist/linux-amd64/hello"]
    first, second = io.BytesIO(), io.BytesIO()
    executables = {"dist/linux-amd64/hello"}
    size = engine.write_context(entries, first, executables)
    engine.write_context(entries, second, executables)
    assert size == len(first.getvalue()) and first.getvalue() == second.getvalue()  # reproducible
    first.seek(0)
    with tarfile.open(fileobj=first) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert sorted(members) == [".dockerignore", "Dockerfile", "dist", "dist/linux-amd64", "dist/linux-amd64/hello"]
    assert members["dist/linux-amd64/hello"].mode == 0o755 and members["Dockerfile"].mode == 0o644
    assert all(m.uid == 0 and m.gid == 0 and not m.uname for m in members.values())
    assert members["dist/linux-amd64/hello"].mtime == int(binaries["hello"].stat().st_mtime)  # see write_context
    binaries["hello"].unlink()
    with pytest.raises(WgobuildError, match="missing: dist/linux-amd64/hello"):
        engine.write_context(entries, io.BytesIO())


def test_multistage_context_is_the_go_sources(tmp_path: Path) -> None:
    cfg = linux_hello(tmp_path / "h", style='"multistage"')
    folder = dockerfile.docker_dir(cfg, LINUX)
    dockerfile.write(cfg, LINUX, "1.0.0", folder)
    names = set(engine.context_entries(cfg, LINUX, folder))
    assert {"Dockerfile", "go.mod", "main.go", "internal/greet/greet.go", "static/index.html"} <= names
    assert not [n for n in names if n.endswith("_test.go") or n.startswith(("dist/", "testdata/"))]


# -- doit end to end -----------------------------------------------------------------------------------------------


class _CountingProxy:
    """A unix-socket proxy in front of the engine that records the first request line of every connection."""

    def __init__(self, upstream: str, path: Path) -> None:
        self.upstream, self.path = upstream, path
        self.requests: list[str] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.upstream)
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, record: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if record and re.match(rb"^(GET|POST|HEAD|PUT|DELETE) ", data):
                    self.requests.append(data.split(b"\r\n", 1)[0].decode())
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.server.close()


@pytest.mark.docker
@pytest.mark.slow
def test_doit_image_noop_contacts_almost_nothing_and_go_change_rebuilds(docker_host: str, tmp_path: Path) -> None:
    if not docker_host.startswith("unix://"):
        service_missing("a unix-socket engine for the request-counting proxy")
    cfg = linux_hello(tmp_path / "h", repository=f'"{PREFIX}/e2e"')
    first = run_doit(cfg.root, "image")
    assert first.returncode == 0, first.output
    record = ImageResult.load(cfg.out_dir / "images" / "linux-amd64.json")
    assert run_image(record.reference, "-version") == "1.0.0"

    proxy = _CountingProxy(docker_host[len("unix://"):], Path(f"/tmp/wgbp-{uuid.uuid4().hex[:8]}.sock"))
    try:
        second = run_doit(cfg.root, "image", env={"DOCKER_HOST": f"unix://{proxy.path}"})
    finally:
        proxy.close()
        proxy.path.unlink(missing_ok=True)
    assert second.returncode == 0, second.output
    assert "image-platform:linux-amd64" in second.skipped
    # At most the one cheap look at the recorded image ID; no build, no context upload.
    assert proxy.requests == [f"GET /images/{record.digest}/json HTTP/1.1"]

    main_go = cfg.root / "main.go"
    main_go.write_text(main_go.read_text().replace("fmt.Println(version)", 'fmt.Println("hello", version)'))
    toml = cfg.root / "wgobuild.toml"
    toml.write_text(toml.read_text().replace('version = "1.0.0"', 'version = "1.0.1"'))
    third = run_doit(cfg.root, "image")
    assert third.returncode == 0, third.output
    assert "image-platform:linux-amd64" in third.ran
    rebuilt = ImageResult.load(cfg.out_dir / "images" / "linux-amd64.json")
    assert rebuilt.digest != record.digest
    assert run_image(rebuilt.reference, "-version") == "hello 1.0.1"


def test_local_base_file_is_left_to_the_daemonless_backend(tmp_path: Path) -> None:
    from fixtures_go import copy_hello

    from wgobuild.oci.backend import OciBackend

    root = copy_hello(tmp_path / "hello", windows_base='"docker-archive:nano.tar"', style='"multistage"')
    cfg = config.load(root)
    windows = cfg.platforms[0]
    reason = engine.EngineBackend(cfg).unavailable(windows)  # decided before any engine is contacted
    assert reason == ("the base docker-archive:nano.tar is a local file; the engine builds FROM registry images "
                      "(docker load it and name it in image.windows_base/linux_base), the daemonless oci backend "
                      "reads it directly")
    assert OciBackend(cfg).unavailable(windows) == (
        "style = 'multistage' compiles inside a builder stage, which needs a Docker engine")
