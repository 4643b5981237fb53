"""Shared by the benchmarks: a Docker engine to measure against (the running one, else a private vfs dockerd)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from wgobuild import engine  # noqa: E402


@contextlib.contextmanager
def running_engine() -> Iterator[None]:
    """Use ``DOCKER_HOST`` (or the default socket) when an engine answers, else start one as the test suite does."""
    try:
        engine.connect(timeout=5).close()
    except engine.EngineUnreachable:
        from fixtures_docker import Dockerd

        daemon = Dockerd()
        daemon.start()
        os.environ["DOCKER_HOST"] = daemon.url
        try:
            yield
        finally:
            daemon.stop()
    else:
        yield
