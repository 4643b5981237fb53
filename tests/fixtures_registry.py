"""pytest plugin: real ``docker-registry`` servers on 127.0.0.1 and synthetic Windows/linux bases seeded into them.

``registry`` is open; ``auth_registry`` needs htpasswd (Basic) credentials; ``token_registry`` uses the bearer-token
flow (a tiny token service in the test process signs JWTs the registry checks against a self-made certificate),
like mcr.microsoft.com and Docker Hub. Each runs from a temp config and storage on a free port through
:func:`wgobuild.proc.run` in a thread. Under ``CI=true`` a missing binary fails the tests; otherwise they skip.

``seeded_bases`` builds the bases itself with plain ``requests`` (independent of the code under test): an index with
ltsc2019 and ltsc2022 entries whose layers follow the Windows layer format (Docker schema2, as mcr serves), plus a
linux base (OCI), and pushes them to the open registry.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import io
import json
import shutil
import socket
import tarfile
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from services import service_missing

from wgobuild import proc

RAWSD = "AQAAgBQAAAAkAAAAAAAAAAAAAAABAgAAAAAABSAAAAAhAgAAAQIAAAAAAAUgAAAAIQIAAA=="
WINDOWS_VERSIONS = {"ltsc2019": "10.0.17763.1234", "ltsc2022": "10.0.20348.2849"}
USER, PASSWORD = "tester", "s3cret-pass"
D_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
D_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
D_CONFIG = "application/vnd.docker.container.image.v1+json"
D_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
O_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
O_INDEX = "application/vnd.oci.image.index.v1+json"


def skopeo(*args: object) -> Any:
    """Run the real ``skopeo`` client (fails the test on a non-zero exit)."""
    if shutil.which("skopeo") is None:
        service_missing("skopeo (apt-get install skopeo)")
    return proc.run(["skopeo", *args], quiet=True, check=True, step="skopeo")


def repository_tags(url: str, repo: str) -> list[str]:
    """The tags of ``repo`` on the registry at ``url`` (plain HTTP, no auth); none when it does not exist."""
    import requests

    response = requests.get(f"{url}/v2/{repo}/tags/list", timeout=10)
    return list(response.json().get("tags") or []) if response.ok else []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    folder: Path
    user: str = ""
    password: str = ""
    log: deque[str] = field(default_factory=lambda: deque(maxlen=300), repr=False)
    thread: threading.Thread | None = field(default=None, repr=False)
    result: Any = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def docker_config(self, folder: Path) -> Path:
        """A ``config.json`` holding this registry's credentials (point ``DOCKER_CONFIG`` at ``folder``)."""
        folder.mkdir(parents=True, exist_ok=True)
        auth = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        (folder / "config.json").write_text(json.dumps({"auths": {self.host: {"auth": auth}}}))
        return folder


def _start(name: str, auth: dict[str, Any] | None) -> Iterator[Registry]:
    binary = shutil.which("docker-registry") or shutil.which("registry")
    if binary is None:
        service_missing("docker-registry (apt-get install docker-registry)")
    folder = Path(tempfile.mkdtemp(prefix=f"wgb-{name}-"))
    reg = Registry(f"127.0.0.1:{free_port()}", folder)
    cfg = {"version": 0.1, "log": {"level": "warn"},
           "storage": {"filesystem": {"rootdirectory": str(folder / "data")}, "delete": {"enabled": True}},
           "http": {"addr": reg.host, "secret": "wgobuild-tests"}}
    if auth:
        cfg["auth"] = auth
    (folder / "config.yml").write_text(json.dumps(cfg))  # JSON is YAML

    def run() -> None:
        with contextlib.suppress(Exception):
            reg.result = proc.run([binary, "serve", folder / "config.yml"], on_line=reg.log.append, label=name)

    reg.thread = threading.Thread(target=run, daemon=True)
    reg.thread.start()
    deadline = time.monotonic() + 20
    while True:
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{reg.url}/v2/", timeout=1).status_code in (200, 401):
                break
        if not reg.thread.is_alive() or time.monotonic() > deadline:
            pytest.fail(f"{name} did not start:\n" + "\n".join(reg.log), pytrace=False)
        time.sleep(0.1)
    try:
        yield reg
    finally:
        for pid in _ours(folder / "config.yml"):
            proc.kill_tree(pid)
        reg.thread.join(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def _ours(config: Path) -> list[int]:
    """Pids of the registry started with ``config`` (a child of this process; matched by its config path)."""
    import psutil

    found = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if str(config) in child.cmdline():
                found.append(child.pid)
    return found


@pytest.fixture(scope="session")
def registry() -> Iterator[Registry]:
    """An open registry on 127.0.0.1 (plain HTTP)."""
    yield from _start("registry", None)


@pytest.fixture(scope="session")
def auth_registry() -> Iterator[Registry]:
    """A registry that answers 401 without the htpasswd (Basic) credentials ``USER``/``PASSWORD``."""
    if shutil.which("htpasswd") is None:
        service_missing("htpasswd (apt-get install apache2-utils)")
    folder = Path(tempfile.mkdtemp(prefix="wgb-htpasswd-"))
    line = proc.run(["htpasswd", "-Bbn", USER, PASSWORD], quiet=True, check=True).output.strip()
    (folder / "htpasswd").write_text(line + "\n")
    for reg in _start("auth-registry", {"htpasswd": {"realm": "wgobuild-tests", "path": str(folder / "htpasswd")}}):
        reg.user, reg.password = USER, PASSWORD
        yield reg
    shutil.rmtree(folder, ignore_errors=True)


# --- token (bearer) flow --------------------------------------------------------------------------------------
def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class _TokenService:
    """Issues anonymous pull/push JWTs (RS256) the registry verifies with the certificate in its config."""

    def __init__(self, folder: Path) -> None:
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wgobuild-token")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
                .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(self.key, hashes.SHA256()))
        self.cert_der = cert.public_bytes(serialization.Encoding.DER)
        self.bundle = folder / "token.pem"
        self.bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.requests: list[str] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                from urllib.parse import parse_qs, urlparse

                query = parse_qs(urlparse(self.path).query)
                service.requests.append(self.path)
                body = json.dumps({"token": service.token(query.get("scope", []))}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, scopes: list[str]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        access = []
        for scope in " ".join(scopes).split():
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self.cert_der).decode()]}
        claims = {"iss": "wgobuild-token", "sub": "", "aud": "wgobuild-registry", "exp": now + 600,
                  "nbf": now - 60, "iat": now, "jti": str(now), "access": access}
        signing = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = self.key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing}.{_b64url(signature)}"


@pytest.fixture(scope="session")
def token_registry() -> Iterator[Registry]:
    """A registry behind the bearer-token flow (anonymous tokens, as mcr.microsoft.com hands out)."""
    try:
        import cryptography  # noqa: F401 - the token service signs its JWTs with it
    except ImportError:
        service_missing("the cryptography package (pip install cryptography) for the token service")
    folder = Path(tempfile.mkdtemp(prefix="wgb-token-"))
    service = _TokenService(folder)
    auth = {"token": {"realm": service.realm, "service": "wgobuild-registry", "issuer": "wgobuild-token",
                      "rootcertbundle": str(service.bundle)}}
    try:
        for reg in _start("token-registry", auth):
            reg.token_service = service  # type: ignore[attr-defined]
            yield reg
    finally:
        service.server.shutdown()
        shutil.rmtree(folder, ignore_errors=True)


# --- synthetic bases --------------------------------------------------------------------------------------------
def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _gz_tar(entries: list[tuple[str, bytes | None]], windows: bool) -> tuple[bytes, str]:
    """(gzip blob, diff_id) of a tar of ``entries`` (None = directory)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(content), 0o644
                if windows:
                    info.pax_headers = {"MSWINDOWS.rawsd": RAWSD}
                tar.addfile(info, io.BytesIO(content))
    data = raw.getvalue()
    return gzip.compress(data, mtime=0), _digest(data)


def _push_blob(url: str, repo: str, data: bytes) -> dict[str, Any]:
    start = requests.post(f"{url}/v2/{repo}/blobs/uploads/", timeout=10)
    start.raise_for_status()
    location = start.headers["Location"]
    location = location if location.startswith("http") else url + location
    sep = "&" if "?" in location else "?"
    requests.put(f"{location}{sep}digest={_digest(data)}", data=data, timeout=30,
                 headers={"Content-Type": "application/octet-stream"}).raise_for_status()
    return {"digest": _digest(data), "size": len(data)}


def _push_manifest(url: str, repo: str, ref: str, doc: dict[str, Any]) -> bytes:
    data = json.dumps(doc, indent=3).encode()  # not canonical on purpose: digests are of the bytes
    requests.put(f"{url}/v2/{repo}/manifests/{ref}", data=data, headers={"Content-Type": doc["mediaType"]},
                 timeout=10).raise_for_status()
    return data


def windows_base_image(url: str, repo: str, os_version: str) -> tuple[bytes, dict[str, Any]]:
    """Push one synthetic nanoserver-like image (Docker schema2, Windows layer format); (manifest, platform)."""
    layer, diff_id = _gz_tar([("Files", None), ("Files/Windows", None), ("Files/Windows/System32", None),
                              ("Files/Windows/System32/kernel.txt", f"nanoserver {os_version}\n".encode()),
                              ("Hives", None), ("Hives/DefaultUser_Delta", b"hive")], windows=True)
    config = {"architecture": "amd64", "os": "windows", "os.version": os_version, "created": "2024-05-01T00:00:00Z",
              # Like mcr.microsoft.com's Windows bases: no Env (PATH lives in the image's registry hive).
              "config": {"User": "ContainerUser", "Cmd": ["c:\\windows\\system32\\cmd.exe"]},
              "rootfs": {"type": "layers", "diff_ids": [diff_id]},
              "history": [{"created": "2024-05-01T00:00:00Z", "created_by": f"Apply image {os_version}"}]}
    config_bytes = json.dumps(config).encode()
    manifest = {"schemaVersion": 2, "mediaType": D_MANIFEST,
                "config": {"mediaType": D_CONFIG, **_push_blob(url, repo, config_bytes)},
                "layers": [{"mediaType": D_LAYER, **_push_blob(url, repo, layer)}]}
    data = _push_manifest(url, repo, _digest(json.dumps(manifest, indent=3).encode()), manifest)
    return data, {"architecture": "amd64", "os": "windows", "os.version": os_version}


@dataclass
class Bases:
    registry: Registry
    windows: str  # repository of the Windows index (tags ltsc2019 and ltsc2022 both name it)
    windows_index: str  # its digest
    linux: str  # reference of the linux base


@pytest.fixture(scope="session")
def seeded_bases(registry: Registry) -> Bases:
    url = registry.url
    repo = "windows/nanoserver"
    entries = [windows_base_image(url, repo, version) for version in WINDOWS_VERSIONS.values()]
    index = {"schemaVersion": 2, "mediaType": D_LIST,
             "manifests": [{"mediaType": D_MANIFEST, "digest": _digest(data), "size": len(data), "platform": plat}
                           for data, plat in entries]}
    for tag in WINDOWS_VERSIONS:
        data = _push_manifest(url, repo, tag, index)
    layer, diff_id = _gz_tar([("etc", None), ("etc/passwd", b"root:x:0:0:root:/:/sbin/nologin\n"),
                              ("etc/os-release", b"NAME=wgobuild-test-base\n")], windows=False)
    config = json.dumps({"architecture": "amd64", "os": "linux", "created": "2024-05-01T00:00:00Z",
                         "config": {"Env": ["PATH=/usr/bin:/bin"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    manifest = {"schemaVersion": 2, "mediaType": O_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           **_push_blob(url, "base/linux", config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            **_push_blob(url, "base/linux", layer)}]}
    mdata = _push_manifest(url, "base/linux", _digest(json.dumps(manifest, indent=3).encode()), manifest)
    _push_manifest(url, "base/linux", "1", {"schemaVersion": 2, "mediaType": O_INDEX, "manifests": [
        {"mediaType": O_MANIFEST, "digest": _digest(mdata), "size": len(mdata),
         "platform": {"architecture": "amd64", "os": "linux"}}]})
    return Bases(registry, f"{registry.host}/{repo}", _digest(data), f"{registry.host}/base/linux:1")


# --- a project and its binaries ---------------------------------------------------------------------------------
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "hello"
VERSION = "1.2.3-test"


@pytest.fixture(scope="session")
def oci_binaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The example service compiled for linux/amd64 and windows/amd64 (version stamped ``VERSION``)."""
    from wgobuild import gotool
    from wgobuild.config import Platform

    out = tmp_path_factory.mktemp("bin")
    built = {}
    for text in ("linux/amd64", "windows/amd64"):
        plat = Platform.parse(text)
        target = out / plat.key / f"hello{plat.exe_suffix}"
        gotool.build(EXAMPLE, ".", plat, target, VERSION)
        built[plat.os] = target
    return built


def oci_config(root: Path, platforms: list[str], **image: Any) -> Any:
    """A validated config for a throw-away module at ``root`` (a one-file ``package main``)."""
    from wgobuild import config

    root.mkdir(parents=True, exist_ok=True)
    (root / "main.go").write_text("package main\n\nfunc main() {}\n")
    data = {"project": {"name": "hello", "version": VERSION}, "binaries": [{"name": "hello"}],
            "build": {"platforms": platforms}, "image": image}
    return config.from_dict(data, root, root / "wgobuild.toml")
