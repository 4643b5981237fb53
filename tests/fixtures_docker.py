"""pytest plugin: a reachable Docker engine for the session, started by the suite itself when none answers.

Order: ``$DOCKER_HOST`` if it answers a ping, else ``/var/run/docker.sock``, else a private ``dockerd`` (Debian
``docker.io``) with vfs storage, no iptables and no bridge, its own socket, data root and exec root under a temp
folder. The same code path runs on a developer machine and in CI; under ``CI=true`` a missing engine fails the
tests instead of skipping them. ``DOCKER_HOST`` is set for the whole session so the SDK and the CLI see the engine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from services import service_missing

from wgobuild import proc

_START_TIMEOUT_S = 60.0


def _answers(url: str, timeout: float = 3.0) -> bool:
    """True when the engine at ``url`` answers ``/_ping`` (TLS settings from the environment apply to tcp://)."""
    import docker

    try:
        if url == os.environ.get("DOCKER_HOST"):
            client = docker.from_env(timeout=int(timeout))
        else:
            client = docker.DockerClient(base_url=url, timeout=int(timeout))
        with contextlib.closing(client):
            return bool(client.ping())
    except Exception:
        return False


def _dockerd_binary() -> str | None:
    """dockerd on PATH, else where Debian's docker.io puts it (/usr/sbin is not on every user's PATH)."""
    found = shutil.which("dockerd")
    if found is None and os.name != "nt":
        found = next((p for p in ("/usr/sbin/dockerd", "/usr/bin/dockerd") if Path(p).is_file()), None)
    return found


class Dockerd:
    """A private dockerd run through :func:`proc.run` in a thread, so its output is captured and its tree killed."""

    def __init__(self) -> None:
        # Short path: unix socket paths are limited to about 107 bytes.
        self.tmp = Path(tempfile.mkdtemp(prefix="wgbd-", dir="/tmp" if os.name != "nt" else None))
        self.url = f"unix://{self.tmp}/docker.sock"
        self.log: deque[str] = deque(maxlen=200)
        self.result: proc.ProcResult | None = None
        self.argv = [
            _dockerd_binary() or "dockerd",
            "--storage-driver=vfs",
            "--iptables=false",
            "--bridge=none",
            "--host", self.url,
            "--data-root", str(self.tmp / "data"),
            "--exec-root", str(self.tmp / "exec"),
            "--pidfile", str(self.tmp / "docker.pid"),
        ]
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with contextlib.suppress(Exception):
            # dockerd finds containerd and runc on PATH; Debian puts runc in /usr/sbin.
            path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
            self.result = proc.run(self.argv, env={**os.environ, "PATH": path}, on_line=self.log.append,
                                   label="dockerd")
        if self.result is None:
            self.log.append("dockerd could not be started (see above)")

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if not self.thread.is_alive():
                raise RuntimeError("dockerd exited during start-up:\n" + "\n".join(self.log))
            if (self.tmp / "docker.sock").exists() and _answers(self.url, timeout=2.0):
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"dockerd did not answer within {_START_TIMEOUT_S:.0f}s:\n" + "\n".join(self.log))

    def pid(self) -> int | None:
        """From dockerd's pid file, else our child whose command line names this daemon's folder."""
        try:
            return int((self.tmp / "docker.pid").read_text().strip())
        except (OSError, ValueError):
            pass
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if self.url in child.cmdline():
                    return child.pid
        return None

    def stop(self) -> None:
        """SIGTERM to dockerd (it stops its containers and containerd), then kill whatever is left of the tree."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(psutil.Error):
                daemon = psutil.Process(pid)
                tree = [daemon, *daemon.children(recursive=True)]
                daemon.terminate()
                _, alive = psutil.wait_procs(tree, timeout=20)
                for p in alive:
                    proc.kill_tree(p.pid, grace_s=2.0)
        self.thread.join(timeout=10)
        # dockerd leaves its default network namespace bind-mounted under the exec root: unmount before removing.
        for part in psutil.disk_partitions(all=True):
            if part.mountpoint.startswith(str(self.tmp) + os.sep):
                proc.run(["umount", "-l", part.mountpoint], quiet=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def docker_host() -> Iterator[str]:
    """DOCKER_HOST URL of a running engine for the whole session (``os.environ['DOCKER_HOST']`` is set to it)."""
    try:
        import docker  # noqa: F401
    except ImportError:
        service_missing("docker engine: the docker SDK is not installed (pip install docker)")
    previous = os.environ.get("DOCKER_HOST")
    daemon: Dockerd | None = None
    if previous and _answers(previous):
        url = previous
    elif os.name != "nt" and Path("/var/run/docker.sock").exists() and _answers("unix:///var/run/docker.sock"):
        url = "unix:///var/run/docker.sock"
    elif os.name == "nt" and _answers("npipe:////./pipe/docker_engine"):
        url = "npipe:////./pipe/docker_engine"
    else:
        if _dockerd_binary() is None:
            service_missing("docker engine: no engine answers and dockerd is not installed (apt-get install docker.io)")
        daemon = Dockerd()
        try:
            daemon.start()
        except RuntimeError as exc:
            service_missing(f"docker engine ({exc})")
        url = daemon.url
    os.environ["DOCKER_HOST"] = url
    try:
        yield url
    finally:
        if previous is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = previous
        if daemon is not None:
            daemon.stop()
