"""Image config, manifest and index documents, and the two media-type families (Docker schema2 and OCI).

A derived image must use its base's family: registries reject a Docker schema2 manifest holding OCI layers and
vice versa. JSON is serialised canonically (sorted keys, no spaces) so the same inputs give the same digest.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

FAMILIES = {
    "docker": {"manifest": DOCKER_MANIFEST, "index": DOCKER_LIST, "config": DOCKER_CONFIG, "layer": DOCKER_LAYER},
    "oci": {"manifest": OCI_MANIFEST, "index": OCI_INDEX, "config": OCI_CONFIG, "layer": OCI_LAYER},
}
MANIFESTS = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEXES = (DOCKER_LIST, OCI_INDEX)
ACCEPT = ", ".join((*MANIFESTS, *INDEXES))


def canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data), **extra}


def family_of(media_type: str) -> str:
    return "docker" if media_type.startswith("application/vnd.docker.") else "oci"


def media_type_of(doc: dict[str, Any], fallback: str = OCI_MANIFEST) -> str:
    """A manifest's media type (OCI documents may omit it: an index has ``manifests``)."""
    if doc.get("mediaType"):
        return str(doc["mediaType"])
    return OCI_INDEX if "manifests" in doc else fallback


def platform_of(config: dict[str, Any]) -> dict[str, Any]:
    """The index ``platform`` object of an image config (with ``os.version`` for Windows)."""
    plat = {"os": config.get("os", ""), "architecture": config.get("architecture", "")}
    for key in ("os.version", "variant"):
        if config.get(key):
            plat[key] = config[key]
    if config.get("os.features"):
        plat["os.features"] = config["os.features"]
    return plat


@dataclass(frozen=True)
class AppSettings:
    """What the app layer adds to the base config (resolved defaults, Windows or linux conventions)."""

    os: str
    arch: str
    os_version: str
    entrypoint: list[str]
    cmd: list[str]
    user: str
    workdir: str
    env: dict[str, str]
    ports: list[int]
    labels: dict[str, str]
    created: str  # RFC 3339; "" = keep the base's
    comment: str


def image_config(base: dict[str, Any] | None, diff_id: str, app: AppSettings) -> dict[str, Any]:
    """Derive the new image config from the base's, keeping os, os.version, os.features and architecture."""
    cfg: dict[str, Any] = json.loads(json.dumps(base)) if base else {
        "architecture": app.arch, "os": app.os, "rootfs": {"type": "layers", "diff_ids": []}, "history": []}
    if app.os == "windows" and not cfg.get("os.version") and app.os_version:
        cfg["os.version"] = app.os_version
    for unused in ("container", "container_config", "docker_version", "id", "parent"):
        cfg.pop(unused, None)
    inner = dict(cfg.get("config") or {})
    env = {}
    for item in inner.get("Env") or []:
        name, _, value = item.partition("=")
        env[name] = value
    if app.os == "windows":
        # Windows bases carry no Env: PATH comes from the registry inside the image, and a PATH set here would
        # replace all of it (servercore would lose its PowerShell, Wbem and OpenSSH folders). The entrypoint is an
        # absolute path, so only a base that sets PATH itself gets the app folder put in front.
        key = next((k for k in env if k.upper() == "PATH"), None)
        if key is not None:
            env[key] = ";".join([app.workdir, env[key]])
    else:
        env["PATH"] = ":".join([app.workdir, env.get("PATH") or "/usr/local/bin:/usr/bin:/bin"])
    env.update(app.env)
    inner["Env"] = [f"{k}={v}" for k, v in env.items()] or None  # none to add: keep it absent, as ko does
    inner["Entrypoint"] = app.entrypoint
    inner["Cmd"] = app.cmd or None
    inner["User"] = app.user
    inner["WorkingDir"] = app.workdir
    if app.ports:
        inner["ExposedPorts"] = {**(inner.get("ExposedPorts") or {}), **{f"{p}/tcp": {} for p in app.ports}}
    inner["Labels"] = {**(inner.get("Labels") or {}), **app.labels}
    cfg["config"] = {k: v for k, v in inner.items() if v is not None}
    cfg["rootfs"] = {"type": "layers", "diff_ids": [*cfg.get("rootfs", {}).get("diff_ids", []), diff_id]}
    created = app.created or cfg.get("created") or "1970-01-01T00:00:00Z"
    cfg["created"] = created
    step = {"created": created, "created_by": "wgobuild", "comment": app.comment}
    cfg["history"] = [*(cfg.get("history") or []), step]
    return cfg


def image_manifest(family: str, config: bytes, layers: list[dict[str, Any]]) -> dict[str, Any]:
    media = FAMILIES[family]
    return {"schemaVersion": 2, "mediaType": media["manifest"],
            "config": descriptor(media["config"], config), "layers": layers}


def image_index(manifests: list[tuple[bytes, str, dict[str, Any]]], family: str = "") -> dict[str, Any]:
    """An index over ``(manifest bytes, media type, platform)``; Windows platforms carry ``os.version``.

    By default a Docker manifest list when every image is Docker schema2 (as mcr.microsoft.com serves), else an
    OCI index.
    """
    family = family or ("docker" if all(media == DOCKER_MANIFEST for _, media, _ in manifests) else "oci")
    return {"schemaVersion": 2, "mediaType": FAMILIES[family]["index"],
            "manifests": [descriptor(media, data, platform=plat) for data, media, plat in manifests]}
