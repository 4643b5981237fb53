"""The image step's records: what was built, what could not be, and whether it is still there."""

from __future__ import annotations

from pathlib import Path

from wgobuild import imaging
from wgobuild.image import ImageResult, LayerInfo


def result(tmp_path: Path, backend: str = "oci") -> ImageResult:
    layout = tmp_path / "layout"
    layout.mkdir(exist_ok=True)
    return ImageResult(backend=backend, platform="linux/amd64", reference="hello:1-linux-amd64",
                       digest="sha256:" + "a" * 64, size=3000,
                       layers=[LayerInfo("sha256:" + "b" * 64, 2000, True),
                               LayerInfo("sha256:" + "c" * 64, 1000, False)],
                       outputs=[str(layout)])


def test_still_present_follows_the_outputs(tmp_path: Path) -> None:
    record = tmp_path / "rec.json"
    assert not imaging.still_present(record), "no record: build"
    result(tmp_path).save(record)
    assert imaging.still_present(record)
    (tmp_path / "layout").rmdir()
    assert not imaging.still_present(record), "an output was deleted: build again"
    record.write_text("{not json")
    assert not imaging.still_present(record)


def test_size_table_shows_base_and_app_and_what_was_not_built(tmp_path: Path) -> None:
    unbuilt = ImageResult("none", "windows/amd64", "", "", 0, extra={"unavailable": "no Windows engine"})
    lines = imaging.size_table([result(tmp_path), unbuilt]).splitlines()
    assert lines[0].split() == ["platform", "backend", "image", "size", "base", "app"]
    assert lines[1].split()[:3] == ["linux/amd64", "oci", "hello:1-linux-amd64"]
    assert "2.0 KiB" in lines[1] and "1000 B" in lines[1]
    assert lines[2] == "windows/amd64: not built: no Windows engine"
    assert "doit forget image-platform" in lines[3]
