"""What a built Go binary says about itself, read from its bytes: it may be a Windows exe on a linux machine, so
it is never run to find out.

Go keeps function names for stack traces (the pclntab) even in stripped (``-s -w``) binaries, so a package's
functions that the linker kept are visible by name.
"""

from __future__ import annotations

from pathlib import Path

from wgobuild.errors import StepFailed

# svc.Run is what connects a process to the service control manager (kardianos/service and others call it too).
SCM_MARKER = b"golang.org/x/sys/windows/svc.Run"
_CHUNK = 1 << 20


def contains(path: Path, marker: bytes) -> bool:
    """True when ``marker`` occurs in the file (read in chunks: memory does not grow with the binary)."""
    keep = len(marker) - 1
    tail = b""
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            window = tail + block
            if marker in window:
                return True
            tail = window[-keep:] if keep else b""
    return False


def require_service_binary(candidates: list[Path]) -> Path:
    """The first existing binary of ``candidates``, refused when it cannot talk to the service control manager
    (such a service fails after about 30 s with error 1053)."""
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise StepFailed("install-service: no built Windows binary at " + " or ".join(str(p) for p in candidates)
                         + ": build it with `doit image` (or copy it to the install folder) first")
    if not contains(found, SCM_MARKER):
        raise StepFailed(f"install-service: {found} does not talk to the Windows service control manager, so the "
                         "service would fail with error 1053: call svc.Run from golang.org/x/sys/windows/svc when "
                         "svc.IsWindowsService() is true (examples/hello/service_windows.go does), or run it with "
                         "`invoke serve` instead. Nothing was changed.")
    return found
