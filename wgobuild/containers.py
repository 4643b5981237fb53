"""``invoke run`` / ``stop`` / ``status``: run the built image as a container with the limits of ``wgobuild.toml``.

Why a plan step: Windows engines reject several Linux-only options (cpuset, memory-swap, pids, blkio, CPU period,
ulimits, a read-only root), and a rejected option fails the whole create call with a terse API error. So the
settings are first turned into a :class:`RunPlan` for the engine's OS, pure and testable without an engine, that
says which limits apply and which were dropped and why; only then is anything sent to the engine.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wgobuild.config import Config, log_folder_problem, parse_size
from wgobuild.errors import ConfigError, WgobuildError

LABEL = "org.wgobuild.project"


@dataclass
class RunPlan:
    """What will be sent to the engine (``create_kwargs`` for ``containers.create``) and why."""

    name: str
    image: str
    engine_os: str
    create_kwargs: dict[str, Any]
    host_ports: list[int] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def describe(self) -> str:
        lines = [f"run: {self.name} from {self.image} on a {self.engine_os} engine"]
        lines += [f"  applies  {line}" for line in self.applied]
        lines += [f"  dropped  {line}" for line in self.dropped]
        return "\n".join(lines)


def container_name(cfg: Config, name: str = "") -> str:
    return name or cfg.run.name or cfg.project.name.lower()


def plan(
    cfg: Config,
    *,
    engine_os: str,
    engine_cpus: int,
    image: str,
    name: str = "",
    args: list[str] | None = None,
    log_source: str = "",
) -> RunPlan:
    """Map ``[limits]``/``[run]`` onto docker-py ``create`` arguments for an engine of ``engine_os``.

    ``log_source`` is the host folder to mount (already resolved for a local engine); "" means none.
    """
    windows = engine_os == "windows"
    limits, run = cfg.limits, cfg.run
    out = RunPlan(name=container_name(cfg, name), image=image, engine_os=engine_os, create_kwargs={})
    kw = out.create_kwargs
    kw.update(name=out.name, detach=True, labels={LABEL: cfg.project.name})
    why_windows = "Windows engines reject it"

    def apply(key: str, value: Any, text: str) -> None:
        kw[key] = value
        out.applied.append(text)

    def linux_only(key: str, value: Any, text: str, setting: str) -> None:
        if windows:
            out.dropped.append(f"{setting}: {why_windows}")
        else:
            apply(key, value, text)

    # restart policy
    policy: dict[str, Any] = {"Name": run.restart}
    if run.restart == "on-failure":
        policy["MaximumRetryCount"] = run.retries
    apply("restart_policy", policy, f"restart: {run.restart}"
          + (f" (up to {run.retries} retries)" if run.restart == "on-failure" else ""))
    # memory
    if limits.memory:
        size = parse_size(limits.memory)
        apply("mem_limit", size, f"memory: {limits.memory} ({size} bytes)")
        linux_only("memswap_limit", size, "memory-swap: same as memory (no swap)", "memory-swap")
    # CPU
    if limits.cpus:
        if limits.cpus > engine_cpus:
            raise ConfigError(cfg.path, "[limits].cpus",
                              f"{limits.cpus:g} CPUs asked but the engine has {engine_cpus}; lower it")
        apply("nano_cpus", int(limits.cpus * 1e9), f"cpus: {limits.cpus:g} (nano_cpus)")
    if limits.affinity:
        bad = [c for c in limits.affinity if c >= engine_cpus]
        if bad and not windows:
            raise ConfigError(cfg.path, f"[limits].affinity[{limits.affinity.index(bad[0])}]",
                              f"CPU {bad[0]} does not exist on the engine ({engine_cpus} CPUs)")
        cpus = ",".join(str(c) for c in limits.affinity)
        linux_only("cpuset_cpus", cpus, f"affinity: cpuset {cpus}", "affinity (cpuset)")
    if limits.pids:
        linux_only("pids_limit", limits.pids, f"pids: {limits.pids}", "pids")
    if limits.handles:
        if windows:
            out.dropped.append("handles: Windows containers have no ulimits; use `invoke serve` on the host")
        else:
            from docker.types import Ulimit

            apply("ulimits", [Ulimit(name="nofile", soft=limits.handles, hard=limits.handles)],
                  f"handles: nofile ulimit {limits.handles}")
    if limits.priority != "normal":
        out.dropped.append(f"priority {limits.priority}: not a container setting; `invoke serve` applies it")
    # security and isolation
    if run.read_only:
        if windows:
            out.dropped.append(f"read_only: {why_windows} (no read-only root filesystem)")
        else:
            apply("read_only", True, "read-only root filesystem (tmpfs on /tmp)")
            kw["tmpfs"] = {"/tmp": "rw,noexec,nosuid,size=64m"}
    if not windows:
        apply("security_opt", ["no-new-privileges"], "no-new-privileges")
    if cfg.image.isolation:
        if windows:
            apply("isolation", cfg.image.isolation, f"isolation: {cfg.image.isolation}")
        else:
            out.dropped.append(f"isolation {cfg.image.isolation}: a Windows engine option")
    user = run.user or cfg.image.user
    if user:
        apply("user", user, f"user: {user}")
    # process, network, ports, logs
    if args or run.args:
        kw["command"] = list(args if args is not None else run.args)
    if run.env:
        kw["environment"] = dict(run.env)
    if run.network == "host" and windows:
        raise ConfigError(cfg.path, "[run].network", "Windows containers have no host network: leave it unset "
                                                     "(nat) or name a transparent or l2bridge network")
    if run.network:
        apply("network_mode", run.network, f"network: {run.network}")
    ports: dict[str, int | None] = {}
    for spec in run.ports:
        host, _, rest = spec.rpartition(":")
        port, _, proto = rest.partition("/")
        ports[f"{port}/{proto or 'tcp'}"] = int(host) if host else None
        if host:
            out.host_ports.append(int(host))
    if ports and run.network == "host":
        out.dropped.append("ports: not published on the host network (the service listens on the host itself)")
    elif ports:
        apply("ports", ports, "ports: " + ", ".join(run.ports))
    if log_source:
        from docker.types import Mount

        target = run.log_mount or ("C:\\logs" if windows else "/logs")
        apply("mounts", [Mount(target=target, source=log_source, type="bind")], f"logs: {log_source} -> {target}")
    out.applied.append(f"stop grace: {run.stop_grace_s}s (used by `invoke stop`)")
    return out


def connect() -> Any:
    """The docker client for ``DOCKER_HOST``/the current context (a clear error when the engine is unreachable)."""
    from wgobuild.engine import connect as engine_connect

    return engine_connect()


def _engine_is_local(client: Any) -> bool:
    url = str(client.api.base_url)
    return url.startswith("http+docker://") or "://localhost" in url or "://127.0.0.1" in url


def port_in_use(port: int) -> bool:
    """True when something on this host already listens on TCP ``port`` (any address)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if os.name == "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)  # type: ignore[attr-defined]
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "in use"
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def windows_build(info: dict[str, Any]) -> str:
    """``10.0.20348`` from a Windows engine's info (``OSVersion``, else ``KernelVersion`` "10.0 20348 (...)")."""
    if info.get("OSVersion"):
        return str(info["OSVersion"])
    parts = str(info.get("KernelVersion", "")).split()
    return f"{parts[0]}.{parts[1]}" if len(parts) > 1 and parts[1].isdigit() else ""


def default_image(cfg: Config, engine_os: str, engine_arch: str, engine_os_version: str = "") -> str:
    """This project's image for the engine's platform (``[run].image`` overrides it).

    On a Windows engine the image built for the host's build number is preferred: process isolation needs it.
    """
    from wgobuild import gotool
    from wgobuild.image import image_reference

    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(engine_arch, engine_arch)
    build = ".".join(engine_os_version.split(".")[:3])
    matches = [p for p in cfg.platforms if p.os == engine_os and p.arch == arch]
    matches.sort(key=lambda p: p.os == "windows" and ".".join(p.windows_version.split(".")[:3]) != build)
    if matches:
        return image_reference(cfg, gotool.ProjectInputs(cfg).image_version, matches[0])
    raise WgobuildError(f"run: no {engine_os}/{arch} platform in [build].platforms for this engine; add one or set "
                        "[run].image")


def run(cfg: Config, *, image: str = "", name: str = "", args: list[str] | None = None, client: Any = None,
        echo: Any = print) -> RunPlan:
    """Start the container (replacing a stopped one of the same name); say which limits apply."""
    import docker.errors

    client = client or connect()
    info = client.info()
    engine_os, local = info.get("OSType", "linux"), _engine_is_local(client)
    image = image or cfg.run.image or default_image(cfg, engine_os, info.get("Architecture", "x86_64"),
                                                    windows_build(info))
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        from wgobuild import imaging

        # Built daemonless (no engine then, or auto chose it): load the docker-save tar the build wrote.
        loaded = imaging.load_saved(cfg, image, client)
        if loaded is None:
            raise WgobuildError(f"run: image {image} is not on the engine and no docker-save tar of it is under "
                                f"{cfg.out_dir.name}/images; build it with `doit image` or set [run].image") from None
        echo(f"loaded {image} into the engine from {loaded} (it was built without the engine)")
    log_source = ""
    if cfg.run.log_dir:
        log_source = cfg.run.log_dir
        if local:
            folder = Path(cfg.run.log_dir) if Path(cfg.run.log_dir).is_absolute() else cfg.root / cfg.run.log_dir
            folder.mkdir(parents=True, exist_ok=True)
            log_source = str(folder.resolve())
            # Checked again after mkdir and resolve: a link made since the config was read must not reach /etc.
            problem = log_folder_problem(Path(log_source), cfg.root, cfg.out_dir, windows=os.name == "nt")
            if problem:
                raise ConfigError(cfg.path, "[run].log_dir", problem)
    the_plan = plan(cfg, engine_os=engine_os, engine_cpus=int(info.get("NCPU", 1)), image=image, name=name,
                    args=args, log_source=log_source)
    with contextlib.suppress(docker.errors.NotFound):
        old = client.containers.get(the_plan.name)
        if old.status in ("running", "restarting"):
            raise WgobuildError(f"run: container {the_plan.name} is already {old.status}; `invoke stop` first")
        old.remove(force=True)
    if local:
        for i, port in enumerate(the_plan.host_ports):
            if port_in_use(port):
                raise WgobuildError(f"run: host port {port} ([run].ports[{i}]) is already in use; stop what "
                                    "listens there or change [run].ports")
    try:
        container = client.containers.create(image, **the_plan.create_kwargs)
    except docker.errors.DockerException as exc:
        text = getattr(exc, "explanation", None) or exc
        raise WgobuildError(f"run: the engine refused the container settings: {text}") from None
    try:
        container.start()
    except docker.errors.APIError as exc:
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)
        text = str(exc.explanation or exc)
        if "address already in use" in text or "port is already allocated" in text:
            raise WgobuildError(f"run: a published port is already in use on the engine host ({text}); "
                                "change [run].ports") from None
        raise WgobuildError(f"run: the engine could not start {the_plan.name}: {text}") from None
    echo(the_plan.describe())
    return the_plan


def stop(cfg: Config, *, name: str = "", grace_s: float | None = None, client: Any = None) -> str:
    """Stop the container with a grace period (SIGTERM / CTRL_SHUTDOWN, then kill)."""
    import docker.errors

    client = client or connect()
    cname = container_name(cfg, name)
    try:
        container = client.containers.get(cname)
    except docker.errors.NotFound:
        return f"container {cname}: not found"
    if container.status not in ("running", "restarting", "paused"):
        return f"container {cname}: already {container.status}"
    grace = cfg.run.stop_grace_s if grace_s is None else grace_s
    container.stop(timeout=math.ceil(grace))
    container.reload()
    return f"container {cname}: stopped (exit code {container.attrs['State'].get('ExitCode')})"


def status(cfg: Config, *, name: str = "", client: Any = None) -> dict[str, Any]:
    """State, restarts, memory and CPU of the container ({} when it does not exist)."""
    import docker.errors

    client = client or connect()
    cname = container_name(cfg, name)
    try:
        container = client.containers.get(cname)
    except docker.errors.NotFound:
        return {}
    state = container.attrs["State"]
    out: dict[str, Any] = {
        "name": cname, "image": container.attrs["Config"]["Image"], "state": state.get("Status"),
        "restarts": container.attrs.get("RestartCount", 0), "exit_code": state.get("ExitCode"),
        "started_at": state.get("StartedAt"), "memory_limit": container.attrs["HostConfig"].get("Memory", 0),
    }
    if state.get("Running"):
        stats = container.stats(stream=False)
        mem = stats.get("memory_stats", {})
        out["memory"] = mem.get("usage", 0) or mem.get("privateworkingset", 0)
        cpu, pre = stats.get("cpu_stats", {}), stats.get("precpu_stats", {})
        delta = cpu.get("cpu_usage", {}).get("total_usage", 0) - pre.get("cpu_usage", {}).get("total_usage", 0)
        system = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
        online = cpu.get("online_cpus") or 1
        # Windows engines report no system_cpu_usage: CPU percent is then shown as n/a rather than a false 0.
        out["cpu_percent"] = round(delta / system * online * 100, 1) if system > 0 else None
    return out


def format_status(info: dict[str, Any]) -> str:
    if not info:
        return "container: not found (start it with `invoke run`)"
    line = (f"container {info['name']} ({info['image']}): {info['state']}, restarts {info['restarts']}, "
            f"exit code {info['exit_code']}, started {info['started_at']}")
    if "memory" in info:
        limit = f" of {info['memory_limit'] / 1048576:.0f}MiB" if info.get("memory_limit") else ""
        cpu = "n/a" if info["cpu_percent"] is None else f"{info['cpu_percent']}%"
        line += f"\n  memory {info['memory'] / 1048576:.1f}MiB{limit}, CPU {cpu}"
    return line
