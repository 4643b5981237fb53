"""Shared by the invoke task modules: config with flag overrides, and one plain message per WgobuildError."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

from invoke.exceptions import Exit

from wgobuild import config as config_mod
from wgobuild.errors import ConfigError, WgobuildError


def plain_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a WgobuildError into ``error: <message>`` and its exit code (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except WgobuildError as exc:
            raise Exit(f"error: {exc}", code=exc.exit_code) from None

    return wrapper


def number(flag: str, text: str | None, kind: type = int) -> Any:
    """A flag's numeric value (None when the flag was not given); a bad one is reported under the flag."""
    if text is None:
        return None
    try:
        return kind(text)
    except ValueError:
        what = "whole number" if kind is int else "number"
        raise ConfigError("command line", flag, f"{text!r} is not a {what}") from None


def load_config(root: str = ".", config: str | None = None, *,
                validate: Callable[[config_mod.Config], object] | None = None,
                **overrides: dict[str, tuple[str, Any]]) -> config_mod.Config:
    """Load ``wgobuild.toml`` and apply flag overrides given as ``section={field: (flag, value)}``.

    Flags not given (None) are skipped. Overridden sections are checked like the file's values (and by
    ``validate``); a bad override is reported under its flag, not under the TOML key it replaces.
    """
    cfg = config_mod.load(root, config)
    for section, changes in overrides.items():
        given = {name: fv for name, fv in changes.items() if fv[1] is not None}
        if not given:
            continue
        old = getattr(cfg, section)
        try:  # the same types and bounds as a value in the file (a 5,000-digit --retries is refused here)
            values = {name: config_mod.check_field(type(old), name, value, f"[{section}].{name}", cfg.path)
                      for name, (_, value) in given.items()}
        except ConfigError as exc:
            flag = next(flag for name, (flag, _) in given.items() if exc.key.startswith(f"[{section}].{name}"))
            raise ConfigError("command line", flag, exc.problem) from None
        new = dataclasses.replace(old, **values)
        cfg = dataclasses.replace(cfg, **{section: new})
        try:
            new.check(f"[{section}]", cfg.path)
            if validate is not None:
                validate(cfg)
        except ConfigError as exc:
            for name, (flag, _) in given.items():
                prefix = f"[{section}].{name}"
                if exc.key.startswith(prefix):
                    raise ConfigError("command line", flag + exc.key[len(prefix):], exc.problem) from None
            raise
    return cfg
