"""invoke tasks ``run``, ``stop``, ``status`` and ``serve``: thin wiring over :mod:`containers` and :mod:`supervisor`.

Settings come from ``wgobuild.toml`` (``[limits]``, ``[run]``); a few flags override them for one run and are
validated by the same checks as the file.
"""

from __future__ import annotations

from typing import Any

from invoke.tasks import Task, task

from wgobuild.errors import ConfigError, WgobuildError
from wgobuild.invoke_support import load_config, number, plain_errors

_ROOT_HELP = "folder holding wgobuild.toml (default: current folder)"


@task(
    help={
        "root": _ROOT_HELP,
        "image": "image to run (default: [run].image, else this project's image for the engine's platform)",
        "name": "container name (default: [run].name, else the project name)",
        "memory": "memory limit such as 512MiB (overrides [limits].memory)",
        "cpus": "CPU limit such as 1.5 (overrides [limits].cpus)",
        "retries": "restart retries for restart = on-failure (overrides [run].retries)",
    }
)
@plain_errors
def run(c: Any, root: str = ".", image: str = "", name: str = "", memory: str | None = None,
        cpus: str | None = None, retries: str | None = None) -> None:
    """Run the built image as a container with the limits of wgobuild.toml; shows which limits apply."""
    from wgobuild import containers

    cfg = load_config(root, limits={"memory": ("--memory", memory), "cpus": ("--cpus", number("--cpus", cpus, float))},
                      run={"retries": ("--retries", number("--retries", retries))})
    containers.run(cfg, image=image, name=name)


@task(
    help={
        "root": _ROOT_HELP,
        "binary": "binary to serve (default: [run].binary, else the first [[binaries]] entry)",
        "memory": "RSS cap of the process tree such as 256MiB (overrides [limits].memory)",
        "handles": "open handle / file descriptor cap (overrides [limits].handles)",
        "max_restarts": "restarts without a healthy run before giving up (overrides [run].max_restarts)",
    }
)
@plain_errors
def serve(c: Any, root: str = ".", binary: str = "", memory: str | None = None, handles: str | None = None,
          max_restarts: str | None = None) -> None:
    """Run the native binary on this host under the wgobuild supervisor (restarts, caps, logs); Ctrl-C stops it."""
    from wgobuild import supervisor

    cfg = load_config(root,
                      limits={"memory": ("--memory", memory), "handles": ("--handles", number("--handles", handles))},
                      run={"max_restarts": ("--max-restarts", number("--max-restarts", max_restarts))})
    sup = supervisor.Supervisor(supervisor.spec_from_config(cfg, binary=binary))
    sup.install_signal_handlers()
    sup.serve()


@task(
    help={
        "root": _ROOT_HELP,
        "what": "auto (the supervisor if one runs, else the container), serve or container",
        "grace": "seconds to wait for a polite stop before killing (default: [run].stop_grace_s)",
        "name": "container name (default: [run].name, else the project name)",
    }
)
@plain_errors
def stop(c: Any, root: str = ".", what: str = "auto", grace: str | None = None, name: str = "") -> None:
    """Stop what `invoke serve` or `invoke run` started, with a grace period."""
    from wgobuild import supervisor

    cfg = load_config(root)
    _check_what(what)
    grace_s = number("--grace", grace, float)
    grace_s = cfg.run.stop_grace_s if grace_s is None else grace_s
    serving = supervisor.read_status(cfg.state_dir).get("alive", False)
    if what in ("auto", "serve"):
        print(supervisor.request_stop(cfg.state_dir, grace_s=grace_s))
    if what == "container" or (what == "auto" and not serving):
        from wgobuild import containers

        print(containers.stop(cfg, name=name, grace_s=grace_s))


@task(
    help={
        "root": _ROOT_HELP,
        "what": "auto (both when present), serve or container",
        "name": "container name (default: [run].name, else the project name)",
    }
)
@plain_errors
def status(c: Any, root: str = ".", what: str = "auto", name: str = "") -> None:
    """Show state, uptime, restarts, memory, CPU and open handles of the served process or the container."""
    from wgobuild import supervisor

    cfg = load_config(root)
    _check_what(what)
    if what in ("auto", "serve"):
        print(supervisor.format_status(supervisor.read_status(cfg.state_dir)))
    if what in ("auto", "container"):
        from wgobuild import containers

        try:
            print(containers.format_status(containers.status(cfg, name=name)))
        except WgobuildError as exc:
            if what == "container":
                raise
            print(f"container: {exc}")


def _check_what(what: str) -> None:
    if what not in ("auto", "serve", "container"):
        raise ConfigError("command line", "--what", f"{what!r}: use auto, serve or container")


TASKS: list[Task[Any]] = [run, serve, stop, status]
