"""One test per behaviour the documentation promises and no other test pinned down (issue 14, finding 8).

Each test quotes the sentence it holds the code to. Stand-ins are used only where this machine has no real part:
a Windows Docker engine (an HTTP server on a unix socket that answers the three calls the SDK makes, so the real
docker SDK and the real backend code run against it) and a registry that misbehaves on purpose.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import signal
import socket
import socketserver
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fixtures_go import copy_hello, run_doit

from wgobuild import config, engine
from wgobuild.config import Platform
from wgobuild.errors import WgobuildError
from wgobuild.oci import bases, registry
from wgobuild.supervisor import ServeGaveUp, ServeSpec, Supervisor

REPO = Path(__file__).resolve().parents[1]


# -- small HTTP stand-ins ------------------------------------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    """Answers with ``server.answer(handler) -> (status, headers, body)`` and records each request line."""

    server: Any

    def _handle(self) -> None:
        self.server.requests.append(f"{self.command} {self.path}")
        status, headers, body = self.server.answer(self)
        if status == 0:  # hang up without an answer
            return
        self.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = _handle

    def log_message(self, *_args: object) -> None:
        pass


Answer = Callable[[BaseHTTPRequestHandler], tuple[int, dict[str, str], bytes]]


@contextlib.contextmanager
def _serving(server: Any, answer: Answer) -> Iterator[Any]:
    """Serve ``answer`` from ``server`` in a thread for the block, recording the requests it sees."""
    server.answer, server.requests = answer, []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def http_server(answer: Answer) -> Iterator[Any]:
    with _serving(ThreadingHTTPServer(("127.0.0.1", 0), _Recorder), answer) as server:
        yield server


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self) -> tuple[Any, Any]:
        request, _ = super().get_request()
        return request, ("local", 0)  # BaseHTTPRequestHandler wants a (host, port) client address


@contextlib.contextmanager
def unix_http_server(path: Path, answer: Answer) -> Iterator[Any]:
    try:
        with _serving(_UnixHTTPServer(str(path), _Recorder), answer) as server:
            yield server
    finally:
        path.unlink(missing_ok=True)


def _json(status: int, doc: object) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(doc).encode()


# -- stopping ------------------------------------------------------------------------------------------------------


@pytest.mark.skipif(os.name == "nt", reason="SIGINT to another process is POSIX; Windows delivers Ctrl-C to a console")
def test_a_second_signal_raises_keyboardinterrupt_at_once(tmp_path: Path) -> None:
    """docs/architecture.md: "The first Ctrl-C or SIGTERM ... makes every later `proc.run` raise `Interrupted` ...
    A second signal raises `KeyboardInterrupt` at once."

    The child keeps working after the first signal (as doit does while it saves state); only the second one may
    end it, and it must do so immediately, not when the work is done (60 s later)."""
    driver = textwrap.dedent("""
        import sys, time
        from wgobuild import proc
        from wgobuild.errors import Interrupted
        proc.install_signal_handlers()
        print("ready", flush=True)
        try:
            while not proc.stopping():
                time.sleep(0.01)
            try:
                proc.run([sys.executable, "-c", "print(1)"])
            except Interrupted as exc:
                print("first signal:", exc, flush=True)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # slow clean-up that a second Ctrl-C must cut short
                time.sleep(0.01)
            print("clean-up finished", flush=True)
        except KeyboardInterrupt as exc:
            print("second signal: KeyboardInterrupt", exc, flush=True)
            sys.exit(130)
    """)
    child = subprocess.Popen([sys.executable, "-c", driver], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline() == "ready\n"
    child.send_signal(signal.SIGINT)
    first = child.stdout.readline()
    assert first.startswith("first signal: interrupted (Ctrl-C or SIGTERM)"), first
    started = time.monotonic()
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=20)
    assert (child.returncode, out) == (130, f"second signal: KeyboardInterrupt signal {int(signal.SIGINT)}\n")
    assert time.monotonic() - started < 10  # not the 60 s the clean-up loop would take


# -- unavailable platforms -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_unavailable_platform_is_not_retried_over_the_network_on_a_no_op(tmp_path: Path) -> None:
    """docs/architecture.md: "the record keeps the step up to date until its inputs change, so a no-op run never
    retries the network." The Windows base is on a registry that counts every request and has no such image."""
    with http_server(lambda _h: _json(404, {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "unknown"}]})) as reg:
        host = f"127.0.0.1:{reg.server_address[1]}"
        root = copy_hello(tmp_path / "hello", windows_base=f'"{host}/windows/nanoserver"')
        toml = root / "wgobuild.toml"
        toml.write_text(toml.read_text().replace('["windows/amd64", "linux/amd64"]', '["windows/amd64"]'))
        no_engine = {"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
        first = run_doit(root, "image", env=no_engine)
        assert first.returncode == 0, first.output
        assert "image-platform:windows-amd64" in first.ran
        assert any(line.startswith("windows/amd64: not built:") for line in first.output.splitlines()), first.output
        contacted = list(reg.requests)
        assert contacted and all(r.split()[1].startswith("/v2/") for r in contacted), contacted

        second = run_doit(root, "image", env=no_engine)
        assert second.returncode == 0, second.output
        assert "image-platform:windows-amd64" in second.skipped, second.output
        assert reg.requests == contacted  # not one request more

        toml.write_text(toml.read_text().replace('version = "git"', 'version = "9.9.9"'))  # an input changed
        third = run_doit(root, "image", env=no_engine)
        assert "image-platform:windows-amd64" in third.ran, third.output
        assert len(reg.requests) > len(contacted)  # negative control: a real re-check does reach the registry


# -- serve ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crasher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import gofixtures

    return gofixtures.build(tmp_path_factory.mktemp("gofix"))["crasher"]


def _serve_spec(tmp_path: Path, crasher: Path, healthy_after_s: float) -> ServeSpec:
    return ServeSpec(argv=[str(crasher), "-after", "300ms"], name="svc", state_dir=tmp_path / ".wgobuild",
                     log_dir=tmp_path / "logs", grace_s=1.0, backoff_initial_s=0.05, backoff_max_s=0.05,
                     max_restarts=1, poll_s=0.02, healthy_after_s=healthy_after_s)


def test_healthy_after_s_resets_the_restart_count(tmp_path: Path, crasher: Path) -> None:
    """docs/operations.md: "A run that lasts `healthy_after_s` resets the count." Each run fails after 0.3 s; with
    max_restarts = 1 that gives up on the second failure, unless every run counts as healthy (0.2 s)."""
    unhealthy = Supervisor(_serve_spec(tmp_path / "a", crasher, healthy_after_s=30.0), echo=lambda _m: None)
    with pytest.raises(ServeGaveUp, match=r"failed 2 times in a row"):
        unhealthy.serve()
    assert unhealthy.starts == 2

    healthy = Supervisor(_serve_spec(tmp_path / "b", crasher, healthy_after_s=0.2), echo=lambda _m: None)
    outcome: dict[str, object] = {}
    thread = threading.Thread(target=lambda: outcome.update(rc=healthy.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while healthy.starts < 4 and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.05)
    healthy.request_stop()
    thread.join(15)
    assert healthy.starts >= 4, "a healthy run did not reset the count: serve gave up"
    assert outcome == {"rc": 0}


# -- registry client -----------------------------------------------------------------------------------------------


MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {}, "layers": []}).encode()


def _flaky_registry(failures: list[int], delay_first_s: float = 0.0) -> Answer:
    """/v2/ is open; the manifest answers each status in ``failures`` once (0: stall), then the manifest."""
    pending = list(failures)

    def answer(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        if handler.path == "/v2/":
            return 200, {}, b"{}"
        if pending:
            status = pending.pop(0)
            if status == 0:
                time.sleep(delay_first_s)  # longer than the client's read timeout
                return 0, {}, b""
            return _json(status, {"errors": [{"code": "TOOMANYREQUESTS" if status == 429 else "UNAVAILABLE"}]})
        return 200, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, MANIFEST

    return answer


def test_registry_client_retries_429_and_5xx(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/oci.md: "Timeouts, connection errors, 5xx and 429 answers are retried (4 attempts, short back-off);
    401, 403 and 404 are reported at once"."""
    with http_server(_flaky_registry([429, 503, 429])) as reg:
        host = f"127.0.0.1:{reg.server_address[1]}"
        data, media_type = registry.Client(host).get_manifest("app", "1")
        assert (data, media_type) == (MANIFEST, "application/vnd.oci.image.manifest.v1+json")
        assert [r for r in reg.requests if "manifests" in r] == ["GET /v2/app/manifests/1"] * 4

    with http_server(_flaky_registry([429] * 10)) as reg:
        host = f"127.0.0.1:{reg.server_address[1]}"
        with pytest.raises(registry.RegistryError) as caught:
            registry.Client(host).get_manifest("app", "1")
        assert str(caught.value) == (f'{host}: manifest app:1 failed (HTTP 429): '
                                     '{"errors": [{"code": "TOOMANYREQUESTS"}]}')
        assert len([r for r in reg.requests if "manifests" in r]) == registry.RETRIES

    with http_server(lambda h: (200, {}, b"{}") if h.path == "/v2/" else _json(404, {})) as reg:
        host = f"127.0.0.1:{reg.server_address[1]}"
        with pytest.raises(registry.RegistryError) as caught:
            registry.Client(host).get_manifest("app", "1")
        assert str(caught.value) == f"{host}: manifest app:1: not found (HTTP 404)"
        assert len([r for r in reg.requests if "manifests" in r]) == 1  # 404: at once, no retry


def test_registry_client_retries_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "TIMEOUT", (5, 0.5))  # the read timeout, shortened for the test
    with http_server(_flaky_registry([0], delay_first_s=1.5)) as reg:
        host = f"127.0.0.1:{reg.server_address[1]}"
        data, _ = registry.Client(host).get_manifest("app", "1")
        assert data == MANIFEST
        assert [r for r in reg.requests if "manifests" in r] == ["GET /v2/app/manifests/1"] * 2


# -- base selection ------------------------------------------------------------------------------------------------


def test_the_newest_revision_of_a_windows_build_wins() -> None:
    """docs/oci.md: "`10.0.20348` matches `10.0.20348.2849`; the newest revision wins." Order in the index and
    string order ("999" > "2849") must not decide."""
    def entry(version: str) -> tuple[dict[str, Any], str]:
        return {"os": "windows", "architecture": "amd64", "os.version": version}, version

    candidates = [entry("10.0.20348.2849"), entry("10.0.20348.999"), entry("10.0.17763.6414"),
                  entry("10.0.20348.10"), entry("10.0.26100.100")]
    for order in (candidates, candidates[::-1]):
        assert bases.choose(order, Platform.parse("windows/amd64:10.0.20348"), "base") == "10.0.20348.2849"
    assert bases.choose(candidates, Platform.parse("windows/amd64:10.0.17763"), "base") == "10.0.17763.6414"
    with pytest.raises(bases.OciError) as caught:
        bases.choose(candidates[:2], Platform.parse("windows/amd64:10.0.17763"), "base")
    assert str(caught.value) == ("base base has no image for windows/amd64 10.0.17763; it offers: windows/amd64 "
                                 "10.0.20348.2849, windows/amd64 10.0.20348.999")


# -- a Windows engine ----------------------------------------------------------------------------------------------


def _windows_engine(kernel: str) -> Answer:
    """The three calls docker.from_env() and EngineBackend make before a build: version, ping, info."""
    def answer(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        path = handler.path.split("?")[0]
        if path.endswith("/_ping"):
            return 200, {"Content-Type": "text/plain", "Api-Version": "1.41", "OSType": "windows"}, b"OK"
        if path.endswith("/version"):
            return _json(200, {"ApiVersion": "1.41", "MinAPIVersion": "1.24", "Os": "windows", "Arch": "amd64",
                               "Version": "24.0.7", "KernelVersion": kernel})
        if path.endswith("/info"):
            return _json(200, {"OSType": "windows", "Architecture": "x86_64", "KernelVersion": kernel,
                               "ServerVersion": "24.0.7", "Isolation": "process"})
        return _json(404, {"message": f"not offered by this stand-in: {path}"})

    return answer


@pytest.fixture
def windows_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], Any]]:
    """Start a stand-in Windows engine with the given kernel and point DOCKER_HOST at it."""
    started: list[contextlib.AbstractContextManager[Any]] = []

    def start(kernel: str) -> Any:
        path = Path(f"/tmp/wgbw-{os.getpid()}-{len(started)}.sock")
        server_cm = unix_http_server(path, _windows_engine(kernel))
        started.append(server_cm)
        server = server_cm.__enter__()
        monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
        return server

    yield start
    for server_cm in started:
        server_cm.__exit__(None, None, None)


def _hello_config(tmp_path: Path, platforms: str, isolation: str = "") -> config.Config:
    root = copy_hello(tmp_path / "hello", backend='"engine"', **({"isolation": f'"{isolation}"'} if isolation else {}))
    toml = root / "wgobuild.toml"
    toml.write_text(toml.read_text().replace('["windows/amd64", "linux/amd64"]', platforms))
    return config.load(root)


@pytest.mark.skipif(os.name == "nt", reason="the stand-in engine listens on a unix socket")
def test_windows_build_number_and_isolation_refusals(tmp_path: Path, windows_engine: Any) -> None:
    """docs/images.md: "On a Windows engine, an image newer than the host's Windows build is refused, and so is
    `isolation = "process"` with a different build number (use `hyperv`)." """
    windows_engine("10.0 17763 (17763.1.amd64fre.rs5_release.180914-1434)")
    cfg = _hello_config(tmp_path / "a", '["windows/amd64:10.0.20348", "windows/amd64:10.0.17763", "linux/amd64"]')
    new, same, linux = cfg.platforms
    backend = engine.EngineBackend(cfg)
    assert backend.unavailable(new) == "the engine's Windows build 17763 is older than the image's 20348 (ltsc2022)"
    assert backend.unavailable(same) is None
    assert backend.unavailable(linux) == (f"the engine at {os.environ['DOCKER_HOST']} runs windows containers, not "
                                          "linux ones")

    windows_engine("10.0 20348 (20348.1.amd64fre.fe_release.210507-1500)")
    for isolation, expected in [
        ("process", "isolation = 'process' needs the host's Windows build (20348) to equal the image's 17763; use "
                    "isolation = 'hyperv' or a matching os.version"),
        ("hyperv", None),
    ]:
        cfg = _hello_config(tmp_path / isolation, '["windows/amd64:10.0.17763"]', isolation)
        assert engine.EngineBackend(cfg).unavailable(cfg.platforms[0]) == expected


# -- where the engine is -------------------------------------------------------------------------------------------


@pytest.mark.docker
@pytest.mark.skipif(os.name == "nt", reason="the context points at a unix socket")
def test_the_current_docker_context_is_used_when_docker_host_is_unset(
        docker_host: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/images.md: "`engine.connect()` uses `DOCKER_HOST` ..., else the docker CLI's current context
    (`DOCKER_CONTEXT` or `currentContext` in `~/.docker/config.json`), else the platform's default socket." """
    if not docker_host.startswith("unix://"):
        pytest.fail(f"the suite's engine is at {docker_host}; this test needs a unix socket")
    alias = tmp_path / "ctx.sock"  # a path of its own, so the context cannot be mistaken for the default
    alias.symlink_to(docker_host.removeprefix("unix://"))
    folder = tmp_path / "docker-config"
    for name, host in (("wgbtest", f"unix://{alias}"), ("elsewhere", f"unix://{tmp_path}/nothing.sock")):
        meta = folder / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest() / "meta.json"
        meta.parent.mkdir(parents=True)
        meta.write_text(json.dumps({"Name": name, "Metadata": {},
                                    "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": False}}}))
    (folder / "config.json").write_text(json.dumps({"currentContext": "wgbtest"}))
    monkeypatch.delenv("DOCKER_HOST")
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))

    assert engine.engine_address() == f"unix://{alias}"
    client = engine.connect(timeout=10)
    try:
        assert client.ping() is True
    finally:
        client.close()

    monkeypatch.setenv("DOCKER_CONTEXT", "elsewhere")
    assert engine.engine_address() == f"unix://{tmp_path}/nothing.sock"
    with pytest.raises(engine.EngineUnreachable) as caught:
        engine.connect(timeout=5)
    assert str(caught.value).startswith(f"cannot reach the Docker engine at unix://{tmp_path}/nothing.sock: ")

    monkeypatch.delenv("DOCKER_CONTEXT")
    (folder / "config.json").write_text("{}")  # no current context: the platform's default
    assert engine.engine_address() == "unix:///var/run/docker.sock"


def test_an_ssh_docker_host_is_handed_to_the_sdk_and_failures_say_why(monkeypatch: pytest.MonkeyPatch) -> None:
    """README: `DOCKER_HOST=ssh://user@winbuild doit image` builds on a remote engine. No sshd or remote engine is
    here, so this pins what can be checked: the address reaches the SDK's ssh transport (a closed port is
    reported as refused), or, without paramiko, the message says which package to install."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends
    host = f"ssh://nobody@127.0.0.1:{port}"
    monkeypatch.setenv("DOCKER_HOST", host)
    assert engine.wants_gzip(host)  # a remote engine gets a compressed context
    with pytest.raises(engine.EngineUnreachable) as caught:
        engine.connect(timeout=5)
    why = ("connection refused" if importlib.util.find_spec("paramiko") else
           "ssh:// needs the paramiko package: pip install 'docker[ssh]'")
    assert str(caught.value).startswith(f"cannot reach the Docker engine at {host}: {why}."), str(caught.value)
    assert isinstance(caught.value, WgobuildError)
