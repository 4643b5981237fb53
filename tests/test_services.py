"""A missing service fails the run under CI=true and is skipped (with the reason) elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.mark.parametrize(("ci", "outcome"), [("true", "1 failed"), ("", "1 skipped")])
def test_missing_service_fails_in_ci_and_skips_elsewhere(tmp_path: Path, ci: str, outcome: str) -> None:
    (tmp_path / "test_needs_service.py").write_text(
        "from services import service_missing\n\n"
        "def test_needs_it():\n    service_missing('imaginary-service (apt-get install nothing)')\n")
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(HERE)}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--rootdir",
                             str(tmp_path), str(tmp_path)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert outcome in result.stdout, result.stdout
    assert "imaginary-service" in result.stdout
