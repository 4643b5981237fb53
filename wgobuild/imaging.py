"""The image step: pick a backend per platform, build, record the result, then publish all platforms as one tag.

Each platform's result is recorded in ``dist/images/<platform>.json``: the record is the doit target of that step,
so an unchanged binary and settings never reach a daemon or a registry again. A platform that nothing here can build
(a Windows target with no Windows engine and no reachable base image) is recorded as unavailable with one line that
says what to do; the rest of the run goes on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    facts = engine_facts()  # what decided "no engine here": a change of any of them retries the platform
    try:
        backend = choose_backend(cfg, platform)
    except NoBackend as exc:
        if cfg.image.backend != "auto":  # the backend asked for by name must work: fail the step
            raise
        short = unavailable_line(cfg, platform, str(exc))
        proc.echo(f"not built here: {short}", f"image-platform:{platform.key}")
        result = ImageResult(backend="none", platform=str(platform), reference="", digest="", size=0,
                             extra={"unavailable": short, "detail": str(exc), "facts": facts})
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
    """doit ``uptodate`` check: the recorded image still exists where it was built (one cheap look, no build)."""
    return stale_reason(record) is None


def stale_reason(record: Path, root: Path | None = None) -> str | None:
    """Why the recorded image step must run again, or None when its record still holds.

    Runs on every no-op run, so it reads the record's JSON directly instead of importing the image machinery:
    an engine image is one inspect call, daemonless outputs are a stat each, and a platform recorded as "not built
    here" compares the engine facts it saw (:func:`engine_facts`: environment, docker config, socket stat) with
    today's, so it is retried when an engine appears or DOCKER_HOST/the docker context changes, with no network call.
    """
    try:
        result = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"output missing: {_shown(record, root)}"
    backend = result.get("backend")
    if backend == "engine":
        from wgobuild import engine

        if engine.image_present(result["digest"]):
            return None
        return f"image {str(result['digest'])[:19]} is no longer on the engine"
    if backend == "none":
        before = result.get("extra", {}).get("facts")
        now = engine_facts()
        if before == now:
            return None
        changed = sorted(k for k in set(now) | set(before or {}) if (before or {}).get(k) != now.get(k))
        return "retrying: " + ", ".join(_FACTS.get(k, k) for k in changed) + " changed since it could not be built"
    # Daemonless outputs are files: present when every one written is still there.
    missing = next((out for out in result.get("outputs", []) if Path(out).is_absolute() and not Path(out).exists()),
                   None)
    return None if missing is None else f"output missing: {_shown(Path(missing), root)}"


_FACTS = {"docker_host": "DOCKER_HOST", "docker_context": "DOCKER_CONTEXT", "docker_config": "the docker context",
          "socket": "the engine socket"}


def engine_facts() -> dict[str, str]:
    """What decides which engine wgobuild would reach, read without any network call: ``DOCKER_HOST``,
    ``DOCKER_CONTEXT``, the docker CLI config's current context, and the stat of the local engine socket."""
    host = os.environ.get("DOCKER_HOST", "")
    config = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"
    try:
        current = str(json.loads(config.read_text(encoding="utf-8")).get("currentContext", ""))
    except (OSError, ValueError, AttributeError):
        current = ""
    if host.startswith("unix://"):
        socket = host[len("unix://"):]
    elif host or current or os.environ.get("DOCKER_CONTEXT"):
        socket = ""  # a remote host or a context: its address is the fact
    else:
        socket = r"\\.\pipe\docker_engine" if os.name == "nt" else "/var/run/docker.sock"
    try:
        st = os.stat(socket) if socket else None
        seen = f"{socket} {st.st_ino}:{st.st_mtime_ns}" if st else ""
    except OSError:
        seen = f"{socket} absent"
    return {"docker_host": host, "docker_context": os.environ.get("DOCKER_CONTEXT", ""), "docker_config": current,
            "socket": seen}


def unavailable_line(cfg: Config, platform: Platform, detail: str) -> str:
    """One short line (what is missing, what to do) for a platform no backend can build here."""
    oci = detail.split("oci: ", 1)[1] if "oci: " in detail else detail
    if not oci.startswith("base "):  # not a base problem (a RUN step, a multistage build): the backend says why
        return oci.split(". ")[0][:140]
    key = "bases" if platform.key in cfg.image.bases or platform.goos_goarch in cfg.image.bases else (
        "servercore_base" if platform.os == "windows" and cfg.image.runtime == "servercore" else f"{platform.os}_base")
    engine = "a Windows engine" if platform.os == "windows" else "a Docker engine"
    base = cfg.base_source(platform)
    base = base if len(base) <= 60 else "…" + base[-59:]
    return f"needs {engine} or a reachable base ({base}): start one, set DOCKER_HOST, or image.{key}"


def _shown(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return str(path)


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
        lines.append("(retried when an engine appears, DOCKER_HOST or a setting changes; "
                     "`doit forget image-platform` retries now)")
    return "\n".join(lines)
