"""Shared by the invoke task modules: a WgobuildError ends a task with one plain message and its exit code."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from invoke.exceptions import Exit

from wgobuild.errors import WgobuildError


def plain_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a WgobuildError into ``error: <message>`` and its exit code (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except WgobuildError as exc:
            raise Exit(f"error: {exc}", code=exc.exit_code) from None

    return wrapper
