"""The image-backend interface's shared parts: result records, image references, reproducible timestamps."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_imaging import result

from wgobuild.errors import WgobuildError
from wgobuild.image import ImageResult, rfc3339, source_date_epoch


def test_record_round_trip_and_shares(tmp_path: Path) -> None:
    built = result(tmp_path)
    built.save(tmp_path / "rec.json")
    loaded = ImageResult.load(tmp_path / "rec.json")
    assert loaded == built
    assert (loaded.base_size, loaded.app_size) == (2000, 1000)


def test_source_date_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    assert source_date_epoch() is None
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert source_date_epoch() == 1700000000
    assert rfc3339(1700000000) == "2023-11-14T22:13:20Z"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "last tuesday")
    with pytest.raises(WgobuildError) as caught:
        source_date_epoch()
    assert str(caught.value) == "SOURCE_DATE_EPOCH='last tuesday' must be a number of seconds since 1970-01-01"
