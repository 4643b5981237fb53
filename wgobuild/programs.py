"""Find the programs wgobuild runs (go, git, docker, PowerShell) only in places an admin controls.

Why not :func:`shutil.which`: on Windows it searches the current folder before PATH, so a ``go.bat`` or
``powershell.bat`` in a checkout would run when an admin runs ``invoke harden`` elevated from it; on every OS an
empty or relative PATH entry means "relative to the current folder". Here only absolute PATH entries are searched
(on Windows: with a drive letter, no network share), never the current folder; on Windows only ``.exe`` and ``.com``
files count (never ``.bat``/``.cmd``, which cmd.exe would interpret); Windows PowerShell 5.1 is taken only from
``%SystemRoot%\\System32\\WindowsPowerShell\\v1.0``. The OS and environment are parameters so the Windows rules are
tested on any OS.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import PurePosixPath, PureWindowsPath

WINDOWS_EXTENSIONS = (".exe", ".com")


def _windows_absolute(entry: str) -> bool:
    path = PureWindowsPath(entry)
    return len(path.drive) == 2 and path.drive[1] == ":" and path.root == "\\"


def trusted_dirs(env: Mapping[str, str], os_name: str) -> list[str]:
    """The PATH entries that may be searched: absolute ones only, in order, without repeats."""
    sep = ";" if os_name == "nt" else ":"
    out: list[str] = []
    for raw in env.get("PATH", "").split(sep):
        entry = raw.strip().strip('"') if os_name == "nt" else raw
        absolute = _windows_absolute(entry) if os_name == "nt" else PurePosixPath(entry).is_absolute()
        if absolute and entry not in out:
            out.append(entry)
    return out


def find_program(name: str, *, os_name: str | None = None, env: Mapping[str, str] | None = None,
                 is_file: Callable[[str], bool] | None = None) -> str | None:
    """The full path of program ``name`` (``go``, ``git``, ``pwsh``...) or None; see the module doc for the rules.

    ``name`` may also be an absolute path (``$WGOBUILD_GO``): it is returned when it is a file. A relative path
    (``bin/go``, ``.\\go.exe``) is never resolved against the current folder.
    """
    os_name = os_name or os.name
    env = os.environ if env is None else env
    is_file = is_file or _is_executable_file
    windows = os_name == "nt"
    if ("\\" in name or "/" in name) if windows else "/" in name:
        absolute = _windows_absolute(name) if windows else PurePosixPath(name).is_absolute()
        return name if absolute and is_file(name) else None
    if windows:
        suffix = PureWindowsPath(name).suffix.lower()
        names = [name] if suffix in WINDOWS_EXTENSIONS else [name + ext for ext in WINDOWS_EXTENSIONS]
        if suffix and suffix not in WINDOWS_EXTENSIONS:
            return None  # go.bat, go.cmd, go.ps1: never run through an interpreter by name
        if name.lower() in ("powershell", "powershell.exe"):
            return windows_powershell(env, is_file)
    else:
        names = [name]
    for folder in trusted_dirs(env, os_name):
        for candidate in names:
            path = str(PureWindowsPath(folder) / candidate) if windows else str(PurePosixPath(folder) / candidate)
            if is_file(path):
                return path
    return None


def windows_powershell(env: Mapping[str, str], is_file: Callable[[str], bool] | None = None) -> str | None:
    """``%SystemRoot%\\System32\\WindowsPowerShell\\v1.0\\powershell.exe`` when it exists (SystemRoot must be an
    absolute local folder), else None: Windows PowerShell is never taken from PATH."""
    is_file = is_file or _is_executable_file
    root = env.get("SystemRoot") or env.get("SYSTEMROOT") or "C:\\Windows"
    if not _windows_absolute(root):
        return None
    path = str(PureWindowsPath(root) / "System32" / "WindowsPowerShell" / "v1.0" / "powershell.exe")
    return path if is_file(path) else None


def _is_executable_file(path: str) -> bool:
    return os.path.isfile(path) and (os.name == "nt" or os.access(path, os.X_OK))
