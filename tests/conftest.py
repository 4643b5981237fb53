"""Shared pytest set-up: service fixtures live in their own plugin modules, one per service.

Every child Python the suite starts (doit, invoke, ``python -c``) must import this checkout, not another editable
install: ``PYTHONPATH`` puts the repository first for the whole session, and the session refuses to start when a
child still imports wgobuild from somewhere else.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

sys.path.insert(0, str(HERE))
# The Ctrl-C tests need SIGINT delivered, here and in every child (an ignored signal stays ignored across exec).
# A harness may start the suite with SIGINT ignored, as a shell without job control starts a background job.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])

pytest_plugins = ["services", "fixtures_go", "fixtures_docker", "fixtures_registry"]


def child_wgobuild(env: Mapping[str, str]) -> Path:
    """Where a child ``python`` started with ``env`` (from a folder outside the repository) imports wgobuild from."""
    from wgobuild import proc

    with tempfile.TemporaryDirectory() as elsewhere:
        result = proc.run([sys.executable, "-c", "import wgobuild; print(wgobuild.__file__)"], env=env,
                          cwd=elsewhere, quiet=True, check=True, step="import wgobuild in a child python")
    return Path(result.output.strip().splitlines()[-1]).resolve()


def check_checkout(env: Mapping[str, str]) -> None:
    """Raise RuntimeError when a child python with ``env`` imports a wgobuild outside this repository."""
    found = child_wgobuild(env)
    if not found.is_relative_to(REPO):
        raise RuntimeError(f"a child python imports wgobuild from {found}, not from the checkout under test {REPO}: "
                           "unset PYTHONPATH entries that point at another clone")


def pytest_sessionstart(session: pytest.Session) -> None:
    try:
        check_checkout(os.environ)
    except RuntimeError as exc:
        pytest.exit(str(exc), returncode=3)
