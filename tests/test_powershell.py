"""PowerShell rendering: quoting, validation, the rendered scripts under a real grammar, and the runner.

The scripts themselves are never executed here (Linux, no Windows services); the runner is tested with a small
stand-in executable that records its arguments and exits with a chosen code.
"""

from __future__ import annotations

import dataclasses
import json
import re
import stat
import sys
from pathlib import Path

import pytest
import tree_sitter_powershell
from hypothesis import given, settings
from hypothesis import strategies as st
from tree_sitter import Language, Node, Parser

from wgobuild import config, powershell
from wgobuild.errors import ConfigError, StepFailed, ToolMissing

PARSER = Parser(Language(tree_sitter_powershell.language()))
SMART = "\u2018\u2019\u201a\u201b"
HOSTILE = ["it's", "x’; Remove-Item C:\\ -Recurse; ‘", "$(Stop-Computer)", "`whoami`", "a;b", "‚‛", "@'\n'@"]


# --- a tokenizer of PowerShell's single-quoted string rules (tokenizer.cs ScanStringLiteral) ---------------------

def scan_single_quoted(source: str, start: int = 0) -> tuple[str, int]:
    """Scan one single-quoted string at ``start``: return (value, index after it), as PowerShell does.

    Any of ' U+2018 U+2019 U+201A U+201B opens and closes it; two quote characters in a row stand for the second.
    """
    quotes = powershell.SINGLE_QUOTES
    if start >= len(source) or source[start] not in quotes:
        raise ValueError("not a single-quoted string")
    i, value = start + 1, []
    while True:
        if i >= len(source):
            raise ValueError("unterminated string")
        ch = source[i]
        if ch in quotes:
            if i + 1 < len(source) and source[i + 1] in quotes:
                value.append(source[i + 1])
                i += 2
                continue
            return "".join(value), i + 1
        value.append(ch)
        i += 1


def one_token(literal: str) -> str:
    """The value of ``literal`` if it is exactly one single-quoted string token, else raise."""
    value, end = scan_single_quoted(literal)
    if end != len(literal):
        raise ValueError(f"string ends at {end}, {literal[end:]!r} follows: a break-out")
    return value


quoting_text = st.text(
    alphabet=st.one_of(st.sampled_from(list(powershell.SINGLE_QUOTES) + list('"$`;()@\n\r\t #{}')),
                       st.characters(exclude_characters="\x00")),
    max_size=40,
)


@given(quoting_text)
def test_literal_is_one_string_token_with_the_same_value(value: str) -> None:
    assert one_token(powershell.literal(value)) == value


@settings(max_examples=60, deadline=None)
@given(quoting_text)
def test_literal_is_one_string_node_for_the_grammar(value: str) -> None:
    lit = powershell.literal(value)
    tree = PARSER.parse(f"$v = {lit}\r\nWrite-Output $v\r\n".encode())
    assert not tree.root_node.has_error
    strings = [n for n in walk(tree.root_node) if n.type == "verbatim_string_characters"]
    assert [s.text.decode() for s in strings] == [lit]


def test_naive_quoting_breaks_out_and_the_tokenizer_sees_it() -> None:
    value = "x’; Remove-Item C:\\ -Recurse; ‘"
    naive = "'" + value.replace("'", "''") + "'"
    with pytest.raises(ValueError, match="break-out"):
        one_token(naive)
    assert one_token(powershell.literal(value)) == value
    assert powershell.literal("a’b") == "'a’’b'"


@pytest.mark.parametrize("value", ["a\x00b", "\x00"])
def test_literal_refuses_nul(value: str) -> None:
    with pytest.raises(ValueError) as caught:
        powershell.literal(value)
    assert str(caught.value) == "contains a NUL character"


def test_text_refuses_control_characters() -> None:
    for value in ["two\nlines", "cr\r", "tab\there", "nul\x00", "del\x7f"]:
        with pytest.raises(ValueError, match="control character"):
            powershell.text(value)
    assert one_token(powershell.text("$(x) `y` ;")) == "$(x) `y` ;"


# --- identifiers and paths ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "value"), [
    ("service", "Spooler"), ("service", "my-svc_1.2"), ("feature", "SMB1Protocol"),
    ("feature", "MicrosoftWindowsPowerShellV2"), ("feature", "IIS-WebServerRole"), ("user", "svc-hello"),
    ("command", "Restart-Service"), ("pattern", "*.log"), ("pattern", "app-??.txt"),
])
def test_identifier_accepts(kind: str, value: str) -> None:
    assert powershell.identifier(kind, value) == value


@pytest.mark.parametrize("kind", ["service", "feature", "user"])
@pytest.mark.parametrize("value", [
    "", "a b", "a'b", "a’b", "a$(x)", "a`b", "a;b", "a\nb", "a\x00b", "-Force", "a\\b", "a/b", '"a"', "x" * 200,
])
def test_identifier_refuses(kind: str, value: str) -> None:
    with pytest.raises(ValueError, match="is not a"):
        powershell.identifier(kind, value)


@pytest.mark.parametrize(("value", "expected"), [
    ("C:\\app", "C:\\app"), ("C:/app//bin/", "C:\\app\\bin"), ("d:\\Program Files\\x", "d:\\Program Files\\x"),
    ("C:\\it's $(x) ‘q’", "C:\\it's $(x) ‘q’"), ("C:\\a\\.\\b", "C:\\a\\b"), ("C:\\", "C:\\"),
])
def test_windows_path_normalises(value: str, expected: str) -> None:
    assert powershell.windows_path(value) == expected


NOT_ABSOLUTE = " must be an absolute path with a drive letter, such as C:\\app"
NO_DOTS = ": no '..', ':' or names ending in a dot or space"


@pytest.mark.parametrize(("value", "why"), [
    ("app", NOT_ABSOLUTE), ("\\app", NOT_ABSOLUTE), ("C:app", NOT_ABSOLUTE), ("\\\\server\\share\\x", NOT_ABSOLUTE),
    ("/etc/passwd", NOT_ABSOLUTE), ("C:\\a\\..\\b", NO_DOTS), ("C:\\a:stream", NO_DOTS), ("C:\\dir.\\x", NO_DOTS),
    ("C:\\dir \\x", NO_DOTS), *[(f"C:\\a{ch}b", f" contains {ch!r}, which is not allowed in a path here")
                               for ch in ("*", "?", "[", '"', "|", "\n", "\x00")],
])
def test_windows_path_refuses(value: str, why: str) -> None:
    with pytest.raises(ValueError) as caught:
        powershell.windows_path(value)
    assert str(caught.value) == f"{value!r}{why}"


def split_windows_command_line(line: str) -> list[str]:
    """CommandLineToArgvW's rules (backslashes count only before a quote), for checking the service command line."""
    args, i = [], 0
    while i < len(line):
        while i < len(line) and line[i] in " \t":
            i += 1
        if i >= len(line):
            break
        arg, quoted = [], False
        while i < len(line) and (quoted or line[i] not in " \t"):
            if line[i] == "\\":
                j = i
                while j < len(line) and line[j] == "\\":
                    j += 1
                if j < len(line) and line[j] == '"':
                    arg.append("\\" * ((j - i) // 2))
                    if (j - i) % 2:
                        arg.append('"')
                        j += 1
                else:
                    arg.append("\\" * (j - i))
                i = j
            elif line[i] == '"':
                quoted = not quoted
                i += 1
            else:
                arg.append(line[i])
                i += 1
        args.append("".join(arg))
    return args


@given(st.lists(st.text(alphabet=st.sampled_from(list('ab \\"\t$’x')), max_size=8), max_size=5))
def test_windows_command_line_round_trips(args: list[str]) -> None:
    assert split_windows_command_line(powershell.windows_command_line(args)) == args


# --- rendering -----------------------------------------------------------------------------------------------------

def walk(node: Node):
    yield node
    for child in node.children:
        yield from walk(child)


def make_config(root: Path, **sections: dict) -> config.Config:
    root.mkdir(parents=True, exist_ok=True)
    (root / "main.go").write_text("package main\n\nfunc main() {}\n")
    data = {"project": {"name": "hello"}, "binaries": [{"name": "hello", "package": "."}], **sections}
    return config.from_dict(data, root, root / "wgobuild.toml")


CONFIGS = {
    "defaults": {},
    "local-user": {"harden": {"identity": "local-user", "account": "svc-hello", "services": ["Spooler", "Fax"],
                              "features": [], "smb1_server": True, "install_dir": "D:/apps/hello/"}},
    "hostile-values": {
        "harden": {"service_name": "hello.svc", "install_dir": "C:\\it's $(x) ‘q’ `b` ;", "log_dir": "C:\\logs‛"},
        "logs": {"dir": "C:\\logs\\a'b", "post_rotate": "C:\\app\\reopen’.exe",
                 "post_rotate_args": HOSTILE[:-1], "delaycompress": False, "keep": 0},
        "service": {"display_name": "Hello ’$(rm -r C:\\)’", "description": "says `hi`; $env:PATH @' '@",
                    "args": ["--msg", 'say "hi"', "C:\\path with space\\", "’;exit 9;‘"], "start": "delayed-auto"},
    },
    "command-post-rotate": {"logs": {"post_rotate": "Restart-Service", "post_rotate_args": ["hello"],
                                     "pattern": "app-*.txt", "max_size_mb": 0}},
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    root = tmp_path_factory.mktemp("render")
    return {name: powershell.render_all(make_config(root / name, **sections)) for name, sections in CONFIGS.items()}


def errors(text: str) -> list[str]:
    tree = PARSER.parse(text.encode("utf-8"))
    bad = [f"{n.type} at {n.start_point}: {n.text[:60]!r}" for n in walk(tree.root_node)
           if n.type == "ERROR" or n.is_missing]
    assert bad or not tree.root_node.has_error
    return bad


@pytest.mark.parametrize("breakage", ["unclosed", "operand", "string"])
def test_parse_check_reports_a_broken_script(rendered, breakage: str) -> None:
    """Negative control for :func:`errors`: a deliberately broken script is reported, on the broken line."""
    text = rendered["defaults"]["harden.ps1"]
    assert errors(text) == []
    marker = "Set-StrictMode -Version 3.0"
    after_marker = text[: text.index(marker)].count("\r\n") + 1
    unclosed = text.rstrip().removesuffix("}").rstrip()
    broken, first_error = {
        # the closing brace of the script's last block removed: reported missing after the last token
        "unclosed": (unclosed, f"}} at <Point row={unclosed.count(chr(10))},"),
        "operand": (text.replace(marker, marker + "\r\nif ($x -eq ) { ]", 1), f"ERROR at <Point row={after_marker},"),
        # a quote never closed swallows the next lines up to the next quote
        "string": (text.replace(marker, marker + "\r\n$s = 'never closed", 1),
                   f"ERROR at <Point row={after_marker + 1},"),
    }[breakage]
    found = errors(broken)
    assert found and found[0].startswith(first_error), found


@pytest.mark.parametrize("config_name", list(CONFIGS))
@pytest.mark.parametrize("script", powershell.SCRIPTS)
def test_rendered_script_parses_and_follows_the_rules(rendered, config_name: str, script: str) -> None:
    text = rendered[config_name][f"{script}.ps1"]
    assert errors(text) == []
    assert "\n" not in text.replace("\r\n", "")
    for required in ("#Requires -Version 5.1", "[CmdletBinding(SupportsShouldProcess)]", "\r\nparam(",
                     "Set-StrictMode -Version 3.0", "$ErrorActionPreference = 'Stop'", "Exit codes:", "exit 1"):
        assert required in text, required
    lowered = text.lower()
    assert "invoke-expression" not in lowered and "iex " not in lowered
    assert "asplaintext" not in lowered and "@@" not in text


def test_hostile_values_stay_inside_string_literals(rendered) -> None:
    for script, text in rendered["hostile-values"].items():
        data = text.encode("utf-8")
        nodes = [n for n in walk(PARSER.parse(data).root_node) if n.type == "verbatim_string_characters"]
        values = {one_token(n.text.decode()) for n in nodes}
        outside, start = b"", 0
        for n in nodes:
            outside, start = outside + data[start:n.start_byte], n.end_byte
        outside = (outside + data[start:]).decode("utf-8")
        for marker in ("$(x)", "$(rm", "`hi`", "`b`", "exit 9", "Remove-Item C:\\ -Recurse", "reopen’"):
            assert marker not in outside, (script, marker)
        if script == "service.ps1":
            assert "Hello ’$(rm -r C:\\)’" in values
            argument_line = next(v for v in values if v.startswith("--msg"))
            assert split_windows_command_line(argument_line) == ["--msg", 'say "hi"', "C:\\path with space\\",
                                                                 "’;exit 9;‘"]
        if script == "rotate-logs.ps1":
            assert set(HOSTILE[:-1]) <= values and "C:\\logs\\a'b" in values


MUTATING = {"stop-service", "set-service", "disable-windowsoptionalfeature", "new-localuser", "set-localuser",
            "icacls.exe", "remove-item", "compress-archive", "register-scheduledtask", "new-service",
            "set-smbserverconfiguration", "invoke-cimmethod", "stop-process", "sc.exe", "secedit.exe", "dism.exe",
            "invoke-native", "set-content", "start-service", "new-item"}
MUTATING_METHODS = {"stop", "move", "setlength", "createdirectory", "delete"}


def unguarded_changes(text: str) -> tuple[int, list[str]]:
    """(number of changes found, changes not inside ShouldProcess): a static check of the -WhatIf promise.

    A change is guarded when it sits in the block of an ``if`` whose condition calls ShouldProcess, in a script
    block handed to Invoke-Change, or in a function whose every call site is guarded.
    """
    root = PARSER.parse(text.encode("utf-8")).root_node
    nodes = list(walk(root))
    name_of = {n.id: n.text.decode().lower() for n in nodes if n.type in ("command_name", "function_name")}
    calls: dict[str, list[Node]] = {}
    for n in nodes:
        if n.type == "command":
            cmd = next((c for c in walk(n) if c.type == "command_name"), None)
            if cmd is not None:
                calls.setdefault(name_of[cmd.id], []).append(n)
    memo: dict[str, bool] = {}

    def guarded(node: Node) -> bool:
        child, parent = node, node.parent
        while parent is not None:
            if parent.type == "if_statement" and child.type == "statement_block":
                condition = next(c for c in parent.children if c.type == "pipeline")
                if "ShouldProcess" in condition.text.decode():
                    return True
            if parent.type == "command" and child.type == "command_elements" and "Invoke-Change" in \
                    parent.text.decode().split(" ", 1)[0] and node.type != "command_name":
                return True
            if parent.type == "function_statement":
                fname = next(c for c in parent.children if c.type == "function_name").text.decode().lower()
                if fname not in memo:
                    memo[fname] = False  # recursion guard
                    sites = calls.get(fname, [])
                    memo[fname] = bool(sites) and all(guarded(site) for site in sites)
                return memo[fname]
            child, parent = parent, parent.parent
        return False

    found, bad = 0, []
    for n in nodes:
        is_change = False
        if n.type == "command":
            cmd = next((c for c in walk(n) if c.type == "command_name"), None)
            name = name_of.get(cmd.id, "") if cmd is not None else ""
            is_change = name in MUTATING and "/get-featureinfo" not in n.text.decode().lower()
        elif n.type == "invokation_expression":
            member = next((c for c in n.children if c.type == "member_name"), None)
            is_change = member is not None and member.text.decode().lower() in MUTATING_METHODS
        if is_change:
            found += 1
            if not guarded(n):
                bad.append(f"line {n.start_point[0] + 1}: {n.text.decode()[:70]}")
    return found, bad


@pytest.mark.parametrize("script", [s for s in powershell.SCRIPTS if s != "audit"])
def test_every_change_is_inside_should_process(rendered, script: str) -> None:
    found, bad = unguarded_changes(rendered["local-user"][f"{script}.ps1"])
    assert found >= 2 and bad == []


def test_audit_changes_nothing(rendered) -> None:
    found, _ = unguarded_changes(rendered["defaults"]["audit.ps1"])
    assert found == 0


def test_guard_check_finds_an_unguarded_change() -> None:
    text = ("function Undo([string] $p) { Remove-Item -LiteralPath $p }\r\n"
            "if ($PSCmdlet.ShouldProcess('x', 'y')) { Stop-Service -Name x }\r\nUndo 'C:\\x'\r\n")
    found, bad = unguarded_changes(text)
    assert found == 2 and len(bad) == 1 and "Remove-Item" in bad[0]


def test_rendered_values_come_from_the_config(rendered) -> None:
    harden = rendered["local-user"]["harden.ps1"]
    assert "[string[]] $Services = @('Spooler', 'Fax')," in harden
    assert "[string[]] $Features = @()," in harden
    assert "[bool] $Smb1Server = $true," in harden and "[string] $Identity = 'local-user'," in harden
    assert "[string] $InstallDir = 'D:\\apps\\hello'," in harden
    service = rendered["defaults"]["service.ps1"]
    assert "[string] $BinaryPath = 'C:\\app\\hello.exe'," in service and "[int] $StopTimeoutSeconds = 30" in service
    assert "golang.org/x/sys/windows/svc" in service and "1053" in service
    rotate = rendered["command-post-rotate"]["rotate-logs.ps1"]
    assert "[string] $PostRotate = 'Restart-Service'," in rotate
    assert "$TaskName = 'wgobuild-rotate-logs-hello'" in rotate
    assert "Compress-Archive" in rotate and "2 GB" in rotate
    assert "same Dockerfile RUN" in rendered["defaults"]["cleanup.ps1"]


def test_windows_cmdlet_limits_are_respected(rendered) -> None:
    """What a real host would reject, read off the rendered scripts (no PowerShell here to run them)."""
    for name, text in rendered["defaults"].items():
        # StrictMode 3.0 throws when indexing past the end of an array: `@(...)[0]` on an empty collection.
        assert not re.search(r"@\([^()]*\)\[0\]", text), name
    harden = rendered["local-user"]["harden.ps1"]
    # New-LocalUser -Description takes at most 48 characters
    assert "if ($description.Length -gt 48) { $description = $description.Substring(0, 48) }" in harden
    assert harden.index("$description.Substring(0, 48)") < harden.index("-Description $description")
    cleanup = rendered["defaults"]["cleanup.ps1"]
    # DISM /ResetBase with a restart pending fails with 0x800f0806: the pending check comes first
    assert cleanup.index("RebootPending") < cleanup.index("& dism.exe")


@pytest.mark.parametrize(("sections", "key", "words"), [
    ({"harden": {"features": ["SMB1Protocol", "SMB1;Remove-Item"]}}, "[harden].features[1]", "not an optional-feature"),
    ({"harden": {"services": ["Spooler", "a b"]}}, "[harden].services[1]", "not a service name"),
    ({"harden": {"services": ["x’;y"]}}, "[harden].services[0]", "not a service name"),
    ({"harden": {"service_name": "$(evil)"}}, "[harden].service_name", "not a service name"),
    ({"harden": {"identity": "local-user", "account": "bad`name"}}, "[harden].account", "not a local user name"),
    ({"harden": {"install_dir": "relative\\dir"}}, "[harden].install_dir", "absolute path"),
    ({"harden": {"log_dir": "C:\\a\\..\\windows"}}, "[harden].log_dir", "'..'"),
    ({"logs": {"dir": "C:\\logs\r\nRemove-Item"}}, "[logs].dir", "not allowed in a path"),
    ({"logs": {"pattern": "*.log;rm"}}, "[logs].pattern", "file name pattern"),
    ({"logs": {"post_rotate": "Stop-Computer; rm"}}, "[logs].post_rotate", "command name"),
    ({"logs": {"post_rotate_args": ["ok", "two\nlines"]}}, "[logs].post_rotate_args[1]", "control character"),
    ({"service": {"description": "line1\nline2"}}, "[service].description", "control character"),
    ({"service": {"args": ["ok", "a\rb"]}}, "[service].args[1]", "control character"),
    ({"service": {"binary": "other"}}, "[service].binary", "not one of"),
])
def test_bad_values_are_refused_before_anything_is_written(tmp_path: Path, sections: dict, key: str,
                                                            words: str) -> None:
    cfg = make_config(tmp_path / "m", **sections)
    with pytest.raises(ConfigError) as caught:
        powershell.write_scripts(cfg)
    assert caught.value.key == key and words in caught.value.problem
    assert str(cfg.path) in str(caught.value)
    assert not (cfg.out_dir / "powershell").exists()


def test_nul_in_a_value_is_refused(tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "m")
    cfg = dataclasses.replace(cfg, service=dataclasses.replace(cfg.service, display_name="a\x00b"))
    with pytest.raises(ConfigError, match=r"display_name.*control character U\+0000"):
        powershell.render_all(cfg)


def test_written_scripts_are_utf8_bom_crlf(tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "m", service={"description": "Grüße ’ 日本"})
    paths = powershell.write_scripts(cfg)
    assert sorted(p.name for p in paths) == sorted(f"{s}.ps1" for s in powershell.SCRIPTS)
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(b"\xef\xbb\xbf") and b"\r\n" in data
        assert data.count(b"\n") == data.count(b"\r\n") and data.count(b"\r") == data.count(b"\r\n")
        assert data[3:].decode("utf-8") == powershell.render_all(cfg)[path.name]
    assert "Grüße ’’ 日本" in (cfg.out_dir / "powershell/service.ps1").read_text(encoding="utf-8-sig")
    assert not [p for p in paths[0].parent.iterdir() if p.name.endswith(".part")]


def test_templates_are_ascii_and_come_from_the_package() -> None:
    repo_templates = Path(__file__).parents[1] / "powershell"
    for name in powershell.SCRIPTS:
        text = powershell.template_text(name)
        assert text == (repo_templates / f"{name}.ps1").read_text(encoding="utf-8")
        assert text.isascii()


# --- runner ----------------------------------------------------------------------------------------------------------

STAND_IN = """#!{python}
import json, os, sys
with open(os.environ["STAND_IN_LOG"], "a", encoding="utf-8") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
for line in os.environ.get("STAND_IN_OUTPUT", "").split("|"):
    print(line, flush=True)
sys.exit(int(os.environ.get("STAND_IN_EXIT", "0")))
"""


def make_stand_in(folder: Path, name: str = "pwsh") -> Path:
    """A stand-in PowerShell: records its argv, prints $STAND_IN_OUTPUT ('|' separates lines), exits $STAND_IN_EXIT."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / name
    exe.write_text(STAND_IN.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return exe


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    exe = make_stand_in(tmp_path / "bin")
    monkeypatch.setenv("PATH", str(exe.parent))
    monkeypatch.setenv("STAND_IN_LOG", str(tmp_path / "argv.jsonl"))
    monkeypatch.delenv(powershell.SHELL_ENV, raising=False)
    return tmp_path / "argv.jsonl"


def recorded(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_runner_passes_the_flags_and_whatif(stand_in: Path, tmp_path: Path, monkeypatch) -> None:
    script = tmp_path / "dist/powershell/harden.ps1"
    monkeypatch.setenv("STAND_IN_OUTPUT", "changed: service Spooler (stop)|done")
    lines: list[str] = []
    result = powershell.run_script(script, dry_run=True, on_line=lines.append)
    assert result.ok and lines == ["changed: service Spooler (stop)", "done"]
    result = powershell.run_script(script, ["-Action", "install"])
    first, second = recorded(stand_in)
    flags = ["-NoLogo", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-File", str(script)]
    assert first == [*flags, "-WhatIf"] and second == [*flags, "-Action", "install"]
    assert Path(result.argv[0]).name == "pwsh"


def test_runner_reports_a_failing_script_with_its_output(stand_in: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("STAND_IN_EXIT", "1")
    monkeypatch.setenv("STAND_IN_OUTPUT", "Stop-Service : Access is denied")
    with pytest.raises(StepFailed) as caught:
        powershell.run_script(tmp_path / "harden.ps1", on_line=lambda _line: None)
    assert "harden.ps1 failed: exit code 1 (failed)" in str(caught.value)
    assert "Access is denied" in str(caught.value)


def test_runner_maps_drift_and_unexpected_codes(stand_in: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("STAND_IN_EXIT", "3")
    ok = (powershell.EXIT_DONE, powershell.EXIT_DRIFT)
    assert powershell.run_script(tmp_path / "audit.ps1", ok_codes=ok, on_line=lambda _line: None).returncode == 3
    with pytest.raises(StepFailed, match=r"exit code 3 \(drift"):
        powershell.run_script(tmp_path / "audit.ps1", on_line=lambda _line: None)
    monkeypatch.setenv("STAND_IN_EXIT", "42")
    with pytest.raises(StepFailed, match=r"exit code 42 \(unexpected exit code\)"):
        powershell.run_script(tmp_path / "audit.ps1", ok_codes=ok, on_line=lambda _line: None)


def test_find_powershell_order_and_override(tmp_path: Path, monkeypatch) -> None:
    bin_dir = tmp_path / "bin"
    make_stand_in(bin_dir, "pwsh")
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv(powershell.SHELL_ENV, raising=False)
    assert Path(powershell.find_powershell()).name == "pwsh"
    make_stand_in(bin_dir, "powershell")
    assert Path(powershell.find_powershell()).name == "powershell"
    custom = make_stand_in(tmp_path / "other", "my-ps")
    monkeypatch.setenv(powershell.SHELL_ENV, str(custom))
    assert powershell.find_powershell() == str(custom)
    assert Path(powershell.find_powershell("pwsh")).name == "pwsh"


def test_no_powershell_says_what_is_missing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(powershell.SHELL_ENV, raising=False)
    with pytest.raises(ToolMissing, match=r"PowerShell not found .*powershell\.exe \(in System32\) and pwsh.*never the "
                                          r"current folder.*dist/powershell"):
        powershell.run_script(tmp_path / "harden.ps1")
    monkeypatch.setenv(powershell.SHELL_ENV, "no-such-ps")
    with pytest.raises(ToolMissing, match="'no-such-ps'"):
        powershell.find_powershell()


def test_shared_functions_are_copied_once_into_the_scripts_that_use_them(rendered) -> None:
    blocks = powershell.shared_blocks()
    assert set(blocks) == {"shared_change", "shared_service_sid", "shared_secret", "shared_feature_state",
                           "shared_admin_check", "shared_admin_only"}
    scripts = rendered["defaults"]
    used = set()
    for text in scripts.values():
        names = re.findall(r"^function ([\w-]+)", text, re.MULTILINE)
        assert len(names) == len(set(names)), names  # no function defined twice
        used |= {block for block, body in blocks.items() if body.replace("\n", "\r\n") in text}
    assert used == set(blocks), "every shared block serves at least one script"
    assert "Invoke-Change" not in scripts["audit.ps1"], "the read-only audit gets no change function"


def test_the_scheduled_task_command_parses_and_checks_the_hash_first(rendered) -> None:
    """The task's -EncodedCommand text, expanded as PowerShell expands the double-quoted pieces, is valid PowerShell
    that compares the SHA-256 before it runs the copy (a path with a single quote stays inside its literal)."""
    text = rendered["defaults"]["rotate-logs.ps1"]
    start = text.index("$command = ")
    source = text[start:text.index("\r\n    $encoded", start)]
    pieces = re.findall(r'"((?:[^"`]|`.)*)"', source)
    assert len(pieces) == 3
    path = "C:\\ProgramData\\wgobuild\\it''s\\rotate-logs.ps1"  # what -replace "'", "''" makes of it's
    command = "".join(pieces).replace("`$", "\0").replace("$quoted", path).replace("$hash", "AB" * 32)
    command = command.replace("\0", "$")
    assert "$" not in command.replace("$p", "").replace("$LASTEXITCODE", "")  # nothing left to expand
    assert errors(command) == []
    assert command.index("Get-FileHash") < command.index("& $p") and "exit 2" in command
    assert errors(command.replace("'AB", "AB")) != []  # negative control: a broken literal is seen
