"""Per-platform build engines (``[engines]``): two private dockerds stand in for two build hosts, linux/amd64 mapped
to one through a docker context, linux/arm64 to the other through an engine URL, while ``DOCKER_HOST`` names the
first. Each image lands on its own engine and not the other, the two image steps run at the same time, doctor
reports each engine, a stopped engine fails only its platform, and bad keys or contexts are exit 2 naming the key.
Without ``[engines]`` both images go to the default engine (the negative control)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures_docker import Dockerd, _dockerd_binary
from fixtures_go import copy_hello, run_doit
from services import service_missing

from wgobuild import config, engine, proc
from wgobuild.commands import doctor
from wgobuild.errors import ConfigError

REPOSITORY = f"wgobuild-engines-{os.getpid()}"
PLATFORMS = '["linux/amd64", "linux/arm64"]'


# -- fixtures ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine_b(docker_host: str) -> Iterator[Dockerd]:
    """The second engine: a private dockerd of this module only (the session's engine is the first)."""
    if _dockerd_binary() is None:
        service_missing("second docker engine: dockerd is not installed (apt-get install docker.io)")
    daemon = Dockerd()
    try:
        daemon.start()
    except RuntimeError as exc:
        service_missing(f"second docker engine ({exc})")
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="module")
def docker_config(tmp_path_factory: pytest.TempPathFactory, docker_host: str) -> Path:
    """A docker CLI config folder holding context ``ctx-a`` for the session's engine, made by the docker CLI."""
    cli = shutil.which("docker")
    if cli is None:
        service_missing("docker CLI (apt-get install docker.io)")
    folder = tmp_path_factory.mktemp("docker-config")
    proc.run([str(cli), "--config", str(folder), "context", "create", "ctx-a", "--docker", f"host={docker_host}"],
             env=dict(os.environ), quiet=True, check=True, step="docker context create")
    return folder


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = copy_hello(tmp_path_factory.mktemp("engines") / "hello", backend='"engine"', repository=f'"{REPOSITORY}"')
    toml = root / "wgobuild.toml"
    toml.write_text(toml.read_text().replace('["windows/amd64", "linux/amd64"]', PLATFORMS)
                    .replace('version = "git"', 'version = "3.1.4"'))
    return root


def configure(root: Path, engines: dict[str, str] | None, backend: str = "engine") -> None:
    """Rewrite ``[engines]`` (None: no such section) and ``[image].backend`` of the project."""
    toml = root / "wgobuild.toml"
    text = toml.read_text()
    text = text.split("\n[engines]\n")[0].rstrip("\n") + "\n"
    text = "\n".join(f'backend = "{backend}"' if line.startswith("backend = ") else line
                     for line in text.splitlines()) + "\n"
    if engines is not None:
        text += "\n[engines]\n" + "".join(f'"{key}" = "{value}"\n' for key, value in engines.items())
    toml.write_text(text)


def images_on(url: str) -> set[str]:
    """This project's tags the engine at ``url`` holds."""
    import docker

    with contextlib.closing(docker.DockerClient(base_url=url)) as client:
        return {tag for image in client.images.list(name=REPOSITORY) for tag in image.tags}


def remove_project_images(*urls: str) -> None:
    import docker

    for url in urls:
        with contextlib.closing(docker.DockerClient(base_url=url)) as client:
            for image in client.images.list(name=REPOSITORY):
                client.images.remove(image.id, force=True)


def record(root: Path, key: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((root / f"dist/images/{key}.json").read_text())
    return doc


def loaded(root: Path) -> dict[str, str]:
    """Where ``publish`` loaded each daemonless image (``images.json``)."""
    found: dict[str, str] = json.loads((root / "dist/reports/images.json").read_text()).get("loaded", {})
    return found


def wgobuild_doctor(root: Path, env: dict[str, str]) -> list[str]:
    result = subprocess.run([sys.executable, "-m", "wgobuild.cli", "doctor", str(root)], capture_output=True,
                            text=True, timeout=120, env={**os.environ, **env})
    return [line for line in result.stdout.splitlines() if " Engine " in f" {line}"]


AMD64, ARM64 = f"{REPOSITORY}:3.1.4-linux-amd64", f"{REPOSITORY}:3.1.4-linux-arm64"


# -- end to end on two engines (in file order: the last test stops the second engine) ------------------------------


def test_without_engines_both_images_go_to_the_default_engine(
        project: Path, docker_host: str, engine_b: Dockerd, docker_config: Path) -> None:
    # auto: built daemonless and loaded into the engine (the classic builder of one engine cannot build FROM
    # scratch for two architectures: its cache hands the amd64 LABEL layer to the arm64 build).
    configure(project, None, backend="auto")
    run = run_doit(project, "image", env={"DOCKER_CONFIG": str(docker_config)})
    assert run.returncode == 0, run.output
    assert images_on(docker_host) == {AMD64, ARM64}, "no [engines]: every image goes to DOCKER_HOST's engine"
    assert loaded(project) == {"linux/amd64": docker_host, "linux/arm64": docker_host}
    assert images_on(engine_b.url) == set()
    remove_project_images(docker_host)


def test_each_platform_lands_on_its_own_engine_and_not_the_other(
        project: Path, docker_host: str, engine_b: Dockerd, docker_config: Path) -> None:
    # auto: each platform's image is built daemonless and loaded into the engine [engines] maps it to.
    configure(project, {"linux/amd64": "ctx-a", "linux/arm64": engine_b.url}, backend="auto")
    env = {"DOCKER_CONFIG": str(docker_config)}
    run = run_doit(project, "image", env=env)
    assert run.returncode == 0, run.output
    assert run.reasons["image-platform:linux-arm64"].startswith("settings changed: engine"), run.output
    assert not any(name.startswith("compile:") for name in run.ran), "only the image steps change"
    assert images_on(docker_host) == {AMD64}, f"DOCKER_HOST's engine gets amd64 only\n{run.output}"
    assert images_on(engine_b.url) == {ARM64}
    assert loaded(project) == {"linux/amd64": docker_host, "linux/arm64": engine_b.url}
    # The two image steps ran at the same time (no dependency between them; a worker per engine at least).
    events = json.loads((project / "dist/reports/trace.json").read_text())["traceEvents"]
    spans = {e["name"]: (e["ts"], e["ts"] + e["dur"]) for e in events if e.get("ph") == "X"}
    (a_start, a_end), (b_start, b_end) = spans["image-platform:linux-amd64"], spans["image-platform:linux-arm64"]
    assert a_start < b_end and b_start < a_end, f"the image steps ran one after the other: {spans}"
    again = run_doit(project, "image", env=env)
    assert again.returncode == 0 and again.ran == set(), again.output
    remove_project_images(docker_host, engine_b.url)


def test_the_engine_backend_builds_on_the_platforms_engine(
        project: Path, docker_host: str, engine_b: Dockerd, docker_config: Path) -> None:
    # Only linux/amd64: an amd64 dockerd's classic builder cannot build FROM scratch for arm64 (its LABEL step
    # commits an amd64 image that the next step refuses); a real setup maps arm64 to an arm64 engine.
    configure(project, {"linux/amd64": engine_b.url, "linux/arm64": "ctx-a"}, backend="engine")
    env = {"DOCKER_CONFIG": str(docker_config)}
    run = run_doit(project, "image-platform:linux-amd64", env=env)
    assert run.returncode == 0, run.output
    assert f"to {engine_b.url}" in run.output, run.output
    amd64 = record(project, "linux-amd64")
    assert amd64["backend"] == "engine" and amd64["extra"]["engine"] == engine_b.url, amd64
    assert amd64["extra"]["engine_config"] == engine_b.url
    import docker

    with contextlib.closing(docker.DockerClient(base_url=engine_b.url)) as client:
        assert client.images.get(amd64["digest"]).attrs["Architecture"] == "amd64"
    with contextlib.closing(docker.DockerClient(base_url=docker_host)) as client, \
            pytest.raises(docker.errors.ImageNotFound):
        client.images.get(amd64["digest"])  # not on DOCKER_HOST's engine

    # The record is checked on its own engine: a no-op runs nothing (DOCKER_HOST's engine lacks the image) ...
    again = run_doit(project, "image-platform:linux-amd64", env=env)
    assert again.returncode == 0 and again.ran == set(), again.output
    # ... and once the image is gone from that engine, the step runs again and builds it there.
    with contextlib.closing(docker.DockerClient(base_url=engine_b.url)) as client:
        client.images.remove(amd64["digest"], force=True)
    rebuilt = run_doit(project, "image-platform:linux-amd64", env=env)
    assert rebuilt.ran == {"image-platform:linux-amd64"}, rebuilt.output
    assert "is no longer on the engine" in rebuilt.reasons["image-platform:linux-amd64"], rebuilt.output
    assert record(project, "linux-amd64")["extra"]["engine"] == engine_b.url


def test_doctor_reports_each_engine(project: Path, docker_host: str, engine_b: Dockerd, docker_config: Path) -> None:
    configure(project, {"linux/amd64": "ctx-a", "linux/arm64": engine_b.url})
    lines = wgobuild_doctor(project, {"DOCKER_CONFIG": str(docker_config)})
    assert len(lines) == 2, lines
    amd64, arm64 = lines
    assert amd64.startswith("ok ") and "Engine linux/amd64" in amd64 and f"ctx-a ({docker_host}): linux/" in amd64
    assert arm64.startswith("ok ") and "Engine linux/arm64" in arm64 and f"{engine_b.url}: linux/" in arm64


def test_a_stopped_engine_fails_only_its_platform(
        project: Path, docker_host: str, engine_b: Dockerd, docker_config: Path) -> None:
    configure(project, {"linux/amd64": "ctx-a", "linux/arm64": engine_b.url}, backend="auto")
    env = {"DOCKER_CONFIG": str(docker_config)}
    remove_project_images(docker_host)
    main = project / "main.go"
    main.write_text(main.read_text().replace("listening on", "listening at"))  # a change: every image step runs
    engine_b.stop()
    b_socket = engine_b.url.removeprefix("unix://")

    # auto: both built daemonless; amd64 loaded into its engine, arm64's load skipped with one line.
    auto = run_doit(project, "image", env=env)
    assert auto.returncode == 0, auto.output
    skipped = [line for line in auto.output.splitlines() if "engine load skipped" in line]
    assert len(skipped) == 1 and "linux/arm64: engine load skipped: no engine answers at " in skipped[0], auto.output
    assert b_socket in skipped[0], auto.output
    assert record(project, "linux-arm64")["backend"] == "oci", "built daemonless"
    assert loaded(project) == {"linux/amd64": docker_host}, "arm64 is loaded nowhere"
    assert images_on(docker_host) == {AMD64}

    # doctor says which engine is down, one line, and the other is fine.
    lines = wgobuild_doctor(project, env)
    assert lines[0].startswith("ok ") and "Engine linux/amd64" in lines[0], lines
    assert lines[1].startswith("missing ") and "Engine linux/arm64" in lines[1], lines
    assert f"cannot reach the Docker engine at {engine_b.url}: no such socket" in lines[1], lines

    # engine named explicitly (backend = "engine"): the run fails, naming the platform and the engine.
    configure(project, {"linux/amd64": engine_b.url, "linux/arm64": "ctx-a"}, backend="engine")
    named = run_doit(project, "image-platform:linux-amd64", env=env)
    assert named.returncode != 0, named.output
    said = [line for line in named.output.splitlines() if "cannot build the linux/amd64 image" in line]
    assert len(said) == 1 and f"cannot reach the Docker engine at {engine_b.url}: no such socket" in said[0], \
        named.output


# -- configuration -------------------------------------------------------------------------------------------------


def _config(tmp_path: Path, engines: dict[str, Any], platforms: list[str] | None = None) -> config.Config:
    root = copy_hello(tmp_path / "hello")
    data = {"project": {"name": "hello"}, "binaries": [{"name": "hello", "package": "."}],
            "build": {"platforms": platforms or ["linux/amd64", "windows/amd64:10.0.17763", "windows/amd64"]},
            "engines": engines}
    return config.from_dict(data, root, root / "wgobuild.toml")


@pytest.mark.parametrize(("engines", "key", "problem"), [
    ({"linux/386": "ctx"}, '[engines]."linux/386"',
     "'linux/386' is not a supported platform; allowed: windows/amd64, windows/arm64, linux/amd64, linux/arm64, "
     "linux/arm, darwin/amd64, darwin/arm64; a key is a platform of [build].platforms"),
    ({"linux/arm64": "ctx"}, '[engines]."linux/arm64"',
     "'linux/arm64' is not built by this project ([build].platforms: linux/amd64, windows/amd64:10.0.17763, "
     "windows/amd64); map only platforms it builds"),
    ({"windows/amd64:10.0.26100": "ctx"}, '[engines]."windows/amd64:10.0.26100"',
     "'windows/amd64:10.0.26100' is not built by this project ([build].platforms: linux/amd64, "
     "windows/amd64:10.0.17763, windows/amd64); map only platforms it builds"),
    ({"linux/amd64": "http://build-host:2375"}, '[engines]."linux/amd64"',
     "'http://build-host:2375': an engine URL starts with unix://, tcp://, ssh://, npipe://"),
    ({"linux/amd64": "my context"}, '[engines]."linux/amd64"',
     "'my context' is neither a docker context name (letters, digits, '_', '.', '+', '-') nor an engine URL "
     "(unix://, tcp://, ssh://, npipe://)"),
    ({"linux/amd64": 2375}, '[engines].linux/amd64', "expected str, got int 2375"),
])
def test_a_bad_engines_entry_names_its_key(tmp_path: Path, engines: dict[str, Any], key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _config(tmp_path, engines)
    assert (caught.value.key, caught.value.problem) == (key, problem)
    assert caught.value.exit_code == 2


def test_an_os_version_key_wins_over_a_bare_os_arch_key(tmp_path: Path) -> None:
    cfg = _config(tmp_path, {"windows/amd64": "ctx-any", "windows/amd64:10.0.17763": "ssh://admin@ltsc2019",
                             "linux/amd64": "tcp://linux-builder:2376"})
    linux, ltsc2019, ltsc2022 = cfg.platforms
    assert cfg.engine_for(ltsc2019) == "ssh://admin@ltsc2019"
    assert cfg.engine_for(ltsc2022) == "ctx-any", "windows/amd64 without os.version is ltsc2022's"
    assert cfg.engine_for(linux) == "tcp://linux-builder:2376"
    assert _config(tmp_path / "none", {}).engine_for(linux) == "", "unmapped: the default engine"


def test_an_unknown_context_stops_the_build_with_exit_2_naming_the_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = copy_hello(tmp_path / "hello")
    (root / "wgobuild.toml").write_text((root / "wgobuild.toml").read_text() + '\n[engines]\n"linux/amd64" = "ltsc"\n')
    folder = tmp_path / "docker-config"
    run = run_doit(root, "image", env={"DOCKER_CONFIG": str(folder)})
    assert run.returncode == 2, run.output
    assert (f'wgobuild: {root / "wgobuild.toml"}: [engines]."linux/amd64": no docker context named \'ltsc\' in '
            f"{folder / 'contexts'}; create it ('docker context create ltsc --docker host=...') or give an engine "
            "URL") in run.output, run.output
    assert not (root / "dist").exists(), "nothing built"

    # Negative control: once the docker CLI has made the context, the same file passes the check.
    cli = shutil.which("docker")
    if cli is None:
        service_missing("docker CLI (apt-get install docker.io)")
    proc.run([str(cli), "--config", str(folder), "context", "create", "ltsc", "--docker", "host=tcp://ltsc:2376"],
             env=dict(os.environ), quiet=True, check=True, step="docker context create")
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    cfg = config.load(root)
    engine.check_contexts(cfg)
    assert engine.engine_address("ltsc") == "tcp://ltsc:2376"


def test_every_engine_gets_a_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wgobuild import doit_tasks

    monkeypatch.setattr(os, "cpu_count", lambda: 1)  # one core: 1 + 3 spare workers, fewer than the engines
    platforms = ["linux/amd64", "linux/arm64", "windows/amd64:10.0.17763", "windows/amd64:10.0.20348",
                 "windows/amd64:10.0.26100"]
    engines = {p: f"tcp://builder-{i}:2376" for i, p in enumerate(platforms)}
    assert doit_tasks.doit_config(_config(tmp_path / "five", engines, platforms))["num_process"] == 5
    one = doit_tasks.doit_config(_config(tmp_path / "one", dict.fromkeys(platforms, "ctx"), platforms))
    assert one["num_process"] == 4, "one engine: the CPU count decides, as without"


def test_a_url_engine_does_not_read_docker_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """One platform's engine never leaks into another's client: DOCKER_HOST only picks the default engine."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/default.sock")
    other = f"unix://{tmp_path}/other.sock"
    assert engine.engine_address(other) == other
    assert engine.engine_address() == f"unix://{tmp_path}/default.sock"
    with pytest.raises(engine.EngineUnreachable) as caught:
        engine.connect(timeout=2, engine=other)
    assert str(caught.value) == (f"cannot reach the Docker engine at {other}: no such socket. start it, or map the "
                                 "platform to a running engine in [engines].")


# -- TLS: a stand-in engine on tcp:// that wants a client certificate ---------------------------------------------


def _certificates(folder: Path) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as ca.pem, server-*.pem, cert.pem and
    key.pem (the names DOCKER_CERT_PATH and the docker CLI use)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def issue(name: str, key: Any, issuer: x509.Name, signer: Any, ca: bool = False,
              ip: str = "") -> x509.Certificate:
        builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ip:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                                            critical=False)
        return builder.sign(signer, hashes.SHA256())

    def write(name: str, key: Any, cert: x509.Certificate) -> None:
        (folder / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (folder / f"{name.replace('cert', 'key')}-key.pem" if name != "cert" else folder / "key.pem").write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))

    folder.mkdir(parents=True)
    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wgobuild test CA")])
    ca = issue("wgobuild test CA", ca_key, ca_name, ca_key, ca=True)
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    write("server", server_key, issue("engine", server_key, ca_name, ca_key, ip="127.0.0.1"))
    write("cert", client_key, issue("client", client_key, ca_name, ca_key))
    return folder


def _linux_engine(handler: Any) -> tuple[int, dict[str, str], bytes]:
    path = handler.path.split("?")[0]
    if path.endswith("/_ping"):
        return 200, {"Content-Type": "text/plain", "Api-Version": "1.41"}, b"OK"
    doc = {"ApiVersion": "1.41", "MinAPIVersion": "1.24", "Version": "24.0.7", "Os": "linux", "Arch": "amd64",
           "OSType": "linux", "Architecture": "x86_64", "ServerVersion": "24.0.7"}
    return 200, {"Content-Type": "application/json"}, json.dumps(doc).encode()


@contextlib.contextmanager
def _tls_engine(certs: Path) -> Iterator[Any]:
    """A stand-in engine on https://127.0.0.1:PORT that refuses a client without a certificate of ``certs``' CA."""
    import ssl
    from http.server import ThreadingHTTPServer

    from test_claims import _Recorder, _serving

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certs / "ca.pem"))
    context.load_cert_chain(certs / "server.pem", certs / "server-key.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    with _serving(server, _linux_engine) as serving:
        yield serving


def test_tcp_engines_use_the_contexts_or_docker_cert_paths_certificates(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = shutil.which("docker")
    if cli is None:
        service_missing("docker CLI (apt-get install docker.io)")
    certs = _certificates(tmp_path / "certs")
    with _tls_engine(certs) as server:
        url = f"tcp://127.0.0.1:{server.server_address[1]}"
        folder = tmp_path / "docker-config"
        proc.run([str(cli), "--config", str(folder), "context", "create", "tls-host", "--docker",
                  f"host={url},ca={certs / 'ca.pem'},cert={certs / 'cert.pem'},key={certs / 'key.pem'}"],
                 env=dict(os.environ), quiet=True, check=True, step="docker context create")
        monkeypatch.setenv("DOCKER_CONFIG", str(folder))
        for name in ("DOCKER_HOST", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY"):
            monkeypatch.delenv(name, raising=False)
        import certifi

        monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())  # as on many hosts: must not replace the engine's CA

        # Negative control: without certificates the engine refuses us (so the passes below are the certificates').
        with pytest.raises(engine.EngineUnreachable) as caught:
            engine.connect(timeout=5, engine=url)
        assert str(caught.value) == (
            f"cannot reach the Docker engine at {url}: connection reset by the engine (a TLS port wants certificates: "
            "DOCKER_CERT_PATH with DOCKER_TLS_VERIFY=1, or a docker context with them). start it, or map the platform "
            "to a running engine in [engines].")
        # The engine's certificate checked against the system CAs instead of its own: refused, and said so.
        monkeypatch.setenv("DOCKER_CERT_PATH", str(certs))
        monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
        (certs / "ca.pem").rename(certs / "ca.pem.aside")
        (certs / "ca.pem").symlink_to(certifi.where())
        with pytest.raises(engine.EngineUnreachable) as caught:
            engine.connect(timeout=5, engine=url)
        assert str(caught.value).startswith(
            f"cannot reach the Docker engine at {url}: TLS: the engine's certificate does not verify against the CA "
            "given (ca.pem of the docker context or of DOCKER_CERT_PATH)."), str(caught.value)
        (certs / "ca.pem").unlink()
        (certs / "ca.pem.aside").rename(certs / "ca.pem")
        monkeypatch.delenv("DOCKER_CERT_PATH")
        monkeypatch.delenv("DOCKER_TLS_VERIFY")

        # A context: its own CA, certificate and key, as the docker CLI stored them.
        with contextlib.closing(engine.connect(timeout=5, engine="tls-host")) as client:
            assert client.info()["OSType"] == "linux"
        # An engine URL: DOCKER_CERT_PATH's files, the server checked against its ca.pem (DOCKER_TLS_VERIFY).
        monkeypatch.setenv("DOCKER_CERT_PATH", str(certs))
        monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
        with contextlib.closing(engine.connect(timeout=5, engine=url)) as client:
            assert client.info()["OSType"] == "linux"
        assert [r for r in server.requests if r.endswith("/info")] == ["GET /v1.41/info"] * 2, server.requests


# -- Windows engines (the stand-in engine of test_claims answers /info as a Windows host would) -----------------


@pytest.mark.skipif(os.name == "nt", reason="the stand-in engine listens on a unix socket")
def test_doctor_checks_a_windows_engine_build_against_each_os_version(tmp_path: Path) -> None:
    from test_claims import _windows_engine, unix_http_server

    sock = Path(f"/tmp/wgbe-{os.getpid()}.sock")
    url = f"unix://{sock}"
    with unix_http_server(sock, _windows_engine("10.0 17763 (17763.1.amd64fre.rs5_release.180914-1434)")):
        cfg = _config(tmp_path, {"windows/amd64": url, "linux/amd64": url})
        checks = doctor.check_engines(cfg)
    assert checks == [
        ("Engine linux/amd64", False, f"{url}: windows/x86_64, Docker 24.0.7; runs windows containers, not linux "
                                      "ones: map linux/amd64 to a linux engine in [engines]"),
        ("Engine windows/amd64:10.0.17763", True, f"{url}: windows/x86_64, Docker 24.0.7, Windows build 17763 for "
                                                  "10.0.17763 (process isolation)"),
        ("Engine windows/amd64", False, f"{url}: windows/x86_64, Docker 24.0.7, Windows build 17763; the engine's "
                                        "Windows build 17763 is older than the image's 20348 (ltsc2022)"),
    ]


@pytest.mark.parametrize(("isolation", "ok", "detail"), [
    ("", False, "isolation = 'process' needs the host's Windows build (20348) to equal the image's 17763; use "
                "isolation = 'hyperv' or a matching os.version"),
    ("hyperv", True, "Windows build 20348 for 10.0.17763 (hyperv isolation)"),
])
def test_an_older_image_on_a_newer_windows_engine_needs_hyperv(isolation: str, ok: bool, detail: str) -> None:
    info = {"OSType": "windows", "Architecture": "x86_64", "ServerVersion": "24.0.7", "Isolation": "process",
            "KernelVersion": "10.0 20348 (20348.1.amd64fre.fe_release.210507-1500)"}
    _, found_ok, found = doctor.engine_check("Engine", config.Platform.parse("windows/amd64:10.0.17763"),
                                             isolation, "ctx-2022", "tcp://ltsc2022:2376", info)
    assert (found_ok, found.endswith(detail)) == (ok, True), found
    assert found.startswith("ctx-2022 (tcp://ltsc2022:2376): windows/x86_64, Docker 24.0.7")


def test_a_platform_its_mapped_engine_could_not_build_is_retried_when_that_engine_appears(tmp_path: Path) -> None:
    """The "not built here" record of a platform mapped in [engines] keeps that engine's facts (its unix socket's
    stat, its context file's): it is retried when the engine comes back, not only when DOCKER_HOST changes."""
    import socket

    from wgobuild import records

    sock = tmp_path / "engine.sock"
    engine = f"unix://{sock}"
    record = tmp_path / "windows-amd64.json"
    record.write_text(json.dumps({"backend": "none", "extra": {"facts": records.engine_facts(engine),
                                                               "engine_config": engine}}))
    assert records.stale_reason(record) is None, "nothing changed: no retry"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock))
    try:
        assert records.stale_reason(record) == "retrying: the engine socket changed since it could not be built"
    finally:
        listener.close()
    context = records.engine_facts("ctx-ltsc2019")
    assert context["engine"] == "ctx-ltsc2019" and context["socket"].endswith("meta.json absent")
    # Negative control: without the mapped engine in the record, the default engine's facts are compared.
    record.write_text(json.dumps({"backend": "none", "extra": {"facts": records.engine_facts(engine)}}))
    assert records.stale_reason(record) is not None


def test_the_not_built_line_of_a_mapped_platform_names_its_engine_not_docker_host(tmp_path: Path) -> None:
    from wgobuild import imaging

    cfg = _config(tmp_path, {"windows/amd64": "ctx-ltsc2022"}, ["linux/amd64", "windows/amd64"])
    windows, linux = (next(p for p in cfg.platforms if p.os == name) for name in ("windows", "linux"))
    detail = "oci: base mcr.microsoft.com/windows/nanoserver:ltsc2022: unreachable"
    line = imaging.unavailable_line(cfg, windows, detail)
    assert line.startswith("needs its engine (ctx-ltsc2022) or a reachable base (") and "DOCKER_HOST" not in line
    assert line.endswith("start that engine, or image.windows_base"), line
    assert "set DOCKER_HOST" in imaging.unavailable_line(cfg, linux, detail), "negative control: unmapped"
