"""The PSScriptAnalyzer rules the Windows CI runs, checked here on the rendered scripts where they can be read off
the text (PSScriptAnalyzer itself needs PowerShell): approved verbs, singular nouns, ShouldProcess for
state-changing functions or a suppression with its reason, and global variables only where suppressed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from wgobuild import config, powershell

HELLO = Path(__file__).resolve().parents[1] / "examples" / "hello"
# Get-Verb's approved verbs that a script like ours could use (a subset of PowerShell's list).
APPROVED = {"Add", "Assert", "Clear", "Close", "Copy", "Disable", "Enable", "Get", "Grant", "Install", "Invoke",
            "Move", "New", "Protect", "Register", "Remove", "Rename", "Reset", "Restart", "Resume", "Set", "Start",
            "Stop", "Test", "Uninstall", "Unregister", "Update", "Wait", "Write", "Read", "Find", "Format", "Out",
            "Select", "Show", "Use", "Confirm", "Compress", "Expand", "Import", "Export", "Measure", "Revoke"}
STATE_CHANGING = {"New", "Set", "Remove", "Start", "Stop", "Restart", "Reset", "Update"}  # the PSSA rule's verbs
SINGULAR_ENDING_IN_S = {"Status", "Process", "Progress", "Access", "Address", "Alias", "Class"}
_FUNCTION = re.compile(r"^\s*function\s+([A-Za-z]+)-([A-Za-z]+)\b", re.MULTILINE)


def _suppressed(text: str, rule: str) -> dict[str, str]:
    """Target -> justification of script-level suppressions of ``rule``."""
    found = {}
    pattern = rf"SuppressMessageAttribute\('{rule}', ''(?:, Scope = 'Function', Target = '([^']*)')?,\s*" \
              r"Justification = '((?:[^']|'')+)'\)"
    for match in re.finditer(pattern, text):
        found[match[1] or "*"] = match[2]
    return found


def findings(text: str) -> list[str]:
    """What PSScriptAnalyzer's UseApprovedVerbs, UseSingularNouns, UseShouldProcessForStateChangingFunctions and
    AvoidGlobalVars would report (suppressions honoured)."""
    out = []
    should = _suppressed(text, "PSUseShouldProcessForStateChangingFunctions")
    for verb, noun in _FUNCTION.findall(text):
        name = f"{verb}-{noun}"
        if verb not in APPROVED:
            out.append(f"UseApprovedVerbs: {name}")
        last = re.findall(r"[A-Z][a-z]*", noun)[-1]
        if last.endswith("s") and last not in SINGULAR_ENDING_IN_S:
            out.append(f"UseSingularNouns: {name}")
        if verb in STATE_CHANGING and name not in should and "*" not in should:
            body = text[text.index(f"function {name}"):][:400]
            if "SupportsShouldProcess" not in body:
                out.append(f"UseShouldProcessForStateChangingFunctions: {name}")
    if re.search(r"\$global:", text, re.IGNORECASE) and not _suppressed(text, "PSAvoidGlobalVars"):
        out.append("AvoidGlobalVars")
    return out


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return powershell.render_all(config.load(HELLO))


@pytest.mark.parametrize("script", powershell.SCRIPTS)
def test_rendered_scripts_meet_the_analyzer_rules(rendered: dict[str, str], script: str) -> None:
    assert findings(rendered[f"{script}.ps1"]) == []


def test_every_suppression_gives_its_reason(rendered: dict[str, str]) -> None:
    for name, text in rendered.items():
        for rule in ("PSUseShouldProcessForStateChangingFunctions", "PSAvoidGlobalVars"):
            for target, why in _suppressed(text, rule).items():
                assert len(why) > 30, (name, rule, target)
                if target != "*":
                    assert re.search(rf"^\s*function\s+{re.escape(target)}\b", text, re.MULTILINE), (name, target)


def test_the_checks_see_what_they_check() -> None:
    """Negative control: each rule fires on a script that breaks it."""
    bad = "function Set-Things { }\nfunction Fetch-Item { }\n$global:x = 1\n"
    assert findings(bad) == ["UseSingularNouns: Set-Things", "UseShouldProcessForStateChangingFunctions: Set-Things",
                             "UseApprovedVerbs: Fetch-Item", "AvoidGlobalVars"]
    fixed = ("[Diagnostics.CodeAnalysis.SuppressMessageAttribute('PSUseShouldProcessForStateChangingFunctions', '', "
             "Scope = 'Function', Target = 'Set-Thing',\n    Justification = 'a reason that is long enough to read')]\n"
             "function Set-Thing { }\n")
    assert findings(fixed) == []
