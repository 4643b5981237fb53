"""Secrets never reach an image: every file that enters one is scanned for private keys, cloud keys and tokens.

The detectors are detect-secrets' own plugins (:data:`PLUGINS`), run in-process on each line: the precise ones
(a private key's PEM header, an AWS key id, a GitHub/GitLab/Slack/Stripe/npm/PyPI/OpenAI token, a JSON Web Token,
credentials in a URL, ...), not the entropy and keyword heuristics, which flag ordinary code. No plugin is ever
asked to verify a finding (that would send it over the network). Each file is read up to :data:`MAX_SCAN_BYTES`;
a larger one is skipped with one line. A finding fails the image step naming the file, the line and the rule, and
the exact ``[policy] allow_secrets`` key that lets a false positive through (docs/supply-chain.md).
"""

from __future__ import annotations

import fnmatch
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
    binary: bool = False

    @property
    def where(self) -> str:
        return f"{self.name}: {self.rule} (in the executable's bytes)" if self.binary else (
            f"{self.name} line {self.line}: {self.rule}")

    @property
    def key(self) -> str:
        """The ``[policy] allow_secrets`` entry that lets this finding through."""
        return f"{self.name}:{self.rule}"


def _plugins() -> list[BasePlugin]:
    import importlib

    return [getattr(importlib.import_module(f"detect_secrets.plugins.{module}"), cls)() for module, cls in PLUGINS]


def scan_text(name: str, text: str, plugins: list[BasePlugin] | None = None) -> list[Finding]:
    """The findings in ``text`` (shown as ``name``), line by line. Each plugin first looks at the whole text
    once; only those that find something there look again line by line (a fraction of the cost on clean files)."""
    plugins = plugins if plugins is not None else _plugins()
    suspects = [plugin for plugin in plugins if next(iter(plugin.analyze_string(text)), None) is not None]
    found: list[Finding] = []
    for number, line in enumerate(text.split("\n") if suspects else [], 1):
        for plugin in suspects:
            found += [Finding(name, number, str(plugin.secret_type), secret)
                      for secret in plugin.analyze_string(line)]
    return found


_PRINTABLE_RUN = re.compile(rb"[\x20-\x7e\t]{8,}")


def printable_runs(data: bytes) -> str:
    """The runs of 8 or more printable ASCII characters of an executable, one a line (what ``strings`` shows):
    its string constants and embedded text files, without the machine code between them."""
    return "\n".join(run.decode("ascii") for run in _PRINTABLE_RUN.findall(data))


def scan_file(name: str, path: Path, plugins: list[BasePlugin], binary: bool = False) -> list[Finding] | str:
    """The findings in one file (of an executable: in its :func:`printable_runs`), or one line saying why it was
    skipped (too large, unreadable)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_SCAN_BYTES + 1)
    except OSError as exc:
        return f"{name}: not scanned for secrets: {exc.strerror or exc}"
    if len(data) > MAX_SCAN_BYTES:
        return f"{name}: not scanned for secrets: larger than {MAX_SCAN_BYTES // (1024 * 1024)} MiB"
    if binary:
        return [Finding(f.name, f.line, f.rule, f.secret, True) for f in scan_text(name, printable_runs(data), plugins)]
    return scan_text(name, data.decode("latin-1"), plugins)  # latin-1: every byte maps


def allowed(finding: Finding, allow: list[str]) -> bool:
    """Whether an ``allow_secrets`` key (``path-glob:rule``, ``*`` for any rule) covers ``finding``."""
    for key in allow:
        pattern, _, rule = key.rpartition(":")
        if rule.strip() in (finding.rule, "*") and fnmatch.fnmatchcase(finding.name, pattern.strip()):
            return True
    return False


def shown_name(path: Path, root: Path) -> str:
    """``path`` relative to the module (forward slashes, as keys are written), else absolute."""
    try:
        return Path(os.path.abspath(path)).relative_to(root).as_posix()
    except ValueError:
        return Path(os.path.abspath(path)).as_posix()


def check(what: str, entries: dict[str, Path], binaries: dict[str, Path], allow: list[str],
          echo: list[str] | None = None) -> list[Finding]:
    """Scan ``entries`` (shown name -> file: sources, embedded files, build-context files) and then ``binaries``;
    raise :class:`StepFailed` naming every finding not allowed by ``allow``. A secret a binary holds because one
    of the entries holds it is reported (and allowed) once, at the entry. Skipped files are added to ``echo``.
    Returns the allowed findings."""
    plugins = _plugins()
    findings: list[Finding] = []
    skipped: list[str] = []
    for group in (entries, binaries):
        known = {f.secret for f in findings}
        for name, path in sorted(group.items()):
            result = scan_file(name, path, plugins, binary=group is binaries)
            if isinstance(result, str):
                skipped.append(result)
                continue
            findings += [f for f in result if not f.binary or f.secret not in known]
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
    plugins = _plugins()
    for name, value in sorted(build_args.items()):
        rules = sorted({f.rule for f in scan_text(name, value, plugins)})
        if rules or CREDENTIAL_NAME.search(name):
            why = f"its value is flagged as {rules[0]}" if rules else "its name says it carries a credential"
            raise ConfigError(config_path, f"[image].build_args.{name}", f"{why}; build args end up in the image's "
                              "history, so none may carry a credential: vendor private modules on the host (`go mod "
                              "vendor`: the builder stage copies vendor/) and give the service its secrets at run time")
