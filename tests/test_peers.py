"""Reference implementations as oracles: go-containerregistry's crane validates every daemonless output.

crane is installed by tests/run.sh with ``go install`` (the Go module proxy is reachable); under CI=true a missing
crane fails like a missing service.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from services import service_missing
from test_oci_backend import build_all

from wgobuild import proc

pytestmark = pytest.mark.registry


def find_peer(name: str) -> Path | None:
    """A Go tool installed with ``go install``: $GOBIN, then PATH, then the default GOPATH's bin folder."""
    gopath = os.environ.get("GOPATH", "").split(os.pathsep)[0]
    for folder in (os.environ.get("GOBIN"), None, gopath and str(Path(gopath) / "bin"), str(Path.home() / "go/bin")):
        found = shutil.which(name, path=folder) if folder else shutil.which(name)
        if found:
            return Path(found)
    return None


@pytest.fixture(scope="module")
def crane() -> Path:
    found = find_peer("crane")
    if found is None:
        service_missing("crane (go install github.com/google/go-containerregistry/cmd/crane@latest)")
    assert found is not None
    return found


def run_crane(crane: Path, *args: str) -> proc.ProcResult:
    return proc.run([crane, "--insecure", *args], quiet=True, timeout=300)


def test_crane_validates_every_daemonless_output(crane: Path, seeded_bases, oci_binaries, tmp_path: Path) -> None:
    config, results, report = build_all(tmp_path / "m", seeded_bases, oci_binaries)
    images = config.out_dir / "images"
    host = seeded_bases.registry.host
    checked = []
    for result, platform in zip(results, config.platforms, strict=True):
        tarball = images / f"{platform.key}.docker.tar"
        done = run_crane(crane, "validate", "--tarball", str(tarball))
        assert done.ok, done.output
        layout_ref = f"{host}/peer/layout:{platform.key}"
        pushed = run_crane(crane, "push", str(images / platform.key / "oci"), layout_ref)
        assert pushed.ok, pushed.output
        for ref in (layout_ref, f"{host}/team/hello@{result.digest}"):
            done = run_crane(crane, "validate", "--remote", ref)
            assert done.ok, f"{ref}: {done.output}"
            checked.append(ref)
    whole = run_crane(crane, "validate", "--remote", report["reference"])  # the pushed index, every child
    assert whole.ok, whole.output
    assert len(checked) == 2 * len(config.platforms)


def test_crane_sees_a_corrupt_layer(crane: Path, seeded_bases, oci_binaries, tmp_path: Path) -> None:
    """Negative control: the validation above fails when a layer's bytes do not match its digest."""
    import io
    import tarfile

    config, _, _ = build_all(tmp_path / "m", seeded_bases, oci_binaries, push=False, outputs=["docker-archive"])
    tarball = config.out_dir / "images" / "linux-amd64.docker.tar"
    corrupt = tmp_path / "corrupt.tar"
    flipped = []
    with tarfile.open(tarball) as src, tarfile.open(corrupt, "w") as dst:
        for member in src.getmembers():
            handle = src.extractfile(member) if member.isfile() else None
            if handle is None:
                dst.addfile(member)
                continue
            data = handle.read()
            if not member.name.endswith(".json") and len(data) > 4096:  # a layer: change its last bytes
                data = data[:-16] + bytes(16)
                flipped.append(member.name)
            dst.addfile(member, io.BytesIO(data))
    assert flipped, "no layer found to corrupt"
    done = run_crane(crane, "validate", "--tarball", str(corrupt))
    assert not done.ok
