"""The image-backend interface shared by the Docker Engine backend and the daemonless OCI backend.

Like ko's ``build``/``publish`` split: a backend turns one platform's compiled binaries into an image
(:meth:`ImageBackend.build`), and says up front whether it can build that platform here
(:meth:`ImageBackend.unavailable`). Selection by ``image.backend`` (``auto`` = engine when it can build the
target, else oci) lives in :func:`wgobuild.imaging.choose_backend`: this module imports no backend, so both
backends can import it without a cycle.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from wgobuild import files
from wgobuild.config import Config, Platform
from wgobuild.errors import WgobuildError


@dataclass(frozen=True)
class ImageRequest:
    """Everything a backend needs to build one platform's image."""

    config: Config
    platform: Platform
    binaries: dict[str, Path]  # binary name -> compiled file for this platform; the first is the entrypoint
    reference: str  # repository:tag this platform's image gets
    version: str  # resolved project version (git describe or literal)
    push: bool = False  # it will be pushed: a backend may take it from the repository when that holds it already

    @property
    def entry_binary(self) -> str:
        return next(iter(self.binaries))


@dataclass
class LayerInfo:
    digest: str
    size: int
    from_base: bool


@dataclass
class ImageResult:
    """What a backend built: recorded in ``dist/images/<platform>.json`` and in ``images.json``."""

    backend: str
    platform: str
    reference: str
    digest: str  # manifest digest (oci) or image ID (engine)
    size: int
    layers: list[LayerInfo] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def base_size(self) -> int:
        return sum(layer.size for layer in self.layers if layer.from_base)

    @property
    def app_size(self) -> int:
        return sum(layer.size for layer in self.layers if not layer.from_base)

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["base_size"], data["app_size"] = self.base_size, self.app_size
        return data

    def save(self, path: Path) -> None:
        files.write_text(path, json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> ImageResult:
        data = json.loads(path.read_text(encoding="utf-8"))
        data.pop("base_size", None)
        data.pop("app_size", None)
        data["layers"] = [LayerInfo(**layer) for layer in data.get("layers", [])]
        return cls(**data)


class ImageBackend(Protocol):
    name: str

    def unavailable(self, platform: Platform) -> str | None:
        """``None`` when this backend can build ``platform`` here, else one line saying why and what to do."""

    def build(self, request: ImageRequest) -> ImageResult:
        """Build (and tag) the image of one platform."""


def source_date_epoch() -> int | None:
    """``SOURCE_DATE_EPOCH`` as an int (reproducible timestamps), None when unset; a bad value is an error."""
    text = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not text:
        return None
    if not text.isdigit():
        raise WgobuildError(f"SOURCE_DATE_EPOCH={text!r} must be a number of seconds since 1970-01-01")
    return int(text)


def rfc3339(epoch: int | None) -> str:
    """``epoch`` (now when None) as the UTC timestamp image configs and labels use."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def image_reference(config: Config, version: str, platform: Platform | None = None) -> str:
    """``repository:tag``; per-platform references get ``-<os>-<arch>[-<build>]`` appended to the tag."""
    tag = config.image.tag or version
    if platform is not None and len(config.platforms) > 1:
        tag = f"{tag}-{platform.key}"
    return f"{config.image_repository}:{tag}"
