"""Config, manifest and index documents: what is kept from the base, what is added, canonical bytes."""

import json

from wgobuild.oci import manifest as mf

BASE = {"architecture": "amd64", "os": "windows", "os.version": "10.0.20348.2849", "os.features": ["win32k"],
        "created": "2024-05-01T00:00:00Z", "container": "abc", "rootfs": {"type": "layers", "diff_ids": ["sha256:a"]},
        "config": {"Env": ["Path=C:\\Windows\\system32;C:\\Windows"], "User": "ContainerAdministrator"},
        "history": [{"created_by": "Apply image"}]}


def app(**over):
    values = {"os": "windows", "arch": "amd64", "os_version": "10.0.20348", "entrypoint": ["C:\\app\\svc.exe"],
              "cmd": ["-addr", ":8080"], "user": "ContainerUser", "workdir": "C:\\app", "env": {"MODE": "prod"},
              "ports": [8080], "labels": {"org.opencontainers.image.version": "1.0"}, "created": "",
              "comment": "svc 1.0"}
    values.update(over)
    return mf.AppSettings(**values)


def test_windows_config_keeps_base_platform_and_appends_layer():
    cfg = mf.image_config(BASE, "sha256:b", app())
    assert (cfg["os"], cfg["architecture"], cfg["os.version"], cfg["os.features"]) == (
        "windows", "amd64", "10.0.20348.2849", ["win32k"])
    assert cfg["rootfs"]["diff_ids"] == ["sha256:a", "sha256:b"]
    assert len(cfg["history"]) == 2 and cfg["history"][-1]["comment"] == "svc 1.0"
    assert cfg["created"] == "2024-05-01T00:00:00Z"  # inherited without SOURCE_DATE_EPOCH
    inner = cfg["config"]
    assert inner["Entrypoint"] == ["C:\\app\\svc.exe"] and inner["Cmd"] == ["-addr", ":8080"]
    assert inner["User"] == "ContainerUser" and inner["WorkingDir"] == "C:\\app"
    assert "Path=C:\\app;C:\\Windows\\system32;C:\\Windows" in inner["Env"]  # the base's own key, ';'-joined
    assert "MODE=prod" in inner["Env"]
    assert inner["ExposedPorts"] == {"8080/tcp": {}}
    assert "container" not in cfg
    assert BASE["rootfs"]["diff_ids"] == ["sha256:a"]  # the base document is not modified


def test_windows_base_without_env_gets_no_path():
    """nanoserver and servercore carry no Env: PATH comes from the image's registry, and setting it would replace
    all of it (servercore would lose PowerShell, Wbem and OpenSSH). Only the app's own env is added."""
    base = {**BASE, "config": {"User": "ContainerUser"}}
    inner = mf.image_config(base, "sha256:b", app())["config"]
    assert inner["Env"] == ["MODE=prod"]
    assert not [e for e in inner["Env"] if e.upper().startswith("PATH=")]
    without_env = mf.image_config(base, "sha256:b", app(env={}))["config"]
    assert "Env" not in without_env or without_env["Env"] == []


def test_created_from_source_date_epoch_and_scratch_config():
    cfg = mf.image_config(None, "sha256:b", app(os="linux", os_version="", workdir="/app", entrypoint=["/app/svc"],
                                                created="2023-11-14T22:13:20Z", user="65532"))
    assert cfg["os"] == "linux" and "os.version" not in cfg
    assert cfg["rootfs"]["diff_ids"] == ["sha256:b"]
    assert cfg["created"] == cfg["history"][0]["created"] == "2023-11-14T22:13:20Z"
    assert "PATH=/app:/usr/local/bin:/usr/bin:/bin" in cfg["config"]["Env"]


def test_manifest_uses_the_family_media_types():
    config = mf.canonical({"a": 1})
    docker = mf.image_manifest("docker", config, [])
    assert docker["mediaType"] == mf.DOCKER_MANIFEST and docker["config"]["mediaType"] == mf.DOCKER_CONFIG
    assert docker["config"]["digest"] == mf.digest_of(config) and docker["config"]["size"] == len(config)
    assert mf.image_manifest("oci", config, [])["config"]["mediaType"] == mf.OCI_CONFIG


def test_index_family_and_os_version_on_descriptors():
    a, b = b'{"x":1}', b'{"x":2}'
    plat = {"os": "windows", "architecture": "amd64", "os.version": "10.0.17763.1234"}
    docker = mf.image_index([(a, mf.DOCKER_MANIFEST, plat), (b, mf.DOCKER_MANIFEST, plat)])
    assert docker["mediaType"] == mf.DOCKER_LIST
    assert docker["manifests"][0]["platform"]["os.version"] == "10.0.17763.1234"
    mixed = mf.image_index([(a, mf.DOCKER_MANIFEST, plat), (b, mf.OCI_MANIFEST, {"os": "linux"})])
    assert mixed["mediaType"] == mf.OCI_INDEX
    assert [d["mediaType"] for d in mixed["manifests"]] == [mf.DOCKER_MANIFEST, mf.OCI_MANIFEST]


def test_canonical_bytes_are_stable():
    assert mf.canonical({"b": 1, "a": [1, 2]}) == b'{"a":[1,2],"b":1}'
    assert json.loads(mf.canonical(BASE)) == BASE
    assert mf.platform_of(BASE) == {"os": "windows", "architecture": "amd64", "os.version": "10.0.20348.2849",
                                    "os.features": ["win32k"]}
    assert mf.media_type_of({"manifests": []}) == mf.OCI_INDEX
    assert mf.family_of(mf.DOCKER_LIST) == "docker" and mf.family_of(mf.OCI_LAYER) == "oci"
