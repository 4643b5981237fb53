"""A small client for the distribution API v2 (what ``docker pull/push`` speak), on ``requests``.

It does what pushing a derived image needs (after go-containerregistry ``remote/write.go``): the bearer-token flow
from ``WWW-Authenticate`` (anonymous, as mcr.microsoft.com and Docker Hub use, or with credentials), Basic auth,
credentials from ``~/.docker/config.json``, retries on 5xx/429 and timeouts, HEAD before every blob upload,
cross-repository mounts, streamed POST + PATCH + PUT uploads and manifest PUTs with their own media type.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from wgobuild.oci import OciError
from wgobuild.oci.manifest import ACCEPT

DOCKER_HUB = "registry-1.docker.io"
RETRIES = 4
TIMEOUT = (10, 120)  # connect, read seconds
_LOCAL = ("localhost", "127.0.0.1", "[::1]")


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
        if not re.match(r"^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$", repository):
            raise OciError(f"{text!r} is not a valid image reference")
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


def docker_credentials(registry: str) -> tuple[str, str] | None:
    """(user, password) for ``registry`` from ``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``."""
    folder = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    try:
        auths = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("auths", {})
    except (OSError, ValueError):
        return None
    names = {registry, f"https://{registry}", f"http://{registry}"}
    if registry in ("docker.io", DOCKER_HUB):
        names |= {"https://index.docker.io/v1/", "index.docker.io", "docker.io"}
    for key, entry in auths.items():
        if key.rstrip("/") in names or key in names:
            if entry.get("auth"):
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
                return user, password
            if entry.get("username"):
                return entry["username"], entry.get("password", "")
    return None


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, params = header.partition(" ")
    return scheme.lower(), dict(re.findall(r'(\w+)="([^"]*)"', params))


class Client:
    """One registry; tokens are cached per scope for the life of the client."""

    def __init__(self, registry: str, insecure: list[str] | tuple[str, ...] = ()) -> None:
        import requests

        self.registry = registry
        self.host = DOCKER_HUB if registry == "docker.io" else registry
        plain = self.host.split(":")[0] in ("localhost", "127.0.0.1") or self.host.startswith("[::1]")
        self.base = f"{'http' if plain or self.host in insecure else 'https'}://{self.host}/v2"
        self.session = requests.Session()
        self.credentials = docker_credentials(registry)
        self._tokens: dict[str, str] = {}
        self._basic = False

    # --- transport ---------------------------------------------------------------------------------------------
    def _auth_header(self, scope: str) -> dict[str, str]:
        if scope in self._tokens:
            return {"Authorization": f"Bearer {self._tokens[scope]}"}
        if self._basic and self.credentials:
            raw = base64.b64encode(":".join(self.credentials).encode()).decode()
            return {"Authorization": f"Basic {raw}"}
        return {}

    def _login(self, response: Any, scope: str) -> bool:
        """Answer a 401 challenge; False when there is nothing more to try."""
        scheme, params = _challenge(response.headers.get("WWW-Authenticate", ""))
        if scheme == "basic":
            if self._basic or not self.credentials:
                return False
            self._basic = True
            return True
        if scheme != "bearer" or "realm" not in params or scope in self._tokens:
            return False
        query = {"service": params.get("service", "")} if params.get("service") else {}
        if scope:
            query["scope"] = scope.split(" ")  # type: ignore[assignment]
        answer = self._send("GET", params["realm"], params=query, auth=self.credentials, retry_auth=False)
        if answer.status_code != 200:
            raise RegistryError(f"{self.registry}: token service {params['realm']} answered HTTP "
                                f"{answer.status_code}; check the credentials for it in ~/.docker/config.json",
                                answer.status_code)
        data = answer.json()
        self._tokens[scope] = data.get("token") or data.get("access_token", "")
        return True

    def _send(self, method: str, url: str, *, scope: str = "", retry_auth: bool = True,
              body: Callable[[], Any] | None = None, **kwargs: Any) -> Any:
        """One request with retries on timeouts, 5xx and 429, and one round of authentication on 401."""
        import requests

        url = url if url.startswith("http") else self.base + url
        extra = kwargs.pop("headers", {})
        attempt, authed = 0, False
        while True:
            headers = {**(self._auth_header(scope) if retry_auth else {}), **extra}
            try:
                response = self.session.request(method, url, headers=headers, timeout=TIMEOUT,
                                                data=body() if body else None, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                attempt += 1
                if attempt >= RETRIES or (isinstance(exc, requests.ConnectionError) and _unresolvable(exc)):
                    raise RegistryError(f"cannot reach registry {self.registry} (no network, or a wrong address)") \
                        from None
                time.sleep(0.1 * 2**attempt)
                continue
            if response.status_code == 401 and retry_auth and not authed:
                authed = True
                if self._login(response, scope):
                    continue
            if (response.status_code >= 500 or response.status_code == 429) and attempt + 1 < RETRIES:
                attempt += 1
                time.sleep(0.1 * 2**attempt)
                continue
            return response

    def _check(self, response: Any, what: str) -> Any:
        code = response.status_code
        if code < 400:
            return response
        if code in (401, 403):
            raise RegistryError(f"{self.registry} denied {what} (HTTP {code}): log in with 'docker login "
                                f"{self.registry}' (credentials are read from ~/.docker/config.json)", code)
        if code == 404:
            raise RegistryError(f"{self.registry}: {what}: not found (HTTP 404)", code)
        detail = response.text[:200].strip().replace("\n", " ")
        raise RegistryError(f"{self.registry}: {what} failed (HTTP {code}): {detail}", code)

    # --- API ---------------------------------------------------------------------------------------------------
    @staticmethod
    def scope(repository: str, push: bool = False) -> str:
        return f"repository:{repository}:{'pull,push' if push else 'pull'}"

    def get_manifest(self, repository: str, ref: str) -> tuple[bytes, str]:
        """(raw bytes, media type) of a manifest or index."""
        response = self._check(self._send("GET", f"/{repository}/manifests/{ref}", scope=self.scope(repository),
                                          headers={"Accept": ACCEPT}), f"manifest {repository}:{ref}")
        return response.content, response.headers.get("Content-Type", "").split(";")[0]

    def manifest_exists(self, repository: str, ref: str) -> bool:
        response = self._send("HEAD", f"/{repository}/manifests/{ref}", scope=self.scope(repository),
                              headers={"Accept": ACCEPT})
        return response.status_code == 200

    def open_blob(self, repository: str, digest: str) -> Any:
        """A streaming response for a blob (caller reads ``.raw``/``iter_content`` and closes it)."""
        return self._check(self._send("GET", f"/{repository}/blobs/{digest}", scope=self.scope(repository),
                                      stream=True), f"blob {repository}@{digest}")

    def blob_exists(self, repository: str, digest: str, push: bool = True) -> bool:
        response = self._send("HEAD", f"/{repository}/blobs/{digest}", scope=self.scope(repository, push))
        if response.status_code in (401, 403):
            self._check(response, f"access to {repository}")
        return response.status_code == 200

    def mount(self, repository: str, digest: str, source_repository: str) -> bool:
        """Cross-repository mount within this registry; False when the registry wants an upload instead."""
        scope = f"{self.scope(repository, True)} repository:{source_repository}:pull"
        response = self._check(self._send("POST", f"/{repository}/blobs/uploads/", scope=scope,
                                          params={"mount": digest, "from": source_repository}),
                               f"blob mount into {repository}")
        return response.status_code == 201  # a 202 opened an upload session instead; it expires unused

    def upload_blob(self, repository: str, digest: str, opener: Callable[[], IO[bytes]]) -> None:
        """POST, one streamed PATCH, PUT ``?digest=``; the blob exists in the registry only once complete."""
        scope = self.scope(repository, True)
        start = self._check(self._send("POST", f"/{repository}/blobs/uploads/", scope=scope),
                            f"upload to {repository}")

        def chunks() -> Any:
            with opener() as handle:
                while block := handle.read(1 << 20):
                    yield block

        patch = self._check(self._send("PATCH", self._location(start), scope=scope, body=chunks,
                                       headers={"Content-Type": "application/octet-stream"}),
                            f"upload of {digest} to {repository}")
        location = self._location(patch)
        sep = "&" if "?" in location else "?"
        self._check(self._send("PUT", f"{location}{sep}digest={digest}", scope=scope,
                               headers={"Content-Length": "0"}), f"upload of {digest} to {repository}")

    def _location(self, response: Any) -> str:
        location = response.headers["Location"]
        return location if location.startswith("http") else self.base[: -len("/v2")] + location

    def put_manifest(self, repository: str, ref: str, data: bytes, media_type: str) -> str:
        self._check(self._send("PUT", f"/{repository}/manifests/{ref}", scope=self.scope(repository, True),
                               body=lambda: data, headers={"Content-Type": media_type}),
                    f"manifest PUT {repository}:{ref}")
        from wgobuild.oci.manifest import digest_of

        return digest_of(data)


def _unresolvable(exc: Exception) -> bool:
    """A name that does not resolve will not resolve on retry either (no network, a typo)."""
    text = str(exc)
    return "NameResolutionError" in text or "Name or service not known" in text or "nodename nor servname" in text
