"""SLSA v1 provenance of the pushed images: an in-toto statement (wgobuild/signing.py signs it in DSSE).

One statement per platform image (its manifest is the subject) and, for a multi-platform tag, one for the index
(the index and every manifest in it are the subjects).

The predicate (https://slsa.dev/spec/v1.0/provenance):

- ``buildDefinition.buildType``: :data:`BUILD_TYPE`, wgobuild's image build;
- ``externalParameters``: the config file (path and SHA-256), the platforms, the per-platform image references,
  and the source (git commit and whether the work tree had uncommitted changes; no git: both empty);
- ``internalParameters``: ``SOURCE_DATE_EPOCH`` and the image backends;
- ``resolvedDependencies``: the source tree (SHA-256 over the sorted ``path NUL sha256(content) LF`` lines of the
  files git tracks or would track, the output and state folders left out; without git, every file under the module
  root), ``go.sum``, the base image (its reference and manifest digest; ``scratch``: none), and the Go toolchain
  that compiled the shipped binaries (read from their build info);
- ``runDetails.builder.id``: wgobuild and its version.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wgobuild.config import Config
    from wgobuild.image import ImageResult

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:wgobuild:buildtype:image:v1"
BUILDER = "pkg:pypi/wgobuild"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _git(config: Config, *args: str) -> str | None:
    from wgobuild import proc, programs
    from wgobuild.errors import WgobuildError

    git = programs.find_program("git")
    if git is None:
        return None
    try:
        result = proc.run([git, *args], cwd=config.root, quiet=True)
    except WgobuildError:
        return None
    return result.output if result.ok else None


def source_files(config: Config) -> list[str]:
    """The module's source files, relative, ``/``-separated, sorted (see the module doc)."""
    skip = {config.out_dir.resolve(), config.state_dir.resolve()}
    listed = _git(config, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", ".")
    if listed is not None:
        names = [name for name in listed.split("\0") if name]
    else:
        names = []
        for folder, dirs, found in os.walk(config.root):
            here = Path(folder)
            dirs[:] = [d for d in dirs if d not in (".git", ".hg", ".svn") and (here / d).resolve() not in skip]
            names += [(here / f).relative_to(config.root).as_posix() for f in found]
    kept = []
    for name in names:
        path = config.root / name
        if not path.is_file() or any(p in skip for p in path.resolve().parents):
            continue  # deleted but still in the index, or inside dist/ or .wgobuild/
        kept.append(name)
    return sorted(set(kept))


def source_digest(config: Config) -> str:
    lines = b"".join(f"{name}\0{_sha256(config.root / name)}\n".encode() for name in source_files(config))
    return hashlib.sha256(lines).hexdigest()


def git_source(config: Config) -> dict[str, Any]:
    commit = (_git(config, "rev-parse", "HEAD") or "").strip()
    status = _git(config, "status", "--porcelain", "--untracked-files=all", "--", ".") if commit else None
    return {"commit": commit, "dirty": bool(status and status.strip())}


def go_version(config: Config, platform_text: str) -> str:
    """The Go version that compiled the image's binaries (from their build info)."""
    from wgobuild import buildinfo
    from wgobuild.config import Platform

    platform = Platform.parse(platform_text)
    versions = {buildinfo.read(config.binary_path(b, platform)).go_version for b in config.image_binaries
                if config.binary_path(b, platform).is_file()}
    return ",".join(sorted(versions))


def predicate(config: Config, results: list[ImageResult]) -> dict[str, Any]:
    """The SLSA v1 predicate of the images built from ``results`` (one platform, or every platform of an index)."""
    import wgobuild
    from wgobuild.image import source_date_epoch

    deps: list[dict[str, Any]] = [
        {"name": "source", "uri": "file:.", "digest": {"sha256": source_digest(config)}}]
    gosum = config.root / "go.sum"
    if gosum.is_file():
        deps.append({"name": "go.sum", "uri": "file:go.sum", "digest": {"sha256": _sha256(gosum)}})
    bases: dict[tuple[str, str], dict[str, Any]] = {}
    for result in results:
        base = result.extra.get("base")
        if isinstance(base, dict) and base.get("source") and base.get("source") != "scratch":
            entry: dict[str, Any] = {"name": "base image", "uri": str(base["source"])}
            if isinstance(digest := base.get("digest"), str) and digest.startswith("sha256:"):
                entry["digest"] = {"sha256": digest.removeprefix("sha256:")}
            bases[(entry["uri"], str(entry.get("digest")))] = entry
    deps += [bases[key] for key in sorted(bases)]
    versions = sorted({v for result in results for v in go_version(config, result.platform).split(",") if v})
    deps += [{"name": "go toolchain", "uri": f"pkg:golang/toolchain@{version}", "annotations": {"version": version}}
             for version in versions]
    config_rel = config.path.relative_to(config.root).as_posix() if config.path.is_relative_to(config.root) \
        else config.path.name
    epoch = source_date_epoch()
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "config": {"path": config_rel, "digest": {"sha256": _sha256(config.path)}},
                "source": git_source(config),
                "platforms": [result.platform for result in results],
                "references": [result.reference for result in results],
            },
            "internalParameters": {"SOURCE_DATE_EPOCH": "" if epoch is None else str(epoch),
                                   "backends": sorted({result.backend for result in results})},
            "resolvedDependencies": deps,
        },
        "runDetails": {"builder": {"id": BUILDER, "version": {"wgobuild": wgobuild.__version__}},
                       "metadata": {}},
    }


def statement(config: Config, results: list[ImageResult], subjects: list[tuple[str, str]]) -> bytes:
    """The in-toto statement (JSON bytes) about ``(name, digest)`` subjects: a pushed platform image, or an index
    and every image in it."""
    return in_toto(subjects, PREDICATE_TYPE, predicate(config, results))


def in_toto(subjects: list[tuple[str, str]], predicate_type: str, body: dict[str, Any] | None = None) -> bytes:
    """An in-toto v1 statement about ``(name, sha256:digest)`` subjects."""
    doc: dict[str, Any] = {"_type": STATEMENT_TYPE,
                           "subject": [{"name": name, "digest": {"sha256": digest.removeprefix("sha256:")}}
                                       if name else {"digest": {"sha256": digest.removeprefix("sha256:")}}
                                       for name, digest in subjects],
                           "predicateType": predicate_type}
    if body is not None:
        doc["predicate"] = body
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
