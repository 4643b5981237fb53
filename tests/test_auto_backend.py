"""backend = "auto" on a real dockerd: a Dockerfile with no RUN step is built daemonless and loaded into the engine
(so `docker run` and `invoke run` find it); backend = "engine" still builds on the engine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fixtures_go import copy_hello, run_doit

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def linux_record(root: Path) -> dict[str, object]:
    record: dict[str, object] = json.loads((root / "dist/images/linux-amd64.json").read_text())
    return record


def only_linux(root: Path) -> None:
    toml = root / "wgobuild.toml"
    toml.write_text(toml.read_text().replace('["windows/amd64", "linux/amd64"]', '["linux/amd64"]'))


def test_auto_builds_daemonless_and_loads_the_image_into_the_engine(docker_host: str, tmp_path: Path) -> None:
    import docker

    root = copy_hello(tmp_path / "hello")  # as shipped: backend auto, prebuilt style, scratch base for linux
    only_linux(root)
    toml = root / "wgobuild.toml"
    toml.write_text(toml.read_text().replace('version = "git"', 'version = "7.7.1"'))
    reference = "hello:7.7.1"
    client = docker.DockerClient(base_url=docker_host)
    for image in client.images.list(name="hello"):
        if reference in image.tags:
            client.images.remove(reference, force=True)
    result = run_doit(root, "image", env={"DOCKER_HOST": docker_host})
    assert result.returncode == 0, result.output
    record = linux_record(root)
    assert record["backend"] == "oci", "no RUN step: built daemonless although an engine runs"
    extra = record["extra"]
    assert isinstance(extra, dict) and docker_host.removeprefix("unix://") in str(extra.get("loaded")), record
    assert "loaded into the engine at" in result.output, result.output
    loaded = client.images.get(reference)
    assert loaded.attrs["Os"] == "linux" and loaded.attrs["Architecture"] == "amd64"
    client.images.remove(reference, force=True)

    no_engine = {"DOCKER_HOST": f"unix://{tmp_path / 'none.sock'}"}
    (root / "main.go").write_text((root / "main.go").read_text().replace("listening on", "listening at"))
    quiet = run_doit(root, "image", env=no_engine)
    assert quiet.returncode == 0, quiet.output
    assert "loaded into the engine" not in quiet.output, quiet.output
    extra = linux_record(root)["extra"]
    assert isinstance(extra, dict) and "loaded" not in extra, "no engine: built daemonless, nothing loaded"


def test_engine_backend_still_builds_on_the_engine(docker_host: str, tmp_path: Path) -> None:
    root = copy_hello(tmp_path / "hello", backend='"engine"')
    only_linux(root)
    result = run_doit(root, "image", env={"DOCKER_HOST": docker_host})
    assert result.returncode == 0, result.output
    assert linux_record(root)["backend"] == "engine"
    assert "loaded into the engine" not in result.output
    assert os.environ.get("DOCKER_HOST") == docker_host
