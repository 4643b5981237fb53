"""What enters an image is checked before it ships: the DLLs each Windows executable imports must exist in the
runtime it will run on.

A plain Go binary imports kernel32.dll alone (the runtime loads the rest itself, by name, and copes when one is
missing); a cgo binary built with mingw-w64 also imports the C runtime and, depending on how it was linked,
libgcc_s_seh-1.dll or libwinpthread-1.dll, which no Windows image has. Such an image starts and dies at once with
"The code execution cannot proceed because X.dll was not found" (exit 0xC0000135): here it fails the image step
instead, naming the DLL and what to do. The list of what nanoserver holds is :data:`NANOSERVER_DLLS`
(docs/supply-chain.md).
"""

from __future__ import annotations

from pathlib import Path

from wgobuild.errors import StepFailed

# System32 DLLs of mcr.microsoft.com/windows/nanoserver (ltsc2019, ltsc2022) that executables import. API sets
# (api-ms-win-*, ext-ms-win-*) are resolved by the loader and count as present.
NANOSERVER_DLLS = frozenset({
    "advapi32.dll", "bcrypt.dll", "bcryptprimitives.dll", "cfgmgr32.dll", "combase.dll", "crypt32.dll",
    "cryptbase.dll", "dbghelp.dll", "dnsapi.dll", "iphlpapi.dll", "kernel32.dll", "kernelbase.dll", "msvcrt.dll",
    "mswsock.dll", "ncrypt.dll", "netapi32.dll", "normaliz.dll", "ntdll.dll", "ole32.dll", "oleaut32.dll",
    "powrprof.dll", "psapi.dll", "rpcrt4.dll", "sechost.dll", "secur32.dll", "setupapi.dll", "shlwapi.dll",
    "sspicli.dll", "ucrtbase.dll", "userenv.dll", "version.dll", "winhttp.dll", "winmm.dll", "ws2_32.dll",
    "wtsapi32.dll",
})
# Runtime DLLs of a C/C++ toolchain: no Windows image ships them, servercore included.
TOOLCHAIN_DLLS = ("libgcc_s_", "libwinpthread", "libstdc++", "libgomp", "libssp", "vcruntime", "msvcp", "concrt",
                  "vccorlib")
_API_SETS = ("api-ms-win-", "ext-ms-win-")


def imported_dlls(exe: Path) -> list[str]:
    """The DLLs ``exe`` imports (import and delay-import tables), lower case, sorted; a file that is not a PE
    executable fails naming it."""
    import pefile  # type: ignore[import-untyped]  # imported here: only Windows image steps load it

    try:
        pe = pefile.PE(str(exe), fast_load=True)
    except (OSError, pefile.PEFormatError) as exc:
        raise StepFailed(f"{exe}: cannot read it as a Windows executable: {exc}") from None
    try:
        pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_IMPORT"],
                                               pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_DELAY_IMPORT"]])
        entries = [*getattr(pe, "DIRECTORY_ENTRY_IMPORT", []), *getattr(pe, "DIRECTORY_ENTRY_DELAY_IMPORT", [])]
        return sorted({entry.dll.decode("ascii", "replace").lower() for entry in entries})
    finally:
        pe.close()


def missing_dlls(imports: list[str], runtime: str, available: frozenset[str] | None = None) -> list[str]:
    """The DLLs of ``imports`` the runtime lacks. ``available``: the base's own System32 (lower-case names) when
    known; else nanoserver's list, or for servercore (a full Windows) only the toolchain runtimes it lacks."""
    missing = []
    for dll in imports:
        if dll.startswith(_API_SETS):
            continue
        if available is not None:
            absent = dll not in available
        elif runtime == "servercore":
            absent = dll.startswith(TOOLCHAIN_DLLS)
        else:
            absent = dll not in NANOSERVER_DLLS
        if absent:
            missing.append(dll)
    return missing


def check_windows_binaries(binaries: dict[str, Path], runtime: str, platform: str,
                           available: frozenset[str] | None = None) -> dict[str, list[str]]:
    """Each binary's imported DLLs; :class:`StepFailed` naming every DLL the ``runtime`` image lacks and what to
    do, before any image is built."""
    imports = {name: imported_dlls(path) for name, path in binaries.items()}
    problems = [f"{binaries[name].name} imports {', '.join(missing)}"
                for name, dlls in imports.items() if (missing := missing_dlls(dlls, runtime, available))]
    if problems:
        where = "the base image's System32" if available is not None else runtime
        raise StepFailed(
            f"image {platform}: " + "; ".join(problems) + f", which {where} does not have: the container would "
            "exit at once with 0xC0000135 (DLL not found). Build without cgo ([build] cgo = false), link the C "
            "runtime statically (e.g. CGO_LDFLAGS='-static'), or use image.runtime = 'servercore' when the DLL "
            "is a Windows one")
    return imports
