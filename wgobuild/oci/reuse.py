"""Skip what the registry already has: an image pushed once is not built and uploaded again from the same inputs.

A daemonless image is a function of its inputs: the binaries' bytes, the ``[image]`` and ``[project]`` settings,
the version, the platform, the base image (by digest), ``SOURCE_DATE_EPOCH`` and the layer format. After a push,
each platform's image gets a small OCI artifact about it (``subject``: the image manifest; annotation
``dev.wgobuild.inputs``: the sha256 of those inputs) under the tag ``inputs-<sha256>``. A later build that will be
pushed (``--push`` or ``image.push``) computes the same sha256 and asks for that tag first: when the repository
holds it, the image is taken from there (its manifest, and its blobs only when local outputs need them) instead of
being assembled, the push finds every blob present and only moves the tag.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wgobuild import files
from wgobuild.oci import manifest as mf

if TYPE_CHECKING:
    from wgobuild.image import ImageRequest
    from wgobuild.oci.bases import Base
    from wgobuild.oci.registry import Client

ARTIFACT_TYPE = "application/vnd.wgobuild.image-inputs.v1+json"
ANNOTATION = "dev.wgobuild.inputs"
_FORMAT = 1  # bump when what the sha256 covers changes


def fingerprint(request: ImageRequest, base: Base, layer_format: str) -> str:
    """The sha256 of everything the daemonless image of ``request`` is made from."""
    config = request.config
    digest = hashlib.sha256
    binaries = []  # in order: the first is the entrypoint
    for name, path in request.binaries.items():
        binaries.append([name, files.sha256_file(Path(path))])
    doc = {"format": _FORMAT, "layer": layer_format, "platform": str(request.platform), "version": request.version,
           "image": asdict(config.image), "project": asdict(config.project), "binaries": binaries,
           "base": [base.source, base.digest, [str(d["digest"]) for d in base.layers],
                    mf.digest_of(mf.canonical(base.config)) if base.config is not None else ""],
           "epoch": os.environ.get("SOURCE_DATE_EPOCH", "")}
    return digest(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def tag_of(inputs: str) -> str:
    return f"inputs-{inputs}"


def find(client: Client, repository: str, inputs: str) -> tuple[bytes, str] | None:
    """The image manifest (bytes, media type) the repository holds for ``inputs``, or None. The artifact under the
    tag must name ``inputs`` in its annotation and the image by digest; the image's bytes must match that digest."""
    from wgobuild.oci.attach import get_or_none

    found = get_or_none(client, repository, tag_of(inputs))
    if found is None:
        return None
    try:
        doc = json.loads(found[0])
        subject = doc["subject"]
        wanted = str(subject["digest"])
        ok = doc.get("artifactType") == ARTIFACT_TYPE and doc.get("annotations", {}).get(ANNOTATION) == inputs
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if not ok:
        return None
    image = get_or_none(client, repository, wanted)
    if image is None or mf.digest_of(image[0]) != wanted:
        return None
    return image[0], str(subject.get("mediaType") or image[1])


def record(client: Client, repository: str, manifest: bytes, media_type: str, inputs: str) -> None:
    """After a push: the artifact that lets the next build from ``inputs`` find the image ``manifest``."""
    from wgobuild.oci.attach import EMPTY, EMPTY_MEDIA, upload_small

    upload_small(client, repository, EMPTY)
    doc = {"schemaVersion": 2, "mediaType": mf.OCI_MANIFEST, "artifactType": ARTIFACT_TYPE,
           "config": mf.descriptor(EMPTY_MEDIA, EMPTY), "layers": [mf.descriptor(EMPTY_MEDIA, EMPTY)],
           "subject": mf.descriptor(media_type, manifest), "annotations": {ANNOTATION: inputs}}
    client.put_manifest(repository, tag_of(inputs), mf.canonical(doc), mf.OCI_MANIFEST)


def blob_fetcher(client: Client, repository: str, base: Base, manifest: bytes) -> Any:
    """``Built.fetch`` for an image taken from the repository: base blobs from the base, the rest from there, each
    read up to the size its descriptor declares and checked against its digest."""
    from wgobuild.oci.blobs import BlobStore

    doc = json.loads(manifest)
    sizes = {str(d["digest"]): int(d["size"]) for d in [doc["config"], *doc["layers"]]}
    base_blobs = {str(d["digest"]) for d in base.layers}

    def fetch(digest: str, store: BlobStore) -> None:
        if digest in base_blobs and base.fetch is not None:
            base.fetch(digest, store)
            return
        response = client.open_blob(repository, digest)
        with response:
            response.raw.decode_content = False
            store.put_stream(response.raw, expected=digest, size=sizes.get(digest, 0))

    return fetch
