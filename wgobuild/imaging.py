"""The image step: pick a backend per platform, build, record the result, then publish all platforms as one tag.

Each platform's result is recorded in ``dist/images/<platform>.json``: the record is the doit target of that step,
so an unchanged binary and settings never reach a daemon or a registry again. A platform that nothing here can build
(a Windows target with no Windows engine and no reachable base image) is recorded as unavailable with one line that
says what to do; the rest of the run goes on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wgobuild import files, policy, proc
from wgobuild.config import Config, Platform
from wgobuild.errors import WgobuildError
from wgobuild.records import engine_facts as engine_facts
from wgobuild.records import stale_reason as stale_reason
from wgobuild.records import still_present as still_present
from wgobuild.report import human_size

if TYPE_CHECKING:
    from wgobuild.image import ImageBackend, ImageResult


class NoBackend(WgobuildError):
    """No backend can build a platform here; the message says what to do."""


def choose_backend(config: Config, platform: Platform) -> ImageBackend:
    """Pick the configured backend. ``auto`` builds daemonless wherever the Dockerfile has no RUN step and the base
    is reachable (prebuilt style on nanoserver, scratch or a registry base: a fraction of a second, where the
    classic builder takes seconds) and uses the engine where only it can build (multistage, servercore's RUN steps,
    a base only the engine holds); :func:`build_platform` then loads a daemonless image into the engine, if any."""
    from wgobuild import engine  # imported here: the docker SDK is only loaded when an image is built
    from wgobuild.oci import backend as oci_backend

    wanted = config.image.backend
    candidates: list[ImageBackend] = []
    if wanted in ("auto", "oci"):
        candidates.append(oci_backend.OciBackend(config))
    if wanted in ("auto", "engine"):
        candidates.append(engine.EngineBackend(config, config.engine_for(platform)))  # [engines], else default
    reasons: dict[str, str] = {}
    for backend in candidates:
        reason = backend.unavailable(platform)
        if reason is None:
            return backend
        if len(candidates) > 1:  # one line for both: the engine's first sentence, the daemonless backend's advice
            reason = reason.split(". ")[0]
        reasons[backend.name] = f"{backend.name}: {reason}"
    shown = [reasons[name] for name in ("engine", "oci") if name in reasons]
    raise NoBackend(f"cannot build the {platform} image here: " + "; ".join(shown))


def record_path(cfg: Config, platform: Platform) -> Path:
    return cfg.out_dir / "images" / f"{platform.key}.json"


def build_platform(cfg: Config, platform: Platform, version: str, push: bool = False) -> ImageResult:
    """Build one platform's image with the first backend that can; record an unavailable platform plainly. With
    ``push`` (the run will push) the daemonless backend takes the image from the repository when that already
    holds it, built from the same inputs."""
    from wgobuild import sbom
    from wgobuild.image import ImageRequest, ImageResult, image_reference

    record = record_path(cfg, platform)
    files.remove(record)  # a failed build must not leave the previous record looking current
    files.remove(sbom.image_path(cfg, platform))  # nor the previous image's SBOM
    from wgobuild import imagecheck

    imports = imagecheck.before_build(cfg, platform)  # secrets, DLLs: what ships must be clean and run there
    engine_name = cfg.engine_for(platform)
    facts = engine_facts(engine_name)  # what decided "no engine here": a change of any of them retries the platform
    try:
        backend = choose_backend(cfg, platform)
    except NoBackend as exc:
        if cfg.image.backend != "auto":  # the backend asked for by name must work: fail the step
            raise
        short = unavailable_line(cfg, platform, str(exc))
        proc.echo(f"not built here: {short}", f"image-platform:{platform.key}")
        result = ImageResult(backend="none", platform=str(platform), reference="", digest="", size=0,
                             extra={"unavailable": short, "detail": str(exc), "facts": facts,
                                    **({"engine_config": engine_name} if engine_name else {})})
        result.save(record)
        return result
    request = ImageRequest(
        config=cfg,
        platform=platform,
        binaries={b.name: cfg.binary_path(b, platform) for b in cfg.image_binaries},
        reference=image_reference(cfg, version, platform),
        version=version,
        push=push,
    )
    result = backend.build(request)
    result.extra["sbom"] = str(sbom.image_sbom(cfg, platform, result, version).path)
    if imports:
        result.extra["dll_imports"] = imports
    archive = _docker_archive(result)
    if cfg.image.backend == "auto" and result.backend == "oci" and archive is not None:
        from wgobuild import engine

        preloaded = engine.preload_archive(archive, platform, engine_name)  # untagged until the tests pass
        if preloaded is not None:
            result.extra["preloaded"] = preloaded
    result.save(record)
    return result


def _docker_archive(result: ImageResult) -> Path | None:
    return next((Path(out) for out in result.outputs if out.endswith(".docker.tar")), None)


def load_into_engine(result: ImageResult, platform: Platform, engine_name: str = "") -> str | None:
    """Under ``auto``, once the tests passed: give the engine, when one runs ``platform``'s OS, the daemonless image
    (its docker-save tar), so ``docker run`` and ``invoke run`` find it as if the engine had built it: by tagging
    the untagged copy the image step loaded beside the tests when it is still there, else by loading the tar.
    Returns where it was loaded; None with no engine (or no docker-save tar among the outputs)."""
    from wgobuild import engine

    archive = _docker_archive(result)
    if archive is None:  # image.outputs without docker-archive: `invoke run` says what to do
        return None
    preloaded = result.extra.get("preloaded")
    where = engine.tag_preloaded(preloaded, result.reference, engine_name) if isinstance(preloaded, dict) else None
    where = where or engine.load_archive(archive, platform, engine_name)
    if where is not None:
        proc.echo(f"{platform}: loaded into the engine at {where}", "image")
    return where


def load_all(cfg: Config, results: list[ImageResult]) -> dict[str, str]:
    """:func:`load_into_engine` for every daemonless image, side by side (each platform may have its own engine):
    platform -> where it was loaded."""
    from concurrent.futures import ThreadPoolExecutor

    todo = [(platform, result) for platform, result in zip(cfg.platforms, results, strict=True)
            if result.backend == "oci"]
    if not todo:
        return {}
    with ThreadPoolExecutor(max_workers=len(todo)) as pool:
        wheres = list(pool.map(lambda item: load_into_engine(item[1], item[0], cfg.engine_for(item[0])), todo))
    return {str(platform): where for (platform, _), where in zip(todo, wheres, strict=True) if where}


def unavailable_line(cfg: Config, platform: Platform, detail: str) -> str:
    """One short line (what is missing, what to do) for a platform no backend can build here."""
    oci = detail.split("oci: ", 1)[1] if "oci: " in detail else detail
    if not oci.startswith("base "):  # not a base problem (a RUN step, a multistage build): the backend says why
        return oci.split(". ")[0][:140]
    key = "bases" if platform.key in cfg.image.bases or platform.goos_goarch in cfg.image.bases else (
        "servercore_base" if platform.os == "windows" and cfg.image.runtime == "servercore" else f"{platform.os}_base")
    base = cfg.base_source(platform)
    base = base if len(base) <= 60 else "…" + base[-59:]
    mapped = cfg.engine_for(platform)
    if mapped:  # [engines] names its engine: DOCKER_HOST is not read for it
        shown = mapped if len(mapped) <= 50 else "…" + mapped[-49:]
        return f"needs its engine ({shown}) or a reachable base ({base}): start that engine, or image.{key}"
    engine = "a Windows engine" if platform.os == "windows" else "a Docker engine"
    return f"needs {engine} or a reachable base ({base}): start one, set DOCKER_HOST, or image.{key}"


def load_saved(cfg: Config, reference: str, client: Any) -> Path | None:
    """Load the docker-save tar a daemonless build wrote for ``reference`` into the engine behind ``client``
    (a docker SDK client); returns the tar loaded, or None when no record names that image with such a tar."""
    for record in sorted((cfg.out_dir / "images").glob("*.json")):
        try:
            result = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(result, dict) or result.get("reference") != reference:
            continue
        for out in result.get("outputs", []):
            if str(out).endswith(".docker.tar") and Path(out).is_file():
                with open(out, "rb") as tar:
                    client.images.load(tar)
                return Path(out)
    return None


def publish(cfg: Config, version: str, push: bool = False) -> list[ImageResult]:
    """Write the multi-platform outputs (OCI layout/index, docker-save tar), push when asked, report sizes."""
    from wgobuild.image import ImageResult, image_reference

    push = push or cfg.image.push
    results = [ImageResult.load(record_path(cfg, p)) for p in cfg.platforms]
    built = [r for r in results if r.backend != "none"]
    oci_results = [r for r in built if r.backend == "oci"]
    policy.enforce(cfg, results, push)  # [policy] rules: before anything is written or pushed
    summary: dict[str, object] = {"images": [r.to_json() for r in results]}
    loaded = load_all(cfg, results) if cfg.image.backend == "auto" else {}
    if loaded:  # where each daemonless image was loaded: an engine image needs no load
        summary["loaded"] = loaded
    if oci_results:
        from wgobuild.oci import backend as oci_backend

        summary["tag"] = oci_backend.publish(cfg, oci_results, push=push,
                                             reference=image_reference(cfg, version))
    engine_results = [r for r in built if r.backend == "engine"]
    if engine_results:
        from wgobuild import engine, signing

        signer = signing.signer_for(cfg) if push else None  # the key is decrypted before anything is pushed
        for result in engine_results:
            engine.tag(result.reference, result.digest, engine=str(result.extra.get("engine_config", "")))
            if push:
                engine.push(result.reference, engine=str(result.extra.get("engine_config", "")))
        # Signed (and given their SBOM) only with a key: docker push may have used a credential helper, which
        # wgobuild's own registry client does not read, and an unsigned push needs nothing more from the registry.
        for line in signing.after_engine_push(cfg, engine_results, signer) if signer is not None else []:
            proc.echo(line, "image")
    files.write_text(cfg.reports_dir / "images.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    proc.echo(size_table(results))
    return results


def size_table(results: list[ImageResult]) -> str:
    """Image size per platform with the base image's share shown apart from the app's; unbuilt ones say why."""
    rows = [("platform", "backend", "image", "size", "base", "app")]
    rows += [(r.platform, r.backend, r.reference, human_size(r.size), human_size(r.base_size), human_size(r.app_size))
             for r in results if r.backend != "none"]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    for r in results:  # what each Windows binary imports (checked against the runtime before the image was built)
        if isinstance(imports := r.extra.get("dll_imports"), dict):
            lines += [f"{r.platform}: {name} imports {', '.join(dlls)}" for name, dlls in sorted(imports.items())]
    unbuilt = [r for r in results if r.backend == "none"]
    lines += [f"{r.platform}: not built: {r.extra.get('unavailable', '')}" for r in unbuilt]
    if unbuilt:  # the record keeps the step up to date, so a no-op run never waits on the network again
        lines.append("(retried when an engine appears, DOCKER_HOST or a setting changes; "
                     "`doit forget image-platform` retries now)")
    return "\n".join(lines)
