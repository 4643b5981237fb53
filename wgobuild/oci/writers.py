"""Where an assembled image goes: an OCI image layout (folder or tar), a docker-save tar, or a registry.

One small interface (``write(target, store) -> str``), like ko's publishers. Local outputs are built under a
temporary name and renamed when complete, so a full disk or Ctrl-C leaves the previous good output or none. A push
uploads every blob before the manifest and the manifests before the index, so a tag only ever names a complete
image; blobs already in the registry are skipped, so an interrupted push resumes where it stopped.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from wgobuild import files
from wgobuild.oci import OciError
from wgobuild.oci import manifest as mf
from wgobuild.oci.blobs import BlobStore, disk_error, hex_of

REF_NAME = "org.opencontainers.image.ref.name"


@dataclass
class Built:
    """One platform's assembled image; its config and layers are in the blob store (or mountable)."""

    reference: str  # repository:tag of this platform's image
    manifest: bytes
    media_type: str
    platform: dict[str, Any]
    mounts: dict[str, str] = field(default_factory=dict)  # blob digest -> "registry/repository" holding it
    fetch: Callable[[str, BlobStore], None] | None = None  # copies a base blob into the store when needed

    @property
    def digest(self) -> str:
        return mf.digest_of(self.manifest)

    @property
    def blobs(self) -> list[dict[str, Any]]:
        doc = json.loads(self.manifest)
        return [doc["config"], *doc["layers"]]

    @property
    def size(self) -> int:
        return sum(int(b["size"]) for b in self.blobs) + len(self.manifest)

    def ensure_local(self, store: BlobStore) -> None:
        for blob in self.blobs:
            if not store.has(blob["digest"]):
                if self.fetch is None:
                    raise OciError(f"blob {blob['digest']} of {self.reference} is not available locally")
                self.fetch(blob["digest"], store)
            check_size(store, blob, self.reference)


def check_size(store: BlobStore, blob: dict[str, Any], reference: str) -> None:
    """A stored blob must have the size its descriptor declares before it is written out or pushed."""
    path = store.path(blob["digest"])
    have = path.stat().st_size
    if have != blob["size"]:
        raise OciError(f"blob {blob['digest']} of {reference} is {have} bytes in the store but its descriptor "
                       f"declares {blob['size']}: delete {path} and build again")


@dataclass
class Target:
    """What a writer writes: one image, or several under one index (``reference`` is the shared tag)."""

    reference: str
    images: list[Built]

    @property
    def index(self) -> bytes | None:
        if len(self.images) < 2:
            return None
        return mf.canonical(mf.image_index([(b.manifest, b.media_type, b.platform) for b in self.images]))

    @property
    def top(self) -> tuple[bytes, str]:
        index = self.index
        if index is None:
            return self.images[0].manifest, self.images[0].media_type
        return index, json.loads(index)["mediaType"]

    @property
    def digest(self) -> str:
        return mf.digest_of(self.top[0])

    @property
    def tag(self) -> str:
        name, _, tag = self.reference.rpartition(":")
        return tag if "/" not in tag and name else "latest"


class Writer(Protocol):
    def write(self, target: Target, store: BlobStore) -> str:
        """Write ``target``; return where it went (a path or a reference)."""


def _layout_entries(target: Target, store: BlobStore) -> tuple[list[tuple[str, bytes | Path]], bytes]:
    """(name, content) pairs of the layout's blobs, and its index.json."""
    entries: dict[str, bytes | Path] = {}
    for image in target.images:
        image.ensure_local(store)
        entries[f"blobs/sha256/{hex_of(image.digest)}"] = image.manifest
        for blob in image.blobs:
            entries[f"blobs/sha256/{hex_of(blob['digest'])}"] = store.path(blob["digest"])
    top, media = target.top
    if media not in (mf.OCI_MANIFEST, mf.OCI_INDEX):
        # OCI tools (skopeo) only follow OCI media types from index.json: Docker schema2 images (same manifest
        # digests as pushed) are listed through an OCI index.
        top, media = mf.canonical(mf.image_index([(b.manifest, b.media_type, b.platform) for b in target.images],
                                                 family="oci")), mf.OCI_INDEX
    entries[f"blobs/sha256/{hex_of(mf.digest_of(top))}"] = top
    desc = mf.descriptor(media, top, annotations={REF_NAME: target.tag})
    if media == mf.OCI_MANIFEST:
        desc["platform"] = target.images[0].platform
    index = mf.canonical({"schemaVersion": 2, "mediaType": mf.OCI_INDEX, "manifests": [desc]})
    return sorted(entries.items()), index


@dataclass
class OciLayoutWriter:
    path: Path

    def write(self, target: Target, store: BlobStore) -> str:
        entries, index = _layout_entries(target, store)
        try:
            with files.atomic_dir(self.path) as tmp:
                (tmp / "blobs" / "sha256").mkdir(parents=True)
                for name, content in entries:
                    if isinstance(content, Path):
                        _link_or_copy(content, tmp / name)
                    else:
                        (tmp / name).write_bytes(content)
                (tmp / "oci-layout").write_bytes(b'{"imageLayoutVersion":"1.0.0"}')
                (tmp / "index.json").write_bytes(index)  # last: a layout without it is not a layout
        except OSError as exc:
            raise disk_error(exc, self.path) from None
        return str(self.path)


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard-link a store blob into a layout (no second copy of a 124 MB base layer); copy across filesystems."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _tar_add(tar: tarfile.TarFile, name: str, content: bytes | Path) -> None:
    info = tarfile.TarInfo(name)
    info.mode, info.mtime = 0o644, 0
    if isinstance(content, Path):
        info.size = content.stat().st_size
        with open(content, "rb") as handle:
            tar.addfile(info, handle)
    else:
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))


def _write_tar(path: Path, entries: list[tuple[str, bytes | Path]]) -> None:
    try:
        with files.atomic_open(path) as handle, tarfile.open(fileobj=handle, mode="w|",
                                                             format=tarfile.PAX_FORMAT) as tar:
            for name, content in entries:
                _tar_add(tar, name, content)
    except OSError as exc:
        raise disk_error(exc, path) from None


@dataclass
class OciTarWriter:
    path: Path

    def write(self, target: Target, store: BlobStore) -> str:
        entries, index = _layout_entries(target, store)
        _write_tar(self.path, [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), *entries, ("index.json", index)])
        return str(self.path)


@dataclass
class DockerArchiveWriter:
    """``docker load`` input (``manifest.json``): what Windows engines' classic image store reads."""

    path: Path

    def write(self, target: Target, store: BlobStore) -> str:
        entries, _ = _layout_entries(target, store)
        manifest = []
        for image in target.images:
            doc = json.loads(image.manifest)
            manifest.append({"Config": f"blobs/sha256/{hex_of(doc['config']['digest'])}",
                             "RepoTags": [image.reference],
                             "Layers": [f"blobs/sha256/{hex_of(layer['digest'])}" for layer in doc["layers"]]})
        _write_tar(self.path, [*entries, ("manifest.json", mf.canonical(manifest))])
        return str(self.path)


@dataclass
class RegistryWriter:
    insecure: list[str] = field(default_factory=list)
    on_event: Callable[[str], None] | None = None  # progress lines ("skip", "mount", "upload", "manifest", "index")

    def _event(self, text: str) -> None:
        if self.on_event is not None:
            self.on_event(text)

    def write(self, target: Target, store: BlobStore) -> str:
        from wgobuild.oci.registry import Client, Reference

        ref = Reference.parse(target.reference)
        client = Client(ref.registry, self.insecure)
        repo = ref.repository
        for image in target.images:
            for blob in image.blobs:
                digest = blob["digest"]
                if client.blob_exists(repo, digest):
                    self._event(f"skip {digest}")
                    continue
                source = image.mounts.get(digest, "")
                registry, _, source_repo = source.partition("/")
                if registry == ref.registry and source_repo and client.mount(repo, digest, source_repo):
                    self._event(f"mount {digest}")
                    continue
                if not store.has(digest):
                    image.ensure_local(store)
                check_size(store, blob, image.reference)
                client.upload_blob(repo, digest, _opener(store, digest))
                self._event(f"upload {digest}")
            if len(target.images) == 1:
                client.put_manifest(repo, ref.tag, image.manifest, image.media_type)
                self._event(f"manifest {ref.tag}")
                return f"{ref.registry}/{repo}@{image.digest}"
            client.put_manifest(repo, image.digest, image.manifest, image.media_type)
            self._event(f"manifest {image.digest}")
        data, media = target.top
        client.put_manifest(repo, ref.tag, data, media)
        self._event(f"index {ref.tag}")
        return f"{ref.registry}/{repo}@{mf.digest_of(data)}"


def _opener(store: BlobStore, digest: str) -> Callable[[], IO[bytes]]:
    return lambda: store.open(digest)
