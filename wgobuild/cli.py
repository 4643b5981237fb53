"""``wgobuild`` command: ``init`` and ``doctor``, and every doit command (``wgobuild image``) with no dodo.py.

This module only parses arguments and dispatches: each command lives in ``wgobuild/commands/``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wgobuild.errors import WgobuildError

if TYPE_CHECKING:
    import argparse

_OWN_COMMANDS = ("init", "doctor", "cache", "keygen", "verify")
_OWN_FLAGS = (["-h"], ["--help"], ["--version"])


def _parser() -> argparse.ArgumentParser:
    import argparse  # imported here: a no-op `wgobuild image` never parses arguments itself

    parser = argparse.ArgumentParser(
        prog="wgobuild",
        description="Build Go services into Windows and linux container images. Besides the commands below, "
        "every doit command works without a dodo.py: `wgobuild image`, `wgobuild list --status`, "
        "`wgobuild clean -a` (with --state, the build state too), `wgobuild -n 2 -P thread`, and `wgobuild graph` "
        "(the task graph as DOT or SVG).",
    )
    parser.add_argument("--version", action="store_true", help="print which wgobuild runs (version, folder, Python)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    init = sub.add_parser("init", help="write a starter wgobuild.toml, dodo.py and tasks.py into a Go module",
                          description="Write wgobuild.toml (every main package; the entrypoint first, chosen and "
                          "explained), a two-line dodo.py (`doit image`) and a two-line tasks.py (`invoke --list`). "
                          "Existing files are kept unless --force.")
    init.add_argument("path", nargs="?", default=".", help="Go module root (default: current folder)")
    init.add_argument("--force", action="store_true", help="overwrite existing wgobuild.toml, dodo.py and tasks.py")
    init.add_argument("--entrypoint", metavar="NAME", default="",
                      help="the binary the image runs (a binary name or package folder such as cmd/shopd)")
    doctor = sub.add_parser("doctor", help="report the Go toolchain, Docker engine, PowerShell and registries")
    doctor.add_argument("path", nargs="?", default=".", help="Go module root (default: current folder)")
    cache = sub.add_parser("cache", help="the team cache in the registry of [cache] registry")
    cache_sub = cache.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    prune = cache_sub.add_parser("prune", help="delete the cache entries created more than --older-than ago")
    prune.add_argument("--older-than", metavar="AGE", required=True, help="an age such as 30d, 12h or 2w")
    prune.add_argument("path", nargs="?", default=".", help="Go module root (default: current folder)")
    keygen = sub.add_parser("keygen", help="write the signing key pair wgobuild.key (encrypted) and wgobuild.pub",
                            description="Write an ECDSA P-256 key pair: wgobuild.key in cosign's encrypted format "
                            "(password from WGOBUILD_SIGNING_PASSWORD, else asked) and wgobuild.pub (PEM). Existing "
                            "files are kept unless --force.")
    keygen.add_argument("path", nargs="?", default=".", help="folder to write them into (default: current folder)")
    keygen.add_argument("--force", action="store_true", help="replace an existing key pair")
    verify = sub.add_parser("verify", help="check a pushed image's signatures (exit 0 verified, 1 not)",
                            description="Check both signature forms of a pushed image and of each manifest of an "
                            "index (the Sigstore bundle attached with subject, and cosign's sha256-<digest>.sig), "
                            "and its provenance when attached, against a public key.")
    verify.add_argument("reference", help="the image: registry/repository:tag or @sha256:...")
    verify.add_argument("--key", required=True, type=Path, help="the public key (wgobuild.pub)")
    verify.add_argument("--insecure-registry", action="append", default=[], metavar="HOST",
                        help="a plain-HTTP registry (localhost and 127.0.0.1 always are)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if (args and args[0] in _OWN_COMMANDS) or args[:1] in _OWN_FLAGS:
            options = _parser().parse_args(args)
            if options.version:  # printed here: argparse's version action wraps long lines
                print(version_line())
                return 0
            if options.command == "init":
                from wgobuild.commands import init

                return init.run(Path(options.path), force=options.force, entrypoint=options.entrypoint)
            if options.command == "cache":
                from wgobuild.commands import cache

                return cache.prune(Path(options.path), options.older_than)
            if options.command == "keygen":
                from wgobuild.commands import keygen

                return keygen.run(Path(options.path), force=options.force)
            if options.command == "verify":
                from wgobuild.commands import verify

                return verify.run(options.reference, options.key, options.insecure_registry)
            from wgobuild.commands import doctor

            return doctor.run(Path(options.path))
        if args[:1] == ["clean"] and "--state" in args:
            return clean_state()
        from wgobuild import fastpath

        if fastpath.answer(Path.cwd(), "wgobuild", args):  # nothing to do: said without importing doit
            return 0
        return run_doit(args, entry="wgobuild" if fastpath.eligible(args) else None)
    except WgobuildError as exc:
        print(f"wgobuild: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("wgobuild: interrupted", file=sys.stderr)
        return 130


def version_line() -> str:
    """``wgobuild 0.1.0 from /path/to/wgobuild (Python 3.11.2)``: which copy runs, like ``pip --version``."""
    import platform

    import wgobuild

    return f"wgobuild {wgobuild.__version__} from {Path(wgobuild.__file__).parent} (Python {platform.python_version()})"


def run_doit(args: list[str], root: Path | None = None, entry: str | None = None) -> int:
    """Run a doit command on the tasks of the module at ``root`` (default: cwd).

    The user's doit config files are ignored and no third-party doit plugins are loaded: looking plugins up scans
    every installed package's metadata on each start, a large share of a no-op run.
    """
    from doit.cmd_base import TaskLoader2
    from doit.doit_cmd import DoitMain
    from doit.loader import generate_tasks

    from wgobuild.doit_tasks import task_creators

    class Loader(TaskLoader2):
        def __init__(self) -> None:
            super().__init__()
            self.namespace = task_creators(Path.cwd() if root is None else root, entry=entry)

        def load_doit_config(self) -> dict[str, Any]:
            doit_config: dict[str, Any] = self.namespace["DOIT_CONFIG"]
            return doit_config

        def load_tasks(self, cmd: object, pos_args: list[str]) -> list[Any]:
            creators = [(k.removeprefix("task_"), v) for k, v in self.namespace.items() if k.startswith("task_")]
            return [task for name, creator in creators for task in generate_tasks(name, creator(), creator.__doc__)]

    class Main(DoitMain):
        DOIT_CMDS = tuple(_without_plugins(cmd) for cmd in (*DoitMain.DOIT_CMDS, *_own_doit_commands(args)))

        def get_cmds(self):  # type: ignore[no-untyped-def]
            from doit.plugin import PluginDict

            commands = PluginDict()
            for cmd in self.DOIT_CMDS:
                commands[cmd.get_name()] = cmd
            return commands

    code: int = Main(Loader(), config_filenames=()).run(args)
    return code


def _own_doit_commands(args: list[str]) -> list[type]:
    """wgobuild's own doit commands (``graph``), loaded only when asked for or listed: a build never imports them."""
    if not args or args[0] not in ("graph", "help", "-h", "--help"):
        return []
    from wgobuild.commands.graph import Graph

    return [Graph]


def _without_plugins(command: type[Any]) -> type[Any]:
    """A doit command class that uses doit's built-in backends and reporters only."""

    class Command(command):
        def get_backends(self) -> dict[str, type[Any]]:
            from doit.dependency import DbmDB, JsonDB, SqliteDB

            backends = {"dbm": DbmDB, "json": JsonDB, "sqlite3": SqliteDB}
            if "backend" in self.cmdparser:
                self.cmdparser["backend"].choices = {k: "" for k in backends}
            return backends

        def get_reporters(self) -> dict[str, type[Any]]:
            from doit import reporter

            reporters = {"console": reporter.ConsoleReporter, "executed-only": reporter.ExecutedOnlyReporter,
                         "json": reporter.JsonReporter, "zero": reporter.ZeroReporter,
                         "error-only": reporter.ErrorOnlyReporter}
            if "reporter" in self.cmdparser:
                self.cmdparser["reporter"].choices = {k: v.desc for k, v in reporters.items()}
            return reporters

    Command.__name__ = Command.__qualname__ = command.__name__
    return Command


def clean_state() -> int:
    """``wgobuild clean --state``: the whole output folder and the state folder (what ``doit clean -a`` plus
    forgetting every step would do); the tasks need not be loaded."""
    from wgobuild import config, outputs

    for line in outputs.clean(config.load(Path.cwd()), state=True):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
