"""A small client for the distribution API v2 (what ``docker pull/push`` speak), on ``requests``.

It does what pushing a derived image needs (after go-containerregistry ``remote/write.go``): the bearer-token flow
from ``WWW-Authenticate`` (anonymous, as mcr.microsoft.com and Docker Hub use, or with credentials), Basic auth,
credentials from ``~/.docker/config.json``, retries on 5xx/429 and timeouts, HEAD before every blob upload,
cross-repository mounts, streamed POST + PATCH + PUT uploads and manifest PUTs with their own media type.

Security (docs/security.md): credentials and tokens go only to the registry's own origin (scheme, host and port);
redirects and upload ``Location`` headers are followed by hand, without them, when they point elsewhere. A token
realm must be https, unless the registry itself is a plain-HTTP host (loopback or ``image.insecure_registries``)
and the realm is on that same host. Only http(s) URLs are followed. Manifests, indexes and token answers are read
through a 4 MiB cap; blobs are streamed to the caller, who reads them to their declared size.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin, urlsplit

from wgobuild.oci import OciError
from wgobuild.oci.blobs import MAX_DOCUMENT, read_at_most
from wgobuild.oci.manifest import ACCEPT

DOCKER_HUB = "registry-1.docker.io"
RETRIES = 4
TIMEOUT = (10, 120)  # connect, read seconds
_LOCAL = ("localhost", "127.0.0.1", "::1")
MAX_REDIRECTS = 10
_REDIRECTS = (301, 302, 303, 307, 308)
_REGISTRY = re.compile(r"([A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*"
                       r"|\[[0-9A-Fa-f:.]{2,45}\])(:\d{1,5})?")  # a host name or [IPv6], and a port: no user@, no path
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_TOKEN = re.compile(r"[\x21-\x7e]{1,65536}")  # what may go into an Authorization header


class RegistryError(OciError):
    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Reference:
    """``[registry/]repository[:tag][@digest]`` with Docker Hub's defaults filled in."""

    registry: str
    repository: str
    tag: str = ""
    digest: str = ""

    @classmethod
    def parse(cls, text: str, default_tag: str = "latest") -> Reference:
        rest, _, digest = text.partition("@")
        name, tag = rest, ""
        if ":" in rest.rsplit("/", 1)[-1]:
            name, _, tag = rest.rpartition(":")
        first, _, remainder = name.partition("/")
        if remainder and ("." in first or ":" in first or first == "localhost"):
            registry, repository = first, remainder
        else:
            registry, repository = "docker.io", name
        if registry == "docker.io" and "/" not in repository:
            repository = f"library/{repository}"
        if not re.fullmatch(r"[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*", repository):
            raise OciError(f"{text!r} is not a valid image reference")
        for part, value, pattern in (("registry host", registry, _REGISTRY), ("tag", tag, _TAG),
                                     ("digest", digest, _DIGEST)):
            if value and not pattern.fullmatch(value):
                raise OciError(f"{text!r} is not a valid image reference (its {part} {value[:80]!r})")
        return cls(registry, repository, tag or ("" if digest else default_tag), digest)

    @property
    def ref(self) -> str:
        """What goes after ``/manifests/``: the digest when pinned, else the tag."""
        return self.digest or self.tag

    @property
    def host(self) -> str:
        return DOCKER_HUB if self.registry == "docker.io" else self.registry

    def with_ref(self, tag: str = "", digest: str = "") -> Reference:
        return Reference(self.registry, self.repository, tag, digest)

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        text += f":{self.tag}" if self.tag else ""
        return text + (f"@{self.digest}" if self.digest else "")


Origin = tuple[str, str, int]


def origin_of(url: str) -> Origin:
    """(scheme, host, port) of an http(s) URL, the port filled in from the scheme."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.scheme.lower(), (parts.hostname or "").lower(), port or (443 if parts.scheme == "https" else 80)


def _host_text(origin: Origin) -> str:
    scheme, host, port = origin
    host = f"[{host}]" if ":" in host else host
    return host if port == (443 if scheme == "https" else 80) else f"{host}:{port}"


def docker_credentials(registry: str) -> tuple[str, str] | None:
    """(user, password) for ``registry`` from ``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``.

    No file: None. A file that cannot be read or is malformed: one RegistryError naming it and what is wrong.
    """
    folder = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    path = folder / "config.json"
    fix = f"fix it, or run 'docker login {registry}' again"
    try:
        with open(path, "rb") as handle:
            raw = read_at_most(handle, MAX_DOCUMENT)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read it ({exc.strerror or exc}); {fix}") from None
    if len(raw) > MAX_DOCUMENT:
        raise RegistryError(f"{path}: larger than the 4 MiB limit; {fix}")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise RegistryError(f"{path}: not valid JSON ({str(exc).splitlines()[0][:120]}); {fix}") from None
    auths = doc.get("auths", {}) if isinstance(doc, dict) else None
    if not isinstance(auths, dict):
        raise RegistryError(f"{path}: {'auths' if isinstance(doc, dict) else 'the file'} must be a JSON object; {fix}")
    names = {registry, f"https://{registry}", f"http://{registry}"}
    if registry in ("docker.io", DOCKER_HUB):
        names |= {"https://index.docker.io/v1/", "index.docker.io", "docker.io"}
    for key, entry in auths.items():
        if key.rstrip("/") not in names and key not in names:
            continue
        where = f"{path}: auths.{key}"
        if not isinstance(entry, dict):
            raise RegistryError(f"{where}: must be a JSON object; {fix}")
        auth, user, password = entry.get("auth"), entry.get("username"), entry.get("password", "")
        if auth:
            try:
                text = base64.b64decode(auth, validate=True).decode() if isinstance(auth, str) else ""
            except (binascii.Error, ValueError):
                text = ""
            user, sep, password = text.partition(":")
            if not sep or not user:
                raise RegistryError(f"{where}.auth: not the base64 of user:password; {fix}")
            return user, password
        if user:
            if not isinstance(user, str) or not isinstance(password, str):
                raise RegistryError(f"{where}: username and password must be strings; {fix}")
            return user, password
    return None


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, params = header.partition(" ")
    return scheme.lower(), dict(re.findall(r'(\w+)="([^"]*)"', params))


def _tls_reason(exc: Exception) -> str:
    text = str(exc)
    found = re.search(r"certificate verify failed: ([^'\")(]+)", text)
    if found:
        return found.group(1).strip()
    found = re.search(r"\[SSL[^\]]*\] ([^'\")(]+)", text)
    return found.group(1).strip() if found else "the TLS handshake failed"


class Client:
    """One registry; tokens are cached per scope for the life of the client.

    ``origin`` (scheme, host, port of the registry) is the only place credentials and tokens are ever sent.
    """

    def __init__(self, registry: str, insecure: list[str] | tuple[str, ...] = ()) -> None:
        import requests

        if not _REGISTRY.fullmatch(registry):
            raise RegistryError(f"{registry[:80]!r} is not a registry host (a name or [IPv6] address and a port)")
        self.registry = registry
        self.host = DOCKER_HUB if registry == "docker.io" else registry
        self.base = f"https://{self.host}/v2"
        self.plain = origin_of(self.base)[1] in _LOCAL or self.host in insecure
        if self.plain:
            self.base = f"http://{self.host}/v2"
        self.origin = origin_of(self.base)
        self.session = requests.Session()
        self._credentials: tuple[str, str] | None = None
        self._credentials_read = False
        self._tokens: dict[str, str] = {}
        self._basic = False
        self.timeout, self.retries = TIMEOUT, RETRIES  # a caller with a local fallback (the team cache) waits less

    @property
    def credentials(self) -> tuple[str, str] | None:
        """Read from the Docker config the first time a registry asks for them."""
        if not self._credentials_read:
            self._credentials = docker_credentials(self.registry)
            self._credentials_read = True
        return self._credentials

    # --- transport ---------------------------------------------------------------------------------------------
    def _auth_header(self, scope: str) -> dict[str, str]:
        if scope in self._tokens:
            return {"Authorization": f"Bearer {self._tokens[scope]}"}
        if self._basic and self.credentials:
            raw = base64.b64encode(":".join(self.credentials).encode()).decode()
            return {"Authorization": f"Basic {raw}"}
        return {}

    def _realm(self, realm: str) -> str:
        """The token realm, if it may receive this registry's credentials: https, or this plain-HTTP host."""
        scheme, host, _ = origin_of(realm)
        if scheme not in ("http", "https") or not host:
            raise RegistryError(f"{self.registry}: token realm {realm} is not an http(s) URL; wgobuild only "
                                "fetches tokens over https")
        if scheme == "http" and not (self.plain and host == self.origin[1]):
            raise RegistryError(f"{self.registry}: token realm {realm} is not https: credentials and tokens are "
                                "only fetched over https (plain http only from the registry's own host when the "
                                "registry itself is plain HTTP: localhost or image.insecure_registries)")
        return realm

    def _login(self, response: Any, scope: str) -> bool:
        """Answer a 401 challenge of the registry itself; False when there is nothing more to try."""
        scheme, params = _challenge(response.headers.get("WWW-Authenticate", ""))
        if scheme == "basic":
            if self._basic or not self.credentials:
                return False
            self._basic = True
            return True
        if scheme != "bearer" or "realm" not in params or scope in self._tokens:
            return False
        realm = self._realm(params["realm"])
        query: dict[str, Any] = {"service": params["service"]} if params.get("service") else {}
        if scope:
            query["scope"] = scope.split(" ")
        what = f"token service {realm}"
        try:
            answer = self._request("GET", realm, {}, params=query, basic=self.credentials,
                                   auth_origin=origin_of(realm))
        except OSError as exc:  # requests' connection errors are OSErrors
            raise self._transport_error(exc, what) from None
        with answer:
            if answer.status_code != 200:
                raise RegistryError(f"{self.registry}: {what} answered HTTP {answer.status_code}; check the "
                                    "credentials for it in ~/.docker/config.json", answer.status_code)
            data = self._read(answer, what)
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError):
            doc = None
        token = (doc.get("token") or doc.get("access_token")) if isinstance(doc, dict) else None
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            raise RegistryError(f"{self.registry}: {what} answered without a usable token (a JSON object with a "
                                "'token' string is expected)")
        self._tokens[scope] = token
        return True

    def _request(self, method: str, url: str, headers: dict[str, str], *, auth: dict[str, str] | None = None,
                 basic: tuple[str, str] | None = None, auth_origin: Origin | None = None,
                 body: Callable[[], Any] | None = None, params: Any = None) -> Any:
        """One request, redirects followed by hand: ``auth`` headers and ``basic`` credentials only go to
        ``auth_origin`` (the registry's own by default), never to another scheme, host or port."""
        auth_origin = auth_origin or self.origin
        for _ in range(MAX_REDIRECTS + 1):
            here = origin_of(url)
            if here[0] not in ("http", "https") or not here[1]:
                raise RegistryError(f"{self.registry}: {url} is not an http(s) URL; wgobuild only follows http(s)")
            own = here == auth_origin
            response = self.session.request(
                method, url, headers={**headers, **((auth or {}) if own else {})}, auth=basic if own else None,
                params=params, data=body() if body else None, timeout=self.timeout, stream=True, allow_redirects=False)
            location = response.headers.get("Location")
            if response.status_code not in _REDIRECTS or not location:
                return response
            response.close()
            target = urljoin(url, location)
            if here[0] == "https" and origin_of(target)[0] == "http":
                raise RegistryError(f"{self.registry}: {url} redirected to plain http ({_host_text(origin_of(target))})"
                                    "; refusing the downgrade")
            if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
                method, body = "GET", None
            url, params = target, None
        raise RegistryError(f"{self.registry}: more than {MAX_REDIRECTS} redirects from {url}")

    def _transport_error(self, exc: Exception, what: str) -> RegistryError:
        import requests

        if isinstance(exc, requests.exceptions.SSLError):
            return RegistryError(f"TLS certificate problem talking to registry {self.registry} ({what}): "
                                 f"{_tls_reason(exc)}. If it uses a private certificate authority, add it to this "
                                 "machine's trusted certificates (or REQUESTS_CA_BUNDLE); a test registry may be "
                                 "listed in image.insecure_registries (plain HTTP)")
        if isinstance(exc, requests.exceptions.InvalidHeader):
            return RegistryError(f"registry {self.registry}: {what}: invalid header ({exc})")
        return RegistryError(f"cannot reach registry {self.registry} (no network, or a wrong address)")

    def _send(self, method: str, url: str, *, scope: str = "", body: Callable[[], Any] | None = None,
              **kwargs: Any) -> Any:
        """One request (streamed) with retries on timeouts, 5xx and 429, and one round of authentication on a 401
        from the registry itself. The caller reads (bounded) and closes the response."""
        import requests

        url = url if "://" in url else self.base + url
        extra = kwargs.pop("headers", {})
        attempt, authed = 0, False
        while True:
            try:
                response = self._request(method, url, extra, auth=self._auth_header(scope), body=body, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                attempt += 1
                if isinstance(exc, requests.exceptions.SSLError) or attempt >= self.retries or (
                        isinstance(exc, requests.ConnectionError) and _unresolvable(exc)):
                    raise self._transport_error(exc, url) from None
                time.sleep(0.1 * 2**attempt)
                continue
            except requests.RequestException as exc:
                raise self._transport_error(exc, url) from None
            code = response.status_code
            if code == 401 and not authed and origin_of(response.url) == self.origin:
                authed = True
                if self._login(response, scope):
                    response.close()
                    continue
            if (code >= 500 or code == 429) and attempt + 1 < self.retries:
                response.close()
                attempt += 1
                time.sleep(0.1 * 2**attempt)
                continue
            return response

    def _read(self, response: Any, what: str, limit: int = MAX_DOCUMENT) -> bytes:
        """The body of a small document (manifest, index, token answer), refused above ``limit``."""
        too_big = RegistryError(f"{self.registry}: {what} is larger than the {limit >> 20} MiB limit; it is not "
                                "an image manifest or token answer")
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_big
        response.raw.decode_content = True
        try:
            data = read_at_most(response.raw, limit)
        except OSError as exc:
            raise self._transport_error(exc, what) from None
        if len(data) > limit:
            raise too_big
        return data

    def _check(self, response: Any, what: str) -> Any:
        code = response.status_code
        if code < 400:
            return response
        with response:
            response.raw.decode_content = True
            try:
                detail = read_at_most(response.raw, 200).decode("utf-8", "replace")[:200]
            except OSError:
                detail = ""
        detail = " ".join(detail.split())
        here = origin_of(response.url)
        if code in (401, 403) and here != self.origin:
            raise RegistryError(f"{_host_text(here)} denied {what} (HTTP {code}); {self.registry} sent the request "
                                f"there, and credentials for {self.registry} are only sent to {self.registry} "
                                "itself", code)
        if code in (401, 403):
            raise RegistryError(f"{self.registry} denied {what} (HTTP {code}): log in with 'docker login "
                                f"{self.registry}' (credentials are read from ~/.docker/config.json)", code)
        if code == 404:
            raise RegistryError(f"{self.registry}: {what}: not found (HTTP 404)", code)
        raise RegistryError(f"{self.registry}: {what} failed (HTTP {code}): {detail}", code)

    def _done(self, response: Any, what: str) -> Any:
        """Check a response whose body is not needed, and release its connection."""
        self._check(response, what)
        response.close()
        return response

    # --- API ---------------------------------------------------------------------------------------------------
    @staticmethod
    def scope(repository: str, push: bool = False) -> str:
        return f"repository:{repository}:{'pull,push' if push else 'pull'}"

    def get_manifest(self, repository: str, ref: str) -> tuple[bytes, str]:
        """(raw bytes, media type) of a manifest or index (at most 4 MiB)."""
        what = f"manifest {repository}:{ref}"
        response = self._check(self._send("GET", f"/{repository}/manifests/{ref}", scope=self.scope(repository),
                                          headers={"Accept": ACCEPT}), what)
        with response:
            data = self._read(response, what)
        return data, response.headers.get("Content-Type", "").split(";")[0]

    def manifest_exists(self, repository: str, ref: str) -> bool:
        response = self._send("HEAD", f"/{repository}/manifests/{ref}", scope=self.scope(repository),
                              headers={"Accept": ACCEPT})
        response.close()
        return response.status_code == 200  # type: ignore[no-any-return]

    def tags(self, repository: str) -> list[str]:
        """Every tag of ``repository`` (``/tags/list``, following ``Link`` pages); none when it does not exist."""
        found: list[str] = []
        url = f"/{repository}/tags/list?n=1000"
        for _ in range(10_000):
            response = self._send("GET", url, scope=self.scope(repository))
            if response.status_code == 404:
                response.close()
                return found
            what = f"tag list of {repository}"
            with self._check(response, what):
                data = self._read(response, what)
            try:
                doc = json.loads(data)
            except (ValueError, RecursionError):
                doc = None
            tags = doc.get("tags") if isinstance(doc, dict) else None
            found += [t for t in tags or [] if isinstance(t, str)]
            link = re.match(r"\s*<([^>]+)>\s*;\s*rel=\"?next\"?", response.headers.get("Link", ""))
            if not link:
                return found
            url = urljoin(str(response.url), link.group(1))
        return found

    def delete_manifest(self, repository: str, digest: str) -> None:
        """Delete a manifest by digest (the registry must allow deletes; its blobs go at its garbage collection)."""
        scope = f"{self.scope(repository, True)},delete"
        self._done(self._send("DELETE", f"/{repository}/manifests/{digest}", scope=scope),
                   f"delete of manifest {repository}@{digest}")

    def open_blob(self, repository: str, digest: str) -> Any:
        """A streaming response for a blob (caller reads ``.raw`` to the blob's declared size and closes it)."""
        return self._check(self._send("GET", f"/{repository}/blobs/{digest}", scope=self.scope(repository)),
                           f"blob {repository}@{digest}")

    def blob_exists(self, repository: str, digest: str, push: bool = True) -> bool:
        response = self._send("HEAD", f"/{repository}/blobs/{digest}", scope=self.scope(repository, push))
        if response.status_code in (401, 403):
            self._check(response, f"access to {repository}")
        response.close()
        return response.status_code == 200  # type: ignore[no-any-return]

    def mount(self, repository: str, digest: str, source_repository: str) -> bool:
        """Cross-repository mount within this registry; False when the registry wants an upload instead."""
        scope = f"{self.scope(repository, True)} repository:{source_repository}:pull"
        response = self._done(self._send("POST", f"/{repository}/blobs/uploads/", scope=scope,
                                         params={"mount": digest, "from": source_repository}),
                              f"blob mount into {repository}")
        return response.status_code == 201  # type: ignore[no-any-return]  # a 202 opened an upload session instead

    def upload_blob(self, repository: str, digest: str, opener: Callable[[], IO[bytes]]) -> None:
        """POST, one streamed PATCH, PUT ``?digest=``; the blob exists in the registry only once complete.

        The upload ``Location`` may name another host: it then gets the data, never the credentials.
        """
        scope = self.scope(repository, True)
        what = f"upload of {digest} to {repository}"
        start = self._done(self._send("POST", f"/{repository}/blobs/uploads/", scope=scope),
                           f"upload to {repository}")

        def chunks() -> Any:
            with opener() as handle:
                while block := handle.read(1 << 20):
                    yield block

        patch = self._done(self._send("PATCH", self._location(start, what), scope=scope, body=chunks,
                                      headers={"Content-Type": "application/octet-stream"}), what)
        location = self._location(patch, what)
        sep = "&" if "?" in location else "?"
        self._done(self._send("PUT", f"{location}{sep}digest={digest}", scope=scope,
                              headers={"Content-Length": "0"}), what)

    def _location(self, response: Any, what: str) -> str:
        location = response.headers.get("Location")
        if not location:
            raise RegistryError(f"{self.registry}: {what}: the registry answered without a Location header")
        return urljoin(str(response.url), str(location))

    def put_manifest(self, repository: str, ref: str, data: bytes, media_type: str) -> str:
        self._done(self._send("PUT", f"/{repository}/manifests/{ref}", scope=self.scope(repository, True),
                              body=lambda: data, headers={"Content-Type": media_type}),
                   f"manifest PUT {repository}:{ref}")
        from wgobuild.oci.manifest import digest_of

        return digest_of(data)

    def read_blob(self, repository: str, digest: str) -> bytes:
        """A small blob (a signature payload, a bundle, an SBOM: at most 4 MiB), checked against its digest."""
        from wgobuild.oci.manifest import digest_of

        what = f"blob {repository}@{digest}"
        with self.open_blob(repository, digest) as response:
            data = self._read(response, what)
        if digest_of(data) != digest:
            raise RegistryError(f"{self.registry}: {what}: the registry sent bytes of another digest")
        return data

    def referrers(self, repository: str, digest: str) -> bytes | None:
        """The OCI 1.1 referrers index of ``digest``, or None when the registry has no referrers API (404)."""
        what = f"referrers of {repository}@{digest}"
        response = self._send("GET", f"/{repository}/referrers/{digest}", scope=self.scope(repository),
                              headers={"Accept": "application/vnd.oci.image.index.v1+json"})
        if response.status_code == 404:
            response.close()
            return None
        with self._check(response, what):
            return self._read(response, what)


def _unresolvable(exc: Exception) -> bool:
    """A name that does not resolve will not resolve on retry either (no network, a typo)."""
    text = str(exc)
    return "NameResolutionError" in text or "Name or service not known" in text or "nodename nor servname" in text
