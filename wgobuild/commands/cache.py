"""``wgobuild cache prune --older-than 30d``: delete the team cache's entries older than an age."""

from __future__ import annotations

import sys
from pathlib import Path

from wgobuild import config, teamcache
from wgobuild.errors import ConfigError


def prune(root: Path, older_than: str) -> int:
    """Remove the entries of ``[cache] registry`` created more than ``older_than`` ago; 2 for a bad age or no
    cache configured."""
    try:
        age = teamcache.parse_age(older_than)
    except ValueError as exc:
        print(f"wgobuild: cache prune --older-than: {exc}", file=sys.stderr)
        return 2
    cfg = config.load(root)
    store = teamcache.Store.of(cfg)
    if store is None:
        raise ConfigError(cfg.path, "[cache].registry", "not set: name the cache repository (host[:port]/repository) "
                          "whose entries to prune")
    result = teamcache.prune(store, age, on_entry=lambda tag: print(f"removed {tag}", flush=True))
    count = len(result.removed)
    print(f"{store}: {count} entr{'y' if count == 1 else 'ies'} removed, {result.kept} kept; the registry frees "
          "their blobs at its next garbage collection")
    return 0
