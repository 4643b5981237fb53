"""Removing what wgobuild wrote: the whole output folder (``doit clean -a``), and the state folder when asked.

The output folder (``[build].out_dir``, default ``dist/``) is wgobuild's alone: config validation keeps it strictly
inside the module and away from ``.git``/``.wgobuild``, and no log folder may be in it. So cleaning removes all of
it (binaries, Dockerfiles and contexts, PowerShell scripts, OCI layouts and docker-save tars, reports), not only the
targets doit knows, and leaves no empty folders behind.

The state folder (``.wgobuild/``: doit's record of what is up to date, the dependency cache, the daemonless blob
store and base cache) is kept: it is what makes the next build fast, and it holds no output. ``wgobuild clean
--state`` removes it too.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from collections.abc import Callable
from pathlib import Path

from wgobuild.config import Config

KEPT = ("kept {state}/ (what was built and the base/blob cache: the next build is fast); "
        "`wgobuild clean --state` removes it too")


def clean(cfg: Config, state: bool = False) -> list[str]:
    """Remove everything under the output folder and the folder itself (and the state folder with ``state``);
    return the lines to print."""
    out = cfg.out_dir
    lines = []
    if out.exists():
        count = sum(1 for p in out.rglob("*") if not p.is_dir())
        _rmtree(out)
        lines.append(f"removed {_shown(out, cfg)}/ ({count} file{'s' if count != 1 else ''})")
    else:
        lines.append(f"nothing to remove: {_shown(out, cfg)}/ does not exist")
    if state:
        if cfg.state_dir.exists():
            _rmtree(cfg.state_dir)
            lines.append(f"removed {_shown(cfg.state_dir, cfg)}/ (build state and caches): the next build starts "
                         "from nothing")
    elif cfg.state_dir.exists():
        lines.append(KEPT.format(state=_shown(cfg.state_dir, cfg)))
    return lines


def _rmtree(folder: Path) -> None:
    """``shutil.rmtree`` that also removes read-only files (Windows refuses to delete those)."""

    def writable_and_again(func: Callable[[str], object], path: str, _exc: object) -> None:
        os.chmod(path, stat.S_IWRITE | stat.S_IREAD)
        func(path)

    if sys.version_info >= (3, 12):
        shutil.rmtree(folder, onexc=writable_and_again)
    else:
        shutil.rmtree(folder, onerror=writable_and_again)


def _shown(path: Path, cfg: Config) -> str:
    try:
        return path.relative_to(cfg.root).as_posix()
    except ValueError:
        return str(path)
