"""invoke entry point for Windows admins: ``invoke --list`` shows harden, audit, rotate-logs, run, serve, ..."""

from wgobuild.invoke_collection import ns  # noqa: F401
