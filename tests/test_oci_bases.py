"""Base sources (registry, OCI layout folder and tar, docker-save tar), platform selection, cache and faults."""

import json
import shutil
import tarfile

import pytest
import requests
from fixtures_registry import WINDOWS_VERSIONS, free_port, oci_config
from fixtures_registry import skopeo as _skopeo

from wgobuild.config import Platform
from wgobuild.oci import OciError, bases
from wgobuild.oci import manifest as mf
from wgobuild.oci.blobs import BlobStore

pytestmark = pytest.mark.registry
WIN19, WIN22, LINUX = (Platform.parse(t) for t in ("windows/amd64:10.0.17763", "windows/amd64:10.0.20348",
                                                   "linux/amd64"))


def _resolve(tmp_path, platform, **image):
    config = oci_config(tmp_path / "proj", [str(platform)], **image)
    return bases.resolve(config, platform, BlobStore(config.state_dir)), config


def test_windows_index_selects_os_version(seeded_bases, tmp_path):
    for platform, version in ((WIN19, WINDOWS_VERSIONS["ltsc2019"]), (WIN22, WINDOWS_VERSIONS["ltsc2022"])):
        base, config = _resolve(tmp_path / platform.key, platform, windows_base=seeded_bases.windows)
        assert base.family == "docker" and base.config["os.version"] == version  # X.Y.Z matched X.Y.Z.R
        assert base.registry.repository == "windows/nanoserver"
        assert base.registry.tag == platform.ltsc  # the tag comes from the os.version
        store = BlobStore(config.state_dir)
        base.ensure_blobs(store)
        assert all(store.has(layer["digest"]) for layer in base.layers)


def test_no_matching_platform_lists_offers(seeded_bases, tmp_path):
    config = oci_config(tmp_path, ["windows/amd64:10.0.26100"], windows_base=seeded_bases.windows + ":ltsc2022")
    with pytest.raises(OciError) as info:
        bases.resolve(config, config.platforms[0], BlobStore(config.state_dir))
    message = str(info.value)
    assert "no image for windows/amd64 10.0.26100" in message
    assert "windows/amd64 10.0.17763.1234" in message and "windows/amd64 10.0.20348.2849" in message
    with pytest.raises(OciError, match="offers: linux/amd64"):
        _resolve(tmp_path / "arm", Platform.parse("linux/arm64"), linux_base=seeded_bases.linux)


def test_linux_base_and_scratch(seeded_bases, tmp_path):
    base, _ = _resolve(tmp_path / "a", LINUX, linux_base=seeded_bases.linux)
    assert base.family == "oci" and base.config["os"] == "linux" and len(base.layers) == 1
    scratch, _ = _resolve(tmp_path / "b", LINUX)
    assert scratch.family == "oci" and scratch.layers == [] and scratch.config is None


def test_cache_and_offline(seeded_bases, tmp_path):
    config = oci_config(tmp_path / "p", [str(WIN22)], windows_base=seeded_bases.windows, offline=True)
    with pytest.raises(OciError, match="not in the local cache"):
        bases.resolve(config, WIN22, BlobStore(config.state_dir))
    online = oci_config(tmp_path / "p", [str(WIN22)], windows_base=seeded_bases.windows, pull="always")
    first = bases.resolve(online, WIN22, BlobStore(online.state_dir))
    again = bases.resolve(config, WIN22, BlobStore(config.state_dir))  # offline now: from the cache
    assert again.manifest == first.manifest and again.config == first.config


def test_unreachable_registry_is_one_plain_line(tmp_path):
    for spec in ("mcr.microsoft.com/windows/nanoserver", f"127.0.0.1:{free_port()}/windows/nanoserver"):
        config = oci_config(tmp_path / str(len(spec)), ["windows/amd64"], windows_base=spec)
        with pytest.raises(OciError) as info:
            bases.resolve(config, config.platforms[0], BlobStore(config.state_dir))
        message = str(info.value)
        assert "\n" not in message and "cannot reach registry" in message
        assert "point image.windows_base" in message and "docker-archive:PATH" in message


@pytest.fixture(scope="module")
def local_bases(seeded_bases, tmp_path_factory):
    """The seeded Windows base copied by skopeo into an OCI layout folder, an OCI tar and a docker-save tar."""
    folder = tmp_path_factory.mktemp("local-bases")
    src = f"docker://{seeded_bases.windows}:ltsc2022"
    _skopeo("copy", "--all", "--src-tls-verify=false", src, f"oci:{folder / 'layout'}:ltsc2022")
    _skopeo("copy", "--all", "--src-tls-verify=false", src, f"oci-archive:{folder / 'layout.tar'}:ltsc2022")
    index = requests.get(f"{seeded_bases.registry.url}/v2/windows/nanoserver/manifests/ltsc2022",
                         headers={"Accept": mf.DOCKER_LIST}, timeout=10).json()
    child = next(d["digest"] for d in index["manifests"] if d["platform"]["os.version"].startswith("10.0.20348"))
    _skopeo("copy", "--src-tls-verify=false", f"docker://{seeded_bases.windows}@{child}",
            f"docker-archive:{folder / 'save.tar'}:nanoserver:ltsc2022")
    return folder


@pytest.mark.parametrize("kind", ["oci:layout", "oci-archive:layout.tar", "docker-archive:save.tar"])
def test_local_sources(local_bases, tmp_path, kind):
    transport, _, name = kind.partition(":")
    base, config = _resolve(tmp_path, WIN22, windows_base=f"{transport}:{local_bases / name}")
    assert base.config["os.version"] == WINDOWS_VERSIONS["ltsc2022"]
    store = BlobStore(config.state_dir)
    base.ensure_blobs(store)
    assert [store.has(layer["digest"]) for layer in base.layers] == [True]
    if transport != "docker-archive":  # a docker-save tar carries only the entry it was saved for
        base19, _ = _resolve(tmp_path / "19", WIN19, windows_base=f"{transport}:{local_bases / name}")
        assert base19.config["os.version"] == WINDOWS_VERSIONS["ltsc2019"]


def test_corrupted_layout_blob(local_bases, tmp_path):
    layout = tmp_path / "layout"
    shutil.copytree(local_bases / "layout", layout)
    base, config = _resolve(tmp_path / "p", WIN22, windows_base=f"oci:{layout}")
    blob = layout / "blobs" / "sha256" / base.layers[0]["digest"].split(":")[1]
    blob.write_bytes(blob.read_bytes()[:-10] + b"corrupted!")
    with pytest.raises(OciError, match=r"digest mismatch.*corrupted or truncated"):
        base.ensure_blobs(BlobStore(config.state_dir))
    (layout / "index.json").write_text("{not json")
    with pytest.raises(OciError) as caught:
        _resolve(tmp_path / "q", WIN22, windows_base=f"oci:{layout}")
    assert str(caught.value) == (
        f"base oci:{layout}: index.json: not valid JSON (Expecting property name enclosed in double quotes: line 1 "
        "column 2 (char 1)); the base is malformed: copy or pull it again from a trusted source")
    (layout / "index.json").unlink()
    with pytest.raises(OciError, match="not an OCI image layout"):
        _resolve(tmp_path / "r", WIN22, windows_base=f"oci:{layout}")
    with pytest.raises(OciError, match="does not exist"):
        _resolve(tmp_path / "s", WIN22, windows_base=f"oci:{tmp_path / 'nowhere'}")


@pytest.mark.parametrize(("name", "why"), [
    ("layout.tar", "index.json is missing from {cut}; the archive is incomplete"),
    ("save.tar", "cannot read {cut} (unexpected end of data); the archive is corrupted or truncated"),
])
def test_truncated_archives(local_bases, tmp_path, name, why):
    data = (local_bases / name).read_bytes()
    cut = tmp_path / name
    cut.write_bytes(data[: len(data) // 2])
    transport = "oci-archive" if name == "layout.tar" else "docker-archive"
    with pytest.raises(OciError) as caught:
        base, config = _resolve(tmp_path / "p", WIN22, windows_base=f"{transport}:{cut}")
        base.ensure_blobs(BlobStore(config.state_dir))
    assert str(caught.value) == f"base {transport}:{cut}: " + why.format(cut=cut)


def test_docker_archive_layer_checked_against_diff_id(local_bases, tmp_path):
    """A layer whose content does not match the config's diff_id is refused."""
    src = local_bases / "save.tar"
    bad = tmp_path / "bad.tar"
    with tarfile.open(src) as tin, tarfile.open(bad, "w") as tout:
        manifest = json.loads(tin.extractfile("manifest.json").read())
        layer_name = manifest[0]["Layers"][0]
        for member in tin.getmembers():
            data = tin.extractfile(member).read() if member.isfile() else None
            if member.name == layer_name:
                import io

                with tarfile.open(fileobj=io.BytesIO(data)) as inner:
                    names = inner.getnames()
                replaced = io.BytesIO()
                with tarfile.open(fileobj=replaced, mode="w") as other:
                    info = tarfile.TarInfo(names[-1])
                    info.size = 3
                    other.addfile(info, io.BytesIO(b"bad"))
                data = replaced.getvalue()
                member.size = len(data)
            tout.addfile(member, io.BytesIO(data) if data is not None else None)
    with pytest.raises(OciError, match="does not match its diff_id"):
        _resolve(tmp_path / "p", WIN22, windows_base=f"docker-archive:{bad}")


def test_bases_key_is_checked(tmp_path):
    from wgobuild.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\[image\]\.bases\.win2019"):
        oci_config(tmp_path, ["linux/amd64"], bases={"win2019": "scratch"})
    with pytest.raises(ConfigError, match=r"\[image\]\.bases\.linux/amd64"):
        oci_config(tmp_path, ["linux/amd64"], bases={"linux/amd64": " "})
