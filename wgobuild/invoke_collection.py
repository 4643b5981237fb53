"""The invoke collection admins use (``invoke harden``, ``invoke run``, ...); ``tasks.py`` only imports ``ns``."""

from __future__ import annotations

from invoke.collection import Collection

from wgobuild import admin_tasks, run_tasks

ns = Collection()
for _task in [*admin_tasks.TASKS, *run_tasks.TASKS]:
    ns.add_task(_task)
