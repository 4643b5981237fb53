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


SKIPPING_TESTS = (
    "import pytest\n\n"
    "def test_skips_for_no_host_reason():\n    pytest.skip('the network is slow today')\n\n"
    "def test_skips_for_a_host_condition():\n    pytest.skip('reads the peak from /proc (Linux)')\n\n"
    "@pytest.mark.skipif(True, reason='made up')\ndef test_marked():\n    pass\n"
)


@pytest.mark.parametrize(("ci", "outcome"), [("true", "1 failed, 1 skipped, 1 error"), ("", "3 skipped")])
def test_a_skip_fails_under_ci_unless_it_is_a_host_condition(tmp_path: Path, ci: str, outcome: str) -> None:
    (tmp_path / "test_skips.py").write_text(SKIPPING_TESTS)
    env = {**os.environ, "CI": ci, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", "-p", "services",
                             "--rootdir", str(tmp_path), str(tmp_path)], capture_output=True, text=True, env=env,
                            cwd=tmp_path)
    assert outcome in result.stdout, result.stdout
    if ci:
        assert ("FAILED test_skips.py::test_skips_for_no_host_reason - skipped under CI=true: 'the network is slow "
                "today'. CI runs every test") in result.stdout
        # A skip mark acts at set-up, so pytest reports it as an error: the run fails all the same.
        assert "ERROR test_skips.py::test_marked - skipped under CI=true: 'made up'" in result.stdout
        assert "SKIPPED [1] test_skips.py:7: reads the peak from /proc (Linux)" in result.stdout


def test_children_import_the_checkout_under_test(tmp_path: Path) -> None:
    """The session check passes here and refuses a PYTHONPATH that leads a child python to another wgobuild."""
    from conftest import REPO, check_checkout, child_wgobuild

    assert child_wgobuild(os.environ).is_relative_to(REPO)
    other = tmp_path / "other-clone"
    (other / "wgobuild").mkdir(parents=True)
    (other / "wgobuild" / "__init__.py").write_text("")
    with pytest.raises(RuntimeError) as caught:
        check_checkout({**os.environ, "PYTHONPATH": str(other)})
    assert str(caught.value) == (f"a child python imports wgobuild from {other.resolve()}/wgobuild/__init__.py, not "
                                 f"from the checkout under test {REPO}: unset PYTHONPATH entries that point at "
                                 "another clone")
