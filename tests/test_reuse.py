"""Skip what the registry already has (wgobuild/oci/reuse.py): a clone in another folder with empty state, pushing
the same inputs to the same repository, takes each platform's image from there instead of building it; the digests
match byte for byte; a changed input, a run that does not push and a tampered marker all build."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests
from fixtures_go import copy_hello, run_doit
from fixtures_registry import repository_tags as tags

from wgobuild.oci import manifest as mf
from wgobuild.oci import reuse

TAKEN = "already holds this image, built from the same inputs"


def clone(root: Path, seeded_bases: Any, repository: str) -> Path:
    module = copy_hello(root, backend='"oci"', windows_base=f'"{seeded_bases.windows}"')
    toml = module / "wgobuild.toml"
    toml.write_text(toml.read_text().replace("[image]\n", f'[image]\nrepository = "{repository}"\ntag = "v1"\n'))
    return module


def images(root: Path) -> dict[str, str]:
    summary = json.loads((root / "dist/reports/images.json").read_text())
    return {i["platform"]: i["digest"] for i in summary["images"]}


def built_layers(root: Path) -> list[Path]:
    folder = root / ".wgobuild" / "oci" / "layers"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def test_a_pushed_image_is_taken_from_the_repository_by_a_clone_with_the_same_inputs(
        tmp_path: Path, seeded_bases: Any) -> None:
    registry = seeded_bases.registry
    repository = f"{registry.host}/reuse/hello"
    first = clone(tmp_path / "first", seeded_bases, repository)
    pushed = run_doit(first, "image", "--push")
    assert pushed.returncode == 0, pushed.output
    assert TAKEN not in pushed.output
    markers = [t for t in tags(registry.url, "reuse/hello") if t.startswith("inputs-")]
    assert len(markers) == 2, "one marker per platform image"

    second = clone(tmp_path / "second", seeded_bases, repository)
    again = run_doit(second, "image", "--push")
    assert again.returncode == 0, again.output
    assert again.output.count(TAKEN) == 2, again.output
    assert built_layers(second) == [], "no app layer was built"
    assert images(second) == images(first)
    index = json.loads((second / "dist/images/index/oci/index.json").read_text())
    assert index["manifests"], "the local outputs are written from the fetched blobs"

    # Negative controls: a run that does not push never asks; a changed binary is built.
    third = clone(tmp_path / "third", seeded_bases, repository)
    local = run_doit(third, "image")
    assert local.returncode == 0 and TAKEN not in local.output, local.output
    assert built_layers(third), "built here"
    main = second / "main.go"
    main.write_text(main.read_text().replace("listening on", "listening at"))
    changed = run_doit(second, "image", "--push")
    assert changed.returncode == 0 and TAKEN not in changed.output, changed.output
    assert built_layers(second)


def test_a_marker_that_does_not_name_its_inputs_is_not_trusted(tmp_path: Path, seeded_bases: Any) -> None:
    registry = seeded_bases.registry
    repository = f"{registry.host}/reuse/tampered"
    first = clone(tmp_path / "first", seeded_bases, repository)
    assert run_doit(first, "image", "--push").returncode == 0
    marker = next(t for t in tags(registry.url, "reuse/tampered") if t.startswith("inputs-"))
    url = f"{registry.url}/v2/reuse/tampered/manifests/{marker}"
    doc = requests.get(url, headers={"Accept": mf.OCI_MANIFEST}, timeout=10).json()
    doc["annotations"][reuse.ANNOTATION] = "0" * 64  # points at the image, but for other inputs
    body = mf.canonical(doc)
    assert requests.put(url, data=body, headers={"Content-Type": mf.OCI_MANIFEST}, timeout=10).ok

    second = clone(tmp_path / "second", seeded_bases, repository)
    again = run_doit(second, "image", "--push")
    assert again.returncode == 0, again.output
    assert again.output.count(TAKEN) == 1, "the other platform's marker still holds"
    assert images(second) == images(first), "what is built is the same image"


def test_the_inputs_sha256_follows_the_entrypoint_and_every_binary_byte(tmp_path: Path) -> None:
    """The first binary is the image's entrypoint: swapping the order is another image, as is one changed byte;
    the same inputs in another folder are the same sha256."""
    from wgobuild import config
    from wgobuild.image import ImageRequest
    from wgobuild.oci.bases import Base

    def sha(folder: Path, order: list[str], api: bytes = b"api") -> str:
        root = copy_hello(folder)
        cfg = config.load(root)
        (root / "api").write_bytes(api)
        (root / "worker").write_bytes(b"worker")
        request = ImageRequest(cfg, cfg.platforms[0], {name: root / name for name in order}, "r:1", "1.0.0")
        return reuse.fingerprint(request, Base("scratch", "oci"), "1:1")

    first = sha(tmp_path / "a", ["api", "worker"])
    assert sha(tmp_path / "b", ["api", "worker"]) == first, "another folder, same inputs"
    assert sha(tmp_path / "c", ["worker", "api"]) != first, "another entrypoint"
    assert sha(tmp_path / "d", ["api", "worker"], b"apj") != first, "another byte"
