"""Writers: OCI layout (folder, tar), docker-save tar, registry push; Ctrl-C during push; disk full."""

import json
import os
import resource
import signal
import tarfile
from pathlib import Path
from typing import Any

import pytest
import requests
from fixtures_registry import VERSION, oci_config, skopeo

from wgobuild import proc
from wgobuild.image import ImageRequest
from wgobuild.oci import OciError, writers
from wgobuild.oci import manifest as mf
from wgobuild.oci.backend import OciBackend, image_of
from wgobuild.oci.blobs import BlobStore

pytestmark = pytest.mark.registry


def _image(root, binaries, **image):
    config = oci_config(root, ["linux/amd64"], outputs=[], **image)
    result = OciBackend(config).build(ImageRequest(config, config.platforms[0], {"hello": binaries["linux"]},
                                                   "example.com/team/hello:3.0", VERSION))
    store = BlobStore(config.state_dir)
    return image_of(config, result, store), store


def test_layout_folder_tar_and_docker_archive(tmp_path, oci_binaries):
    built, store = _image(tmp_path / "p", oci_binaries)
    target = writers.Target(built.reference, [built])
    folder = writers.OciLayoutWriter(tmp_path / "out" / "layout").write(target, store)
    tar = writers.OciTarWriter(tmp_path / "out" / "image.oci.tar").write(target, store)
    archive = writers.DockerArchiveWriter(tmp_path / "out" / "image.docker.tar").write(target, store)
    index = json.loads((tmp_path / "out" / "layout" / "index.json").read_text())
    assert index["manifests"][0]["annotations"] == {writers.REF_NAME: "3.0"}
    assert index["manifests"][0]["digest"] == built.digest
    assert json.loads((tmp_path / "out" / "layout" / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    layer = json.loads(built.manifest)["layers"][0]["digest"]
    diff_id = json.loads(store.read(json.loads(built.manifest)["config"]["digest"]))["rootfs"]["diff_ids"][0]
    for ref, layers in ((f"oci:{folder}:3.0", [layer]), (f"oci-archive:{tar}:3.0", [layer]),
                        (f"docker-archive:{archive}", [diff_id])):  # skopeo names docker-save layers by diff_id
        info = json.loads(skopeo("inspect", ref).output)
        assert info["Os"] == "linux" and info["Layers"] == layers
    with tarfile.open(archive) as handle:
        manifest = json.loads(handle.extractfile("manifest.json").read())
        assert manifest[0]["RepoTags"] == ["example.com/team/hello:3.0"]
        assert all(m.mtime == 0 for m in handle.getmembers())
    # written again: byte-identical archives
    again = writers.DockerArchiveWriter(tmp_path / "out" / "again.tar").write(target, store)
    assert Path(again).read_bytes() == Path(archive).read_bytes()


@pytest.fixture
def tiny_disk(tmp_path):
    """A folder on a 256 KiB tmpfs (root), else a 256 KiB file-size limit: writes there fail like a full disk."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    mounted = proc.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", folder], quiet=True).ok \
        if os.name != "nt" and os.geteuid() == 0 else False
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    if not mounted:
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, old_limit[1]))
    try:
        yield folder
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
        if mounted:
            proc.run(["umount", folder], quiet=True, check=True)


def test_disk_full_leaves_no_valid_output(tmp_path, oci_binaries, tiny_disk):
    built, store = _image(tmp_path / "p", oci_binaries)
    assert json.loads(built.manifest)["layers"][0]["size"] > 256 * 1024
    target = writers.Target(built.reference, [built])
    for writer in (writers.OciLayoutWriter(tiny_disk / "layout"), writers.OciTarWriter(tiny_disk / "image.tar"),
                   writers.DockerArchiveWriter(tiny_disk / "image.docker.tar")):
        with pytest.raises(OciError, match="no space left while writing"):
            writer.write(target, store)
    assert sorted(os.listdir(tiny_disk)) == []  # nothing partial left behind, nothing looking valid


def test_interrupted_push_resumes_and_tags_only_complete_images(tmp_path, oci_binaries, seeded_bases):
    built, store = _image(tmp_path / "p", oci_binaries, linux_base=seeded_bases.linux)
    host = seeded_bases.registry.host
    target = writers.Target(f"{host}/team/resume:1", [built])
    seen = []

    def stop_after_first_upload(event):
        seen.append(event)
        if event.startswith("upload "):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        writers.RegistryWriter(on_event=stop_after_first_upload).write(target, store)
    assert [e.split()[0] for e in seen] == ["upload"]  # the config went up, then Ctrl-C
    url = f"{seeded_bases.registry.url}/v2/team/resume/manifests/1"
    assert requests.get(url, headers={"Accept": mf.ACCEPT}, timeout=10).status_code == 404  # nothing tagged
    events = []
    pushed = writers.RegistryWriter(on_event=events.append).write(target, store)
    assert pushed == f"{host}/team/resume@{built.digest}"
    # resumed: the config is there already, the base layer is mounted from base/linux, the app layer uploaded
    assert [e.split()[0] for e in events] == ["skip", "mount", "upload", "manifest"]
    answer = requests.get(url, headers={"Accept": mf.ACCEPT}, timeout=10)
    assert answer.content == built.manifest
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{host}/team/resume:1").output)
    assert info["Digest"] == built.digest


def test_blob_missing_everywhere_is_a_clear_error(tmp_path, oci_binaries):
    built, store = _image(tmp_path / "p", oci_binaries)
    layer = json.loads(built.manifest)["layers"][0]["digest"]
    store.path(layer).unlink()
    with pytest.raises(OciError, match="build the image again"):
        writers.OciLayoutWriter(tmp_path / "out").write(writers.Target(built.reference, [built]), store)
    assert not (tmp_path / "out").exists()


def test_store_blob_of_the_wrong_size_is_neither_written_nor_pushed(tmp_path: Path, oci_binaries: dict[str, Path],
                                                                    registry: Any) -> None:
    """A store blob whose size is not its descriptor's (a damaged .wgobuild) stops the layout and the push."""
    built, store = _image(tmp_path / "p", oci_binaries)
    layer = json.loads(built.manifest)["layers"][0]
    with open(store.path(layer["digest"]), "ab") as handle:
        handle.write(b"extra")
    target = writers.Target(built.reference, [built])
    message = rf"blob {layer['digest']} of .* is {layer['size'] + 5} bytes in the store but its descriptor " \
              rf"declares {layer['size']}: delete .* and build again"
    with pytest.raises(OciError, match=message):
        writers.OciLayoutWriter(tmp_path / "out").write(target, store)
    assert not (tmp_path / "out").exists()
    pushed = writers.Target(f"{registry.host}/team/wrong-size:1", [built])
    with pytest.raises(OciError, match=message):
        writers.RegistryWriter().write(pushed, store)
    assert requests.head(f"{registry.url}/v2/team/wrong-size/blobs/{layer['digest']}", timeout=5).status_code == 404
