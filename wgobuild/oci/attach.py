"""Attaching documents to a pushed image: the one mechanism the SBOM, the signatures and the provenance share.

Each document is pushed twice, so that every tool finds it:

- as an OCI 1.1 artifact whose manifest names the image as its ``subject`` (``artifactType``, an empty config, one
  layer: the document), as cosign's bundle specification (specs/BUNDLE_SPEC.md in cosign) lays it out. A registry
  with the referrers API lists it under ``/v2/<repo>/referrers/<digest>``; for one without (distribution 2.x, which
  answers that route with 404) the referrers tag ``sha256-<hex>`` holds an index of the artifacts, updated here, as
  the distribution spec's "referrers tag schema" asks;
- under cosign's own tags, ``sha256-<hex>.sig`` / ``.att`` / ``.sbom``: a small image whose layers are the
  documents (what cosign's default mode, skopeo and older tools read).

Reading goes the same two ways (:func:`referrers`, :func:`tagged_layers`).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

from wgobuild.oci import manifest as mf
from wgobuild.oci.blobs import hex_of
from wgobuild.oci.registry import Client, RegistryError

EMPTY_MEDIA = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"


@dataclass(frozen=True)
class Subject:
    """The pushed manifest (or index) a document is about."""

    digest: str
    media_type: str
    size: int

    @property
    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class Layer:
    data: bytes
    media_type: str
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def descriptor(self) -> dict[str, Any]:
        desc = mf.descriptor(self.media_type, self.data)
        if self.annotations:
            desc["annotations"] = dict(self.annotations)
        return desc


def upload_small(client: Client, repo: str, data: bytes) -> None:
    """Upload a small blob held in memory, unless the repository has it already."""
    digest = mf.digest_of(data)
    if not client.blob_exists(repo, digest):
        client.upload_blob(repo, digest, lambda: io.BytesIO(data))


def fallback_tag(digest: str) -> str:
    """The referrers tag of the distribution spec: ``sha256-<hex>``."""
    return f"sha256-{hex_of(digest)}"


def cosign_tag(digest: str, suffix: str) -> str:
    """cosign's tag for a digest's signatures (``sig``), attestations (``att``) or SBOM (``sbom``)."""
    return f"{fallback_tag(digest)}.{suffix}"


def put_referrer(client: Client, repo: str, subject: Subject, artifact_type: str, layer: Layer,
                 annotations: dict[str, str] | None = None) -> str:
    """Push ``layer`` as an artifact about ``subject``; returns the artifact manifest's digest."""
    upload_small(client, repo, EMPTY)
    upload_small(client, repo, layer.data)
    doc: dict[str, Any] = {
        "schemaVersion": 2, "mediaType": mf.OCI_MANIFEST, "artifactType": artifact_type,
        "config": mf.descriptor(EMPTY_MEDIA, EMPTY), "layers": [layer.descriptor], "subject": subject.descriptor}
    if annotations:
        doc["annotations"] = dict(annotations)
    data = mf.canonical(doc)
    digest = client.put_manifest(repo, mf.digest_of(data), data, mf.OCI_MANIFEST)
    if client.referrers(repo, subject.digest) is None:  # no referrers API: keep the referrers tag's index
        _add_to_fallback(client, repo, subject.digest, {**mf.descriptor(mf.OCI_MANIFEST, data),
                                                        "artifactType": artifact_type,
                                                        **({"annotations": dict(annotations)} if annotations else {})})
    return digest


def _add_to_fallback(client: Client, repo: str, subject: str, entry: dict[str, Any]) -> None:
    tag = fallback_tag(subject)
    manifests: list[dict[str, Any]] = []
    existing = get_or_none(client, repo, tag)
    if existing is not None:
        doc = json.loads(existing[0])
        manifests = [m for m in doc.get("manifests", []) if isinstance(m, dict) and m.get("digest") != entry["digest"]]
    manifests.append(entry)
    index = mf.canonical({"schemaVersion": 2, "mediaType": mf.OCI_INDEX, "manifests": manifests})
    client.put_manifest(repo, tag, index, mf.OCI_INDEX)


def put_tagged(client: Client, repo: str, tag: str, layers: list[Layer]) -> str:
    """Push ``layers`` as the small image cosign keeps under ``tag`` (replacing what was there)."""
    for layer in layers:
        upload_small(client, repo, layer.data)
    diff_ids = [mf.digest_of(layer.data) for layer in layers]
    config = mf.canonical({"architecture": "", "config": {}, "created": "0001-01-01T00:00:00Z",
                           "history": [{"created": "0001-01-01T00:00:00Z"} for _ in layers], "os": "",
                           "rootfs": {"type": "layers", "diff_ids": diff_ids}})
    upload_small(client, repo, config)
    doc = {"schemaVersion": 2, "mediaType": mf.OCI_MANIFEST, "config": mf.descriptor(mf.OCI_CONFIG, config),
           "layers": [layer.descriptor for layer in layers]}
    data = mf.canonical(doc)
    return client.put_manifest(repo, tag, data, mf.OCI_MANIFEST)


def get_or_none(client: Client, repo: str, ref: str) -> tuple[bytes, str] | None:
    """A manifest (bytes, media type) by tag or digest; None when the registry has no such one (404)."""
    try:
        return client.get_manifest(repo, ref)
    except RegistryError as exc:
        if exc.status == 404:
            return None
        raise


def referrers(client: Client, repo: str, digest: str, artifact_type: str) -> list[tuple[dict[str, Any], Layer]]:
    """The artifacts of ``artifact_type`` about ``digest`` (referrers API, else the referrers tag): each one's
    manifest and its first layer."""
    raw = client.referrers(repo, digest)
    if raw is None:
        found = get_or_none(client, repo, fallback_tag(digest))
        raw = found[0] if found else None
    if raw is None:
        return []
    found_docs: list[tuple[dict[str, Any], Layer]] = []
    for entry in json.loads(raw).get("manifests", []):
        if not isinstance(entry, dict) or entry.get("artifactType") != artifact_type:
            continue
        got = get_or_none(client, repo, str(entry["digest"]))
        if got is None:
            continue
        doc = json.loads(got[0])
        if mf.digest_of(got[0]) != entry["digest"] or doc.get("subject", {}).get("digest") != digest:
            continue  # not about this image, whatever the index says
        layers = doc.get("layers") or []
        if not layers:
            continue
        first = layers[0]
        data = client.read_blob(repo, str(first["digest"]))
        found_docs.append((doc, Layer(data, str(first.get("mediaType", "")), dict(first.get("annotations") or {}))))
    return found_docs


def tagged_layers(client: Client, repo: str, tag: str) -> list[Layer]:
    """The layers (with their annotations) of the image under one of cosign's tags; [] when there is none."""
    got = get_or_none(client, repo, tag)
    if got is None:
        return []
    doc = json.loads(got[0])
    return [Layer(client.read_blob(repo, str(d["digest"])), str(d.get("mediaType", "")),
                  dict(d.get("annotations") or {})) for d in doc.get("layers", []) if isinstance(d, dict)]
