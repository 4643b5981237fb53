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
from typing import TYPE_CHECKING

from wgobuild.errors import StepFailed

if TYPE_CHECKING:
    from wgobuild.config import Config, Platform

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

    # Read into memory, not mapped: closing pefile's map runs a full gc.collect() (milliseconds in a process
    # holding every step, with the GIL held), and an unclosed map would keep the file locked on Windows.
    try:
        pe = pefile.PE(data=exe.read_bytes(), fast_load=True)
    except (OSError, pefile.PEFormatError) as exc:
        raise StepFailed(f"{exe}: cannot read it as a Windows executable: {exc}") from None
    pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_IMPORT"],
                                           pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_DELAY_IMPORT"]])
    entries = [*getattr(pe, "DIRECTORY_ENTRY_IMPORT", []), *getattr(pe, "DIRECTORY_ENTRY_DELAY_IMPORT", [])]
    return sorted({entry.dll.decode("ascii", "replace").lower() for entry in entries})


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


# --- the base image's own System32 -------------------------------------------------------------------------------
SYSTEM32 = "files/windows/system32/"  # compared lower case: Windows paths are case-insensitive
MAX_LAYER_MEMBERS = 2_000_000  # tar members read from one base layer (nanoserver has ~10k, servercore ~100k)


def layer_system32(path: Path, cache: Path) -> tuple[frozenset[str], frozenset[str]]:
    """(DLL names added, names whited out) directly under ``Files/Windows/System32`` of one Windows layer blob,
    lower case; cached in ``cache`` (one file per layer digest: a layer never changes)."""
    import json
    import tarfile

    from wgobuild import files

    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
        return frozenset(data["dlls"]), frozenset(data["whiteouts"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    dlls: set[str] = set()
    gone: set[str] = set()
    with open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
        for count, member in enumerate(tar):
            if count >= MAX_LAYER_MEMBERS:
                raise StepFailed(f"base layer {path.name}: more than {MAX_LAYER_MEMBERS} entries")
            name = member.name.lower().lstrip("./")
            if not name.startswith(SYSTEM32) or "/" in name[len(SYSTEM32):]:
                continue
            leaf = name[len(SYSTEM32):]
            if leaf == ".wh..wh..opq":  # an opaque folder: what earlier layers put there is gone
                gone.add("*")
            elif leaf.startswith(".wh."):
                gone.add(leaf[4:])
            elif leaf.endswith(".dll") and not member.isdir():
                dlls.add(leaf)
    files.write_text(cache, json.dumps({"dlls": sorted(dlls), "whiteouts": sorted(gone)}))
    return frozenset(dlls), frozenset(gone)


def base_system32(cfg: Config, platform: Platform) -> frozenset[str] | None:
    """The DLL names in the base image's own ``Files/Windows/System32`` when the daemonless backend has its layers
    at hand (a local layout or archive, or a registry base in the blob cache; fetched first when the configured
    local outputs need every base blob anyway), else None: the documented list decides. Engine and servercore
    builds (the engine holds their base) and bases with no DLL under System32 give None too."""
    image = cfg.image
    if image.backend == "engine" or image.style == "multistage" or image.runtime == "servercore":
        return None
    import lzma
    import tarfile
    import zlib

    from wgobuild.errors import WgobuildError
    from wgobuild.oci import bases
    from wgobuild.oci.blobs import BlobStore

    store = BlobStore(cfg.state_dir)
    try:
        base = bases.resolve(cfg, platform, store)
        if image.outputs:
            base.ensure_blobs(store)
    except WgobuildError:
        return None  # the backend says what is wrong with the base when it builds
    if not base.layers or not all(store.has(layer["digest"]) for layer in base.layers):
        return None
    names: set[str] = set()
    try:
        for layer in base.layers:
            digest = str(layer["digest"])
            added, gone = layer_system32(store.path(digest), cfg.state_dir / "oci" / "system32" /
                                         f"{digest.split(':')[-1]}.json")
            names = (set() if "*" in gone else names - gone) | added
    except (OSError, EOFError, tarfile.TarError, zlib.error, lzma.LZMAError) as exc:
        raise StepFailed(f"image {platform}: cannot list the base's System32: {exc}") from None
    return frozenset(names) or None


# --- everything that enters the image, checked before it is built -----------------------------------------------
def image_inputs(cfg: Config, platform: Platform) -> dict[str, Path]:
    """The files that enter ``platform``'s image or its build, shown relative to the module: the files each shipped
    binary is built from (its packages' sources and ``//go:embed`` files, from the go list data the compile steps
    use), the rendered Dockerfile and .dockerignore, the servercore scripts."""
    from wgobuild import dockerfile, gotool, secrets

    inputs = gotool.ProjectInputs(cfg)
    entries = {secrets.shown_name(Path(p), cfg.root): Path(p)
               for b in cfg.image_binaries for p in inputs.files(b.name, platform)}
    folder = dockerfile.docker_dir(cfg, platform)
    entries.update({secrets.shown_name(p, cfg.root): p for p in (folder / "Dockerfile", folder / ".dockerignore")
                    if p.is_file()})
    if platform.os == "windows" and cfg.image.runtime == "servercore":
        entries.update({secrets.shown_name(p, cfg.root): p for p in dockerfile.script_files(cfg).values()})
    return entries


def before_build(cfg: Config, platform: Platform) -> dict[str, list[str]]:
    """The checks of what enters ``platform``'s image, before anything is built: the secret scan of every file
    (:mod:`wgobuild.secrets`), and each Windows executable's DLLs against the base's own System32 when its layers
    are at hand, else the documented list. Returns each binary's imported DLLs (none for linux or multistage)."""
    from wgobuild import proc, secrets

    secrets.check_build_args(cfg.image.build_args, cfg.path)
    skipped: list[str] = []
    ldflags = {"[build].ldflags": "\n".join(cfg.build.ldflags)} if cfg.build.ldflags else {}
    secrets.check(f"image {platform}", image_inputs(cfg, platform), cfg.policy.allow_secrets, skipped,
                  texts=ldflags, state_dir=cfg.state_dir)
    for line in skipped:
        proc.echo(line, f"image-platform:{platform.key}")
    if platform.os != "windows" or cfg.image.style == "multistage":
        return {}
    exes = {b.name: cfg.binary_path(b, platform) for b in cfg.image_binaries}
    return check_windows_binaries(exes, cfg.image.runtime, str(platform), base_system32(cfg, platform))
