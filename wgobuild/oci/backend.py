"""The daemonless image backend: base manifest + one app layer, no Docker engine needed.

``OciBackend.build`` assembles one platform's image (its blobs land in ``.wgobuild/blobs``) and writes the
configured local outputs; :func:`publish` puts several platforms' images under one tag (an index whose entries
carry ``os.version``), writes the combined layout, pushes when asked and records ``dist/reports/images.json``.
Module top level stays cheap: it is imported when doit tasks are created.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wgobuild.config import LOCAL_BASE_PREFIXES, Config, Platform
from wgobuild.errors import WgobuildError
from wgobuild.image import ImageRequest, ImageResult, LayerInfo, rfc3339, source_date_epoch

if TYPE_CHECKING:
    from wgobuild.oci.bases import Base
    from wgobuild.oci.blobs import BlobStore
    from wgobuild.oci.writers import Built

OCI_LABEL = "org.opencontainers.image."


def workdir(config: Config, platform: Platform) -> str:
    from wgobuild.dockerfile import image_workdir

    return image_workdir(config, platform)


def images_dir(config: Config) -> Path:
    return config.out_dir / "images"


class OciBackend:
    name = "oci"

    def __init__(self, config: Config) -> None:
        self.config = config
        self._bases: dict[Platform, Base] = {}

    @property
    def store(self) -> BlobStore:
        from wgobuild.oci.blobs import BlobStore

        return BlobStore(self.config.state_dir)

    def base(self, platform: Platform) -> Base:
        if platform not in self._bases:
            from wgobuild.oci import bases

            self._bases[platform] = bases.resolve(self.config, platform, self.store)
        return self._bases[platform]

    def unavailable(self, platform: Platform) -> str | None:
        if platform.os not in ("windows", "linux"):
            return f"{platform} has no container images (only windows and linux do)"
        image = self.config.image
        if image.style == "multistage":
            return "style = 'multistage' compiles inside a builder stage, which needs a Docker engine"
        if platform.os == "windows" and image.runtime == "servercore":
            return ("runtime = 'servercore' runs the hardening and clean-up scripts in a RUN step, which needs a "
                    "Windows Docker engine")
        try:
            self.base(platform)
        except WgobuildError as exc:
            if self.config.base_source(platform).startswith(LOCAL_BASE_PREFIXES):
                raise  # a local base file named in the config is bad input, not a missing service: fail the step
            return str(exc)
        return None

    def build(self, request: ImageRequest) -> ImageResult:
        from wgobuild.oci import layer, reuse

        base = self.base(request.platform)
        inputs = reuse.fingerprint(request, base, f"{layer.LAYER_FORMAT}:{layer.COMPRESSOR}")
        taken = self._from_repository(request, base, inputs) if request.push else None
        built = taken or assemble(request, base, self.store, self.config.state_dir)
        outputs = write_local(self.config, request.platform.key, [built], built.reference, self.store)
        result = _result(built, request.platform, outputs)
        result.extra["base"] = {"source": base.source, "digest": base.digest}  # for the image SBOM
        result.extra["inputs"] = inputs
        if taken is not None:
            result.extra["from_repository"] = True
        return result

    def _from_repository(self, request: ImageRequest, base: Base, inputs: str) -> Built | None:
        """The image the target repository already holds for ``inputs`` (see :mod:`wgobuild.oci.reuse`), or None:
        then it is built. A repository that cannot be asked is one line, and a build."""
        from wgobuild import proc
        from wgobuild.oci import manifest as mf
        from wgobuild.oci import reuse
        from wgobuild.oci.blobs import MAX_DOCUMENT
        from wgobuild.oci.registry import Client, Reference
        from wgobuild.oci.writers import Built

        ref = Reference.parse(request.reference)
        if ref.registry == "docker.io" and not request.reference.startswith("docker.io/"):
            return None  # image.repository names no registry: the push itself says what to set
        label = f"image-platform:{request.platform.key}"
        client = Client(ref.registry, self.config.image.insecure_registries)
        try:
            found = reuse.find(client, ref.repository, inputs)
            if found is None:
                return None
            manifest, media_type = found
            fetch = reuse.blob_fetcher(client, ref.repository, base, manifest)
            config_digest = str(json.loads(manifest)["config"]["digest"])
            if not self.store.has(config_digest):
                fetch(config_digest, self.store)
            image_config = json.loads(self.store.read(config_digest, MAX_DOCUMENT))
        except (WgobuildError, ValueError, KeyError, TypeError) as exc:
            proc.echo(f"cannot ask {ref.registry}/{ref.repository} for an image built from the same inputs "
                      f"({str(exc).splitlines()[0][:120]}): building it", label)
            return None
        self.store.put_bytes(manifest)
        mounts = {}
        if base.registry is not None:
            mounts = {d["digest"]: f"{base.registry.registry}/{base.registry.repository}" for d in base.layers}
        proc.echo(f"{ref.registry}/{ref.repository} already holds this image, built from the same inputs "
                  f"({mf.digest_of(manifest)[:19]}): taken from there, not built", label)
        return Built(request.reference, manifest, media_type, mf.platform_of(image_config), mounts, fetch)


def assemble(request: ImageRequest, base: Base, store: BlobStore, state_dir: Path) -> Built:
    """Config + manifest for one platform: the base's, plus one app layer with the binaries."""
    from wgobuild.oci import layer
    from wgobuild.oci import manifest as mf
    from wgobuild.oci.writers import Built

    config, platform = request.config, request.platform
    windows = platform.os == "windows"
    wd = workdir(config, platform)
    folder = wd.split(":", 1)[-1].replace("\\", "/").strip("/")  # C:\app -> app (Files/app in the layer)
    content = {f"{folder}/{name}{platform.exe_suffix}": Path(path) for name, path in request.binaries.items()}
    epoch = source_date_epoch()
    blob = layer.build(store, state_dir / "oci" / "layers", content, windows=windows, mtime=epoch or 0)
    sep = "\\" if windows else "/"
    entry = f"{wd.rstrip(sep)}{sep}{request.entry_binary}{platform.exe_suffix}"
    labels = {f"{OCI_LABEL}title": config.project.name, f"{OCI_LABEL}version": request.version,
              **config.image.labels}
    app = mf.AppSettings(
        os=platform.os, arch=platform.arch, os_version=platform.windows_version if windows else "",
        entrypoint=[entry], cmd=list(config.image.args),
        user=config.image.user or ("ContainerUser" if windows else "65532"), workdir=wd,
        env=dict(config.image.env), ports=list(config.image.expose), labels=labels,
        created=rfc3339(epoch) if epoch is not None else "", comment=f"{config.project.name} {request.version}")
    image_config = mf.image_config(base.config, blob.diff_id, app)
    config_bytes = mf.canonical(image_config)
    store.put_bytes(config_bytes)
    family = base.family
    layers = [*base.layers, {"mediaType": mf.FAMILIES[family]["layer"], "digest": blob.digest, "size": blob.size}]
    manifest = mf.canonical(mf.image_manifest(family, config_bytes, layers))
    store.put_bytes(manifest)
    mounts = {}
    if base.registry is not None:
        mounts = {d["digest"]: f"{base.registry.registry}/{base.registry.repository}" for d in base.layers}
    return Built(request.reference, manifest, mf.FAMILIES[family]["manifest"], mf.platform_of(image_config), mounts,
                 base.fetch)


def write_local(config: Config, name: str, images: list[Built], reference: str, store: BlobStore) -> list[str]:
    """The configured local outputs (``image.outputs``) of one image or of an index, under ``dist/images/``."""
    from wgobuild.oci import writers

    folder = images_dir(config)
    chosen: dict[str, writers.Writer] = {
        "oci-layout": writers.OciLayoutWriter(folder / name / "oci"),
        "oci-tar": writers.OciTarWriter(folder / f"{name}.oci.tar"),
        "docker-archive": writers.DockerArchiveWriter(folder / f"{name}.docker.tar"),
    }
    target = writers.Target(reference, images)
    return [chosen[kind].write(target, store) for kind in config.image.outputs]


def _result(built: Built, platform: Platform, outputs: list[str]) -> ImageResult:
    doc = json.loads(built.manifest)
    base_layers = doc["layers"][:-1]
    layers = [LayerInfo(d["digest"], d["size"], True) for d in base_layers]
    layers.append(LayerInfo(doc["layers"][-1]["digest"], doc["layers"][-1]["size"], False))
    return ImageResult(backend="oci", platform=str(platform), reference=built.reference,
                       digest=built.digest, size=built.size, layers=layers, outputs=outputs,
                       extra={"media_type": built.media_type, "platform": built.platform, "mounts": built.mounts})


def publish(config: Config, results: list[ImageResult], push: bool, reference: str = "",
            on_event: Any = None) -> dict[str, Any]:
    """One tag for every platform: the combined local outputs and the registry push.

    ``reference`` defaults to the repository with the un-suffixed tag; with one result the tag names that image,
    with several it names an index. Returns the tag's reference, digest, push result and outputs.
    """
    from wgobuild import proc
    from wgobuild.oci import OciError, layer, writers
    from wgobuild.oci.blobs import BlobStore

    if not results:
        raise OciError("no images to publish: build at least one platform first")
    store = BlobStore(config.state_dir)
    images = [image_of(config, result, store) for result in results]
    if not reference:
        tag = results[0].reference.rpartition(":")[2]
        if len(config.platforms) > 1:
            for plat in config.platforms:
                tag = tag.removesuffix(f"-{plat.key}")
        reference = f"{config.image_repository}:{tag}"
    target = writers.Target(reference, images)
    outputs = write_local(config, "index", images, reference, store) if len(images) > 1 else []
    pushed = ""
    if push:
        from wgobuild.oci.registry import Reference

        if Reference.parse(reference).registry == "docker.io" and not reference.startswith("docker.io/"):
            raise OciError(f"image.repository {config.image_repository!r} names no registry: set it to "
                           "'registry.example.com/team/name' to push")
        from wgobuild import signing

        signer = signing.signer_for(config)  # the key is decrypted before anything is pushed
        insecure = list(config.image.insecure_registries)
        pushed = writers.RegistryWriter(insecure, on_event).write(target, store)
        proc.echo(f"pushed {pushed}", label="oci")
        _record_inputs(config, results, reference, store)
        for line in signing.after_push(config, pushed, target, results, signer, insecure):
            proc.echo(line, label="oci")
    report = {"reference": reference, "digest": target.digest, "media_type": target.top[1], "pushed": pushed,
              "outputs": outputs}
    proc.echo(f"{reference} {target.digest}", label="oci")
    # Published: the app layers no current image names go (the last few stay, for an edit that is undone).
    layer.prune(store, config.state_dir / "oci" / "layers", {d.digest for r in results for d in r.layers})
    return report


def _record_inputs(config: Config, results: list[ImageResult], reference: str, store: BlobStore) -> None:
    """After a push: mark each pushed image with the inputs it was built from (:mod:`wgobuild.oci.reuse`), so the
    next build from the same inputs takes it from the repository. A failure costs only that: one line."""
    from wgobuild import proc
    from wgobuild.oci import reuse
    from wgobuild.oci.registry import Client, Reference

    ref = Reference.parse(reference)
    client = Client(ref.registry, config.image.insecure_registries)
    for result in results:
        inputs = result.extra.get("inputs")
        if not isinstance(inputs, str) or result.extra.get("from_repository"):
            continue
        try:
            reuse.record(client, ref.repository, store.read(result.digest), str(result.extra["media_type"]), inputs)
        except WgobuildError as exc:
            proc.echo(f"{result.platform}: not marked with its inputs in {ref.repository} "
                      f"({str(exc).splitlines()[0][:120]}): the next build from them builds it again", label="oci")


def image_of(config: Config, result: ImageResult, store: BlobStore) -> Built:
    """Rebuild the in-memory image of a result from the blob store (base blobs are fetched only when needed)."""
    from wgobuild.oci import bases
    from wgobuild.oci.writers import Built

    platform = Platform.parse(result.platform)
    plat = dict(found) if isinstance(found := result.extra.get("platform"), dict) else {}

    def fetch(digest: str, into: BlobStore) -> None:
        base = bases.resolve(config, platform, into)
        if base.fetch is None:
            from wgobuild.oci import OciError

            raise OciError(f"blob {digest} of {result.reference} is gone: build the image again")
        base.fetch(digest, into)

    return Built(result.reference, store.read(result.digest), str(result.extra["media_type"]), plat,
                 dict(mounts) if isinstance(mounts := result.extra.get("mounts"), dict) else {}, fetch)
