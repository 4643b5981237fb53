"""The team-wide build cache: step outputs stored as OCI artifacts in a registry repository (``[cache]``).

A step (one compile, the tests, one golden case) is keyed by the sha256 of its exact inputs: the content digest of
every file doit lists for it (paths relative to the module, so a clone in any folder gets the same key), its
settings (package, version stamp, flags, tags, the Go version and the output-changing environment; machine paths
such as GOROOT left out, since ``-trimpath`` keeps them out of the outputs) and the paths of its outputs. The entry
is an OCI image manifest tagged ``<step kind>-<key>`` in the cache repository: one layer per output file (its path
in ``org.opencontainers.image.title``), the key, step and creation time in its annotations. Only a step that
succeeded is stored (test and golden passes, never failures).

On a hit the step fetches instead of running: every blob is streamed to a temporary file beside its target and
checked against the digest and size of its descriptor, and the outputs replace the old ones only when all of them
check out; an entry that does not match its key or digests is refused (one line) and the step runs. A cache that
cannot be reached is said once per run and the build goes on locally without asking it again. ``mode = "read"``
never uploads (CI on untrusted branches). Nothing here runs unless a step runs: a no-op run makes no cache call.

Core module: knows nothing of doit; ``doit_tasks`` hands each step's inputs, settings and outputs to :func:`run`.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import functools
import hashlib
import io
import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wgobuild import files, proc
from wgobuild.config import Config
from wgobuild.errors import WgobuildError

ARTIFACT_TYPE = "application/vnd.wgobuild.cache.v1"
CONFIG_MEDIA = "application/vnd.wgobuild.cache.config.v1+json"
FILE_MEDIA = "application/vnd.wgobuild.cache.file.v1"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
KEY = "dev.wgobuild.cache.key"
STEP = "dev.wgobuild.cache.step"
MODE = "dev.wgobuild.cache.mode"
SIGNATURE = "dev.wgobuild.cache.signature"  # base64 ECDSA P-256 signature of the config blob ([sign] key)
TITLE = "org.opencontainers.image.title"
CREATED = "org.opencontainers.image.created"
MODE_ENV = "WGOBUILD_CACHE_MODE"
CLIENT_TIMEOUT = (3, 60)  # connect, read seconds
CLIENT_RETRIES = 2
FORMAT = 1  # part of every key: a change of what an entry holds makes new keys
_TAG = re.compile(r"(compile|test|golden)-[0-9a-f]{64}")
_MACHINE_PATHS = {"GOROOT"}  # settings that name a folder on this machine, never part of a key
_CHUNK = 1 << 20


class CacheError(WgobuildError):
    """The cache's registry failed or sent something wrong; the step runs locally instead."""


@dataclass(frozen=True)
class Step:
    """What one build step reads and writes, as doit knows it."""

    kind: str  # compile | test | golden
    name: str  # the doit task, e.g. compile:api-linux-amd64
    inputs: tuple[str, ...]  # every file the step reads (doit's file_dep)
    settings: dict[str, Any]  # everything else it depends on (doit's config_changed)
    outputs: tuple[Path, ...]  # the files it writes (doit's targets)


@dataclass(frozen=True)
class Store:
    """The cache repository: ``registry/repository`` and whether this machine may write to it."""

    registry: str
    repository: str
    mode: str = "readwrite"
    insecure: tuple[str, ...] = ()
    key: Path | None = None  # [sign] key: entries are signed with it and must verify against its .pub

    @classmethod
    def of(cls, cfg: Config) -> Store | None:
        """The configured cache, or None when ``[cache] registry`` is not set or ``WGOBUILD_CACHE_MODE=off``.

        ``WGOBUILD_CACHE_MODE`` (``readwrite``, ``read``, ``off``) overrides ``[cache] mode`` for one run: one
        ``wgobuild.toml`` for every CI job, read-only where the branch is not trusted."""
        mode = os.environ.get(MODE_ENV) or cfg.cache.mode
        if mode not in ("readwrite", "read", "off"):
            raise WgobuildError(f"{MODE_ENV}={mode[:40]!r} is not one of readwrite, read, off; fix or unset it")
        if not cfg.cache.registry or mode == "off":
            return None
        registry, _, repository = cfg.cache.registry.partition("/")
        key = cfg.root / cfg.sign.key if cfg.sign.key else None
        return cls(registry, repository, mode, tuple(cfg.image.insecure_registries), key)

    @property
    def public_key(self) -> Path | None:
        """The public key entries must verify against: ``wgobuild keygen`` writes it beside the private key."""
        return None if self.key is None else self.key.with_suffix(".pub")

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}"

    def client(self) -> Any:
        """A registry client that gives up sooner than an image push would: a local build is the fallback."""
        from wgobuild.oci.registry import Client

        client = Client(self.registry, list(self.insecure))
        client.timeout, client.retries = CLIENT_TIMEOUT, CLIENT_RETRIES
        return client


# --- keys ----------------------------------------------------------------------------------------------------------


def _relative(path: str | Path, root: Path) -> str:
    try:
        return Path(os.path.relpath(path, root)).as_posix()
    except ValueError:  # Windows: another drive than the module's
        return Path(path).as_posix()


def _portable(value: Any) -> Any:
    """``value`` without the settings that name folders on this machine."""
    if isinstance(value, dict):
        return {k: _portable(v) for k, v in sorted(value.items()) if k not in _MACHINE_PATHS}
    if isinstance(value, list | tuple):
        return [_portable(v) for v in value]
    return value


def fingerprint(root: Path, step: Step) -> str:
    """The hex sha256 of ``step``'s exact inputs: file contents by relative path, settings, outputs, kind."""
    doc = {"format": FORMAT, "kind": step.kind,
           "files": {_relative(p, root): files.sha256_file(Path(p)) for p in sorted(step.inputs)},
           "settings": _portable(step.settings),
           "outputs": sorted(_relative(p, root) for p in step.outputs)}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def tag_of(step: Step, key: str) -> str:
    return f"{step.kind}-{key}"


# --- one run's view of the cache -----------------------------------------------------------------------------------
_LOCK = threading.Lock()
_DOWN: dict[str, str] = {}  # store -> why it is not used for the rest of this run


def _give_up(store: Store, exc: Exception) -> None:
    """Say once per run that the cache is not used, and why; later steps do not ask it again."""
    with _LOCK:
        if str(store) in _DOWN:
            return
        _DOWN[str(store)] = str(exc)
    proc.echo(f"wgobuild: team cache {store} not used in this run: {exc}; building locally")


def run(cfg: Config, step: Step, build: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Run ``build(*args, **kwargs)`` for ``step``, unless the team cache holds its outputs: then fetch them.

    After a local run that succeeded the outputs are stored (``mode = "readwrite"``). A cache problem never fails
    the step: an entry that does not match is refused in one line and the step runs; any other problem (registry
    down, credentials, denied) is said once per run and the cache is not asked again in that run.
    """
    store = Store.of(cfg)
    if store is None or str(store) in _DOWN:
        build(*args, **kwargs)
        return
    try:
        key = fingerprint(cfg.root, step)
    except OSError:  # an input vanished under the run: the step itself says which, as without a cache
        build(*args, **kwargs)
        return
    try:
        if fetch(store, cfg.root, step, key):
            proc.echo(f"from the team cache {store} ({step.kind}-{key[:12]})", step.name)
            return
    except CacheError as exc:
        proc.echo(f"team cache entry refused: {exc}; running the step", step.name)
    except WgobuildError as exc:
        _give_up(store, exc)
    except OSError as exc:  # this machine's disk: the step's own outputs will say more if it persists
        proc.echo(f"team cache: cannot write the fetched outputs ({exc.strerror or exc}); running the step",
                  step.name)
    build(*args, **kwargs)
    if store.mode != "readwrite" or str(store) in _DOWN:
        return
    try:
        upload(store, cfg.root, step, key)
    except (WgobuildError, OSError) as exc:
        _give_up(store, exc)


# --- fetch -----------------------------------------------------------------------------------------------------------
def _manifest(client: Any, store: Store, tag: str) -> dict[str, Any] | None:
    from wgobuild.oci.registry import RegistryError

    try:
        data, _ = client.get_manifest(store.repository, tag)
    except RegistryError as exc:
        if exc.status == 404:
            return None
        raise
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise CacheError(f"{tag}: its manifest is not JSON") from None
    if not isinstance(doc, dict):
        raise CacheError(f"{tag}: its manifest is not a JSON object")
    return doc


def _checked_layers(doc: dict[str, Any], root: Path, step: Step, key: str, tag: str) -> list[tuple[dict[str, Any],
                                                                                                    Path]]:
    """(descriptor, target) of every output; a CacheError unless the entry is exactly this step's, with each
    output once."""
    found_annotations = doc.get("annotations")
    annotations: dict[str, Any] = found_annotations if isinstance(found_annotations, dict) else {}
    if annotations.get(KEY) != key:
        raise CacheError(f"{tag}: its key annotation is {str(annotations.get(KEY))[:70]!r}, not the step's key")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise CacheError(f"{tag}: its manifest has no layer list")
    wanted = {_relative(p, root): p for p in step.outputs}
    found: list[tuple[dict[str, Any], Path]] = []
    for layer in layers:
        title = (layer.get("annotations") or {}).get(TITLE) if isinstance(layer, dict) else None
        if (title not in wanted or not isinstance(layer.get("size"), int) or layer["size"] < 0
                or not re.fullmatch(r"sha256:[0-9a-f]{64}", str(layer.get("digest")))):
            raise CacheError(f"{tag}: layer {str(title)[:80]!r} is not one of the step's outputs with a sha256 "
                             "digest and a size")
        found.append((layer, wanted.pop(title)))
    if wanted:
        raise CacheError(f"{tag}: {sorted(wanted)[0]} is missing from the entry")
    return found


def fetch(store: Store, root: Path, step: Step, key: str) -> bool:
    """Put ``step``'s outputs in place from the cache; False on a miss. CacheError for an entry that does not
    match (the outputs are then untouched), RegistryError for a registry problem."""
    client = store.client()
    tag = tag_of(step, key)
    doc = _manifest(client, store, tag)
    if doc is None:
        return False
    layers = _checked_layers(doc, root, step, key, tag)
    if store.public_key is not None:
        _verify(client, store, store.public_key, doc, [layer for layer, _ in layers], key, tag)
    with _temporaries() as temps:
        staged: list[tuple[Path, Path, int]] = []
        for layer, target in layers:
            tmp = files.temp_path(target)
            temps.append(tmp)
            _download(client, store, layer, tmp, f"{tag}: {_relative(target, root)}")
            mode = (layer.get("annotations") or {}).get(MODE, "0644")
            staged.append((tmp, target, 0o755 if mode == "0755" else 0o644))
        for tmp, target, mode in staged:  # every output checked: now they replace the old ones
            os.chmod(tmp, mode)
            if files.same_content(tmp, target):  # keep an identical file, mtime and all (doit need not re-hash)
                continue
            os.replace(tmp, target)
    return True


@contextlib.contextmanager
def _temporaries() -> Iterator[list[Path]]:
    made: list[Path] = []
    try:
        yield made
    finally:
        for path in made:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _signed_document(key: str, step: Step, layers: list[dict[str, Any]]) -> bytes:
    """The config blob: what a signature covers (the key, and every output's path, digest, size and mode)."""
    return canonical({"format": FORMAT, "step": step.name, "key": key, "layers": [
        {"title": layer["annotations"][TITLE], "digest": layer["digest"], "size": layer["size"],
         "mode": layer["annotations"].get(MODE, "0644")} for layer in layers]})


def _verify(client: Any, store: Store, public_key: Path, doc: dict[str, Any], layers: list[dict[str, Any]],
            key: str, tag: str) -> None:
    """CacheError unless the entry's config blob is signed by the ``[sign]`` key and lists exactly ``layers``."""
    from wgobuild import signing

    public = _public(public_key)
    found = doc.get("config")
    config: dict[str, Any] = found if isinstance(found, dict) else {}
    signature = (doc.get("annotations") or {}).get(SIGNATURE)
    if not isinstance(signature, str) or not re.fullmatch(r"sha256:[0-9a-f]{64}", str(config.get("digest"))):
        raise CacheError(f"{tag}: not signed, and [sign] key is set: only entries signed with it are used")
    data = _small_blob(client, store, str(config["digest"]), f"{tag}: its signed contents")
    try:
        raw = base64.b64decode(signature, validate=True)
    except ValueError:
        raw = b""
    if not signing.verify_signature(public, raw, data):
        raise CacheError(f"{tag}: its signature does not verify against {public_key.name}")
    try:
        signed = json.loads(data)
    except (ValueError, RecursionError):
        signed = None
    wanted = json.loads(_signed_document(key, Step("", "", (), {}, ()), layers))
    if not isinstance(signed, dict) or signed.get("key") != key or signed.get("layers") != wanted["layers"]:
        raise CacheError(f"{tag}: the signed contents list other outputs than its manifest")


def _small_blob(client: Any, store: Store, digest: str, what: str, limit: int = 1 << 20) -> bytes:
    """A small blob (at most ``limit`` bytes), CacheError unless it has ``digest``."""
    import urllib3

    response = client.open_blob(store.repository, digest)
    with response:
        response.raw.decode_content = True
        try:
            data: bytes = response.raw.read(limit + 1)
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            raise CacheError(f"{what}: the download broke off ({type(exc).__name__})") from None
    if len(data) > limit or f"sha256:{hashlib.sha256(data).hexdigest()}" != digest:
        raise CacheError(f"{what}: not the blob {digest[:23]}… it names")
    return data


_KEYS: dict[Path, Any] = {}  # public keys and signers, loaded once per run


def _public(path: Path) -> Any:
    from wgobuild import signing

    with _LOCK:
        if path not in _KEYS:
            _KEYS[path] = signing.load_public(path)
        return _KEYS[path]


def _signer(path: Path) -> Any:
    """The ``[sign]`` private key, decrypted once per run (password from WGOBUILD_SIGNING_PASSWORD)."""
    from wgobuild import signing

    with _LOCK:
        if path not in _KEYS:
            _KEYS[path] = signing.Signer.load(path)
        return _KEYS[path]


def _download(client: Any, store: Store, layer: dict[str, Any], tmp: Path, what: str) -> None:
    """Stream one blob into ``tmp``; CacheError unless it has exactly the descriptor's size and digest."""
    import urllib3

    size, digest = int(layer["size"]), str(layer["digest"])
    hasher, have = hashlib.sha256(), 0
    response = client.open_blob(store.repository, digest)
    with response, open(tmp, "wb") as handle:
        response.raw.decode_content = True
        while have <= size:
            try:
                block = response.raw.read(min(_CHUNK, size + 1 - have))
            except (OSError, urllib3.exceptions.HTTPError) as exc:  # reset, read timeout, short body
                raise CacheError(f"{what}: the download broke off ({type(exc).__name__})") from None
            if not block:
                break
            hasher.update(block)
            handle.write(block)
            have += len(block)
    if have != size:
        raise CacheError(f"{what}: {'more' if have > size else have} bytes where the entry declares {size}")
    if f"sha256:{hasher.hexdigest()}" != digest:
        raise CacheError(f"{what}: the content's digest is sha256:{hasher.hexdigest()[:16]}…, the entry says "
                         f"{digest[:23]}…")


# --- upload -----------------------------------------------------------------------------------------------------------
def canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def upload(store: Store, root: Path, step: Step, key: str, now: datetime.datetime | None = None) -> str:
    """Store ``step``'s outputs under its key; returns the tag. Blobs the registry has are not sent again."""
    client = store.client()
    repo = store.repository
    blobs: list[tuple[str, Callable[[], Any]]] = []
    layers = []
    for path in sorted(step.outputs, key=lambda p: _relative(p, root)):
        digest, size = f"sha256:{files.sha256_file(path)}", path.stat().st_size
        mode = "0755" if os.access(path, os.X_OK) or path.suffix == ".exe" else "0644"
        layers.append({"mediaType": FILE_MEDIA, "digest": digest, "size": size,
                       "annotations": {TITLE: _relative(path, root), MODE: mode}})
        blobs.append((digest, functools.partial(open, path, "rb")))  # the client opens and closes it
    config = _signed_document(key, step, layers)
    blobs.insert(0, (f"sha256:{hashlib.sha256(config).hexdigest()}", lambda: io.BytesIO(config)))
    annotations = {KEY: key, STEP: step.name}
    if store.key is not None:
        annotations[SIGNATURE] = base64.b64encode(_signer(store.key).sign(config)).decode()
    for digest, opener in blobs:
        if not client.blob_exists(repo, digest):
            client.upload_blob(repo, digest, opener)
    created = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": ARTIFACT_TYPE,
                "config": {"mediaType": CONFIG_MEDIA, "digest": blobs[0][0], "size": len(config)},
                "layers": layers, "annotations": {**annotations, CREATED: created}}
    tag = tag_of(step, key)
    client.put_manifest(repo, tag, canonical(manifest), OCI_MANIFEST)
    return tag


# --- retention -----------------------------------------------------------------------------------------------------
_AGE = re.compile(r"(\d{1,6})([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> datetime.timedelta:
    """``30d``, ``12h``, ``2w`` ... as a timedelta; ValueError naming the form otherwise."""
    match = _AGE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not an age: use a number and a unit (s, m, h, d, w), such as 30d")
    return datetime.timedelta(seconds=int(match.group(1)) * _UNIT[match.group(2)])


@dataclass(frozen=True)
class Pruned:
    removed: list[str]
    kept: int


def prune(store: Store, older_than: datetime.timedelta, now: datetime.datetime | None = None,
          on_entry: Callable[[str], None] | None = None) -> Pruned:
    """Delete every cache entry created more than ``older_than`` ago (tags ``<kind>-<key>`` only: other tags in
    the repository are left alone). The registry frees their blobs at its next garbage collection."""
    from wgobuild.oci.manifest import digest_of

    client = store.client()
    limit = (now or datetime.datetime.now(datetime.UTC)) - older_than
    removed: list[str] = []
    kept = 0
    for tag in _entries(client.tags(store.repository)):
        data, _ = client.get_manifest(store.repository, tag)
        try:
            created = datetime.datetime.strptime(json.loads(data)["annotations"][CREATED], "%Y-%m-%dT%H:%M:%SZ")
        except (ValueError, KeyError, TypeError):
            created = datetime.datetime.min  # not an entry wgobuild wrote whole: old by definition
        if created.replace(tzinfo=datetime.UTC) >= limit:
            kept += 1
            continue
        client.delete_manifest(store.repository, digest_of(data))
        removed.append(tag)
        if on_entry is not None:
            on_entry(tag)
    return Pruned(removed, kept)


def _entries(tags: Iterable[str]) -> list[str]:
    return sorted(t for t in tags if _TAG.fullmatch(t))
