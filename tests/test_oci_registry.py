"""The distribution-API client against real registries: open, htpasswd (Basic), bearer tokens, faults."""

import io
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from fixtures_registry import free_port

from wgobuild.oci import OciError
from wgobuild.oci import manifest as mf
from wgobuild.oci.registry import Client, Reference, RegistryError, docker_credentials

pytestmark = pytest.mark.registry


@pytest.mark.parametrize(("text", "expected"), [
    ("mcr.microsoft.com/windows/nanoserver:ltsc2022",
     ("mcr.microsoft.com", "windows/nanoserver", "ltsc2022", "")),
    ("golang", ("docker.io", "library/golang", "latest", "")),
    ("127.0.0.1:5000/a/b", ("127.0.0.1:5000", "a/b", "latest", "")),
    ("localhost/x@sha256:" + "a" * 64, ("localhost", "x", "", "sha256:" + "a" * 64)),
    ("team/app:1.0", ("docker.io", "team/app", "1.0", "")),
])
def test_reference_parse(text, expected):
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == expected
    assert Reference.parse(str(ref)) == ref


def test_bad_reference():
    with pytest.raises(OciError, match="not a valid image reference"):
        Reference.parse("Bad/Name:1")


@pytest.mark.parametrize(("text", "part"), [
    ("evil.example@127.0.0.1/x", "digest '127.0.0.1/x'"),  # no user@host: the rest would be a URL's userinfo
    ("registry.example/a:t?x=1", "tag 't?x=1'"),  # nothing that turns into a query or a path in the URL
    ("registry.example/a@sha256:../../blobs", "digest 'sha256:../../blobs'"),
    ("registry.example:99999999/a", "registry host 'registry.example:99999999'"),
])
def test_reference_parts_that_would_change_the_url(text: str, part: str) -> None:
    with pytest.raises(OciError, match=re.escape(f"{text!r} is not a valid image reference (its {part})")):
        Reference.parse(text)
    with pytest.raises(RegistryError, match="is not a registry host"):
        Client("evil.example@127.0.0.1")


def test_credentials_from_docker_config(tmp_path, monkeypatch, auth_registry):
    monkeypatch.setenv("DOCKER_CONFIG", str(auth_registry.docker_config(tmp_path)))
    assert docker_credentials(auth_registry.host) == (auth_registry.user, auth_registry.password)
    assert docker_credentials("other.example.com") is None


def _push_small(client, repo):
    config = b'{"os":"linux","architecture":"amd64","rootfs":{"type":"layers","diff_ids":[]}}'
    digest = mf.digest_of(config)
    client.upload_blob(repo, digest, lambda: io.BytesIO(config))
    manifest = mf.canonical(mf.image_manifest("oci", config, []))
    client.put_manifest(repo, "t1", manifest, mf.OCI_MANIFEST)
    return digest, manifest


def test_push_pull_and_mount_on_open_registry(registry):
    client = Client(registry.host)
    assert client.base.startswith("http://")  # 127.0.0.1 speaks plain HTTP
    digest, manifest = _push_small(client, "reg/one")
    assert client.blob_exists("reg/one", digest)
    assert client.get_manifest("reg/one", "t1") == (manifest, mf.OCI_MANIFEST)
    assert client.manifest_exists("reg/one", mf.digest_of(manifest))
    assert not client.blob_exists("reg/two", digest)
    assert client.mount("reg/two", digest, "reg/one") is True
    assert client.blob_exists("reg/two", digest)
    with pytest.raises(RegistryError, match="not found") as info:
        client.get_manifest("reg/one", "missing-tag")
    assert info.value.status == 404


def test_upload_with_wrong_digest_is_refused(registry):
    client = Client(registry.host)
    with pytest.raises(RegistryError, match="HTTP 400"):
        client.upload_blob("reg/bad", mf.digest_of(b"expected"), lambda: io.BytesIO(b"something else"))
    assert not client.blob_exists("reg/bad", mf.digest_of(b"expected"))


def test_basic_auth_registry(tmp_path, monkeypatch, auth_registry):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "empty"))
    with pytest.raises(RegistryError, match="docker login") as info:
        Client(auth_registry.host).get_manifest("x/y", "t")
    assert info.value.status == 401
    monkeypatch.setenv("DOCKER_CONFIG", str(auth_registry.docker_config(tmp_path / "good")))
    client = Client(auth_registry.host)
    digest, _ = _push_small(client, "auth/app")
    assert client.blob_exists("auth/app", digest)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps(
        {"auths": {auth_registry.host: {"username": "tester", "password": "wrong"}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "bad"))
    with pytest.raises(RegistryError) as caught:
        Client(auth_registry.host).get_manifest("auth/app", "t1")
    host = auth_registry.host
    assert str(caught.value) == (f"{host} denied manifest auth/app:t1 (HTTP 401): log in with 'docker login {host}' "
                                 "(credentials are read from ~/.docker/config.json)")


def test_anonymous_bearer_token_flow(token_registry, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    client = Client(token_registry.host)
    digest, manifest = _push_small(client, "tok/app")
    assert client.get_manifest("tok/app", "t1")[0] == manifest
    assert client.mount("tok/other", digest, "tok/app")
    asked = token_registry.token_service.requests
    assert any("scope=repository%3Atok%2Fapp%3Apull%2Cpush" in path for path in asked), asked
    assert any("service=wgobuild-registry" in path for path in asked)


class _Scripted(BaseHTTPRequestHandler):
    """Answers each request with the next status of ``script`` (a real HTTP server that misbehaves on purpose)."""

    script: ClassVar[list[int]] = []
    seen: ClassVar[list[str]] = []

    def do_GET(self):
        self.seen.append(self.path)
        code = self.script.pop(0) if self.script else 200
        body = b'{"schemaVersion":2,"manifests":[]}' if code == 200 else b"boom"
        self.send_response(code)
        self.send_header("Content-Type", mf.OCI_INDEX)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def scripted():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Scripted.seen = []
    yield server, f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_retries_on_5xx_then_succeeds(scripted):
    _, host = scripted
    _Scripted.script = [500, 503]
    _, media = Client(host).get_manifest("a/b", "t")
    assert media == mf.OCI_INDEX and len(_Scripted.seen) == 3


def test_persistent_500_and_403_are_one_line_errors(scripted):
    _, host = scripted
    _Scripted.script = [500] * 10
    with pytest.raises(RegistryError, match=r"failed \(HTTP 500\)") as info:
        Client(host).get_manifest("a/b", "t")
    assert "\n" not in str(info.value)
    _Scripted.script = [403]
    with pytest.raises(RegistryError, match=r"denied .*HTTP 403"):
        Client(host).get_manifest("a/b", "t")


def test_unreachable_registry():
    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(RegistryError, match="cannot reach registry"):
        Client(host).get_manifest("a/b", "t")
