"""Secrets never reach an image: every file that enters one is scanned for private keys, cloud keys and tokens.

The detectors are detect-secrets' own plugins (:data:`PLUGINS`), run in-process on each line: the precise ones
(a private key's PEM header, an AWS key id, a GitHub/GitLab/Slack/Stripe/npm/PyPI/OpenAI token, a JSON Web Token,
credentials in a URL, ...), not the entropy and keyword heuristics, which flag ordinary code. No plugin is ever
asked to verify a finding (that would send it over the network). Each file is read up to :data:`MAX_SCAN_BYTES`;
a larger one is skipped with one line.

What is scanned is what the project puts into an image: the sources and ``//go:embed`` files of every package of
the main, workspace, replaced and vendored modules a shipped binary is built from, ``[build].ldflags`` (``-X``
values end up in the binary), and the build context (Dockerfile, scripts). The executables themselves are not:
everything the project puts in them is scanned where it comes from, and the rest comes from modules pinned by
go.sum (scanning 6 MB of machine code costs more than the build's own compile step).

A finding fails the image step naming the file, the line and the rule, and the exact ``[policy] allow_secrets``
key that lets a false positive through (docs/supply-chain.md).
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wgobuild.errors import ConfigError, StepFailed

if TYPE_CHECKING:
    from detect_secrets.plugins.base import BasePlugin

# Build-arg names that carry credentials: the classic builder records the values an ARG feeds into a RUN in the
# image's history, so a build arg never carries one (private modules: docs/supply-chain.md).
CREDENTIAL_NAME = re.compile(r"TOKEN|PASSWORD|PASSWD|SECRET|CREDENTIAL|AUTH(?!OR)|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY"
                             r"|NETRC|SSH_?KEY", re.IGNORECASE)
MAX_SCAN_BYTES = 64 * 1024 * 1024  # a file larger than this is skipped (with one line); Go binaries are ~5-30 MB
# detect-secrets plugins (module, class) that find credentials with few false positives.
PLUGINS = (
    ("private_key", "PrivateKeyDetector"), ("aws", "AWSKeyDetector"),
    ("azure_storage_key", "AzureStorageKeyDetector"), ("github_token", "GitHubTokenDetector"),
    ("gitlab_token", "GitLabTokenDetector"), ("slack", "SlackDetector"), ("stripe", "StripeDetector"),
    ("jwt", "JwtTokenDetector"), ("npm", "NpmDetector"), ("pypi_token", "PypiTokenDetector"),
    ("openai", "OpenAIDetector"), ("sendgrid", "SendGridDetector"), ("twilio", "TwilioKeyDetector"),
    ("discord", "DiscordBotTokenDetector"), ("artifactory", "ArtifactoryDetector"),
    ("mailchimp", "MailchimpDetector"), ("square_oauth", "SquareOAuthDetector"),
    ("basic_auth", "BasicAuthDetector"),
)


@dataclass(frozen=True)
class Finding:
    """One secret: where (the file as shown, 1-based line), which rule (detect-secrets' secret type)."""

    name: str
    line: int
    rule: str
    secret: str

    @property
    def where(self) -> str:
        return f"{self.name} line {self.line}: {self.rule}"

    @property
    def key(self) -> str:
        """The ``[policy] allow_secrets`` entry that lets this finding through."""
        return f"{self.name}:{self.rule}"


def _plugins() -> list[BasePlugin]:
    import importlib

    return [getattr(importlib.import_module(f"detect_secrets.plugins.{module}"), cls)() for module, cls in PLUGINS]


@functools.cache
def _compiled(sources: tuple[tuple[str, int], ...]) -> list[re.Pattern[str]]:
    """The detectors' patterns compiled once per process (each image step scans with its own Scanner)."""
    return [re.compile(text, flags) for text, flags in sources]


class Scanner:
    """The detectors, loaded only when a text may hold a secret. Every detector used is regex-based: it can only
    report a match of one of its own patterns, so a text none of those patterns matches holds nothing it would
    report. The patterns are read from detect-secrets once per installed version and kept in ``state_dir``, so a
    clean scan never imports detect-secrets (a third of a second: it imports requests)."""

    def __init__(self, state_dir: Path | None = None) -> None:
        self._state_dir = state_dir
        self._loaded: list[BasePlugin] | None = None
        self._patterns: list[re.Pattern[str]] | None = None

    @property
    def plugins(self) -> list[BasePlugin]:
        if self._loaded is None:
            self._loaded = _plugins()
        return self._loaded

    def patterns(self) -> list[re.Pattern[str]]:
        if self._patterns is None:
            self._patterns = _compiled(tuple(self._pattern_sources()))
        return self._patterns

    def _pattern_sources(self) -> list[tuple[str, int]]:
        import json
        from importlib.metadata import version

        cache = self._state_dir / f"secret-patterns-{version('detect-secrets')}.json" if self._state_dir else None
        if cache is not None:
            try:
                cached = json.loads(cache.read_text(encoding="utf-8"))
                return [(str(text), int(flags)) for text, flags in cached]
            except (OSError, ValueError, TypeError):
                pass
        found: list[tuple[str, int]] = []
        for plugin in self.plugins:  # a detector with no patterns of its own must see every text: "" matches all
            found += [(regex.pattern, regex.flags) for regex in getattr(plugin, "denylist", [re.compile("")])]
        if cache is not None:
            from wgobuild import files

            files.write_text(cache, json.dumps(found))
        return found

    def scan_text(self, name: str, text: str) -> list[Finding]:
        """The findings in ``text`` (shown as ``name``), line by line; only detectors whose patterns match the
        whole text look at its lines."""
        if not any(pattern.search(text) for pattern in self.patterns()):
            return []
        suspects = [plugin for plugin in self.plugins if next(iter(plugin.analyze_string(text)), None) is not None]
        found: list[Finding] = []
        for number, line in enumerate(text.split("\n") if suspects else [], 1):
            for plugin in suspects:
                found += [Finding(name, number, str(plugin.secret_type), secret)
                          for secret in plugin.analyze_string(line)]
        return found

    def scan_file(self, name: str, path: Path) -> list[Finding] | str:
        """The findings in one file, or one line saying why it was skipped (too large, unreadable)."""
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_SCAN_BYTES + 1)
        except OSError as exc:
            return f"{name}: not scanned for secrets: {exc.strerror or exc}"
        if len(data) > MAX_SCAN_BYTES:
            return f"{name}: not scanned for secrets: larger than {MAX_SCAN_BYTES // (1024 * 1024)} MiB"
        return self.scan_text(name, data.decode("latin-1"))  # latin-1: every byte maps


def scan_text(name: str, text: str) -> list[Finding]:
    """:meth:`Scanner.scan_text` with no pattern cache."""
    return Scanner().scan_text(name, text)


def allowed(finding: Finding, allow: list[str]) -> bool:
    """Whether an ``allow_secrets`` key (``path-glob:rule``, ``*`` for any rule) covers ``finding``."""
    for key in allow:
        pattern, _, rule = key.rpartition(":")
        pattern = pattern.strip()  # the printed key itself always matches (a name may hold [ ] * ?)
        if rule.strip() in (finding.rule, "*") and (finding.name == pattern
                                                     or fnmatch.fnmatchcase(finding.name, pattern)):
            return True
    return False


def shown_name(path: Path, root: Path) -> str:
    """``path`` relative to the module (forward slashes, as keys are written), else absolute."""
    try:
        return Path(os.path.abspath(path)).relative_to(root).as_posix()
    except ValueError:
        return Path(os.path.abspath(path)).as_posix()


def check(what: str, entries: dict[str, Path], allow: list[str], echo: list[str] | None = None, *,
          texts: dict[str, str] | None = None, state_dir: Path | None = None) -> list[Finding]:
    """Scan ``entries`` (shown name -> file: sources, embedded files, build-context files) and ``texts`` (shown
    name -> settings that reach a binary, such as ``[build].ldflags``); raise :class:`StepFailed` naming every
    finding not allowed by ``allow``. Skipped files are added to ``echo``. Returns the allowed findings."""
    scanner = Scanner(state_dir)
    findings: list[Finding] = []
    skipped: list[str] = []
    for name, path in sorted(entries.items()):
        result = scanner.scan_file(name, path)
        if isinstance(result, str):
            skipped.append(result)
            continue
        findings += result
    for name, text in sorted((texts or {}).items()):
        findings += scanner.scan_text(name, text)
    if echo is not None:
        echo += skipped
    refused = [f for f in findings if not allowed(f, allow)]
    if refused:
        shown = list(dict.fromkeys(f.where for f in refused))  # one line per file, line and rule
        lines = [f"  {where}" for where in shown[:20]]
        if len(shown) > 20:
            lines.append(f"  ... and {len(shown) - 20} more")
        keys = ", ".join(f'"{k}"' for k in dict.fromkeys(f.key for f in refused))
        raise StepFailed(f"{what}: secrets in files that would enter the image:\n" + "\n".join(lines) + "\n"
                         "Remove them (give the service its secrets at run time: environment, a mounted file, a "
                         "secret store) and rebuild; a false positive is let through with [policy] allow_secrets = "
                         f"[{keys}] in wgobuild.toml")
    return [f for f in findings if f not in refused]


def check_build_args(build_args: dict[str, str], config_path: object) -> None:
    """:class:`ConfigError` when an ``[image].build_args`` entry carries a credential: a name such as
    ``GITHUB_TOKEN`` or ``NPM_AUTH``, or a value a detector flags (a token, a key, ``https://user:pass@host``)."""
    scanner = Scanner()
    for name, value in sorted(build_args.items()):
        rules = sorted({f.rule for f in scanner.scan_text(name, value)})
        if rules or CREDENTIAL_NAME.search(name):
            why = f"its value is flagged as {rules[0]}" if rules else "its name says it carries a credential"
            raise ConfigError(config_path, f"[image].build_args.{name}", f"{why}; build args end up in the image's "
                              "history, so none may carry a credential: vendor private modules on the host (`go mod "
                              "vendor`: the builder stage copies vendor/) and give the service its secrets at run time")
