"""``wgobuild`` command: ``init`` and ``doctor``, and every doit command (``wgobuild image``) with no dodo.py.

This module only parses arguments and dispatches: each command lives in ``wgobuild/commands/``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wgobuild.errors import WgobuildError

_OWN_COMMANDS = ("init", "doctor")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wgobuild",
        description="Build Go services into Windows and linux container images. Besides the commands below, "
        "every doit command works without a dodo.py: `wgobuild image`, `wgobuild list --status`, "
        "`wgobuild clean`, `wgobuild -n 2 -P thread`.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    init = sub.add_parser("init", help="write a starter wgobuild.toml and dodo.py into a Go module")
    init.add_argument("path", nargs="?", default=".", help="Go module root (default: current folder)")
    init.add_argument("--force", action="store_true", help="overwrite existing wgobuild.toml and dodo.py")
    doctor = sub.add_parser("doctor", help="report the Go toolchain, Docker engine, PowerShell and registries")
    doctor.add_argument("path", nargs="?", default=".", help="Go module root (default: current folder)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if (args and args[0] in _OWN_COMMANDS) or args[:1] in (["-h"], ["--help"]):
            options = _parser().parse_args(args)
            if options.command == "init":
                from wgobuild.commands import init

                return init.run(Path(options.path), force=options.force)
            from wgobuild.commands import doctor

            return doctor.run(Path(options.path))
        return run_doit(args)
    except WgobuildError as exc:
        print(f"wgobuild: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("wgobuild: interrupted", file=sys.stderr)
        return 130


def run_doit(args: list[str], root: Path | None = None) -> int:
    """Run doit with the tasks of the module at ``root`` (default: cwd), ignoring the user's doit config files."""
    from doit.cmd_base import ModuleTaskLoader
    from doit.doit_cmd import DoitMain

    from wgobuild.doit_tasks import load_tasks

    tasks = load_tasks(Path.cwd() if root is None else root)
    return DoitMain(ModuleTaskLoader(tasks), config_filenames=()).run(args)


if __name__ == "__main__":
    sys.exit(main())
