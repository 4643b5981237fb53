"""Software bills of materials, from the Go build information inside each binary (:mod:`wgobuild.buildinfo`).

Per binary and GOOS/GOARCH: ``dist/sbom/<binary>-<os>-<arch>.spdx.json`` (SPDX 2.3) and ``.cdx.json``
(CycloneDX 1.6). Per image: ``dist/sbom/image-<platform>.spdx.json``, the image with its base (reference and
digest), its app layer and the binaries in it with their modules.

Deterministic: the creation time is ``SOURCE_DATE_EPOCH`` (1970-01-01T00:00:00Z when unset, as the app layer's file
times), every id is derived from names and digests, keys are sorted, so an unchanged binary gives byte-identical
files. The documents are returned as well as written, for whoever attaches them to a pushed image.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from wgobuild import __version__, buildinfo, files, gotool
from wgobuild.buildinfo import BuildInfo, Module
from wgobuild.config import Binary, Config, Platform
from wgobuild.image import rfc3339, source_date_epoch

if TYPE_CHECKING:
    from wgobuild.image import ImageResult

TOOL = f"wgobuild-{__version__}"
NAMESPACE = "https://wgobuild.invalid/spdx"  # documentNamespace prefix: a URI that is never fetched
_SPDX_ID = re.compile(r"[^A-Za-z0-9.-]+")


@dataclass(frozen=True)
class BinarySbom:
    spdx: dict[str, Any]
    cyclonedx: dict[str, Any]
    spdx_path: Path
    cyclonedx_path: Path


@dataclass(frozen=True)
class ImageSbom:
    spdx: dict[str, Any]
    path: Path


def sbom_dir(cfg: Config) -> Path:
    return cfg.out_dir / "sbom"


def binary_paths(cfg: Config, name: str, platform: Platform) -> tuple[Path, Path]:
    """(SPDX, CycloneDX) paths of one binary's SBOMs."""
    stem = f"{name}-{platform.os}-{platform.arch}"
    return sbom_dir(cfg) / f"{stem}.spdx.json", sbom_dir(cfg) / f"{stem}.cdx.json"


def image_path(cfg: Config, platform: Platform) -> Path:
    return sbom_dir(cfg) / f"image-{platform.key}.spdx.json"


def created() -> str:
    return rfc3339(source_date_epoch() or 0)


def compile_binary(cfg: Config, binary: Binary, platform: Platform, version: str, *, label: str | None = None,
                   batch: gotool.BatchPlan | None = None, changed: Collection[str] = ()) -> None:
    """The compile step: ``go build`` of ``binary`` for ``platform`` (:func:`wgobuild.gotool.build`; with
    ``batch``, linked with the siblings built from the ``changed`` files: :class:`wgobuild.gotool.Batches`), then
    its SBOMs. The old SBOMs go first, so a failed compile leaves none looking current."""
    build = cfg.build
    for path in binary_paths(cfg, binary.name, platform):
        files.remove(path)
    if batch is None:
        gotool.build(cfg.root, binary.package, platform, cfg.binary_path(binary, platform), version,
                     ldflags=build.ldflags, tags=build.tags, cgo=build.cgo, trimpath=build.trimpath, label=label)
    else:
        batch.batches.build(cfg.root, platform, batch.me, batch.siblings, changed, ldflags=build.ldflags,
                            tags=build.tags, cgo=build.cgo, trimpath=build.trimpath, label=label)
    binary_sbom(cfg, binary.name, platform, version=version, ldflags=gotool.build_ldflags(version, build.ldflags))


def binary_sbom(cfg: Config, name: str, platform: Platform, *, version: str = "", ldflags: str = "") -> BinarySbom:
    """Write both SBOMs of the built binary ``name`` for ``platform``. ``ldflags`` is what wgobuild passed to
    ``go build``: Go leaves ``-ldflags`` out of the build info under ``-trimpath``, so it is recorded from here."""
    binary = cfg.binary_path(next(b for b in cfg.binaries if b.name == name), platform)
    spdx_path, cdx_path = binary_paths(cfg, name, platform)
    files.remove(spdx_path)  # an SBOM of an older binary must not be left looking current
    files.remove(cdx_path)
    info = buildinfo.read(binary)
    digest = files.sha256_file(binary)
    settings = _settings(info, ldflags)
    file_name = binary.name
    spdx = _spdx_binary(file_name, name, version, platform, info, digest, settings)
    cdx = _cyclonedx_binary(file_name, name, version, info, digest, settings)
    files.write_text(spdx_path, dump(spdx))
    files.write_text(cdx_path, dump(cdx))
    return BinarySbom(spdx, cdx, spdx_path, cdx_path)


def image_sbom(cfg: Config, platform: Platform, result: ImageResult, version: str = "") -> ImageSbom:
    """Write the SPDX SBOM of one built image: the image, its base (reference and digest), its app layer, and the
    binaries in the app layer with their modules (read from the binaries themselves)."""
    path = image_path(cfg, platform)
    files.remove(path)
    created_at = created()
    image_id = "SPDXRef-Image"
    packages: list[dict[str, Any]] = [{
        "SPDXID": image_id, "name": result.reference or cfg.image_repository, "versionInfo": result.digest,
        "downloadLocation": "NOASSERTION", "filesAnalyzed": False, "primaryPackagePurpose": "CONTAINER",
        "supplier": "NOASSERTION", **_checksums(result.digest),
        "comment": f"{platform} image built by the {result.backend} backend",
    }]
    relationships = [_rel("SPDXRef-DOCUMENT", "DESCRIBES", image_id)]
    base = _base_of(cfg, platform, result)
    if base is not None:
        packages.append(base)
        relationships.append(_rel(image_id, "DESCENDANT_OF", base["SPDXID"]))
    app = next((layer for layer in reversed(result.layers) if not layer.from_base), None)
    layer_id = "SPDXRef-Layer-app"
    packages.append({
        "SPDXID": layer_id, "name": "app layer", "versionInfo": app.digest if app else "NOASSERTION",
        "downloadLocation": "NOASSERTION", "filesAnalyzed": False, "primaryPackagePurpose": "ARCHIVE",
        "supplier": "NOASSERTION", **(_checksums(app.digest) if app else {}),
        "comment": f"the layer holding the binaries ({app.size if app else 0} bytes, compressed)",
    })
    relationships.append(_rel(image_id, "CONTAINS", layer_id))
    seen: set[str] = set()
    for binary in cfg.image_binaries:
        exe = cfg.binary_path(binary, platform)
        if cfg.image.style == "multistage":  # compiled inside the builder stage: not the file under dist/
            packages[-1]["comment"] += f"; {binary.name} was compiled in the builder stage and is not itemized"
            continue
        info = buildinfo.read(exe)
        pkgs, rels, top = _binary_packages(exe.name, binary.name, version, platform, info, files.sha256_file(exe),
                                           _settings(info, ""), created_at)
        relationships.append(_rel(layer_id, "CONTAINS", top))
        for pkg in pkgs:
            if pkg["SPDXID"] not in seen:
                seen.add(pkg["SPDXID"])
                packages.append(pkg)
        relationships += rels
    name = f"image-{platform.key}"
    doc = _spdx_document(name, f"{name}-{result.digest.removeprefix('sha256:')}", created_at, packages,
                         relationships)
    files.write_text(path, dump(doc))
    return ImageSbom(doc, path)


def dump(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# -- SPDX 2.3 -------------------------------------------------------------------------------------------------------


def _spdx_binary(file_name: str, name: str, version: str, platform: Platform, info: BuildInfo, digest: str,
                 settings: list[tuple[str, str]]) -> dict[str, Any]:
    created_at = created()
    packages, relationships, top = _binary_packages(file_name, name, version, platform, info, digest, settings,
                                                    created_at)
    relationships.insert(0, _rel("SPDXRef-DOCUMENT", "DESCRIBES", top))
    return _spdx_document(f"{name}-{platform.os}-{platform.arch}", f"{name}-{platform.os}-{platform.arch}-{digest}",
                          created_at, packages, relationships)


def _spdx_document(name: str, unique: str, created_at: str, packages: list[dict[str, Any]],
                   relationships: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": f"{NAMESPACE}/{quote(unique, safe='')}",
        "creationInfo": {"created": created_at, "creators": [f"Tool: {TOOL}"]},
        "packages": packages,
        "relationships": relationships,
    }


def _binary_packages(file_name: str, name: str, version: str, platform: Platform, info: BuildInfo, digest: str,
                     settings: list[tuple[str, str]], created_at: str
                     ) -> tuple[list[dict[str, Any]], list[dict[str, str]], str]:
    """SPDX packages of one binary (the binary, the Go standard library, every module) and their relationships."""
    top = _spdx_id("Binary", f"{name}-{platform.os}-{platform.arch}")
    main_version = version or info.main.version
    binary: dict[str, Any] = {
        "SPDXID": top, "name": name, "packageFileName": file_name, "versionInfo": main_version,
        "downloadLocation": "NOASSERTION", "filesAnalyzed": False, "primaryPackagePurpose": "APPLICATION",
        "supplier": "NOASSERTION", "checksums": [{"algorithm": "SHA256", "checksumValue": digest}],
        "externalRefs": [_purl_ref(_purl(info.main.path or info.path, main_version))],
        "comment": f"Go binary of {info.path} for {platform.os}/{platform.arch}, built by {info.go_version}",
        "annotations": [{"annotationDate": created_at, "annotationType": "OTHER", "annotator": f"Tool: {TOOL}",
                         "comment": f"go build setting {key}={value}"} for key, value in settings],
    }
    stdlib = _spdx_module(Module("stdlib", info.go_version.removeprefix("go")))
    stdlib["comment"] = f"the Go standard library and runtime ({info.go_version})"
    packages = [binary, stdlib]
    relationships = [_rel(top, "DEPENDS_ON", stdlib["SPDXID"])]
    for dep in info.deps:
        package = _spdx_module(dep)
        packages.append(package)
        relationships.append(_rel(top, "DEPENDS_ON", package["SPDXID"]))
    return packages, relationships, top


def _spdx_module(module: Module) -> dict[str, Any]:
    used = module.replace or module
    package: dict[str, Any] = {
        "SPDXID": _spdx_id("Module", f"{module.path}-{module.version}"), "name": module.path,
        "versionInfo": used.version, "downloadLocation": "NOASSERTION", "filesAnalyzed": False,
        "primaryPackagePurpose": "LIBRARY", "supplier": "NOASSERTION",
        "externalRefs": [_purl_ref(_purl(used.path, used.version))],
    }
    sha = _h1_hex(used.sum)
    if sha:
        package["checksums"] = [{"algorithm": "SHA256", "checksumValue": sha}]
        package["comment"] = f"go.sum {used.sum}"
    if module.replace is not None:
        package["sourceInfo"] = f"replaced: {module.path} {module.version} => {used.path} {used.version}"
    return package


def _base_of(cfg: Config, platform: Platform, result: ImageResult) -> dict[str, Any] | None:
    recorded = result.extra.get("base")
    source = cfg.base_source(platform)
    digest = ""
    if isinstance(recorded, dict):
        source = str(recorded.get("source") or source)
        digest = str(recorded.get("digest") or "")
    if source == "scratch":
        return None
    layers = [layer.digest for layer in result.layers if layer.from_base]
    package: dict[str, Any] = {
        "SPDXID": "SPDXRef-Base", "name": source, "versionInfo": digest or "NOASSERTION",
        "downloadLocation": "NOASSERTION", "filesAnalyzed": False, "primaryPackagePurpose": "CONTAINER",
        "supplier": "NOASSERTION",
        "comment": f"base image {source}" + (f" at {digest}" if digest else " (manifest digest not recorded)")
                   + f"; {len(layers)} layer(s): " + " ".join(layers),
    }
    if digest:
        package.update(_checksums(digest))
        if not source.startswith(("oci:", "oci-archive:", "docker-archive:")):  # a registry reference
            ref = source.split("@", 1)[0]
            last = ref.rsplit("/", 1)[-1]
            name = last.split(":", 1)[0]
            repository = quote(ref[:len(ref) - len(last)] + name, safe="")
            purl = f"pkg:oci/{quote(name, safe='')}@{quote(digest, safe='')}?repository_url={repository}"
            package["externalRefs"] = [_purl_ref(purl)]
    return package


def _checksums(digest: str) -> dict[str, Any]:
    algorithm, _, value = digest.partition(":")
    if algorithm != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", value):
        return {}
    return {"checksums": [{"algorithm": "SHA256", "checksumValue": value}]}


def _rel(element: str, kind: str, related: str) -> dict[str, str]:
    return {"spdxElementId": element, "relationshipType": kind, "relatedSpdxElement": related}


def _spdx_id(kind: str, text: str) -> str:
    return f"SPDXRef-{kind}-{_SPDX_ID.sub('-', text).strip('-')}"


def _purl_ref(purl: str) -> dict[str, str]:
    return {"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": purl}


# -- CycloneDX 1.6 --------------------------------------------------------------------------------------------------


def _cyclonedx_binary(file_name: str, name: str, version: str, info: BuildInfo, digest: str,
                      settings: list[tuple[str, str]]) -> dict[str, Any]:
    main_version = version or info.main.version
    root_ref = _purl(info.main.path or info.path, main_version)
    stdlib = _cdx_module(Module("stdlib", info.go_version.removeprefix("go")))
    components = [stdlib, *(_cdx_module(dep) for dep in info.deps)]
    properties = [{"name": f"wgobuild:go:build:{key}", "value": value} for key, value in settings]
    properties.append({"name": "wgobuild:go:version", "value": info.go_version})
    properties.append({"name": "wgobuild:go:package", "value": info.path})
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{NAMESPACE}/{name}/{digest}')}",
        "version": 1,
        "metadata": {
            "timestamp": created(),
            "tools": {"components": [{"type": "application", "name": "wgobuild", "version": __version__}]},
            "component": {
                "type": "application", "bom-ref": root_ref, "name": name, "version": main_version,
                "purl": root_ref, "hashes": [{"alg": "SHA-256", "content": digest}],
                "description": f"Go binary {file_name} of {info.path}", "properties": properties,
            },
        },
        "components": components,
        "dependencies": [{"ref": root_ref, "dependsOn": [c["bom-ref"] for c in components]},
                         *({"ref": c["bom-ref"]} for c in components)],
    }


def _cdx_module(module: Module) -> dict[str, Any]:
    used = module.replace or module
    purl = _purl(used.path, used.version)
    component: dict[str, Any] = {"type": "library", "bom-ref": purl, "name": module.path, "version": used.version,
                                 "purl": purl}
    sha = _h1_hex(used.sum)
    if sha:
        component["hashes"] = [{"alg": "SHA-256", "content": sha}]
        component["properties"] = [{"name": "wgobuild:go:sum", "value": used.sum}]
    if module.replace is not None:
        component["pedigree"] = {"notes": f"replaced: {module.path} {module.version} => {used.path} {used.version}"}
    return component


# -- shared ---------------------------------------------------------------------------------------------------------


def _settings(info: BuildInfo, ldflags: str) -> list[tuple[str, str]]:
    """The build settings in the binary, plus ``-ldflags`` as passed when Go left it out (``-trimpath``)."""
    settings = list(info.settings)
    if ldflags and not any(key == "-ldflags" for key, _ in settings):
        settings.append(("-ldflags", ldflags))
    return settings


def _purl(path: str, version: str) -> str:
    """``pkg:golang/<module path>@<version>`` (each path segment percent-encoded, as the purl spec asks)."""
    name = "/".join(quote(segment, safe="") for segment in path.split("/"))
    return f"pkg:golang/{name}" + (f"@{quote(version, safe='')}" if version and version != "(devel)" else "")


def _h1_hex(go_sum: str) -> str:
    """The SHA-256 of a go.sum ``h1:`` hash in hex (the form SBOM checksums take), or "" for another form."""
    if not go_sum.startswith("h1:"):
        return ""
    try:
        raw = base64.b64decode(go_sum[3:], validate=True)
    except ValueError:
        return ""
    return raw.hex() if len(raw) == 32 else ""
