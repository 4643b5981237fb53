"""What the service fixtures share."""

from __future__ import annotations

import os

import pytest


def service_missing(what: str) -> None:
    """A service a test needs is missing: fail under CI=true (every service must be there), else skip, saying why."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} needed and not available (CI=true)", pytrace=False)
    pytest.skip(f"{what} not available")
