"""invoke tasks for Windows admins: ``invoke harden``, ``audit``, ``rotate-logs``, ``install-service``, ...

Thin wiring over :mod:`wgobuild.powershell`: load ``wgobuild.toml``, apply command-line overrides, render every
script to ``dist/powershell/`` (also when no PowerShell is installed, for review and hand-off), then run one.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke.tasks import Task

from wgobuild import config as config_mod
from wgobuild import files, powershell, proc
from wgobuild.invoke_support import load_config, number, plain_errors

_COMMON_HELP = {
    "root": "Go module folder holding wgobuild.toml (default: current folder)",
    "config": "path of the wgobuild.toml to use (default: <root>/wgobuild.toml)",
    "dry_run": "pass -WhatIf: show what would change, change nothing",
    "shell": "PowerShell to run (default: $WGOBUILD_POWERSHELL, else powershell.exe, else pwsh)",
}
_HARDEN_HELP = {
    "services": "comma-separated services to stop and disable (overrides [harden].services)",
    "features": "comma-separated optional features to disable (overrides [harden].features; '' for none)",
    "service_name": "name of the app's service (overrides [harden].service_name)",
    "identity": "service identity: virtual (NT SERVICE\\<name>) or local-user",
    "account": "local user name when --identity local-user",
    "install_dir": "install folder: read and execute for the service identity",
    "log_dir": "log folder: modify for the service identity",
}


def _admin_task(help: dict[str, str]) -> Callable[[Callable[..., Any]], Task[Any]]:
    """``@task`` that turns a WgobuildError into one plain message and its exit code (no traceback)."""

    def wrap(body: Callable[..., Any]) -> Task[Any]:
        params = inspect.signature(body).parameters
        wanted = {k: v for k, v in {**_COMMON_HELP, **help}.items() if k in params}
        return Task(plain_errors(body), help=wanted)  # what @task(help=...) makes

    return wrap


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def load(root: str = ".", config: str | None = None, **overrides: dict[str, tuple[str, Any]]) -> config_mod.Config:
    """The config with flag overrides; the rendered scripts' values are checked too."""
    return load_config(root, config, validate=powershell.script_values, **overrides)


def _render(cfg: config_mod.Config) -> Path:
    paths = powershell.write_scripts(cfg)
    proc.echo(f"rendered {len(paths)} scripts in {paths[0].parent}")
    return paths[0].parent


def _harden_overrides(services: str | None, features: str | None, service_name: str | None, identity: str | None,
                      account: str | None, install_dir: str | None, log_dir: str | None,
                      ) -> dict[str, dict[str, tuple[str, Any]]]:
    return {"harden": {
        "services": ("--services", None if services is None else _split(services)),
        "features": ("--features", None if features is None else _split(features)),
        "service_name": ("--service-name", service_name),
        "identity": ("--identity", identity),
        "account": ("--account", account),
        "install_dir": ("--install-dir", install_dir),
        "log_dir": ("--log-dir", log_dir),
    }}


@_admin_task(_HARDEN_HELP)
def harden(c: Any, root: str = ".", config: str | None = None, dry_run: bool = False, shell: str | None = None,
           services: str | None = None, features: str | None = None, service_name: str | None = None,
           identity: str | None = None, account: str | None = None, install_dir: str | None = None,
           log_dir: str | None = None) -> None:
    """Stop/disable services, disable optional features and SMB1, set up the service identity and folder ACLs."""
    cfg = load(root, config, **_harden_overrides(services, features, service_name, identity, account, install_dir,
                                                 log_dir))
    folder = _render(cfg)
    powershell.run_script(folder / "harden.ps1", dry_run=dry_run, shell=shell)


@_admin_task({**_HARDEN_HELP, "report": "where to write the JSON results (default: dist/reports/audit.json)"})
def audit(c: Any, root: str = ".", config: str | None = None, shell: str | None = None, services: str | None = None,
          features: str | None = None, service_name: str | None = None, identity: str | None = None,
          account: str | None = None, install_dir: str | None = None, log_dir: str | None = None,
          report: str | None = None) -> None:
    """Check this machine against the hardening settings, read-only; JSON per control; exit code 3 on drift."""
    cfg = load(root, config, **_harden_overrides(services, features, service_name, identity, account, install_dir,
                                                 log_dir))
    folder = _render(cfg)
    controls: list[dict[str, Any]] = []

    def collect(line: str) -> None:
        proc.echo(line, "audit")
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                controls.append(json.loads(line))

    result = powershell.run_script(folder / "audit.ps1", shell=shell, on_line=collect,
                                   ok_codes=(powershell.EXIT_DONE, powershell.EXIT_DRIFT))
    out = Path(report) if report else cfg.reports_dir / "audit.json"
    files.write_text(out, json.dumps(controls, indent=2) + "\n")
    drifted = [item.get("id", "?") for item in controls if not item.get("ok")]
    if result.returncode == powershell.EXIT_DRIFT:
        raise powershell.AuditDrift(f"audit: {len(drifted)} control(s) drifted: {', '.join(drifted)} (see {out})")
    proc.echo(f"audit: all {len(controls)} controls ok (see {out})")


@_admin_task({
    "register": "register a daily scheduled task (at [logs].schedule) instead of rotating now",
    "log_dir": "folder holding the logs (overrides [logs].dir)",
    "pattern": "file name pattern of the logs, such as *.log (overrides [logs].pattern)",
    "keep": "number of rotated files to keep (overrides [logs].keep)",
    "max_age_days": "rotate files older than this many days since their last rotation; 0 = never by age",
    "max_size_mb": "rotate files of at least this many MB; 0 = never by size",
})
def rotate_logs(c: Any, root: str = ".", config: str | None = None, dry_run: bool = False, shell: str | None = None,
                register: bool = False, log_dir: str | None = None, pattern: str | None = None,
                keep: str | None = None, max_age_days: str | None = None, max_size_mb: str | None = None) -> None:
    """Rotate, compress and prune log files once, or register the daily scheduled task with --register."""
    cfg = load(root, config, logs={
        "dir": ("--log-dir", log_dir),
        "pattern": ("--pattern", pattern),
        "keep": ("--keep", number("--keep", keep)),
        "max_age_days": ("--max-age-days", number("--max-age-days", max_age_days)),
        "max_size_mb": ("--max-size-mb", number("--max-size-mb", max_size_mb)),
    })
    folder = _render(cfg)
    powershell.run_script(folder / "rotate-logs.ps1", ["-Register"] if register else [], dry_run=dry_run, shell=shell)


@_admin_task({
    "service_name": "service name (overrides [harden].service_name)",
    "identity": "service identity: virtual (NT SERVICE\\<name>) or local-user",
    "account": "local user name when --identity local-user",
    "binary": "which [[binaries]] entry to run (overrides [service].binary; default: the first)",
    "start": "start type: auto, delayed-auto or demand",
})
def install_service(c: Any, root: str = ".", config: str | None = None, dry_run: bool = False,
                    shell: str | None = None, service_name: str | None = None, identity: str | None = None,
                    account: str | None = None, binary: str | None = None, start: str | None = None) -> None:
    """Install (or update) the Go binary as a Windows service with failure actions; it must use x/sys/windows/svc."""
    cfg = load(root, config,
               harden={"service_name": ("--service-name", service_name), "identity": ("--identity", identity),
                       "account": ("--account", account)},
               service={"binary": ("--binary", binary), "start": ("--start", start)})
    _require_service_binary(cfg)
    folder = _render(cfg)
    powershell.run_script(folder / "service.ps1", ["-Action", "install"], dry_run=dry_run, shell=shell)


def _require_service_binary(cfg: config_mod.Config) -> None:
    """Refuse, before anything changes, a binary that does not talk to the service control manager: the one
    installed on this host if it is there, else the one built for Windows in this module."""
    from pathlib import PureWindowsPath

    from wgobuild import gobinary
    from wgobuild.config import Platform

    name = cfg.service.binary or cfg.entrypoint.name
    binary = next(b for b in cfg.binaries if b.name == name)
    candidates = [Path(str(PureWindowsPath(cfg.harden.install_dir) / f"{name}.exe"))] if os.name == "nt" else []
    candidates += [cfg.binary_path(binary, Platform(p.os, p.arch)) for p in cfg.platforms if p.os == "windows"]
    gobinary.require_service_binary(candidates)


@_admin_task({"service_name": "service name (overrides [harden].service_name)"})
def uninstall_service(c: Any, root: str = ".", config: str | None = None, dry_run: bool = False,
                      shell: str | None = None, service_name: str | None = None) -> None:
    """Stop (within [service].stop_timeout_s) and delete the service."""
    cfg = load(root, config, harden={"service_name": ("--service-name", service_name)})
    folder = _render(cfg)
    powershell.run_script(folder / "service.ps1", ["-Action", "uninstall"], dry_run=dry_run, shell=shell)


@_admin_task({"out": "folder to write the scripts to (default: dist/powershell)"})
def scripts(c: Any, root: str = ".", config: str | None = None, out: str | None = None) -> None:
    """Render every PowerShell script (harden, audit, rotate-logs, cleanup, service) for review; runs nothing."""
    cfg = load(root, config)
    for path in powershell.write_scripts(cfg, Path(out) if out else None):
        proc.echo(str(path))


TASKS: list[Task[Any]] = [harden, audit, rotate_logs, install_service, uninstall_service, scripts]
