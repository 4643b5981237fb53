"""The image step: pick a backend per platform, build, record the result, then publish all platforms as one tag.

Each platform's result is recorded in ``dist/images/<platform>.json``: the record is the doit target of that step,
so an unchanged binary and settings never reach a daemon or a registry again. A platform that nothing here can build
(a Windows target with no Windows engine and no reachable base image) is recorded as unavailable with one line that
says what to do; the rest of the run goes on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from wgobuild import files, proc
from wgobuild.config import Config, Platform
from wgobuild.report import human_size

if TYPE_CHECKING:
    from wgobuild.image import ImageResult


def record_path(cfg: Config, platform: Platform) -> Path:
    return cfg.out_dir / "images" / f"{platform.key}.json"


def build_platform(cfg: Config, platform: Platform, version: str) -> ImageResult:
    """Build one platform's image with the first backend that can; record an unavailable platform plainly."""
    from wgobuild.image import ImageRequest, ImageResult, NoBackend, choose_backend, image_reference

    record = record_path(cfg, platform)
    files.remove(record)  # a failed build must not leave the previous record looking current
    try:
        backend = choose_backend(cfg, platform)
    except NoBackend as exc:
        if cfg.image.backend != "auto":  # the backend asked for by name must work: fail the step
            raise
        proc.echo("not built here (why, and what to do, is in the summary below)", f"image-platform:{platform.key}")
        result = ImageResult(backend="none", platform=str(platform), reference="", digest="", size=0,
                             extra={"unavailable": str(exc)})
        result.save(record)
        return result
    request = ImageRequest(
        config=cfg,
        platform=platform,
        binaries={b.name: cfg.binary_path(b, platform) for b in cfg.binaries},
        reference=image_reference(cfg, version, platform),
        version=version,
    )
    result = backend.build(request)
    result.save(record)
    return result


def still_present(record: Path) -> bool:
    """doit ``uptodate`` check: the recorded image still exists where it was built (one cheap look, no build).

    Runs on every no-op run, so it reads the record's JSON directly instead of importing the image machinery.
    """
    try:
        result = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if result.get("backend") == "engine":
        from wgobuild import engine

        return engine.image_present(result["digest"])
    # Daemonless outputs are files: present when every one written is still there.
    return all(Path(out).exists() for out in result.get("outputs", []) if Path(out).is_absolute())


def publish(cfg: Config, version: str, push: bool = False) -> list[ImageResult]:
    """Write the multi-platform outputs (OCI layout/index, docker-save tar), push when asked, report sizes."""
    from wgobuild.image import ImageResult, image_reference

    push = push or cfg.image.push
    results = [ImageResult.load(record_path(cfg, p)) for p in cfg.platforms]
    built = [r for r in results if r.backend != "none"]
    oci_results = [r for r in built if r.backend == "oci"]
    summary: dict[str, object] = {"images": [r.to_json() for r in results]}
    if oci_results:
        from wgobuild.oci import backend as oci_backend

        summary["tag"] = oci_backend.publish(cfg, oci_results, push=push,
                                             reference=image_reference(cfg, version))
    if push:
        from wgobuild import engine

        for result in built:
            if result.backend == "engine":
                engine.push(result.reference)
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
    unbuilt = [r for r in results if r.backend == "none"]
    lines += [f"{r.platform}: not built: {r.extra.get('unavailable', '')}" for r in unbuilt]
    if unbuilt:  # the record keeps the step up to date, so a no-op run never waits on the network again
        lines.append("(tried again when its inputs change; `doit forget image-platform` tries again now)")
    return "\n".join(lines)
