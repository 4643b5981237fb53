"""The few exception types the command line turns into one plain message and an exit code."""

from __future__ import annotations


class WgobuildError(Exception):
    """A failure the user can act on: printed as one message, no traceback, exit code ``exit_code``."""

    exit_code = 1


class ConfigError(WgobuildError):
    """Bad ``wgobuild.toml``: names the file and the key; exit code 2, nothing built."""

    exit_code = 2

    def __init__(self, path: object, key: str, problem: str) -> None:
        self.path = str(path)
        self.key = key
        self.problem = problem
        where = f"{self.path}: {key}: " if key else f"{self.path}: "
        super().__init__(where + problem)


class ToolMissing(WgobuildError):
    """A program wgobuild needs (go, docker, powershell) is not installed or not reachable."""


class StepFailed(WgobuildError):
    """An external step (go build, go test, a PowerShell script, a docker build) failed."""


class Interrupted(WgobuildError):
    """Ctrl-C or SIGTERM arrived: running children were stopped; the next run resumes."""

    exit_code = 130
