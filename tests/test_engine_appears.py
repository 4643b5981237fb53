"""No dead ends when an engine comes or goes, on the real dockerd: build with no engine (daemonless), then
`invoke run` loads the docker-save tar; a platform "not built here" is retried when the engine facts change."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from fixtures_go import copy_hello, run_doit

from wgobuild import proc

REPO = Path(__file__).resolve().parents[1]

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _invoke(*args: str, env: dict[str, str]) -> proc.ProcResult:
    return proc.run([sys.executable, "-m", "invoke", "-r", str(REPO), *args], quiet=True, timeout=120,
                    env={**os.environ, **env})


@pytest.mark.docker
@pytest.mark.slow
def test_engine_appears_after_a_daemonless_build(docker_host: str, tmp_path: Path) -> None:
    import docker

    root = copy_hello(tmp_path / "hello")  # backend auto; the Windows base (mcr.microsoft.com) is out of reach here
    port = _free_port()
    name = f"wgotest-appears-{port}"
    text = (root / "wgobuild.toml").read_text()
    text = text[:text.index("[run]")] + (f'[run]\nname = "{name}"\nnetwork = "host"\nports = ["{port}:{port}"]\n'
                                         f'args = ["-addr", "127.0.0.1:{port}"]\nstop_grace_s = 2\n')
    (root / "wgobuild.toml").write_text(text)
    dead = tmp_path / "s" / "docker.sock"  # where no engine listens (yet)
    dead.parent.mkdir()
    no_engine = {"DOCKER_HOST": f"unix://{dead}"}

    first = run_doit(root, "image", env=no_engine)
    assert first.returncode == 0, first.output
    images = {i["platform"]: i for i in json.loads((root / "dist/reports/images.json").read_text())["images"]}
    assert images["linux/amd64"]["backend"] == "oci", "no engine: the linux image is made daemonless"
    assert images["windows/amd64"]["backend"] == "none"
    line = next(x for x in first.output.splitlines() if x.startswith("windows/amd64: not built:"))
    assert len(line) < 160 and "image.windows_base" in line and "DOCKER_HOST" in line, line
    assert run_doit(root, "image", env=no_engine).ran == set(), "nothing changed: no retry, no network"

    # Something now listens where DOCKER_HOST points: the unavailable platform is retried, and only it.
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(dead))
    try:
        retried = run_doit(root, "image", env=no_engine)
    finally:
        listener.close()
    assert "image-platform:windows-amd64" in retried.ran, retried.output
    assert "image-platform:linux-amd64" not in retried.ran
    assert "the engine socket changed" in retried.reasons["image-platform:windows-amd64"], retried.output

    # A real engine (DOCKER_HOST changes): retried again; it runs linux containers, so windows stays unbuilt.
    engine = {"DOCKER_HOST": docker_host}
    again = run_doit(root, "image", env=engine)
    assert again.returncode == 0, again.output
    assert "DOCKER_HOST" in again.reasons["image-platform:windows-amd64"], again.output
    assert "image-platform:linux-amd64" not in again.ran, "the daemonless linux image stays valid"
    assert run_doit(root, "image", env=engine).ran == set()

    # `invoke run` finds the image missing on the engine and loads the daemonless docker-save tar.
    client = docker.DockerClient(base_url=docker_host)
    reference = images["linux/amd64"]["reference"]
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.remove(reference, force=True)
    try:
        started = _invoke("run", "--root", str(root), env=engine)
        assert started.ok, started.output
        assert f"loaded {reference} into the engine from " in started.output
        assert ".docker.tar (it was built without the engine)" in started.output
        client.images.get(reference)
        body = b""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not body:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/hello?name=engine", timeout=2).read()
            except OSError:
                time.sleep(0.2)
        assert b"engine" in body
        stopped = _invoke("stop", "--root", str(root), "--what", "container", env=engine)
        assert stopped.ok, stopped.output
    finally:
        for container in client.containers.list(all=True, filters={"name": name}):
            container.remove(force=True)
        client.close()


@pytest.mark.docker
def test_invoke_run_without_a_tar_says_what_to_do(docker_host: str, tmp_path: Path) -> None:
    root = copy_hello(tmp_path / "hello")
    result = _invoke("run", "--root", str(root), "--image", "wgobuild-test/never-built:1",
                     env={"DOCKER_HOST": docker_host})
    assert not result.ok
    assert "wgobuild-test/never-built:1 is not on the engine and no docker-save tar of it is under dist/images" in (
        result.output)
    assert "Traceback" not in result.output


def test_an_unavailable_record_is_retried_when_an_engine_fact_changes(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from wgobuild import imaging
    from wgobuild.image import ImageResult

    sock = tmp_path / "docker.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    record = tmp_path / "windows-amd64.json"
    ImageResult("none", "windows/amd64", "", "", 0,
                extra={"unavailable": "needs a Windows engine", "facts": imaging.engine_facts()}).save(record)
    assert imaging.stale_reason(record) is None and imaging.still_present(record), "nothing changed: up to date"

    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock))  # an engine socket appears where DOCKER_HOST points
    try:
        assert imaging.stale_reason(record) == "retrying: the engine socket changed since it could not be built"
    finally:
        listener.close()
        sock.unlink()
    assert imaging.still_present(record), "gone again: the facts are those recorded"

    (tmp_path / "docker-config").mkdir()
    (tmp_path / "docker-config" / "config.json").write_text('{"currentContext": "winbuild"}')  # docker context use
    assert imaging.stale_reason(record) == "retrying: the docker context changed since it could not be built"
    (tmp_path / "docker-config" / "config.json").unlink()

    monkeypatch.setenv("DOCKER_HOST", "ssh://admin@winbuild")
    reason = imaging.stale_reason(record)
    assert reason is not None and reason.startswith("retrying: DOCKER_HOST, the engine socket changed"), reason
    assert not imaging.still_present(record)
