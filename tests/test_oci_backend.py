"""The daemonless backend end to end: three platforms, one tag, real registry, skopeo, dockerd; reproducibility."""

import json
import os
import re
import sys

import pytest
import requests
from fixtures_registry import VERSION, WINDOWS_VERSIONS, oci_config, skopeo

from wgobuild import proc
from wgobuild.config import Platform
from wgobuild.errors import ConfigError, WgobuildError
from wgobuild.image import ImageRequest, ImageResult
from wgobuild.imaging import choose_backend
from wgobuild.oci import OciError
from wgobuild.oci import manifest as mf
from wgobuild.oci.backend import OciBackend, publish

pytestmark = pytest.mark.registry
PLATFORMS = ["windows/amd64:10.0.17763", "windows/amd64:10.0.20348", "linux/amd64"]


def build_all(root, bases, binaries, events=None, push=True, **image):
    image = {"windows_base": bases.windows, "repository": f"{bases.registry.host}/team/hello", "tag": "1.0",
             "outputs": ["oci-layout", "oci-tar", "docker-archive"], **image}
    config = oci_config(root, PLATFORMS, **image)
    backend = OciBackend(config)
    results = []
    for platform in config.platforms:
        assert backend.unavailable(platform) is None
        ref = f"{config.image_repository}:1.0-{platform.key}"
        results.append(backend.build(ImageRequest(config, platform, {"hello": binaries[platform.os]}, ref, VERSION)))
    report = publish(config, results, push=push, on_event=events.append if events is not None else None)
    return config, results, report


@pytest.fixture(scope="module")
def built(seeded_bases, oci_binaries, tmp_path_factory):
    events = []
    config, results, report = build_all(tmp_path_factory.mktemp("first"), seeded_bases, oci_binaries, events)
    return config, results, report, events


def test_one_tag_holds_an_index_with_os_versions(built, seeded_bases):
    config, results, report, events = built
    ref = f"{seeded_bases.registry.host}/team/hello:1.0"
    raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}").output)
    assert raw["mediaType"] == mf.OCI_INDEX  # Docker schema2 Windows images + an OCI linux image
    plats = [d["platform"] for d in raw["manifests"]]
    assert plats == [
        {"os": "windows", "architecture": "amd64", "os.version": WINDOWS_VERSIONS["ltsc2019"]},
        {"os": "windows", "architecture": "amd64", "os.version": WINDOWS_VERSIONS["ltsc2022"]},
        {"os": "linux", "architecture": "amd64"}]
    assert [d["digest"] for d in raw["manifests"]] == [r.digest for r in results]
    assert [d["mediaType"] for d in raw["manifests"]] == [mf.DOCKER_MANIFEST, mf.DOCKER_MANIFEST, mf.OCI_MANIFEST]
    assert report["digest"] == mf.digest_of(json.dumps(raw, separators=(",", ":"), sort_keys=True).encode())
    assert any(e.startswith("mount ") for e in events)  # base layers mounted from windows/nanoserver
    # every pushed image is complete: skopeo copies the whole tag, checking every digest
    skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{ref}", f"oci:{config.root / 'copied'}:1.0")


@pytest.mark.parametrize("index", [0, 1])
def test_windows_image_config_and_layer(built, seeded_bases, index):
    _, results, _, _ = built
    result = results[index]
    url = f"{seeded_bases.registry.url}/v2/team/hello"
    manifest = requests.get(f"{url}/manifests/{result.digest}", headers={"Accept": mf.ACCEPT}, timeout=10).json()
    assert manifest["mediaType"] == mf.DOCKER_MANIFEST
    assert [layer["mediaType"] for layer in manifest["layers"]] == [mf.DOCKER_LAYER] * 2
    cfg = requests.get(f"{url}/blobs/{manifest['config']['digest']}", timeout=10).json()
    assert cfg["os"] == "windows" and cfg["os.version"] == list(WINDOWS_VERSIONS.values())[index]
    inner = cfg["config"]
    assert inner["Entrypoint"] == ["C:\\app\\hello.exe"] and inner["User"] == "ContainerUser"
    assert inner["WorkingDir"] == "C:\\app"
    assert not [e for e in inner.get("Env") or [] if e.upper().startswith("PATH=")]  # the base's registry PATH rules
    assert inner["Labels"]["org.opencontainers.image.version"] == VERSION
    assert cfg["created"] == "2024-05-01T00:00:00Z"  # the base's, without SOURCE_DATE_EPOCH
    assert len(cfg["rootfs"]["diff_ids"]) == 2 and len(cfg["history"]) == 2
    import gzip
    import io
    import tarfile

    blob = requests.get(f"{url}/blobs/{manifest['layers'][-1]['digest']}", timeout=30).content
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        assert tar.getnames() == ["Files", "Files/app", "Files/app/hello.exe", "Hives"]
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{result.reference.split(':1.0')[0]}@"
                             f"{result.digest}").output)
    assert info["Os"] == "windows" and info["Architecture"] == "amd64"


def test_local_outputs_read_by_skopeo(built):
    config, results, report, _ = built
    images = config.out_dir / "images"
    for result, platform in zip(results, config.platforms, strict=True):
        tag = result.reference.rpartition(":")[2]
        layers = [layer.digest for layer in result.layers]
        for transport, path in (("oci", images / platform.key / "oci"),
                                ("oci-archive", images / f"{platform.key}.oci.tar")):
            info = json.loads(skopeo("inspect", f"--override-os={platform.os}", f"{transport}:{path}:{tag}").output)
            assert info["Layers"] == layers and info["Os"] == platform.os
            if platform.os == "linux":  # an OCI manifest is listed as is; Docker schema2 ones through an OCI index
                assert info["Digest"] == result.digest
        archive = images / f"{platform.key}.docker.tar"
        info = json.loads(skopeo("inspect", f"--override-os={platform.os}", f"docker-archive:{archive}").output)
        assert info["Os"] == platform.os and len(info["Layers"]) == len(layers)
    assert str(images / "index" / "oci") in report["outputs"]
    skopeo("copy", "--all", f"oci:{images / 'index' / 'oci'}:1.0", f"oci:{config.root / 'index-copy'}:1.0")
    index = json.loads((images / "index" / "oci" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == report["digest"]


def test_same_inputs_same_digests_in_a_fresh_folder(built, seeded_bases, oci_binaries, tmp_path):
    _, results, report, _ = built
    _, again, report2 = build_all(tmp_path / "second", seeded_bases, oci_binaries, push=False)
    assert [r.digest for r in again] == [r.digest for r in results]
    assert report2["digest"] == report["digest"]


def test_source_date_epoch_sets_created(seeded_bases, oci_binaries, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    config = oci_config(tmp_path, ["linux/amd64"], outputs=[])
    result = OciBackend(config).build(ImageRequest(config, config.platforms[0], {"hello": oci_binaries["linux"]},
                                                   "hello:1", VERSION))
    from wgobuild.oci.blobs import BlobStore

    store = BlobStore(config.state_dir)
    cfg = json.loads(store.read(json.loads(store.read(result.digest))["config"]["digest"]))
    assert cfg["created"] == "2023-11-14T22:13:20Z" and cfg["config"]["User"] == "65532"
    assert cfg["config"]["Entrypoint"] == ["/app/hello"]
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(WgobuildError, match="SOURCE_DATE_EPOCH='yesterday' must be a number"):
        OciBackend(config).build(ImageRequest(config, config.platforms[0], {"hello": oci_binaries["linux"]},
                                              "hello:1", VERSION))


def test_unavailable_and_choice(tmp_path):
    config = oci_config(tmp_path, ["windows/amd64", "linux/amd64", "darwin/arm64"], backend="oci")
    backend = OciBackend(config)
    assert backend.name == "oci"
    assert "no container images" in backend.unavailable(Platform.parse("darwin/arm64"))
    reason = backend.unavailable(Platform.parse("windows/amd64"))  # mcr.microsoft.com: no network here
    assert "\n" not in reason and "mcr.microsoft.com" in reason and "point image.windows_base" in reason
    assert backend.unavailable(Platform.parse("linux/amd64")) is None  # scratch needs nothing
    assert choose_backend(config, Platform.parse("linux/amd64")).name == "oci"


def test_push_to_auth_and_token_registries(auth_registry, token_registry, oci_binaries, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(auth_registry.docker_config(tmp_path / "docker")))
    for reg in (auth_registry, token_registry):
        config = oci_config(tmp_path / reg.host.replace(":", "_"), ["linux/amd64"], outputs=[],
                            repository=f"{reg.host}/team/hello", tag="2.0")
        result = OciBackend(config).build(ImageRequest(config, config.platforms[0],
                                                       {"hello": oci_binaries["linux"]}, f"{reg.host}/team/hello:2.0",
                                                       VERSION))
        report = publish(config, [result], push=True)
        assert report["digest"] == result.digest and report["pushed"].endswith(result.digest)
    creds = f"{auth_registry.user}:{auth_registry.password}"
    info = json.loads(skopeo("inspect", "--tls-verify=false", "--creds", creds,
                             f"docker://{auth_registry.host}/team/hello:2.0").output)
    assert info["Digest"] == result.digest  # same image, same digest in both registries


def test_push_needs_a_registry_in_the_repository(tmp_path, oci_binaries, capsys):
    config = oci_config(tmp_path, ["linux/amd64"], outputs=[])
    result = OciBackend(config).build(ImageRequest(config, config.platforms[0], {"hello": oci_binaries["linux"]},
                                                   "hello:1", VERSION, push=True))
    assert "cannot ask" not in capsys.readouterr().out, "no registry named: none is asked for a built image"
    with pytest.raises(OciError, match="names no registry"):
        publish(config, [result], push=True)
    saved = config.out_dir / "images" / "linux-amd64.json"
    result.save(saved)
    assert ImageResult.load(saved).digest == result.digest


def test_backend_module_is_cheap_to_import():
    code = "import sys, wgobuild.oci.backend; print('requests' in sys.modules, 'docker' in sys.modules)"
    result = proc.run([sys.executable, "-c", code], quiet=True, check=True, env={**os.environ})
    assert result.output.strip() == "False False"


@pytest.mark.docker
def test_linux_image_runs_in_dockerd(built, docker_host):
    """The docker-save tar, loaded into the real dockerd, runs and prints the version stamped into the binary."""
    config, results, _, _ = built
    import docker

    client = docker.from_env()
    try:
        with open(config.out_dir / "images" / "linux-amd64.docker.tar", "rb") as handle:
            loaded = client.images.load(handle.read())
        assert [image.tags for image in loaded] == [[results[2].reference]]
        output = client.containers.run(results[2].reference, ["-version"], remove=True, network_mode="none")
        assert output.decode().strip() == VERSION
    finally:
        client.images.remove(results[2].reference, force=True)
        client.close()


def test_custom_workdir_and_bad_workdir(tmp_path, oci_binaries):
    from wgobuild.oci.blobs import BlobStore

    config = oci_config(tmp_path / "a", ["windows/amd64"], outputs=[], workdir="C:\\svc\\bin",
                        bases={"windows-amd64": "scratch"})
    platform = config.platforms[0]
    result = OciBackend(config).build(ImageRequest(config, platform, {"hello": oci_binaries["windows"]}, "h:1",
                                                   VERSION))
    store = BlobStore(config.state_dir)
    manifest = json.loads(store.read(result.digest))
    cfg = json.loads(store.read(manifest["config"]["digest"]))
    assert cfg["config"]["Entrypoint"] == ["C:\\svc\\bin\\hello.exe"] and cfg["os.version"] == "10.0.20348"
    import gzip
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(store.read(manifest["layers"][0]["digest"])))) as tar:
        assert tar.getnames() == ["Files", "Files/svc", "Files/svc/bin", "Files/svc/bin/hello.exe", "Hives"]
    bad = oci_config(tmp_path / "b", ["linux/amd64"], outputs=[], workdir="/app/../etc")
    with pytest.raises(ConfigError, match=r"\[image\]\.workdir: '/app/\.\./etc': name a folder of the app's own"):
        OciBackend(bad).build(ImageRequest(bad, bad.platforms[0], {"hello": oci_binaries["linux"]}, "h:1", VERSION))


@pytest.mark.parametrize(("workdir", "words"), [
    ("D:\\app", "Windows containers have a C: drive only"),  # the layer format can only place files on C:
    ("C:\\Windows\\app", "lies under C:\\Windows, a folder of the base image"),  # would re-declare C:\Windows
    ("c:\\users\\svc", "lies under C:\\users, a folder of the base image"),
    ("C:\\", "name a folder of the app's own"),
])
def test_windows_workdir_is_a_folder_of_its_own_on_c(tmp_path, oci_binaries, workdir, words):
    """The daemonless image and the Dockerfile refuse the same folders, through the one check."""
    from wgobuild import dockerfile

    config = oci_config(tmp_path / "w", ["windows/amd64"], outputs=[], workdir=workdir,
                        bases={"windows-amd64": "scratch"})
    request = ImageRequest(config, config.platforms[0], {"hello": oci_binaries["windows"]}, "h:1", VERSION)
    with pytest.raises(ConfigError, match=re.escape(words)):
        OciBackend(config).build(request)
    with pytest.raises(ConfigError, match=re.escape(words)):
        dockerfile.render(config, config.platforms[0], VERSION)
