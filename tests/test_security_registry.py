"""Hostile registries, token services and base images: credentials stay with their registry, reads are bounded.

Every hostile party is a real HTTP(S) server on 127.0.0.x (``http.server``) scripted to misbehave; the bases are
real files (OCI layouts, archives). The catalogue runs each case in a child python and checks the error class and
message, the child's peak RSS (its own VmHWM: < 100 MB) and its wall time; the servers record every request so a
test can assert that another host never saw a credential.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import io
import json
import os
import re
import ssl
import sys
import tarfile
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from wgobuild import proc
from wgobuild.oci import manifest as mf

pytestmark = pytest.mark.registry

USER, PASSWORD = "builder", "pa55-w0rd-secret"
TOKEN = "tok-7f3a-secret"
GiB, MiB = 1 << 30, 1 << 20
PEAK_LIMIT = 100 * 1000 * 1000
TIME_LIMIT = 45.0

Body = bytes | Iterator[bytes]
Answer = tuple[int, dict[str, str], Body]


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Hostile:
    """A real HTTP(S) server whose answers ``route`` scripts; every request it gets is recorded in ``seen``."""

    route: Callable[[Hostile, str, str, dict[str, str]], Answer]
    ip: str = "127.0.0.1"
    tls: tuple[Path, Path] | None = None  # (certificate, key)
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        hostile = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                headers = {k: v for k, v in self.headers.items()}
                _drain(self)
                hostile.seen.append(Seen(self.command, self.path, headers))
                status, extra, body = hostile.route(hostile, self.command, self.path, headers)
                self.send_response(status)
                for key, value in extra.items():
                    self.send_header(key, value)
                if isinstance(body, bytes) and "Content-Length" not in extra:
                    self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                if self.command == "HEAD":
                    return
                try:
                    for chunk in [body] if isinstance(body, bytes) else body:
                        self.wfile.write(chunk)
                except OSError:
                    pass  # the client stopped reading: what a bounded reader does

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _any

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((self.ip, 0), Handler)
        self.server.daemon_threads = True
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"{self.ip}:{self.server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def leaked(self) -> list[str]:
        """Every request line or header that carries a credential (none may reach a host that is not the registry)."""
        basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        found = []
        for seen in self.seen:
            text = seen.path + "\n" + "\n".join(f"{k}: {v}" for k, v in seen.headers.items())
            if any(k.lower() == "authorization" for k in seen.headers) or any(
                    secret in text for secret in (basic, PASSWORD, TOKEN)):
                found.append(f"{seen.method} {text}")
        return found


def _drain(handler: BaseHTTPRequestHandler) -> None:
    """Read the request body (Content-Length or chunked) so the client is never cut off mid-upload."""
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        while True:
            size = int(handler.rfile.readline().strip() or b"0", 16)
            handler.rfile.read(size + 2)
            if size == 0:
                break
    elif handler.headers.get("Content-Length"):
        handler.rfile.read(int(handler.headers["Content-Length"]))


def zeros(total: int) -> Iterator[bytes]:
    """``total`` bytes of zeros, produced lazily (a 1 GiB answer is never held in memory)."""
    block = bytes(MiB)
    while total > 0:
        yield block[: min(total, MiB)]
        total -= MiB


def _authorized(headers: dict[str, str]) -> bool:
    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return headers.get("Authorization") in (basic, f"Bearer {TOKEN}")


BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="hostile"'}


@pytest.fixture
def servers() -> Iterator[list[Hostile]]:
    started: list[Hostile] = []
    yield started
    for server in started:
        server.close()


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.2 (trusted only where a test says so through REQUESTS_CA_BUNDLE)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.2")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.2"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return folder / "cert.pem", folder / "key.pem"


def docker_config(folder: Path, host: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (folder / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return folder


# --- bases written as files -------------------------------------------------------------------------------------
def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def linux_image(layer: bytes = b"layer-bytes", **config_extra: Any) -> tuple[bytes, bytes, dict[str, Any]]:
    """(config, manifest, manifest descriptor) of a small linux image whose one layer is ``layer``."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers",
                         "diff_ids": [_sha(b"diff")]}, **config_extra}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": mf.OCI_MANIFEST,
                           "config": {"mediaType": mf.OCI_CONFIG, "digest": _sha(config), "size": len(config)},
                           "layers": [{"mediaType": mf.OCI_LAYER, "digest": _sha(layer), "size": len(layer)}]}).encode()
    desc = {"mediaType": mf.OCI_MANIFEST, "digest": _sha(manifest), "size": len(manifest),
            "platform": {"os": "linux", "architecture": "amd64"}}
    return config, manifest, desc


def write_layout(folder: Path, blobs: list[bytes], index: dict[str, Any]) -> Path:
    (folder / "blobs" / "sha256").mkdir(parents=True)
    for blob in blobs:
        (folder / "blobs" / "sha256" / _sha(blob).split(":")[1]).write_bytes(blob)
    (folder / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (folder / "index.json").write_text(json.dumps(index))
    return folder


def index_of(*descs: dict[str, Any]) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": mf.OCI_INDEX, "manifests": list(descs)}


@pytest.fixture(scope="module")
def bomb_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An oci-archive of about 1 MB whose index.json unpacks to 1 GiB of zeros."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.tar.gz"
    info = tarfile.TarInfo("index.json")
    info.size = GiB
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    with open(path, "wb") as out:
        out.write(packer.compress(info.tobuf(format=tarfile.USTAR_FORMAT)))
        for block in zeros(GiB):
            out.write(packer.compress(block))
        out.write(packer.compress(bytes(1024)))  # end-of-archive blocks
        out.write(packer.flush())
    assert path.stat().st_size < 2 * MiB
    return path


@pytest.fixture(scope="module")
def many_members(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tar.gz of 300,000 empty members (about 2 MB)."""
    path = tmp_path_factory.mktemp("many") / "many.tar.gz"
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)
    with open(path, "wb") as out:
        for start in range(0, 300_000, 10_000):
            out.write(packer.compress(b"".join(tarfile.TarInfo(f"m{i}").tobuf(format=tarfile.USTAR_FORMAT)
                                               for i in range(start, start + 10_000))))
        out.write(packer.compress(bytes(1024)))
        out.write(packer.flush())
    return path


@pytest.fixture(scope="module")
def layer_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A docker-save tar whose one layer is gzip of 300 MiB of zeros (about 300 KB)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    layer = b"".join([*(packer.compress(block) for block in zeros(300 * MiB)), packer.flush()])
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]}}).encode()
    manifest = json.dumps([{"Config": "config.json", "RepoTags": ["bomb:1"], "Layers": ["layer.tar"]}]).encode()
    path = tmp_path_factory.mktemp("layer-bomb") / "save.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in (("manifest.json", manifest), ("config.json", config), ("layer.tar", layer)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


# --- the child python -------------------------------------------------------------------------------------------
PRELUDE = '''
import json, os, sys
from pathlib import Path
from wgobuild.errors import WgobuildError

def peak_rss():
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import psutil
    info = psutil.Process().memory_info()
    return int(getattr(info, "peak_wset", 0) or info.rss)

def resolve(spec, platform="linux/amd64"):
    from wgobuild import config
    from wgobuild.oci import bases
    from wgobuild.oci.blobs import BlobStore
    root = Path(os.environ["CASE_ROOT"])
    root.mkdir(parents=True, exist_ok=True)
    (root / "main.go").write_text("package main\\n\\nfunc main() {}\\n")
    key = "windows_base" if platform.startswith("windows") else "linux_base"
    cfg = config.from_dict({"project": {"name": "hello", "version": "1.0.0"}, "binaries": [{"name": "hello"}],
                            "build": {"platforms": [platform]}, "image": {key: spec, "pull": "always"}},
                           root, root / "wgobuild.toml")
    store = BlobStore(cfg.state_dir)
    base = bases.resolve(cfg, cfg.platforms[0], store)
    base.ensure_blobs(store)
    return base

try:
    @@CASE@@
    outcome = {"class": "", "message": "no error"}
except WgobuildError as exc:
    outcome = {"class": type(exc).__name__, "message": str(exc)}
outcome["peak"] = peak_rss()
print("RESULT " + json.dumps(outcome))
'''


@dataclass
class Outcome:
    error: str
    message: str
    peak: int
    wall: float


def run_child(code: str, root: Path, **env: str) -> Outcome:
    """Run ``code`` (one statement) in a child python; its error, message, peak RSS and wall time."""
    script = PRELUDE.replace("@@CASE@@", code)
    result = proc.run([sys.executable, "-c", script], env={**os.environ, "CASE_ROOT": str(root), **env},
                      timeout=TIME_LIMIT * 2, quiet=True)
    line = next((x for x in reversed(result.output.splitlines()) if x.startswith("RESULT ")), "")
    assert line, f"child ended without a result (exit {result.returncode}, timed out: {result.timed_out}):\n" \
                 f"{result.tail(30)}"
    data = json.loads(line.removeprefix("RESULT "))
    return Outcome(data["class"], data["message"], data["peak"], result.wall_s)


def largest_file(root: Path) -> int:
    return max((p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink()), default=0)


# --- the catalogue ----------------------------------------------------------------------------------------------
@dataclass
class Case:
    """One hostile input: ``setup`` starts servers / writes files and returns the child's code and extra env."""

    setup: Callable[[Path, list[Hostile], dict[str, Any]], tuple[str, dict[str, str]]]
    error: str
    message: str  # regex searched in the error message
    check: Callable[[list[Hostile], Path], None] | None = None


def _registry_v2(handler: Callable[[Hostile, str, str, dict[str, str]], Answer]) -> Callable[..., Answer]:
    def route(server: Hostile, method: str, path: str, headers: dict[str, str]) -> Answer:
        if path == "/v2/":
            return 200, {}, b"{}"
        return handler(server, method, path, headers)
    return route


def case_manifest_1gib(sized: bool) -> Case:
    def setup(root: Path, started: list[Hostile], _: dict[str, Any]) -> tuple[str, dict[str, str]]:
        def handler(server: Hostile, method: str, path: str, headers: dict[str, str]) -> Answer:
            extra = {"Content-Type": mf.OCI_MANIFEST}
            if sized:
                extra["Content-Length"] = str(GiB)
            return 200, extra, zeros(GiB)
        started.append(Hostile(_registry_v2(handler)))
        return f"resolve('{started[0].host}/big/image:t')", {}

    def check(_: list[Hostile], root: Path) -> None:
        assert largest_file(root) < 4 * MiB  # nothing of it stored under .wgobuild

    return Case(setup, "OciError", r"manifest big/image:t .*larger than the 4 MiB limit", check)


def case_manifest_gzip_bomb(root: Path, started: list[Hostile], _: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """A 1 MB answer sent with Content-Encoding: gzip that unpacks to 1 GiB."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    body = b"".join([*(packer.compress(block) for block in zeros(GiB)), packer.flush()])

    def handler(server: Hostile, method: str, path: str, headers: dict[str, str]) -> Answer:
        return 200, {"Content-Type": mf.OCI_MANIFEST, "Content-Encoding": "gzip"}, body

    started.append(Hostile(_registry_v2(handler)))
    return f"resolve('{started[0].host}/big/image:t')", {}


def case_token_1gib(root: Path, started: list[Hostile], _: dict[str, Any]) -> tuple[str, dict[str, str]]:
    def route(server: Hostile, method: str, path: str, headers: dict[str, str]) -> Answer:
        if path.startswith("/token"):
            return 200, {"Content-Type": "application/json"}, zeros(GiB)
        realm = f'Bearer realm="{server.url}/token",service="hostile"'
        return 401, {"WWW-Authenticate": realm}, b""
    started.append(Hostile(route))
    return f"resolve('{started[0].host}/a/b:t')", {}


def case_bomb_archive(root: Path, _: list[Hostile], files: dict[str, Any]) -> tuple[str, dict[str, str]]:
    return f"resolve('oci-archive:{files['bomb']}')", {}


def case_many_members(root: Path, _: list[Hostile], files: dict[str, Any]) -> tuple[str, dict[str, str]]:
    return f"resolve('oci-archive:{files['many']}')", {}


def case_layer_bomb(root: Path, _: list[Hostile], files: dict[str, Any]) -> tuple[str, dict[str, str]]:
    return f"resolve('docker-archive:{files['layer_bomb']}')", {}


def case_dev_zero(root: Path, _: list[Hostile], __: dict[str, Any]) -> tuple[str, dict[str, str]]:
    config, manifest, desc = linux_image(b"x" * 1000)
    layout = write_layout(root / "layout", [config, manifest], index_of(desc))
    (layout / "blobs" / "sha256" / _sha(b"x" * 1000).split(":")[1]).symlink_to("/dev/zero")
    return f"resolve('oci:{layout}')", {}


def case_size_lie(root: Path, _: list[Hostile], __: dict[str, Any]) -> tuple[str, dict[str, str]]:
    layer = os.urandom(3 * MiB)
    config, manifest, desc = linux_image(layer)
    doc = json.loads(manifest)
    doc["layers"][0]["size"] = 100  # the descriptor lies: the blob is 3 MiB
    manifest = json.dumps(doc).encode()
    desc = {**desc, "digest": _sha(manifest), "size": len(manifest)}
    layout = write_layout(root / "layout", [config, manifest, layer], index_of(desc))
    return f"resolve('oci:{layout}')", {}


def case_endless_blob(root: Path, started: list[Hostile], _: dict[str, Any]) -> tuple[str, dict[str, str]]:
    layer = b"y" * 1000
    config, manifest, _desc = linux_image(layer)

    def handler(server: Hostile, method: str, path: str, headers: dict[str, str]) -> Answer:
        if "/manifests/" in path:
            return 200, {"Content-Type": mf.OCI_MANIFEST}, manifest
        if path.endswith(_sha(config)):
            return 200, {}, config
        return 200, {}, zeros(GiB)  # the layer: declared 1000 bytes, served endlessly

    started.append(Hostile(_registry_v2(handler)))
    return f"resolve('{started[0].host}/a/b:t')", {}


def case_platform_string(root: Path, _: list[Hostile], __: dict[str, Any]) -> tuple[str, dict[str, str]]:
    config, manifest, desc = linux_image()
    layout = write_layout(root / "layout", [config, manifest], index_of({**desc, "platform": "linux/amd64"}))
    return f"resolve('oci:{layout}')", {}


def _credentialed(route: Callable[[Hostile, str, str, dict[str, str]], Answer]) -> Callable[..., Answer]:
    """A registry that wants Basic credentials first, then answers with ``route``."""
    def guarded(server: Hostile, method: str, path: str, headers: dict[str, str]) -> Answer:
        if not _authorized(headers):
            return 401, BASIC_CHALLENGE, b""
        return route(server, method, path, headers)
    return guarded


def _other_host(started: list[Hostile]) -> Hostile:
    """Another host (another port of 127.0.0.1): it asks for credentials, hoping to be sent some."""
    other = Hostile(lambda server, method, path, headers: (401, BASIC_CHALLENGE, b"denied"))
    started.append(other)
    return other


def case_redirect_other_host(root: Path, started: list[Hostile], _: dict[str, Any]) -> tuple[str, dict[str, str]]:
    other = _other_host(started)
    started.append(Hostile(_credentialed(lambda server, method, path, headers: (
        307, {"Location": f"{other.url}/steal{path}"}, b""))))
    folder = docker_config(root / "docker", started[1].host)
    return f"resolve('{started[1].host}/a/b:t')", {"DOCKER_CONFIG": str(folder)}


def _upload_elsewhere(bearer: bool) -> Callable[[Path, list[Hostile], dict[str, Any]], tuple[str, dict[str, str]]]:
    def setup(root: Path, started: list[Hostile], _: dict[str, Any]) -> tuple[str, dict[str, str]]:
        other = _other_host(started)

        def route(server: Hostile, method: str, path: str, headers: dict[str, str]) -> Answer:
            if bearer and path.startswith("/token"):
                return 200, {"Content-Type": "application/json"}, json.dumps({"token": TOKEN}).encode()
            if not _authorized(headers):
                challenge = f'Bearer realm="{server.url}/token",service="hostile"' if bearer else 'Basic realm="h"'
                return 401, {"WWW-Authenticate": challenge}, b""
            if method == "POST":
                return 202, {"Location": f"{other.url}/upload/1"}, b""
            return 404, {}, b""

        started.append(Hostile(route))
        folder = docker_config(root / "docker", started[1].host)
        code = (f"__import__('wgobuild.oci.registry').oci.registry.Client('{started[1].host}').upload_blob("
                f"'a/b', '{_sha(b'blob')}', lambda: __import__('io').BytesIO(b'blob'))")
        return code, {"DOCKER_CONFIG": str(folder)}
    return setup


def case_http_realm(root: Path, started: list[Hostile], files: dict[str, Any]) -> tuple[str, dict[str, str]]:
    realm = Hostile(lambda server, method, path, headers: (
        200, {"Content-Type": "application/json"}, json.dumps({"token": TOKEN}).encode()))
    started.append(realm)
    started.append(Hostile(lambda server, method, path, headers: (
        200, {}, b"{}") if _authorized(headers) else (
        401, {"WWW-Authenticate": f'Bearer realm="{realm.url}/token",service="hostile"'}, b""),
        ip="127.0.0.2", tls=files["tls"]))
    folder = docker_config(root / "docker", started[1].host)
    code = f"__import__('wgobuild.oci.registry').oci.registry.Client('{started[1].host}').get_manifest('a/b', 't')"
    return code, {"DOCKER_CONFIG": str(folder), "REQUESTS_CA_BUNDLE": str(files["tls"][0])}


def case_file_realm(root: Path, started: list[Hostile], _: dict[str, Any]) -> tuple[str, dict[str, str]]:
    started.append(Hostile(lambda server, method, path, headers: (
        401, {"WWW-Authenticate": 'Bearer realm="file:///etc/passwd",service="x"'}, b"")))
    return f"resolve('{started[0].host}/a/b:t')", {}


def _nothing_leaked(started: list[Hostile], _: Path) -> None:
    other = started[0]
    assert other.seen, "the hostile case never reached the other host: the test proves nothing"
    assert other.leaked() == []


def _realm_untouched(started: list[Hostile], _: Path) -> None:
    assert started[0].seen == []


CATALOGUE = {
    "manifest-1gib-sized": case_manifest_1gib(sized=True),
    "manifest-1gib-unsized": case_manifest_1gib(sized=False),
    "manifest-gzip-encoded-bomb": Case(case_manifest_gzip_bomb, "OciError",
                                       r"manifest big/image:t .*larger than the 4 MiB limit"),
    "token-answer-1gib": Case(case_token_1gib, "OciError", r"token service .*larger than the 4 MiB limit"),
    "oci-archive-1mb-bomb": Case(case_bomb_archive, "OciError", r"unpacks to more than \d+ MiB"),
    "docker-archive-gzip-layer-bomb": Case(case_layer_bomb, "OciError",
                                           r"layer layer\.tar unpacks to more than 256 MiB from \d+ bytes"),
    "tar-gz-300k-members": Case(case_many_members, "OciError", r"more than 100000 members"),
    "layout-blob-symlink-dev-zero": Case(case_dev_zero, "OciError", r"blob sha256:\w+ .*not a regular file"),
    "descriptor-size-lie": Case(case_size_lie, "OciError",
                                r"blob sha256:\w+ is larger than the 100 bytes its descriptor declares"),
    "registry-blob-endless": Case(case_endless_blob, "OciError",
                                  r"blob sha256:\w+ is larger than the 1000 bytes its descriptor declares"),
    "malformed-platform-string": Case(case_platform_string, "OciError",
                                      r"index\.json: manifests\[0\]\.platform: must be an object, not a string"),
    "redirect-to-other-host": Case(case_redirect_other_host, "OciError", r"127\.0\.0\.1:\d+ denied .*HTTP 401.* "
                                   r"credentials .* are only sent to 127\.0\.0\.1:\d+", _nothing_leaked),
    "upload-location-other-host-basic": Case(_upload_elsewhere(bearer=False), "RegistryError",
                                             r"denied .*HTTP 401.*only sent to", _nothing_leaked),
    "upload-location-other-host-bearer": Case(_upload_elsewhere(bearer=True), "RegistryError",
                                              r"denied .*HTTP 401.*only sent to", _nothing_leaked),
    "http-realm-on-https-registry": Case(case_http_realm, "RegistryError",
                                         r"token realm http://127\.0\.0\.1:\d+/token is not https", _realm_untouched),
    "file-realm": Case(case_file_realm, "OciError", r"token realm file:///etc/passwd is not an http\(s\) URL"),
}


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_hostile_input_catalogue(name: str, tmp_path: Path, servers: list[Hostile], bomb_archive: Path,
                                 many_members: Path, layer_bomb: Path, tls_cert: tuple[Path, Path]) -> None:
    case = CATALOGUE[name]
    inputs = {"bomb": bomb_archive, "many": many_members, "layer_bomb": layer_bomb, "tls": tls_cert}
    code, env = case.setup(tmp_path, servers, inputs)
    outcome = run_child(code, tmp_path / "case", **env)
    assert (outcome.error, "\n" not in outcome.message) == (case.error, True), outcome.message
    assert re.search(case.message, outcome.message), outcome.message
    assert outcome.peak < PEAK_LIMIT, f"peak RSS {outcome.peak / MiB:.0f} MiB"
    assert outcome.wall < TIME_LIMIT, f"{outcome.wall:.1f} s"
    print(f"{name}: peak {outcome.peak / MiB:.1f} MiB, {outcome.wall:.2f} s")
    if case.check is not None:
        case.check(servers, tmp_path / "case")


def test_the_child_measures_its_own_peak(tmp_path: Path) -> None:
    """Negative control for the catalogue's memory bound: a child that holds 200 MB reports it."""
    outcome = run_child("blob = bytearray(200 * 1000 * 1000); blob[::4096] = b'x' * len(blob[::4096])", tmp_path)
    assert outcome.error == "" and outcome.peak > 200 * 1000 * 1000


# --- in-process checks ------------------------------------------------------------------------------------------
@contextlib.contextmanager
def fifo_watchdog(path: Path, after: float = 10.0) -> Iterator[None]:
    """Should the code under test open the FIFO ``path`` to read (it must not), a writer opens and closes it after
    ``after`` seconds: a regression then fails the test instead of hanging the suite."""
    done = threading.Event()

    def release() -> None:
        if done.wait(after):
            return
        while not done.is_set():
            with contextlib.suppress(OSError):
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            done.wait(0.2)

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _layout_base(tmp_path: Path, spec: str) -> Any:
    from fixtures_registry import oci_config

    from wgobuild.oci import bases
    from wgobuild.oci.blobs import BlobStore

    config = oci_config(tmp_path / "proj", ["linux/amd64"], linux_base=spec)
    store = BlobStore(config.state_dir)
    base = bases.resolve(config, config.platforms[0], store)
    base.ensure_blobs(store)
    return base


def _bad_config(**change: Any) -> Callable[[dict[str, Any]], None]:
    return lambda cfg: cfg.update(change)


MALFORMED = {
    "os.version a number": ("config", _bad_config(**{"os.version": 10.0}), r"config sha256:\w+: os\.version: must be "
                            r"a string, not a number"),
    "os a list": ("config", _bad_config(os=["linux"]), r"config sha256:\w+: os: must be a string, not an array"),
    "diff_ids an object": ("config", _bad_config(rootfs={"diff_ids": {}}), r"rootfs\.diff_ids: must be an array"),
    "Env of numbers": ("config", _bad_config(config={"Env": [1]}), r"config\.Env\[0\]: must be a string"),
    "config not an object": ("config", lambda cfg: cfg.clear(), r"os: must be a string, not null"),
    "size a string": ("manifest", lambda doc: doc["layers"][0].update(size="11"),
                      r"manifest sha256:\w+: layers\[0\]\.size: must be a whole number of bytes, not a string"),
    "size negative": ("manifest", lambda doc: doc["layers"][0].update(size=-1), r"layers\[0\]\.size: must be a whole"),
    "layers an object": ("manifest", lambda doc: doc.update(layers={}), r"layers: must be an array, not an object"),
    "digest not sha256": ("manifest", lambda doc: doc["config"].update(digest="md5:abc"),
                          r"config\.digest: 'md5:abc' is not a sha256 digest"),
    "platform a string": ("index", lambda doc: doc["manifests"][0].update(platform="linux/amd64"),
                          r"index\.json: manifests\[0\]\.platform: must be an object, not a string"),
    "os.version in platform a number": ("index", lambda doc: doc["manifests"][0]["platform"].update(
        **{"os.version": 17763}), r"manifests\[0\]\.platform\.os\.version: must be a string, not a number"),
    "manifests null": ("index", lambda doc: doc.update(manifests=None), r"manifests: must be an array, not null"),
    "index.json empty": ("index", lambda doc: doc.clear(), r"index\.json: config: must be an object, not null"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_bases_are_one_clear_error(name: str, tmp_path: Path) -> None:
    from wgobuild.oci import OciError

    which, change, message = MALFORMED[name]
    config_doc = json.loads(linux_image()[0])
    if which == "config":
        change(config_doc)
    config = json.dumps(config_doc).encode()
    manifest_doc = json.loads(linux_image()[1])
    manifest_doc["config"].update(digest=_sha(config), size=len(config))
    if which == "manifest":
        change(manifest_doc)
    manifest = json.dumps(manifest_doc).encode()
    index = index_of({"mediaType": mf.OCI_MANIFEST, "digest": _sha(manifest), "size": len(manifest),
                      "platform": {"os": "linux", "architecture": "amd64"}})
    if which == "index":
        change(index)
    layout = write_layout(tmp_path / "layout", [config, manifest, b"layer-bytes"], index)
    with pytest.raises(OciError) as info:
        _layout_base(tmp_path, f"oci:{layout}")
    text = str(info.value)
    assert text.startswith(f"base oci:{layout}: ") and "\n" not in text and "malformed" in text, text
    assert re.search(message, text), text


def test_a_sound_layout_still_resolves(tmp_path: Path) -> None:
    """Positive control for the checks above: the unchanged documents are accepted and the layer is fetched."""
    config, manifest, desc = linux_image()
    layout = write_layout(tmp_path / "layout", [config, manifest, b"layer-bytes"], index_of(desc))
    base = _layout_base(tmp_path, f"oci:{layout}")
    assert base.layers[0]["size"] == len(b"layer-bytes") and base.config["os"] == "linux"


@pytest.mark.parametrize("kind", ["symlink to a regular file", "fifo", "folder", "missing"])
def test_layout_refuses_what_is_not_a_regular_file(kind: str, tmp_path: Path) -> None:
    from wgobuild.oci import OciError

    config, manifest, desc = linux_image()
    layout = write_layout(tmp_path / "layout", [config, manifest], index_of(desc))
    blob = layout / "blobs" / "sha256" / _sha(b"layer-bytes").split(":")[1]
    if kind == "symlink to a regular file":
        (tmp_path / "elsewhere").write_bytes(b"layer-bytes")
        blob.symlink_to(tmp_path / "elsewhere")
    elif kind == "fifo":
        os.mkfifo(blob)
    elif kind == "folder":
        blob.mkdir()
    expected = "is missing" if kind == "missing" else "is not a regular file"
    guard = fifo_watchdog(blob) if kind == "fifo" else contextlib.nullcontext()
    with guard, pytest.raises(OciError, match=rf"blob {_sha(b'layer-bytes')} \(.*\) {expected}"):
        _layout_base(tmp_path, f"oci:{layout}")


def test_archive_links_are_not_blobs(tmp_path: Path) -> None:
    from wgobuild.oci import OciError

    config, manifest, desc = linux_image()
    path = tmp_path / "base.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in (("index.json", json.dumps(index_of(desc)).encode()),
                           *((f"blobs/sha256/{_sha(b).split(':')[1]}", b) for b in (config, manifest))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo(f"blobs/sha256/{_sha(b'layer-bytes').split(':')[1]}")
        link.type, link.linkname = tarfile.SYMTYPE, "/dev/zero"
        tar.addfile(link)
    with pytest.raises(OciError, match=r"blobs/sha256/\w+ in .* is a link, not a regular file"):
        _layout_base(tmp_path, f"oci-archive:{path}")


def test_tls_failure_says_tls(tls_cert: tuple[Path, Path], servers: list[Hostile],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    from wgobuild.oci.registry import Client, RegistryError

    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    servers.append(Hostile(lambda server, method, path, headers: (200, {}, b"{}"), ip="127.0.0.2", tls=tls_cert))
    with pytest.raises(RegistryError) as info:
        Client(servers[0].host).get_manifest("a/b", "t")
    text = str(info.value)
    assert text.startswith(f"TLS certificate problem talking to registry {servers[0].host}") and "self" in text
    assert "no network" not in text and "\n" not in text
    assert len(servers[0].seen) == 0  # the handshake failed: no request was made, none retried
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_cert[0]))  # control: trusted, the same server answers
    assert Client(servers[0].host).get_manifest("a/b", "t")[0] == b"{}"


def test_https_realm_on_another_host_gets_the_credentials(tls_cert: tuple[Path, Path], servers: list[Hostile],
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Control for the realm rule: a realm on another host is fine over https (Docker Hub's auth.docker.io)."""
    from wgobuild.oci.registry import Client

    realm = Hostile(lambda server, method, path, headers: (
        200, {"Content-Type": "application/json"}, json.dumps({"token": TOKEN}).encode()), ip="127.0.0.2",
        tls=tls_cert)
    servers.append(realm)
    servers.append(Hostile(lambda server, method, path, headers: (200, {}, b"{}") if _authorized(headers) else (
        401, {"WWW-Authenticate": f'Bearer realm="{realm.url}/token",service="s"'}, b"")))
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config(tmp_path / "docker", servers[1].host)))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_cert[0]))
    assert Client(servers[1].host).get_manifest("a/b", "t")[0] == b"{}"
    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert [seen.headers.get("Authorization") for seen in realm.seen] == [basic]
    assert [seen.headers.get("Authorization") for seen in servers[1].seen] == [None, f"Bearer {TOKEN}"]


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", r"config\.json: not valid JSON"),
    ("[]", r"config\.json: the file must be a JSON object"),
    ('{"auths": []}', r"config\.json: auths must be a JSON object"),
    ('{"auths": {"HOST": "x"}}', r"config\.json: auths\.HOST: must be a JSON object"),
    ('{"auths": {"HOST": {"auth": "%%%not-base64"}}}', r"auths\.HOST\.auth: not the base64 of user:password"),
    ('{"auths": {"HOST": {"auth": "bm9jb2xvbg=="}}}', r"auths\.HOST\.auth: not the base64 of user:password"),
    ('{"auths": {"HOST": {"auth": 12}}}', r"auths\.HOST\.auth: not the base64 of user:password"),
    ('{"auths": {"HOST": {"username": ["u"]}}}', r"auths\.HOST: username and password must be strings"),
])
def test_malformed_docker_config(content: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wgobuild.oci.registry import RegistryError, docker_credentials

    host = "registry.example.com:5000"
    (tmp_path / "config.json").write_text(content.replace("HOST", host))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    with pytest.raises(RegistryError) as info:
        docker_credentials(host)
    assert re.search(message.replace("HOST", re.escape(host)), str(info.value)), str(info.value)
    assert str(tmp_path / "config.json") in str(info.value) and "docker login" in str(info.value)


def test_doctor_with_a_malformed_docker_config(tmp_path: Path, servers: list[Hostile]) -> None:
    from fixtures_go import copy_hello

    servers.append(Hostile(lambda server, method, path, headers: (401, BASIC_CHALLENGE, b"")))
    root = copy_hello(tmp_path / "hello", windows_base=f'"{servers[0].host}/windows/nanoserver"')
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "config.json").write_text('{"auths": {')
    result = proc.run([sys.executable, "-m", "wgobuild.cli", "doctor"], cwd=root, quiet=True, timeout=120,
                      env={**os.environ, "DOCKER_CONFIG": str(tmp_path / "docker")})
    assert "Traceback" not in result.output, result.output
    line = next(x for x in result.output.splitlines() if "Base windows/amd64" in x)
    assert line.startswith("missing") and f"{tmp_path / 'docker' / 'config.json'}: not valid JSON" in line, line


def _refusal_downgrade(started: list[Hostile], tls: tuple[Path, Path]) -> str:
    plain = Hostile(lambda server, method, path, headers: (200, {}, b"{}"))
    started.append(plain)
    started.append(Hostile(lambda server, method, path, headers: (302, {"Location": f"{plain.url}{path}"}, b""),
                           ip="127.0.0.2", tls=tls))
    return started[1].host


def _refusal_realm_other_name(started: list[Hostile], tls: tuple[Path, Path]) -> str:
    realm = Hostile(lambda server, method, path, headers: (200, {}, json.dumps({"token": TOKEN}).encode()),
                    ip="127.0.0.2")
    started.append(realm)
    started.append(Hostile(lambda server, method, path, headers: (
        401, {"WWW-Authenticate": f'Bearer realm="{realm.url}/token"'}, b"")))
    return started[1].host


def _refusal_loop(started: list[Hostile], tls: tuple[Path, Path]) -> str:
    started.append(Hostile(lambda server, method, path, headers: (307, {"Location": path + "x"}, b"")))
    return started[0].host


def _refusal_file_location(started: list[Hostile], tls: tuple[Path, Path]) -> str:
    started.append(Hostile(lambda server, method, path, headers: (302, {"Location": "file:///etc/passwd"}, b"")))
    return started[0].host


@pytest.mark.parametrize(("setup", "message"), [
    (_refusal_downgrade, r"https://127\.0\.0\.2:\d+/v2/a/b/manifests/t redirected to plain http \(127\.0\.0\.1:\d+\)"
                         r"; refusing the downgrade"),
    (_refusal_realm_other_name, r"token realm http://127\.0\.0\.2:\d+/token is not https"),
    (_refusal_loop, r"more than 10 redirects"),
    (_refusal_file_location, r"file:///etc/passwd is not an http\(s\) URL"),
])
def test_refused_urls(setup: Callable[[list[Hostile], tuple[Path, Path]], str], message: str, tls_cert: Any,
                      servers: list[Hostile], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wgobuild.oci.registry import Client, RegistryError

    host = setup(servers, tls_cert)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_cert[0]))
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config(tmp_path / "docker", host)))
    with pytest.raises(RegistryError, match=message):
        Client(host).get_manifest("a/b", "t")
    assert servers[0].leaked() == []
    if setup in (_refusal_downgrade, _refusal_realm_other_name):
        assert servers[0].seen == []  # the plain-http party was never asked


def _pax_chain(path: Path, count: int, value_size: int) -> Path:
    """A tar whose first member is preceded by ``count`` pax headers, each with a ``value_size`` comment."""
    blocks = []
    for i in range(count):
        payload = f" comment={'c' * value_size}\n"  # a pax record is "LENGTH key=value\n", LENGTH counting itself
        length = len(payload) + len(str(len(payload)))
        length = len(payload) + len(str(length))
        data = f"{length}{payload}".encode()
        assert len(data) == length
        info = tarfile.TarInfo(f"pax{i}")
        info.type, info.size = tarfile.XHDTYPE, len(data)
        blocks.append(info.tobuf(format=tarfile.USTAR_FORMAT) + data + bytes(-len(data) % 512))
    member = tarfile.TarInfo("index.json")
    member.size = 2
    path.write_bytes(b"".join(blocks) + member.tobuf(format=tarfile.USTAR_FORMAT) + b"{}" + bytes(510 + 1024))
    return path


@pytest.mark.parametrize(("count", "value_size"), [(2000, 10), (40, 200_000)])
def test_chains_of_pax_headers_are_refused(count: int, value_size: int, tmp_path: Path) -> None:
    """tarfile reads a chain of pax headers recursively, each kept in memory: deep or large chains are refused."""
    from wgobuild.oci import OciError

    path = _pax_chain(tmp_path / "chain.tar", count, value_size)
    with pytest.raises(OciError, match=r"holds more than 16 extended headers or 1048576 bytes of them for one member"):
        _layout_base(tmp_path, f"oci-archive:{path}")
    control = _pax_chain(tmp_path / "short.tar", 2, 10)  # two headers are fine: the archive is read (no manifests)
    with pytest.raises(OciError, match=r"index\.json: config: must be an object, not null"):
        _layout_base(tmp_path, f"oci-archive:{control}")


def test_archive_member_size_must_be_its_descriptors(tmp_path: Path) -> None:
    from wgobuild.oci import OciError

    layer = b"z" * 5000
    config, manifest, desc = linux_image(layer)
    doc = json.loads(manifest)
    doc["layers"][0]["size"] = 100  # the descriptor lies: the member is 5000 bytes
    manifest = json.dumps(doc).encode()
    desc = {**desc, "digest": _sha(manifest), "size": len(manifest)}
    path = tmp_path / "base.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in (("index.json", json.dumps(index_of(desc)).encode()),
                           *((f"blobs/sha256/{_sha(b).split(':')[1]}", b) for b in (config, manifest, layer))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(OciError, match=rf"blob {_sha(layer)} is larger than the 100 bytes its descriptor declares "
                                       rf"\(5000 bytes in {re.escape(str(path))}\)"):
        _layout_base(tmp_path, f"oci-archive:{path}")


@pytest.mark.parametrize(("manifest", "config", "message"), [
    ({"Config": "c.json"}, {}, r"manifest\.json: must be an array, not an object"),
    ([{"Config": 1, "Layers": []}], {}, r"manifest\.json: \[0\]\.Config: must be a string, not a number"),
    ([{"Config": "c.json", "Layers": "l.tar"}], {}, r"manifest\.json: \[0\]\.Layers: must be an array, not a string"),
    ([{"Config": "c.json", "Layers": []}], {"os": 7}, r"c\.json: os: must be a string, not a number"),
    ([{"Config": "gone.json", "Layers": []}], {}, r"gone\.json is missing from .*; the archive is incomplete"),
    ([{"Config": "dir", "Layers": []}], {}, r"dir in .* is a folder, not a regular file"),
])
def test_malformed_docker_archives(manifest: Any, config: dict[str, Any], message: str, tmp_path: Path) -> None:
    from wgobuild.oci import OciError

    cfg = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}, **config}
    path = tmp_path / "save.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in (("manifest.json", json.dumps(manifest).encode()), ("c.json", json.dumps(cfg).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        folder = tarfile.TarInfo("dir")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
    with pytest.raises(OciError) as info:
        _layout_base(tmp_path, f"docker-archive:{path}")
    text = str(info.value)
    assert text.startswith(f"base docker-archive:{path}: ") and "\n" not in text, text
    assert re.search(message, text), text


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_an_archive_base_must_be_a_regular_file(kind: str, tmp_path: Path) -> None:
    from wgobuild.oci import OciError

    path = tmp_path / "base.tar"
    if kind == "fifo":
        os.mkfifo(path)  # opening it to read would wait for a writer forever
    else:
        path.symlink_to("/dev/zero")
    expected = "a FIFO" if kind == "fifo" else "a device"
    guard = fifo_watchdog(path) if kind == "fifo" else contextlib.nullcontext()
    with guard, pytest.raises(OciError, match=rf"{re.escape(str(path))} is {expected}, not a regular file"):
        _layout_base(tmp_path, f"oci-archive:{path}")
