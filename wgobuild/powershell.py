"""Render the admin PowerShell scripts from ``wgobuild.toml`` and run them.

Why this shape: a config value never reaches a script as raw text. Identifiers (service, feature and user names) are
checked against an allowlist, paths are normalised and checked, and everything that lands in the script is turned
into a single-quoted PowerShell literal by :func:`literal` first. The templates use ``@@name`` placeholders (a
``string.Template`` with ``@@`` as delimiter, since ``$`` belongs to PowerShell) and are filled only with those
rendered values. Scripts are written as UTF-8 with BOM and CRLF, because Windows PowerShell 5.1 reads BOM-less
UTF-8 as ANSI. Running goes through :func:`wgobuild.proc.run` like every other program.
"""

from __future__ import annotations

import importlib.resources
import os
import re
import string
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path, PureWindowsPath

from wgobuild import files, proc, programs
from wgobuild.config import Config, system_folder_problem
from wgobuild.errors import ConfigError, StepFailed, ToolMissing, WgobuildError

SCRIPTS = ("harden", "audit", "rotate-logs", "cleanup", "service")
# PowerShell ends a single-quoted string at any of these (ASCII ' and U+2018..U+201B); doubling one escapes it.
SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"
RUN_FLAGS = ("-NoLogo", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass")
SHELL_ENV = "WGOBUILD_POWERSHELL"
EXIT_DONE, EXIT_FAILED, EXIT_DRIFT = 0, 1, 3
EXIT_MEANING = {EXIT_DONE: "done", EXIT_FAILED: "failed", EXIT_DRIFT: "drift: settings differ from wgobuild.toml"}
DEFAULT_TEMP_DIRS = ("C:\\Windows\\Temp",)

_IDENTIFIERS = {
    # Allowlists, deliberately narrower than Windows allows: nothing here can close a string or start a command.
    "service": re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}"),
    "feature": re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"),
    "user": re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,19}"),
    "command": re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,127}"),
    "pattern": re.compile(r"[A-Za-z0-9._*?-]{1,128}"),
}
_IDENTIFIER_HELP = {
    "service": "a service name: 1-80 letters, digits, '.', '_' or '-', starting with a letter or digit",
    "feature": "an optional-feature name such as SMB1Protocol: letters, digits, '.', '_' or '-'",
    "user": "a local user name: 1-20 letters, digits, '.', '_' or '-', starting with a letter or digit",
    "command": "a command name such as Restart-Service, or an absolute path such as C:\\app\\reopen.exe",
    "pattern": "a file name pattern such as *.log: letters, digits, '.', '_', '-', '*' or '?'",
}
# Reserved in Windows file names, plus [ ] which are wildcards to PowerShell's -Path parameters.
_PATH_FORBIDDEN = set('<>"|?*[]')


class AuditDrift(WgobuildError):
    """The audit ran and found controls that differ from the settings."""

    exit_code = EXIT_DRIFT


def literal(value: str) -> str:
    """``value`` as a PowerShell single-quoted literal: inert whatever it holds (``$()``, backticks, ``;``...).

    All five single-quote characters PowerShell recognises are doubled, so none can end the string early.
    NUL is refused: it has no place in a script file.
    """
    if "\x00" in value:
        raise ValueError("contains a NUL character")
    return "'" + "".join(ch + ch if ch in SINGLE_QUOTES else ch for ch in value) + "'"


def text(value: str) -> str:
    """A one-line free-text value (description, argument) as a literal; control characters are refused."""
    bad = next((ch for ch in value if ord(ch) < 32 or ord(ch) == 127), None)
    if bad is not None:
        raise ValueError(f"contains the control character U+{ord(bad):04X}; use one line of printable text")
    return literal(value)


def identifier(kind: str, value: str) -> str:
    """Return ``value`` when it fits the allowlist of ``kind`` (service, feature, user, command, pattern)."""
    if not isinstance(value, str) or not _IDENTIFIERS[kind].fullmatch(value):
        raise ValueError(f"{value!r} is not {_IDENTIFIER_HELP[kind]}")
    return value


def windows_path(value: str) -> str:
    """Normalise an absolute local Windows path (``C:/app//bin/`` -> ``C:\\app\\bin``); refuse anything odd."""
    if len(value) > 1024:
        raise ValueError(f"{value[:40]!r}... is longer than 1024 characters")
    bad = next((ch for ch in value if ord(ch) < 32 or ch in _PATH_FORBIDDEN), None)
    if bad is not None:
        raise ValueError(f"{value!r} contains {bad!r}, which is not allowed in a path here")
    path = PureWindowsPath(value.replace("/", "\\"))
    if not re.fullmatch(r"[A-Za-z]:", path.drive) or path.root != "\\":
        raise ValueError(f"{value!r} must be an absolute path with a drive letter, such as C:\\app")
    rest = path.parts[1:]
    if any(part in ("..", ".") or ":" in part or part != part.rstrip(" .") for part in rest):
        raise ValueError(f"{value!r}: no '..', ':' or names ending in a dot or space")
    return str(path)


def array(items: Iterable[str]) -> str:
    """Already-rendered literals as a PowerShell array expression."""
    return "@(" + ", ".join(items) + ")"


def boolean(value: bool) -> str:
    return "$true" if value else "$false"


def integer(value: int) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not a whole number")
    return str(value)


def windows_command_line(args: Sequence[str]) -> str:
    """Join arguments the way the Microsoft C runtime splits them (for the service's command line)."""
    out = []
    for arg in args:
        if arg and not any(ch in arg for ch in ' \t"'):
            out.append(arg)
            continue
        quoted, slashes = ['"'], 0
        for ch in arg:
            if ch == "\\":
                slashes += 1
                continue
            quoted.append("\\" * (2 * slashes + 1) + '"' if ch == '"' else "\\" * slashes + ch)
            slashes = 0
        quoted.append("\\" * (2 * slashes) + '"')
        out.append("".join(quoted))
    return " ".join(out)


class _Template(string.Template):
    delimiter = "@@"


def template_path(name: str) -> Path:
    """The template ``<name>.ps1``: in the installed package, else in the repository's ``powershell/``."""
    try:
        resource = Path(str(importlib.resources.files("wgobuild.powershell_templates") / f"{name}.ps1"))
        if resource.is_file():
            return resource
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parent.parent / "powershell" / f"{name}.ps1"


def template_text(name: str) -> str:
    return template_path(name).read_text(encoding="utf-8-sig")


class _Values:
    """Collects rendered values; a ValueError becomes a ConfigError naming the key it came from."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.values: dict[str, str] = {}

    def put(self, name: str, key: str, render: Callable[..., str], *args: object) -> str:
        try:
            self.values[name] = render(*args)
        except ValueError as exc:
            raise ConfigError(self.config.path, key, str(exc)) from None
        return self.values[name]

    def put_list(self, name: str, key: str, render: Callable[[str], str], items: Sequence[str]) -> None:
        rendered = []
        for i, item in enumerate(items):
            try:
                rendered.append(render(item))
            except ValueError as exc:
                raise ConfigError(self.config.path, f"{key}[{i}]", str(exc)) from None
        self.values[name] = array(rendered)


def _ident_literal(kind: str) -> Callable[[str], str]:
    return lambda value: literal(identifier(kind, value))


def _path_literal(value: str) -> str:
    return literal(windows_path(value))


def _folder_literal(value: str) -> str:
    """A folder the scripts grant rights on, rotate in or install to: never a system folder (C:\\Windows...)."""
    normal = windows_path(value)
    problem = system_folder_problem(normal, windows=True)
    if problem:
        raise ValueError(problem)
    return literal(normal)


# Hooks run as SYSTEM (rotate-logs' scheduled task), so a hook names one program or cmdlet to call, never code:
# commands that evaluate text or start other programs, and interpreters that run scripts, are refused by name.
HOOK_REFUSED = frozenset({
    "invoke-expression", "iex", "invoke-command", "icm", "start-process", "saps", "start", "start-job", "sajb",
    "start-threadjob", "invoke-item", "ii", "add-type", "new-object", "import-module", "ipmo", "set-alias", "sal",
    "new-alias", "nal", "invoke-wmimethod", "invoke-cimmethod", "invoke-restmethod", "irm", "invoke-webrequest",
    "iwr", "curl", "wget", "foreach-object", "foreach", "where-object", "where", "register-scheduledtask",
    "register-scheduledjob", "set-executionpolicy", "new-service", "set-variable", "sv", "set-item", "si",
    "cmd", "powershell", "powershell_ise", "pwsh", "wscript", "cscript", "mshta", "rundll32", "regsvr32", "bash",
    "wsl", "msiexec", "msbuild", "installutil", "certutil", "bitsadmin", "schtasks", "at", "sc", "reg", "regedit",
    "python", "py", "node", "perl", "ruby", "java", "javaw", "forfiles", "wmic", "runas",
})


def hook_command(value: str) -> str:
    """A hook (``[logs].post_rotate``): a cmdlet or program name, or an absolute path to a ``.exe``; no code."""
    if not value:
        return ""
    if any(ch in value for ch in ";&|{}()$`@\n\r") or value.startswith("."):
        raise ValueError(f"{value!r}: a hook is one command name or .exe path; no script blocks, '&', '.', ';', "
                         "pipes or chaining (write a program or cmdlet and name it here)")
    path = PureWindowsPath(value.replace("/", "\\"))
    if re.fullmatch(r"[A-Za-z]:", path.drive):
        normal = windows_path(value)
        if PureWindowsPath(normal).suffix.lower() != ".exe":
            raise ValueError(f"{value!r}: a hook given as a path must be a .exe (scripts need an interpreter)")
        name = PureWindowsPath(normal).stem.lower()
    else:
        normal = identifier("command", value)
        name = normal.lower().removesuffix(".exe")
    if name in HOOK_REFUSED:
        raise ValueError(f"{value!r} runs other code or programs, which a hook run as SYSTEM may not; name the "
                         "program or cmdlet itself, such as Restart-Service or C:\\app\\reopen.exe")
    return normal


def _command_literal(value: str) -> str:
    return literal(hook_command(value))


def script_values(config: Config) -> dict[str, str]:
    """Every placeholder value, validated and rendered; raises ConfigError naming the offending key."""
    h, logs, svc = config.harden, config.logs, config.service
    v = _Values(config)
    name_key = "[harden].service_name" if h.service_name else "[project].name"
    service_name = v.put("service_name_text", name_key, identifier, "service", config.service_name)
    v.put("service_name", name_key, _ident_literal("service"), service_name)
    v.put_list("services", "[harden].services", _ident_literal("service"), h.services)
    v.put_list("features", "[harden].features", _ident_literal("feature"), h.features)
    v.put("smb1_server", "[harden].smb1_server", boolean, h.smb1_server)
    v.put("identity", "[harden].identity", literal, h.identity)
    v.put("account", "[harden].account", lambda a: literal(identifier("user", a)) if a else literal(""), h.account)
    v.put("install_dir", "[harden].install_dir", _folder_literal, h.install_dir)
    v.put("log_dir", "[harden].log_dir", _folder_literal, h.log_dir)
    # rotate-logs
    v.put("rotate_log_dir", "[logs].dir", _folder_literal, logs.dir)
    v.put("pattern", "[logs].pattern", _ident_literal("pattern"), logs.pattern)
    for key in ("max_age_days", "max_size_mb", "keep"):
        v.put(key, f"[logs].{key}", integer, getattr(logs, key))
    v.put("delaycompress", "[logs].delaycompress", boolean, logs.delaycompress)
    v.put("copytruncate", "[logs].copytruncate", boolean, logs.copytruncate)
    v.put("post_rotate", "[logs].post_rotate", _command_literal, logs.post_rotate)
    v.put_list("post_rotate_args", "[logs].post_rotate_args", text, logs.post_rotate_args)
    v.put("schedule", "[logs].schedule", literal, logs.schedule)
    v.put("task_name", name_key, literal, f"wgobuild-rotate-logs-{service_name}")
    # cleanup
    v.put("component_cleanup", "", boolean, True)
    v.put_list("temp_dirs", "", _path_literal, DEFAULT_TEMP_DIRS)
    # service
    binaries = {b.name: b for b in config.binaries}
    binary_name = svc.binary or config.binaries[0].name
    if binary_name not in binaries:
        raise ConfigError(config.path, "[service].binary", f"{binary_name!r} is not one of {sorted(binaries)}")
    v.put("binary_path", "[harden].install_dir",
          lambda d: literal(str(PureWindowsPath(windows_path(d)) / f"{binary_name}.exe")), h.install_dir)
    v.put("display_name", "[service].display_name", text, svc.display_name or service_name)
    v.put("description", "[service].description", text, svc.description or f"{config.project.name} (Go service)")
    v.put_list("service_args", "[service].args", text, svc.args)  # validates each argument
    v.put("argument_line", "[service].args", literal, windows_command_line(svc.args))
    v.put("start", "[service].start", literal, svc.start)
    v.put("restart_delay_s", "[service].restart_delay_s", integer, svc.restart_delay_s)
    v.put("stop_timeout_s", "[service].stop_timeout_s", integer, svc.stop_timeout_s)
    return v.values


SHARED = "_shared"  # template of functions several scripts use, copied into each (scripts stand alone)


def shared_blocks() -> dict[str, str]:
    """``{"shared_<block>": functions}`` from ``_shared.ps1``; trusted template text, never config values."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in template_text(SHARED).splitlines():
        if line.startswith("# wgobuild:block "):
            current = blocks.setdefault("shared_" + line.split()[-1], [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines).strip("\n") for name, lines in blocks.items()}


def render_all(config: Config) -> dict[str, str]:
    """``{"harden.ps1": text, ...}`` with CRLF line endings; validation happens before any text is produced."""
    values = {**script_values(config), **shared_blocks()}
    out = {}
    for name in SCRIPTS:
        rendered = _Template(template_text(name)).substitute(values)
        out[f"{name}.ps1"] = rendered.replace("\r\n", "\n").replace("\n", "\r\n")
    return out


def script_dir(config: Config) -> Path:
    return config.out_dir / "powershell"


def write_scripts(config: Config, out_dir: Path | None = None) -> list[Path]:
    """Render every script and write it (UTF-8 with BOM, CRLF) atomically; nothing is written if any value is bad."""
    rendered = render_all(config)
    out_dir = Path(out_dir) if out_dir else script_dir(config)
    paths = []
    for name, body in rendered.items():
        path = out_dir / name
        files.write_bytes(path, b"\xef\xbb\xbf" + body.encode("utf-8"))
        paths.append(path)
    return paths


def find_powershell(shell: str | None = None) -> str:
    """The PowerShell to run: ``shell`` or $WGOBUILD_POWERSHELL when set, else powershell.exe (5.1), else pwsh."""
    wanted = shell or os.environ.get(SHELL_ENV)
    for candidate in [wanted] if wanted else ["powershell", "pwsh"]:
        found = programs.find_program(candidate)
        if found:
            return found
    looked = repr(wanted) if wanted else "powershell.exe (in System32) and pwsh"
    raise ToolMissing(
        f"PowerShell not found (looked for {looked} in the absolute PATH folders, never the current folder). "
        "The scripts are rendered in dist/powershell/ for review; "
        "run them on a Windows host (powershell -File <script>.ps1) or install PowerShell 7 (pwsh)."
    )


def script_argv(shell: str, script: Path, args: Sequence[str] = (), dry_run: bool = False) -> list[str]:
    """``<shell> -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -File <script> [args] [-WhatIf]``."""
    return [shell, *RUN_FLAGS, "-File", str(script), *args, *(["-WhatIf"] if dry_run else [])]


def run_script(
    script: Path,
    args: Sequence[str] = (),
    *,
    dry_run: bool = False,
    shell: str | None = None,
    ok_codes: Sequence[int] = (EXIT_DONE,),
    on_line: Callable[[str], None] | None = None,
    timeout: float | None = None,
) -> proc.ProcResult:
    """Run one rendered script with output streamed; an exit code outside ``ok_codes`` raises StepFailed."""
    exe = find_powershell(shell)
    result = proc.run(script_argv(exe, script, args, dry_run), label=script.stem, on_line=on_line, timeout=timeout)
    if result.returncode not in ok_codes or result.timed_out:
        what = "timed out" if result.timed_out else (
            f"exit code {result.returncode} ({EXIT_MEANING.get(result.returncode, 'unexpected exit code')})")
        raise StepFailed(f"{script.name} failed: {what}\n{result.tail(20)}")
    return result
