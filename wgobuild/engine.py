"""The Docker Engine backend: build an image from the rendered Dockerfile through the engine's API (docker SDK).

Why the low-level ``APIClient.build``: docker-py has no BuildKit, and the classic builder is the only one Windows
engines offer for native images anyway; the low-level call streams every step, so progress and the full log can be
shown and kept. The build context is a tar made here, holding only the Dockerfile and the files it copies, so a
remote Windows build host (``DOCKER_HOST=ssh://...`` or ``tcp://...``) receives megabytes, not the repository.

The image is built untagged and tagged (:func:`tag`) by the publish step, after the build succeeded and the tests
and golden cases passed, so neither an interrupted build nor a failing test leaves the tag on a new image. This
module's top level stays cheap (the SDK is imported inside functions): it is imported when doit creates tasks,
on every no-op run.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import signal
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wgobuild import dockerfile, files, proc
from wgobuild.config import LOCAL_BASE_PREFIXES, Config, Platform
from wgobuild.errors import ConfigError, StepFailed, WgobuildError
from wgobuild.image import ImageRequest, ImageResult, LayerInfo

if TYPE_CHECKING:
    import docker

CONNECT_TIMEOUT_S = 15.0
API_TIMEOUT_S = 600.0  # inspect/tag/push calls; builds themselves have no read timeout (long RUN steps)
_REPOSITORY = re.compile(
    r"\A(((localhost|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)(:\d+)?|[A-Za-z0-9-]+:\d+)/)?"
    r"[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*\Z"
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the engine colours a RUN step's stderr
_TAG = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")


class EngineUnreachable(WgobuildError):
    """No Docker engine answers where DOCKER_HOST (or the docker context) points."""


# ---------------------------------------------------------------------------------------------------------------
# Connecting


def engine_address(engine: str = "") -> str:
    """Where the SDK will connect. ``engine`` is what ``[engines]`` maps a platform to (:meth:`Config.engine_for`):
    an engine URL, or a docker context name whose host is read from the docker CLI's context store. "" (or
    ``default``) is the default engine: ``$DOCKER_HOST``, else the current docker context's host, else the default
    socket. A configured engine never reads ``DOCKER_HOST``: one platform's engine does not leak into another's."""
    if engine and engine != "default":
        return engine if "://" in engine else _context_endpoint(engine)[0]
    host = os.environ.get("DOCKER_HOST")
    if host:
        return host
    context = _current_context()
    if context is not None:
        return str(context.Host)
    return "npipe:////./pipe/docker_engine" if os.name == "nt" else "unix:///var/run/docker.sock"


def _current_context() -> Any:
    """The docker CLI's current context when it is not ``default`` (``docker.from_env`` ignores contexts)."""
    from docker.context import ContextAPI

    name = os.environ.get("DOCKER_CONTEXT") or None
    with contextlib.suppress(Exception):
        context = ContextAPI.get_context(name)
        if context is not None and context.Name != "default" and context.Host:
            return context
    return None


def docker_config_dir() -> Path:
    """The docker CLI's configuration folder: ``$DOCKER_CONFIG``, else ``~/.docker``."""
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


def docker_context_meta(name: str) -> Path:
    """Where the docker CLI keeps context ``name``: ``contexts/meta/<sha256 of the name>/meta.json``."""
    import hashlib

    return docker_config_dir() / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest() / "meta.json"


def check_contexts(cfg: Config) -> None:
    """Before a build: every docker context ``[engines]`` names exists (``default`` always does); a ConfigError
    naming the key otherwise (exit 2). A file look-up each, no engine contacted."""
    for key, value in cfg.engines.items():
        if "://" not in value and value != "default" and not docker_context_meta(value).is_file():
            raise ConfigError(cfg.path, f'[engines]."{key}"',
                              f"no docker context named {value!r} in {docker_config_dir() / 'contexts'}; create it "
                              f"('docker context create {value} --docker host=...') or give an engine URL")


def _context_endpoint(name: str) -> tuple[str, Any]:
    """Host and TLS settings (a ``docker.tls.TLSConfig`` or None) of docker context ``name``, read from the docker
    CLI's store (``contexts/meta`` and ``contexts/tls`` beside config.json) the way the CLI does: the SDK's own
    reader finds no context when config.json is absent. EngineUnreachable when the context does not exist."""
    import json

    meta = docker_context_meta(name)
    try:
        endpoint = json.loads(meta.read_text(encoding="utf-8"))["Endpoints"]["docker"]
        host = str(endpoint["Host"])
    except (OSError, ValueError, KeyError, TypeError):
        raise EngineUnreachable(f"no usable docker context {name!r} ({meta}): create it with 'docker context "
                                "create' or map the platform to an engine URL in [engines]") from None
    tls_dir = meta.parent.parent.parent / "tls" / meta.parent.name / "docker"
    pem = {part: tls_dir / f"{part}.pem" for part in ("ca", "cert", "key")}
    if not any(path.is_file() for path in pem.values()) or host.startswith(("unix://", "npipe://", "ssh://")):
        return host, None
    from docker.tls import TLSConfig

    both = pem["cert"].is_file() and pem["key"].is_file()
    return host, TLSConfig(client_cert=(str(pem["cert"]), str(pem["key"])) if both else None,
                           ca_cert=str(pem["ca"]) if pem["ca"].is_file() else None,
                           verify=not endpoint.get("SkipTLSVerify", False))


def connect(timeout: float = CONNECT_TIMEOUT_S, engine: str = "") -> docker.DockerClient:
    """A docker client for the engine at :func:`engine_address` (``engine``: what ``[engines]`` names), checked
    with a ping. An engine URL takes its TLS settings (tcp://) from ``DOCKER_CERT_PATH``/``DOCKER_TLS_VERIFY``, a
    context from the context's own certificates; neither reads ``DOCKER_HOST``.

    Raises :class:`EngineUnreachable` (one line: where, why, what to do) instead of the SDK's exceptions.
    """
    import docker
    from docker.utils import kwargs_from_env

    where = engine_address(engine)
    if engine and engine != "default" and "://" not in engine:
        where = f"{where} (docker context {engine})"
    try:
        if engine and engine != "default":
            if "://" in engine:
                tls_env = {k: v for k, v in os.environ.items() if k in ("DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY")}
                params = kwargs_from_env(environment={**tls_env, "DOCKER_HOST": engine})
                client = _client(engine, params.get("tls"), timeout)
            else:
                client = _client(*_context_endpoint(engine), timeout)
        elif os.environ.get("DOCKER_HOST"):
            params = kwargs_from_env()
            client = _client(str(params["base_url"]), params.get("tls"), timeout)
        else:
            context = _current_context()
            if context is not None:
                client = _client(str(context.Host), context.TLSConfig, timeout)
            else:
                client = docker.from_env(timeout=int(timeout))
        client.ping()
    except EngineUnreachable:
        raise
    except Exception as exc:  # the SDK raises DockerException, requests' and paramiko's errors, OSError
        advice = ("start it, or map the platform to a running engine in [engines]" if engine and engine != "default"
                  else "Start Docker (Docker Desktop or dockerd), or point DOCKER_HOST (or 'docker context use') at "
                  "a running engine")
        raise EngineUnreachable(f"cannot reach the Docker engine at {where}: {_reason(exc)}. {advice}.") from None
    client.api.timeout = int(API_TIMEOUT_S)
    return client


def _client(host: str, tls: Any, timeout: float) -> docker.DockerClient:
    """A client for ``host`` with the API version the engine offers (as the SDK's ``version="auto"``). When TLS
    checks the engine against a CA of its own, requests must not replace that CA with ``REQUESTS_CA_BUNDLE`` or
    ``CURL_CA_BUNDLE`` (set on many hosts; requests prefers them): the version is asked with ``trust_env`` off."""
    import docker
    from docker.constants import MINIMUM_DOCKER_API_VERSION

    client = docker.DockerClient(base_url=host, tls=tls or False, timeout=int(timeout),
                                 version=MINIMUM_DOCKER_API_VERSION)  # no request yet
    if not isinstance(client.api.verify, str):
        client.close()
        return docker.DockerClient(base_url=host, tls=tls or False, timeout=int(timeout))
    client.api.trust_env = False
    try:
        version = str(client.api.version(api_version=False)["ApiVersion"])
    finally:
        client.close()
    client = docker.DockerClient(base_url=host, tls=tls, timeout=int(timeout), version=version)
    client.api.trust_env = False
    return client


def _reason(exc: BaseException) -> str:
    """A short cause instead of the SDK's nested exception text."""
    text = str(exc)
    for marker, reason in (("CERTIFICATE_VERIFY_FAILED", "TLS: the engine's certificate does not verify against the "
                            "CA given (ca.pem of the docker context or of DOCKER_CERT_PATH)"),
                           ("Connection reset by peer", "connection reset by the engine (a TLS port wants "
                            "certificates: DOCKER_CERT_PATH with DOCKER_TLS_VERIFY=1, or a docker context with them)"),
                           ("SSLError", "TLS handshake failed (check the certificates of the docker context or of "
                            "DOCKER_CERT_PATH)"),
                           ("paramiko", "ssh:// needs the paramiko package: pip install 'docker[ssh]'"),
                           ("FileNotFoundError", "no such socket"), ("No such file", "no such socket"),
                           ("Connection refused", "connection refused"), ("ConnectionRefused", "connection refused"),
                           ("timed out", "timed out"), ("Timeout", "timed out"), ("Permission denied",
                           "permission denied (is this user allowed to use the engine?)")):
        if marker in text:
            return reason
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first[:200]


# ---------------------------------------------------------------------------------------------------------------
# Cheap checks for doit's uptodate


def image_present(image_id: str, engine: str = "") -> bool:
    """True when the engine (``engine``: as for :func:`connect`) still holds ``image_id``: one
    ``GET /images/<id>/json``, nothing else.

    On a local unix socket the request is made with the standard library (no SDK import, a few milliseconds), so a
    no-op ``doit image`` stays cheap; other hosts (tcp, ssh, npipe, contexts) go through the SDK. An unreachable
    engine counts as "not present": the image task then runs and says plainly what is wrong.
    """
    if not image_id:
        return False
    try:
        socket_path = _local_socket(engine)
    except EngineUnreachable:  # its context is gone
        return False
    if socket_path is not None:
        status, _ = _unix_request(socket_path, "GET", f"/images/{image_id}/json")
        if status is not None:
            return status == 200
    try:
        client = connect(engine=engine)
    except EngineUnreachable:
        return False
    import docker.errors

    with contextlib.closing(client):
        try:
            client.api.inspect_image(image_id)
        except docker.errors.NotFound:
            return False
        except docker.errors.DockerException:
            return False
    return True


def _local_socket(engine: str = "") -> str | None:
    if engine and engine != "default":
        address = engine_address(engine)
        return address[len("unix://"):] if address.startswith("unix://") else None
    host = os.environ.get("DOCKER_HOST", "")
    if host.startswith("unix://"):
        return host[len("unix://"):]
    if not host and os.name != "nt" and not os.environ.get("DOCKER_CONTEXT") and not _has_context_config():
        return "/var/run/docker.sock"
    return None


def _has_context_config() -> bool:
    config = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"
    try:
        return '"currentContext"' in config.read_text(encoding="utf-8")
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------------------------
# References, build context


def split_reference(config: Config, reference: str) -> tuple[str, str]:
    """``repository:tag`` -> (repository, tag), validated before any engine is contacted."""
    repository, sep, tag = reference.rpartition(":")
    if not sep or "/" in tag:
        repository, tag = reference, "latest"
    if not _REPOSITORY.match(repository) or len(repository) > 255:
        raise ConfigError(config.path, "[image].repository",
                          f"{repository!r} is not a valid image repository (lower-case letters, digits, '.', '_', "
                          "'-', '/' separated, optionally prefixed by a registry host[:port])")
    if not _TAG.match(tag):
        raise ConfigError(config.path, "[image].tag",
                          f"{tag!r} (from {reference!r}) is not a valid image tag (letters, digits, '_', '.', '-'; "
                          "at most 128); set [image].tag")
    return repository, tag


def context_entries(config: Config, platform: Platform, docker_dir: Path,
                    binaries: dict[str, Path] | None = None) -> dict[str, Path]:
    """Archive name -> local file of everything the build context holds: the Dockerfile and what it copies."""
    entries = {"Dockerfile": docker_dir / "Dockerfile", ".dockerignore": docker_dir / ".dockerignore"}
    if config.image.style == "multistage":
        entries.update(dockerfile.source_files(config, platform))
    else:
        for binary in config.image_binaries:
            source = (binaries or {}).get(binary.name) or config.binary_path(binary, platform)
            entries[dockerfile.binary_arcname(config, binary, platform)] = Path(source)
    if platform.os == "windows" and config.image.runtime == "servercore":
        entries.update(dockerfile.script_files(config))
    return entries


def write_context(entries: dict[str, Path], fileobj: Any, executables: set[str] | frozenset[str] = frozenset()) -> int:
    """Write a tar of ``entries`` (sorted, root-owned, fixed modes) to ``fileobj``; returns its size.

    Modes are set here, not taken from disk (a Windows build machine has no exec bit): ``executables`` get 0755.
    Files keep their real mtime on purpose: the engine's layer diff (vfs, overlay's naive diff) detects a changed
    file by size and mtime only, so a fixed mtime would silently drop a same-size binary that replaces one in the
    base image. The build cache is unaffected (its file checksums leave mtime out).
    """
    missing = [f"{name} ({path})" for name, path in entries.items() if not Path(path).is_file()]
    if missing:
        raise WgobuildError("build context incomplete, missing: " + ", ".join(sorted(missing))
                            + "; run 'doit compile' (or 'doit image', which builds them first)")
    start = int(fileobj.tell())
    with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for name in sorted(entries):
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                folder = "/".join(parts[:i])
                if folder not in dirs:
                    dirs.add(folder)
                    info = tarfile.TarInfo(folder)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            path = Path(entries[name])
            info = tarfile.TarInfo(name)
            stat = path.stat()
            info.size, info.mtime = stat.st_size, int(stat.st_mtime)
            info.mode = 0o755 if name in executables else 0o644
            with open(path, "rb") as handle:
                tar.addfile(info, handle)
    return int(fileobj.tell()) - start


# ---------------------------------------------------------------------------------------------------------------
# Building


class _Progress:
    """Turns the engine's JSON chunks into terminal lines (steps, pulled bytes) and a full log."""

    def __init__(self, label: str, verb: str = "pulling") -> None:
        self.label, self.verb = label, verb
        self.log: list[str] = []
        self.image_id = ""
        self.containers: set[str] = set()  # "Running in <id>" of this build
        self.images: set[str] = set()  # "---> <id>" images this build ran steps on
        self.pulled: dict[str, tuple[int, int]] = {}
        self._last_pull_echo = 0.0

    def feed(self, chunk: dict[str, Any]) -> None:
        if "error" in chunk:
            message = str(chunk.get("error") or chunk.get("errorDetail", {}).get("message", "")).strip()
            self.log.append(f"ERROR: {message}")
            raise _BuildError(message)
        if "aux" in chunk and isinstance(chunk["aux"], dict) and chunk["aux"].get("ID"):
            self.image_id = chunk["aux"]["ID"]
        if "stream" in chunk:
            for line in _ANSI.sub("", str(chunk["stream"])).splitlines():
                if not line.strip():
                    continue
                self.log.append(line)
                if match := re.search(r"Running in ([0-9a-f]{12,64})", line):
                    self.containers.add(match[1])
                if match := re.match(r"\s*---> ([0-9a-f]{12,64})\s*$", line):
                    self.images.add(match[1])
                proc.echo(line.strip(), self.label)
        if "status" in chunk:
            self._status(chunk)

    def _status(self, chunk: dict[str, Any]) -> None:
        status, layer = str(chunk["status"]), str(chunk.get("id", ""))
        detail = chunk.get("progressDetail") or {}
        if detail.get("total"):
            self.pulled[layer] = (int(detail.get("current", 0)), int(detail["total"]))
            now = time.monotonic()
            if now - self._last_pull_echo >= 1.0:
                self._last_pull_echo = now
                done = sum(c for c, _ in self.pulled.values())
                total = sum(t for _, t in self.pulled.values())
                proc.echo(f"{self.verb}: {len(self.pulled)} layers, {done / 1e6:.1f} of {total / 1e6:.1f} MB",
                          self.label)
            return
        line = f"{layer}: {status}" if layer else status
        self.log.append(line)
        if not layer or status in ("Pull complete", "Already exists", "Pushed", "Layer already exists"):
            proc.echo(line, self.label)


class _BuildError(Exception):
    pass


class EngineBackend:
    """Builds one platform's image on a Docker Engine (local, or remote through DOCKER_HOST / a docker context).
    ``engine`` is the platform's engine from ``[engines]`` ("" for the default one); the client is this object's
    own, so parallel image steps on different engines share nothing."""

    name = "engine"

    def __init__(self, config: Config, engine: str = "") -> None:
        self.config = config
        self.engine = engine
        self._client: docker.DockerClient | None = None
        self._info: dict[str, Any] = {}

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = connect(engine=self.engine)
            self._info = self._client.info()
        return self._client

    @property
    def engine_os(self) -> str:
        self.client  # noqa: B018 - connects and reads info once
        return str(self._info.get("OSType", "linux"))

    def unavailable(self, platform: Platform) -> str | None:
        source = self.config.base_source(platform)
        if source.startswith(LOCAL_BASE_PREFIXES):
            return (f"the base {source} is a local file; the engine builds FROM registry images (docker load it "
                    "and name it in image.windows_base/linux_base), the daemonless oci backend reads it directly")
        try:
            engine_os = self.engine_os
        except EngineUnreachable as exc:
            return str(exc)
        if platform.os != engine_os:
            where = engine_address(self.engine)
            if platform.os == "windows":
                return (f"the engine at {where} runs {engine_os} containers; a {platform} image needs a Windows "
                        "engine (Docker Desktop in Windows containers mode, or DOCKER_HOST pointing at a Windows "
                        "build host); the daemonless oci backend builds it without one")
            return f"the engine at {where} runs {engine_os} containers, not {platform.os} ones"
        if platform.os == "windows":
            return windows_build_problem(self._info, platform, self.config.image.isolation)
        return None

    def build(self, request: ImageRequest) -> ImageResult:
        config, platform = request.config, request.platform
        split_reference(config, request.reference)  # a bad reference fails before contacting anything
        docker_dir = dockerfile.docker_dir(config, platform)
        if not (docker_dir / "Dockerfile").is_file():
            dockerfile.write(config, platform, request.version, docker_dir)
        entries = context_entries(config, platform, docker_dir, request.binaries)
        reason = self.unavailable(platform)
        if reason is not None:
            raise WgobuildError(f"cannot build the {platform} image on the engine: {reason}")
        api = self.client.api
        text = (docker_dir / "Dockerfile").read_text(encoding="utf-8")
        self._check_bases(text)
        label = f"image {platform.key}"
        log_path = config.reports_dir / f"image-{platform.key}.log"
        start = time.time()
        with tempfile.TemporaryFile() as context:
            executables = {dockerfile.binary_arcname(config, b, platform) for b in config.image_binaries}
            gzipped = wants_gzip(engine_address(self.engine))
            if gzipped:  # a remote engine: fewer bytes over the network are worth the compression time
                with gzip.GzipFile(fileobj=context, mode="wb", mtime=0) as packed:
                    write_context(entries, packed, executables)
            else:
                write_context(entries, context, executables)
            context_bytes = context.tell()
            context.seek(0)
            proc.echo(f"sending {context_bytes / 1e6:.1f} MB build context ({len(entries)} files"
                      f"{', gzip' if gzipped else ''}) to {engine_address(self.engine)}", label)
            progress = _Progress(label)
            try:
                self._stream(api, context, platform, progress, encoding="gzip" if gzipped else None)
            finally:
                files.write_text(log_path, "\n".join(progress.log) + "\n")
        if not progress.image_id:
            raise StepFailed(f"docker build of {request.reference}: the engine reported no image ID; "
                             f"full log: {log_path}")
        proc.echo(f"built {progress.image_id[:19]}; tagged {request.reference} once the tests pass", label)
        result = self._describe(progress.image_id, request.reference, platform, text)
        result.extra.update(context_bytes=context_bytes, build_s=round(time.time() - start, 3),
                            engine=engine_address(self.engine), engine_config=self.engine, log=str(log_path))
        return result

    def _build_kwargs(self, platform: Platform) -> dict[str, Any]:
        """Build options; those a Windows engine rejects (platform, cpu/memory limits) are never sent to one."""
        image = self.config.image
        kwargs: dict[str, Any] = {
            "custom_context": True,
            "dockerfile": "Dockerfile",
            "decode": True,
            "rm": True,
            "forcerm": True,
            "pull": image.pull == "always",
            "labels": dockerfile.build_labels(self.config),
            "buildargs": dict(image.build_args) or None,
            "cache_from": list(image.cache_from) or None,
            "timeout": None,
        }
        if self.engine_os == "windows":
            if image.isolation:
                kwargs["isolation"] = image.isolation
        elif _api_at_least(self.client.api.api_version, "1.32"):
            kwargs["platform"] = platform.goos_goarch
        return kwargs

    def _stream(self, api: Any, context: Any, platform: Platform, progress: _Progress, encoding: str | None) -> None:
        """Run the build stream; on an error chunk raise StepFailed, on Ctrl-C clean up and re-raise."""
        from docker.errors import DockerException
        from requests.exceptions import RequestException

        started = time.time()
        stream: Iterator[dict[str, Any]] | None = None
        try:
            stream = api.build(fileobj=context, encoding=encoding, **self._build_kwargs(platform))
            for chunk in stream:
                progress.feed(chunk)
        except _BuildError as exc:
            raise StepFailed(f"docker build for {platform} failed: {exc}\nfull log: "
                             f"{self.config.reports_dir / f'image-{platform.key}.log'}") from None
        except (DockerException, RequestException) as exc:  # refused request (HTTP 4xx/5xx), connection lost
            progress.log.append(f"ERROR: {exc}")
            detail = getattr(exc, "explanation", None) or _reason(exc)
            raise StepFailed(f"docker build for {platform} failed: the engine at {engine_address(self.engine)} "
                             f"answered: {detail}") from None
        except KeyboardInterrupt:
            progress.log.append("interrupted: build cancelled, removing its intermediate containers")
            proc.echo("interrupted: cancelling the build and removing its intermediate containers", progress.label)
            with _signals_deferred():
                if stream is not None:
                    with contextlib.suppress(Exception):
                        stream.close()  # type: ignore[attr-defined]
                api.close()  # drops the connection: the engine cancels the build
                self._client = None
                remove_build_containers(started, progress.containers, progress.images, engine=self.engine)
            raise

    def _check_bases(self, text: str) -> None:
        """With ``pull = 'never'`` a missing base is reported here, before the engine would pull it anyway."""
        if self.config.image.pull != "never":
            return
        import docker.errors

        for base in dockerfile.base_images(text):
            try:
                self.client.api.inspect_image(base)
            except docker.errors.NotFound:
                raise WgobuildError(f"base image {base} is not in the engine and [image].pull = 'never'; "
                                    "pull or load it, or set pull = 'missing'") from None

    def _describe(self, image_id: str, reference: str, platform: Platform, text: str) -> ImageResult:
        """Size and layers of the built image; layers that come from the final stage's base are marked as base."""
        import docker.errors

        api = self.client.api
        inspect = api.inspect_image(image_id)
        history = list(reversed(api.history(image_id)))  # oldest first
        base_count = 0
        bases = dockerfile.base_images(text, final_only=True)
        if bases:
            with contextlib.suppress(docker.errors.DockerException):
                base_count = len(api.history(bases[0]))
        diff_ids = list(inspect.get("RootFS", {}).get("Layers", []))
        layers: list[LayerInfo] = []
        for i, entry in enumerate(history):
            size = int(entry.get("Size") or 0)
            if size == 0:
                continue  # metadata-only step (ENV, LABEL, USER ...): no layer
            layers.append(LayerInfo(digest=str(entry.get("Id", "")), size=size, from_base=i < base_count))
        if len(layers) == len(diff_ids):
            for layer, diff_id in zip(layers, diff_ids, strict=True):
                layer.digest = diff_id
        return ImageResult(backend=self.name, platform=str(platform), reference=reference, digest=image_id,
                           size=int(inspect.get("Size") or 0), layers=layers,
                           extra={"os": inspect.get("Os"), "architecture": inspect.get("Architecture"),
                                  "os_version": inspect.get("OsVersion", "")})

    def push(self, reference: str) -> None:
        push(reference, client=self.client)

    def image_present(self, image_id: str) -> bool:
        return image_present(image_id, self.engine)


def windows_build_problem(info: dict[str, Any], platform: Platform, isolation: str) -> str | None:
    """Can the Windows engine described by ``info`` (``GET /info``) run ``platform``'s image? Process isolation
    needs the image's Windows build to equal the host's; Hyper-V isolation runs older images on newer hosts; newer
    never runs on older. None when it can (or the engine's build is unknown)."""
    match = re.match(r"^\s*10\.0 (\d+)", str(info.get("KernelVersion", "")))
    if not match:
        return None
    host, image = int(match[1]), int(platform.windows_version.split(".")[2])
    if image > host:
        return f"the engine's Windows build {host} is older than the image's {image} ({platform.ltsc})"
    if image != host and (isolation or str(info.get("Isolation") or "")) == "process":  # "": engine's default
        return (f"isolation = 'process' needs the host's Windows build ({host}) to equal the image's {image}; "
                "use isolation = 'hyperv' or a matching os.version")
    return None


def wants_gzip(address: str) -> bool:
    """Compress the build context for engines reached over a network (tcp://, ssh://), not for local sockets."""
    return not address.startswith(("unix://", "npipe://"))


def _api_at_least(version: str, wanted: str) -> bool:
    def key(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in text.split("."))

    return key(version) >= key(wanted)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Let a clean-up finish even if Ctrl-C is pressed again meanwhile (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def remove_build_containers(since: float, containers: set[str], images: set[str], settle_s: float = 3.0,
                            engine: str = "") -> list[str]:
    """Remove the containers an interrupted build left: those it named, and those created since ``since`` from one
    of its intermediate images. Polls until ``settle_s`` passes with nothing new (the engine may still be starting
    the step it was on when the connection dropped). Returns the removed container IDs."""
    import docker.errors

    client = connect(engine=engine)
    removed: list[str] = []
    quiet_since = give_up = time.monotonic()
    with contextlib.closing(client):
        while time.monotonic() - quiet_since < settle_s and time.monotonic() - give_up < 60:
            found = []
            for item in client.api.containers(all=True):
                ident, image_id = item["Id"], str(item.get("ImageID", "")).removeprefix("sha256:")
                ours = any(ident.startswith(c) for c in containers) or (
                    item.get("Created", 0) >= since - 2 and any(image_id.startswith(i) for i in images))
                if ours and ident not in removed:
                    found.append(ident)
            for ident in found:
                try:
                    client.api.remove_container(ident, force=True)
                except docker.errors.NotFound:
                    pass
                except docker.errors.APIError as exc:
                    if exc.status_code != 409:
                        raise
                    continue  # 409: the engine is removing it itself (the build's rm); look again next round
                removed.append(ident)
            if found:
                quiet_since = time.monotonic()
            time.sleep(0.3)
    return removed


def tag(reference: str, image_id: str, engine: str = "") -> None:
    """Point ``reference`` at ``image_id`` on the engine (``engine``: as for :func:`connect`), as ``docker tag``."""
    repository, _, name = reference.rpartition(":")
    if not repository or "/" in name:
        repository, name = reference, "latest"
    client = connect(engine=engine)
    try:
        client.api.tag(image_id, repository, name, force=True)
    finally:
        client.close()
    proc.echo(f"tagged {reference} ({image_id[:19]})", "image")


def push(reference: str, client: docker.DockerClient | None = None, engine: str = "") -> None:
    """Push ``reference`` from the engine behind ``client`` (else ``engine``, as for :func:`connect`) with progress;
    credentials come from ``~/.docker/config.json`` as for ``docker push``."""
    own = client is None
    client = client or connect(engine=engine)
    label = f"push {reference}"
    repository, _, tag = reference.rpartition(":")
    if not repository or "/" in tag:
        repository, tag = reference, "latest"
    progress = _Progress(label, verb="pushing")
    try:
        for chunk in client.api.push(repository, tag=tag, stream=True, decode=True):
            progress.feed(chunk)
    except _BuildError as exc:
        raise StepFailed(f"docker push {reference} failed: {exc}") from None
    finally:
        if own:
            client.close()
    proc.echo("pushed", label)


# ---------------------------------------------------------------------------------------------------------------
# Loading a daemonless build


def load_archive(archive: Path, platform: Platform, engine: str = "") -> str | None:
    """Load a docker-save tar (a daemonless build) into the engine (``engine``: the platform's from ``[engines]``,
    "" for the default one), when it answers and runs ``platform``'s OS, so that ``docker run`` and ``invoke run``
    find the image. Returns the engine's address, or None when there is no such engine (nothing to do; for an
    engine ``[engines]`` names, one line says why the load was skipped: the daemonless image stands). A local unix
    socket is spoken to with the standard library (no SDK import); other hosts go through the SDK. An engine that
    answers but refuses the archive fails the step (StepFailed)."""

    def skipped(why: str) -> None:
        if engine and engine != "default":  # asked for by name: say so; no default engine is the normal case
            proc.echo(f"{platform}: engine load skipped: {why}", "image")

    found = _local_engine_for(platform, engine)
    if isinstance(found, str) and found != _NOT_LOCAL:
        skipped(found)
        return None
    if isinstance(found, tuple):
        socket_path, where = found
        with open(archive, "rb") as data:
            status, body = _unix_request(socket_path, "POST", "/images/load?quiet=1", data,
                                         {"Content-Type": "application/x-tar",
                                          "Content-Length": str(archive.stat().st_size)}, timeout=API_TIMEOUT_S)
        errors = [str(m.get("error")) for m in _json_lines(body) if m.get("error")]
        if status != 200 or errors:
            raise StepFailed(f"docker load of {archive} into {where} failed: "
                             f"{errors[0] if errors else f'HTTP {status}'}")
        return where
    try:
        client = connect(engine=engine)
    except EngineUnreachable as exc:
        skipped(str(exc))
        return None
    with contextlib.closing(client):
        engine_os = str(client.info().get("OSType", "linux"))
        if engine_os != platform.os:
            skipped(f"the engine at {engine_address(engine)} runs {engine_os} containers, not {platform.os} ones")
            return None
        import docker.errors

        try:
            with open(archive, "rb") as data:
                client.images.load(data)
        except docker.errors.DockerException as exc:
            raise StepFailed(f"docker load of {archive} into {engine_address(engine)} failed: {exc}") from None
    return engine_address(engine)


_NOT_LOCAL = "not a local engine"


def _local_engine_for(platform: Platform, engine: str) -> tuple[str, str] | str:
    """(socket path, address) of the local engine (a unix socket) that runs ``platform``'s OS; else why not."""
    import json

    try:
        socket_path = _local_socket(engine)
    except EngineUnreachable as exc:  # its docker context is gone
        return str(exc)
    if socket_path is None:
        return _NOT_LOCAL
    where = f"unix://{socket_path}"  # engine_address(engine), without importing the SDK to read the context
    status, body = _unix_request(socket_path, "GET", "/info") if os.path.exists(socket_path) else (None, b"")
    if status is None:
        return f"no engine answers at {where}"
    engine_os = json.loads(body or b"{}").get("OSType", "linux") if status == 200 else f"HTTP {status}"
    if engine_os != platform.os:
        return f"the engine at {where} runs {engine_os} containers, not {platform.os} ones"
    return socket_path, where


def preload_archive(archive: Path, platform: Platform, engine: str = "") -> dict[str, str] | None:
    """Load a docker-save tar into the local engine that runs ``platform``'s OS *untagged*, beside the tests: the
    engine's share of the work (unpacking the layers) is done while Go still runs, and once the tests pass the
    publish step only points the tag at it (:func:`tag_preloaded`). Returns the engine's address and the image ID;
    None when there is no such engine or it refused (the publish step then loads the tar itself and says why)."""
    found = _local_engine_for(platform, engine)
    if isinstance(found, str):
        return None
    socket_path, where = found
    try:
        status, body = _unix_request(socket_path, "POST", "/images/load?quiet=1", _untagged(archive),
                                     {"Content-Type": "application/x-tar"}, timeout=API_TIMEOUT_S)
    except (OSError, EOFError, tarfile.TarError, ValueError, KeyError, StepFailed):  # not a tar this step wrote
        return None
    loaded = [m.group(1) for line in _json_lines(body)
              if (m := re.search(r"Loaded image ID: (sha256:[0-9a-f]{64})", str(line.get("stream", ""))))]
    if status != 200 or len(loaded) != 1:
        return None
    return {"engine": where, "id": loaded[0]}


def tag_preloaded(preloaded: dict[str, str], reference: str, engine: str = "") -> str | None:
    """Point ``reference`` at an image :func:`preload_archive` loaded, on the same engine; returns the engine's
    address, or None when that image is no longer there (or the engine moved): load the tar instead."""
    from urllib.parse import quote

    try:
        socket_path = _local_socket(engine)
    except EngineUnreachable:
        return None
    if socket_path is None or f"unix://{socket_path}" != preloaded.get("engine"):
        return None
    where = f"unix://{socket_path}"
    repository, _, name = reference.rpartition(":")
    if not repository or "/" in name:
        repository, name = reference, "latest"
    status, body = _unix_request(socket_path, "POST", f"/images/{quote(preloaded['id'], safe=':')}/tag?"
                                 f"repo={quote(repository, safe='')}&tag={quote(name, safe='')}")
    if status is None or status == 404:  # the engine is gone, or the image was removed since
        return None
    if status != 201:
        raise StepFailed(f"docker tag {preloaded['id'][:19]} {reference} on {where} failed: HTTP {status} "
                         f"{body[:200].decode('utf-8', 'replace')}")
    return where


def _untagged(archive: Path) -> Iterator[bytes]:
    """The docker-save tar ``archive`` as a stream whose ``manifest.json`` names no tags (loading it tags nothing)
    and whose app layers (each image's last) are decompressed: the engine then only unpacks them, which spares it
    the slowest part of the load. Base layers go as they are: an engine skips the layers it holds."""
    import json

    with tarfile.open(archive) as tar, open(archive, "rb") as raw:
        manifest_member = tar.getmember("manifest.json")
        handle = tar.extractfile(manifest_member)
        manifest = json.loads(handle.read(1 << 20)) if handle is not None else []
        app_layers = {entry["Layers"][-1] for entry in manifest if entry.get("Layers")}
        for member in tar.getmembers():
            if member is manifest_member:
                continue
            if member.name in app_layers:
                yield from _decompressed(tar, member)
                continue
            raw.seek(member.offset)
            remaining = member.offset_data - member.offset + member.size + (-member.size % tarfile.BLOCKSIZE)
            while remaining:
                chunk = raw.read(min(remaining, 1 << 20))
                if not chunk:
                    raise StepFailed(f"{archive}: shorter than its own headers say")
                remaining -= len(chunk)
                yield chunk
        for entry in manifest:
            entry["RepoTags"] = None
        yield from _tar_entry("manifest.json", json.dumps(manifest).encode())
        yield b"\0" * (2 * tarfile.BLOCKSIZE)


def _decompressed(tar: tarfile.TarFile, member: tarfile.TarInfo) -> Iterator[bytes]:
    """One gzipped layer of ``tar`` as a tar entry of the same name holding the plain layer (through a temporary
    file: a tar header states the size first)."""
    from isal import igzip

    source = tar.extractfile(member)
    assert source is not None
    with tempfile.TemporaryFile() as plain:
        with igzip.GzipFile(fileobj=source, mode="rb") as unpacked:
            while block := unpacked.read(1 << 20):
                plain.write(block)
        size = plain.tell()
        plain.seek(0)
        info = tarfile.TarInfo(member.name)
        info.size, info.mode = size, 0o644
        yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        while block := plain.read(1 << 20):
            yield block
        yield b"\0" * (-size % tarfile.BLOCKSIZE)


def _tar_entry(name: str, data: bytes) -> Iterator[bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    yield data + b"\0" * (-len(data) % tarfile.BLOCKSIZE)


def _unix_request(socket_path: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                  timeout: float = 5.0) -> tuple[int | None, bytes]:
    """Status and body of one HTTP request on a unix socket; (None, b"") when nothing answers there."""
    import http.client
    import socket

    class _Connection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(socket_path)

    conn = _Connection("localhost", timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    except OSError:
        return None, b""
    finally:
        conn.close()


def _json_lines(body: bytes) -> list[dict[str, Any]]:
    import json

    found = []
    for line in body.splitlines():
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict):
                found.append(value)
    return found
