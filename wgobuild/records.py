"""Image records (``dist/images/<platform>.json``): does the recorded image still hold?

Read on every no-op run (by doit's up-to-date check of each image step, and by :mod:`wgobuild.fastpath` before
doit is imported), so this module imports nothing but the standard library: the engine is imported only to look
up an image an engine built.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


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

        if engine.image_present(result["digest"], str(result.get("extra", {}).get("engine_config", ""))):
            return None
        return f"image {str(result['digest'])[:19]} is no longer on the engine"
    if backend == "none":
        before = result.get("extra", {}).get("facts")
        now = engine_facts(str(result.get("extra", {}).get("engine_config", "")))
        if before == now:
            return None
        changed = sorted(k for k in set(now) | set(before or {}) if (before or {}).get(k) != now.get(k))
        return "retrying: " + ", ".join(_FACTS.get(k, k) for k in changed) + " changed since it could not be built"
    # Daemonless outputs are files: present when every one written is still there.
    missing = next((out for out in result.get("outputs", []) if Path(out).is_absolute() and not Path(out).exists()),
                   None)
    return None if missing is None else f"output missing: {_shown(Path(missing), root)}"


_FACTS = {"engine": "its [engines] entry",
          "docker_host": "DOCKER_HOST", "docker_context": "DOCKER_CONTEXT", "docker_config": "the docker context",
          "socket": "the engine socket"}


def engine_facts(engine: str = "") -> dict[str, str]:
    """What decides which engine wgobuild would reach, read without any network call: ``DOCKER_HOST``,
    ``DOCKER_CONTEXT``, the docker CLI config's current context, and the stat of the local engine socket. For a
    platform mapped to an engine in ``[engines]`` (``engine``): that engine, and the stat of its unix socket or of
    its docker context's file, so a mapped engine that comes back (or is re-pointed) is retried too."""
    if engine and engine != "default":
        import hashlib

        if "://" in engine:
            path = engine[len("unix://"):] if engine.startswith("unix://") else ""
        else:
            folder = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
            path = str(folder / "contexts" / "meta" / hashlib.sha256(engine.encode()).hexdigest() / "meta.json")
        try:
            st = os.stat(path) if path else None
            seen = f"{path} {st.st_ino}:{st.st_mtime_ns}" if st else ""
        except OSError:
            seen = f"{path} absent"
        return {"engine": engine, "socket": seen}
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


def _shown(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return str(path)
