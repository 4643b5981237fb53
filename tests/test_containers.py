"""``invoke run``/``stop``/``status`` core: the plan per engine OS, and the real dockerd with the hello image."""

from __future__ import annotations

import io
import socket
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wgobuild import config, containers, gotool
from wgobuild.config import Platform
from wgobuild.errors import ConfigError, WgobuildError

HELLO = Path(__file__).resolve().parents[1] / "examples" / "hello"


def _cfg(tmp_path: Path, limits: dict | None = None, run: dict | None = None, image: dict | None = None,
         name: str = "wgotest") -> config.Config:
    (tmp_path / "main.go").write_text("package main\n\nfunc main() {}\n")
    data: dict[str, Any] = {"project": {"name": name}, "binaries": [{"name": "svc"}], "limits": limits or {},
                            "run": run or {}, "image": image or {}}
    return config.from_dict(data, tmp_path, tmp_path / "wgobuild.toml")


FULL = {"memory": "64MiB", "cpus": 0.5, "affinity": [0], "pids": 64, "handles": 256, "priority": "high"}


def test_linux_plan_applies_everything(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, FULL, {"ports": ["8080:80", "9000/udp"], "user": "65532", "retries": 3})
    plan = containers.plan(cfg, engine_os="linux", engine_cpus=2, image="x:1", log_source="/srv/logs")
    kw = plan.create_kwargs
    assert kw["mem_limit"] == kw["memswap_limit"] == 64 * 1024 * 1024
    assert kw["nano_cpus"] == 500_000_000 and kw["cpuset_cpus"] == "0" and kw["pids_limit"] == 64
    assert kw["ulimits"][0]["Soft"] == 256 and kw["read_only"] is True and kw["user"] == "65532"
    assert kw["restart_policy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert kw["ports"] == {"80/tcp": 8080, "9000/udp": None} and plan.host_ports == [8080]
    assert kw["mounts"][0]["Target"] == "/logs" and kw["mounts"][0]["Source"] == "/srv/logs"
    assert plan.dropped == ["priority high: not a container setting; `invoke serve` applies it"]
    assert "isolation" not in kw


def test_windows_plan_drops_what_windows_engines_reject(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, FULL, {"restart": "always"}, {"isolation": "hyperv"})
    plan = containers.plan(cfg, engine_os="windows", engine_cpus=4, image="x:1", log_source="D:\\logs")
    kw = plan.create_kwargs
    for rejected in ("cpuset_cpus", "memswap_limit", "pids_limit", "ulimits", "read_only", "security_opt",
                     "cpu_period", "blkio_weight"):
        assert rejected not in kw, rejected
    assert kw["mem_limit"] == 64 * 1024 * 1024 and kw["nano_cpus"] == 500_000_000
    assert kw["isolation"] == "hyperv" and kw["restart_policy"] == {"Name": "always"}
    assert kw["mounts"][0]["Target"] == "C:\\logs"
    text = plan.describe()
    for setting in ("memory-swap", "affinity (cpuset)", "pids", "handles", "read_only"):
        assert f"dropped  {setting}" in text, setting
    assert "Windows engines reject it" in text


def test_host_network_is_refused_for_windows_containers(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, run={"network": "host"})
    with pytest.raises(ConfigError, match="Windows containers have no host network") as info:
        containers.plan(cfg, engine_os="windows", engine_cpus=4, image="x:1")
    assert info.value.key == "[run].network"
    assert containers.plan(cfg, engine_os="linux", engine_cpus=4, image="x:1").create_kwargs["network_mode"] == "host"


def test_impossible_cpus_for_the_engine(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, {"cpus": 8})
    with pytest.raises(ConfigError, match="engine has 2") as info:
        containers.plan(cfg, engine_os="linux", engine_cpus=2, image="x:1")
    assert info.value.key == "[limits].cpus"
    with pytest.raises(ConfigError) as info:
        containers.plan(_cfg(tmp_path, {"affinity": [5]}), engine_os="linux", engine_cpus=2, image="x:1")
    assert info.value.key == "[limits].affinity[0]"
    assert str(info.value).endswith(": [limits].affinity[0]: CPU 5 does not exist on the engine (2 CPUs)")


def test_default_image_matches_the_engine_platform(tmp_path: Path) -> None:
    (tmp_path / "main.go").write_text("package main\n\nfunc main() {}\n")
    data = {"project": {"name": "svc", "version": "1.2.3"}, "binaries": [{"name": "svc"}],
            "build": {"platforms": ["windows/amd64:10.0.17763", "windows/amd64:10.0.20348", "linux/amd64"]}}
    cfg = config.from_dict(data, tmp_path, tmp_path / "wgobuild.toml")
    info = {"KernelVersion": "10.0 20348 (20348.1.amd64fre.fe_release.210507-1500)"}
    assert containers.windows_build(info) == "10.0.20348"
    assert containers.windows_build({"OSVersion": "10.0.26100"}) == "10.0.26100"
    assert containers.default_image(cfg, "windows", "x86_64", "10.0.20348") == "svc:1.2.3-windows-amd64-20348"
    assert containers.default_image(cfg, "linux", "x86_64") == "svc:1.2.3-linux-amd64"
    with pytest.raises(WgobuildError, match="no linux/arm64 platform"):
        containers.default_image(cfg, "linux", "aarch64")


def test_format_status() -> None:
    assert containers.format_status({}) == "container: not found (start it with `invoke run`)"
    info = {"name": "svc", "image": "svc:1", "state": "running", "restarts": 1, "exit_code": 0, "started_at": "t",
            "memory_limit": 64 * 1048576, "memory": 10 * 1048576, "cpu_percent": None}
    assert containers.format_status(info).endswith("memory 10.0MiB of 64MiB, CPU n/a")


# --------------------------------------------------------------------------------------------------------------
# Real engine


def _build_image(client: Any, exe: Path, tag: str) -> None:
    """A ``FROM scratch`` image holding one static binary (tests only; vfs storage keeps images tiny)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dockerfile = b'FROM scratch\nCOPY app /app\nUSER 65532\nENTRYPOINT ["/app"]\n'
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
        tar.add(exe, arcname="app")
    buf.seek(0)
    client.images.build(fileobj=buf, custom_context=True, tag=tag, rm=True, forcerm=True)


@pytest.fixture(scope="module")
def hello_image(docker_host: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The linux/amd64 build of examples/hello in a scratch image on the test engine."""
    linux = Platform("linux", "amd64")
    out = tmp_path_factory.mktemp("hello") / "hello"
    gotool.build(HELLO, ".", linux, out, "run-test")
    client = containers.connect()
    tag = "wgobuild-test/hello:run"
    _build_image(client, out, tag)
    yield tag
    for c in client.containers.list(all=True, filters={"label": containers.LABEL}):
        c.remove(force=True)
    client.images.remove(tag, force=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_state(client: Any, name: str, want: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ctr = client.containers.get(name)
        if ctr.status == want:
            return ctr
        time.sleep(0.1)
    raise AssertionError(f"{name} never became {want} (last: {ctr.status})")


@pytest.mark.docker
def test_run_hello_with_limits_status_and_stop(tmp_path: Path, hello_image: str) -> None:
    port = _free_port()
    cfg = _cfg(tmp_path, {"memory": "64MiB", "cpus": 0.5, "affinity": [0], "pids": 64, "handles": 256},
               {"network": "host", "ports": [f"{port}:{port}"], "log_dir": "logs", "retries": 2, "stop_grace_s": 3,
                "args": ["-addr", f"127.0.0.1:{port}"]}, name="wgotest-limits")
    lines: list[str] = []
    containers.run(cfg, image=hello_image, echo=lines.append)
    assert "applies  memory: 64MiB" in lines[0] and "dropped  ports" in lines[0]
    client = containers.connect()
    ctr = _wait_state(client, "wgotest-limits", "running")
    host = ctr.attrs["HostConfig"]
    assert host["Memory"] == host["MemorySwap"] == 64 * 1024 * 1024
    assert host["NanoCpus"] == 500_000_000 and host["CpusetCpus"] == "0" and host["PidsLimit"] == 64
    assert host["Ulimits"] == [{"Name": "nofile", "Hard": 256, "Soft": 256}]
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert host["ReadonlyRootfs"] is True and host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Mounts"][0]["Source"] == str((tmp_path / "logs").resolve())
    assert ctr.attrs["Config"]["User"] == "65532"
    deadline = time.monotonic() + 10
    while True:  # the service answers through the limits
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello?name=run", timeout=2) as response:
                assert b"run" in response.read()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    info = containers.status(cfg)
    assert info["state"] == "running" and info["memory"] > 0 and info["memory_limit"] == 64 * 1024 * 1024
    assert "CPU" in containers.format_status(info)
    with pytest.raises(WgobuildError, match="already running; `invoke stop` first"):
        containers.run(cfg, image=hello_image, echo=lines.append)
    assert containers.stop(cfg).startswith("container wgotest-limits: stopped")
    assert containers.status(cfg)["state"] == "exited"
    assert containers.stop(cfg) == "container wgotest-limits: already exited"


@pytest.mark.docker
def test_restart_policy_honoured_on_non_zero_exit(tmp_path: Path, hello_image: str) -> None:
    cfg = _cfg(tmp_path, run={"network": "none", "retries": 2, "args": ["-no-such-flag"]}, name="wgotest-crash")
    containers.run(cfg, image=hello_image, echo=lambda _t: None)
    client = containers.connect()
    deadline = time.monotonic() + 30
    while True:
        ctr = client.containers.get("wgotest-crash")
        if ctr.status == "exited" and ctr.attrs["RestartCount"] == 2:
            break
        assert time.monotonic() < deadline, f"restart policy not honoured: {ctr.status} {ctr.attrs['RestartCount']}"
        time.sleep(0.2)
    assert ctr.attrs["State"]["ExitCode"] == 2  # Go's flag package: unknown flag
    info = containers.status(cfg)
    assert info["restarts"] == 2 and "restarts 2" in containers.format_status(info)


@pytest.mark.docker
def test_port_in_use_is_refused_before_anything_is_created(tmp_path: Path, hello_image: str) -> None:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = _cfg(tmp_path, run={"network": "host", "ports": [f"{port}:{port}"]}, name="wgotest-port")
        with pytest.raises(WgobuildError, match=rf"host port {port} \(\[run\].ports\[0\]\) is already in use"):
            containers.run(cfg, image=hello_image)
    assert containers.status(cfg) == {}


@pytest.mark.docker
def test_missing_image_is_a_clear_error(tmp_path: Path, docker_host: str) -> None:
    cfg = _cfg(tmp_path, name="wgotest-missing")
    with pytest.raises(WgobuildError, match="is not on the engine and no docker-save tar of it is under dist/images; "
                       "build it with `doit image`"):
        containers.run(cfg, image="wgobuild-test/none:0")
    assert containers.status(cfg) == {}
    assert containers.stop(cfg) == "container wgotest-missing: not found"
