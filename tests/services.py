"""What the service fixtures share, and the rule that a skip under ``CI=true`` is a failure.

Under ``CI=true`` every service must be there (:func:`service_missing` fails), and any other skip fails the run too,
unless its reason is a host condition named in :data:`HOST_CONDITIONS` (a test that cannot run on this OS at all).
This module is a pytest plugin (``conftest.py`` loads it) so the rule holds for every test in the suite.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

# The only skips CI accepts: conditions of the host OS that no installed package can change. A reason is matched
# exactly (the text after "Skipped: ").
HOST_CONDITIONS: tuple[str, ...] = (
    "reads the peak from /proc (Linux)",
    "SIGINT to another process is POSIX; Windows delivers Ctrl-C to a console",
    "this OS has no CPU affinity in psutil (macOS)",
    "tests/run.sh is a bash script (CI runs it on Debian)",
    "the stand-in engine listens on a unix socket",
    "the context points at a unix socket",
    "POSIX modes and owners; Windows relies on the module's ACL",
)


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def service_missing(what: str) -> None:
    """A service a test needs is missing: fail under CI=true (every service must be there), else skip, saying why."""
    if in_ci():
        pytest.fail(f"{what} needed and not available (CI=true)", pytrace=False)
    pytest.skip(f"{what} not available")


def skip_reason(report: pytest.TestReport) -> str:
    """The reason a skipped report gives (pytest stores ``(path, line, "Skipped: reason")``)."""
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return text.removeprefix("Skipped: ")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    """Under CI=true turn a skip into a failure unless its reason is one of :data:`HOST_CONDITIONS`."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if not (in_ci() and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = skip_reason(report)
    if reason in HOST_CONDITIONS:
        return
    report.outcome = "failed"
    report.longrepr = (f"skipped under CI=true: {reason!r}. CI runs every test: install what it needs, or, if it is "
                       "a condition of the host OS, add the reason to HOST_CONDITIONS in tests/services.py")
