"""backend = "auto" on a real dockerd: a Dockerfile with no RUN step is built daemonless and loaded into the engine
(so `docker run` and `invoke run` find it); backend = "engine" still builds on the engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
    summary = json.loads((root / "dist/reports/images.json").read_text())
    assert docker_host.removeprefix("unix://") in str(summary.get("loaded", {}).get("linux/amd64")), summary
    assert "loaded into the engine at" in result.output, result.output
    loaded = client.images.get(reference)
    assert loaded.attrs["Os"] == "linux" and loaded.attrs["Architecture"] == "amd64"
    assert loaded.id == record["extra"]["preloaded"]["id"], "the copy loaded beside the tests, now tagged"  # type: ignore[index]
    client.images.remove(reference, force=True)  # gone from the engine: the publish step loads the tar again
    forgot = subprocess.run([sys.executable, "-m", "doit", "forget", "image"], cwd=root, capture_output=True)
    assert forgot.returncode == 0, forgot.stderr
    again = run_doit(root, "image", env={"DOCKER_HOST": docker_host})
    assert again.returncode == 0 and again.ran == {"image"}, again.output
    assert client.images.get(reference).id == loaded.id and "loaded into the engine at" in again.output
    client.images.remove(reference, force=True)

    no_engine = {"DOCKER_HOST": f"unix://{tmp_path / 'none.sock'}"}
    (root / "main.go").write_text((root / "main.go").read_text().replace("listening on", "listening at"))
    quiet = run_doit(root, "image", env=no_engine)
    assert quiet.returncode == 0, quiet.output
    assert "loaded into the engine" not in quiet.output, quiet.output
    summary = json.loads((root / "dist/reports/images.json").read_text())
    assert "loaded" not in summary, "no engine: built daemonless, nothing loaded"


def test_engine_backend_still_builds_on_the_engine(docker_host: str, tmp_path: Path) -> None:
    root = copy_hello(tmp_path / "hello", backend='"engine"')
    only_linux(root)
    result = run_doit(root, "image", env={"DOCKER_HOST": docker_host})
    assert result.returncode == 0, result.output
    assert linux_record(root)["backend"] == "engine"
    assert "loaded into the engine" not in result.output
    assert os.environ.get("DOCKER_HOST") == docker_host


FAILING_TEST = 'package main\n\nimport "testing"\n\nfunc TestFailsOnPurpose(t *testing.T) { t.Fatal("on purpose") }\n'


@pytest.mark.parametrize("backend", ["auto", "engine"])
def test_a_failing_test_leaves_the_engine_tag_alone(backend: str, docker_host: str, tmp_path: Path) -> None:
    """Images are built beside the tests, but nothing reaches the engine's tag until the tests pass: a failing
    `go test` leaves the reference absent (auto: no load; engine: built untagged), and the run after the fix
    publishes without rebuilding the image."""
    import docker

    root = copy_hello(tmp_path / "hello", backend=f'"{backend}"')
    only_linux(root)
    toml = root / "wgobuild.toml"
    version = "7.7.2" if backend == "auto" else "7.7.3"
    toml.write_text(toml.read_text().replace('version = "git"', f'version = "{version}"'))
    reference = f"hello:{version}"
    client = docker.DockerClient(base_url=docker_host)
    for image in client.images.list(name="hello"):
        if reference in image.tags:
            client.images.remove(reference, force=True)
    (root / "fail_test.go").write_text(FAILING_TEST)
    env = {"DOCKER_HOST": docker_host}
    failed = run_doit(root, "--continue", "image", env=env)  # every step that can run does
    assert failed.returncode != 0 and "TestFailsOnPurpose" in failed.output, failed.output
    assert "image-platform:linux-amd64" in failed.ran, "the image is built beside the tests"
    assert "image" not in failed.ran, failed.output
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(reference)
    assert not (root / "dist/reports/images.json").exists()
    preloaded = linux_record(root)["extra"].get("preloaded", {}) if backend == "auto" else {}
    if backend == "auto":  # loaded beside the tests, untagged: the engine's unpacking is done while Go runs
        assert preloaded.get("id", "").startswith("sha256:"), linux_record(root)
        assert reference not in client.images.get(preloaded["id"]).tags

    (root / "fail_test.go").unlink()
    fixed = run_doit(root, "image", env=env)
    assert fixed.returncode == 0, fixed.output
    assert {"test", "image"} <= fixed.ran, fixed.output
    assert "image-platform:linux-amd64" not in fixed.ran, "built beside the failing test: not built again"
    if backend == "engine":
        assert client.images.get(reference).id == linux_record(root)["digest"]
    else:  # the publish step only pointed the tag at the image loaded beside the tests
        assert "loaded into the engine at" in fixed.output and client.images.get(reference).id == preloaded["id"]
    client.images.remove(reference, force=True)
