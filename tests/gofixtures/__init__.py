"""Small stdlib-only Go programs that misbehave on purpose (crash, leak, ignore SIGTERM, spawn children).

``build(out_dir, platform)`` compiles all of them with the real toolchain in one ``go build`` call.
"""

from __future__ import annotations

import os
from pathlib import Path

from wgobuild import gotool, proc
from wgobuild.config import Platform

HERE = Path(__file__).parent
NAMES = ("crasher", "grower", "ignoreterm", "spawner")


def build(out_dir: Path, platform: Platform | None = None) -> dict[str, Path]:
    """Build every fixture into ``out_dir``; return name -> executable path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    env = gotool.go_env_vars(platform)
    proc.run(
        [gotool.find_go(), "build", "-trimpath", "-o", str(out_dir) + "/", *(f"./{n}" for n in NAMES)],
        env=env, cwd=HERE, quiet=True, check=True, step="build Go fixtures", timeout=300,
    )
    suffix = platform.exe_suffix if platform else (".exe" if os.name == "nt" else "")
    return {n: out_dir / f"{n}{suffix}" for n in NAMES}
