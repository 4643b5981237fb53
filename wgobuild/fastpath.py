"""The no-op shortcut: answer "nothing to do" for ``wgobuild image`` and ``doit image`` without running doit.

After a run of the default task (``image``) in which every step succeeded or was up to date, the doit wiring
stores a snapshot, ``.wgobuild/noop-<entry>.json``, of everything such a run could see, taken from the tasks as
doit created them (:func:`store`):

* size, mtime, ctime and inode of every ``file_dep`` and every target of every task, of ``wgobuild.toml``, of doit's
  state DB, of the go binary and Go's ``go env -w`` file, of the ``go.work`` a parent folder may hold (or that it
  holds none), of wgobuild's own code and, for ``doit``, of ``dodo.py``/``doit.cfg``/``pyproject.toml``;
* every file and folder under the module and the local modules it builds from (the folders the source scan walks:
  a new, removed or edited file there, even one no step lists, such as a Go file excluded by a build tag);
* with ``version = "git"``: HEAD, the index, packed-refs and every ref file (a commit, a tag, ``git add``), the
  ``.gitignore`` files above the module, and where ``.git`` is (or that there is none);
* the whole environment (minus the shell's own bookkeeping), the Python running, and which ``go`` and ``git`` PATH
  finds;
* the image records, re-checked on use exactly as doit's up-to-date check does (:mod:`wgobuild.records`: an
  engine image that vanished, a daemonless output deleted, an engine that appeared).

The next run with those arguments (``image`` or none, with or without ``--continue``; anything else, ``--push``,
``-a``, another task, goes to doit) compares all of it (:func:`answer`) before doit is imported; when every stat
matches it prints what doit would (the ``--`` line of each step, the run table's no-op line), adds the run to the
history under ``reports/runs/`` and exits 0. Any other doit command drops the snapshots (:func:`forget`).

A snapshot is never taken from files that changed while the run that stores it was running: a source whose
mtime is not older than the run's start (the run lock's owner note, written by the same file system clock) makes
the run store nothing, so the next run goes through doit.

This module imports only the standard library at load time: a no-op is answered in a few milliseconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from wgobuild.errors import WgobuildError

FORMAT = 1
ENTRIES = ("wgobuild", "doit")
#: Environment variables a shell changes between commands and that nothing in a build reads.
_VOLATILE_ENV = frozenset({"OLDPWD", "_", "SHLVL", "WGOBUILD_GUARD", "WGOBUILD_NO_FASTPATH"})
_SKIP_DIRS = {".git", ".wgobuild", "node_modules", ".hg", ".svn", "__pycache__"}  # as gotool's scan, plus caches
_DOIT_FILES = ("dodo.py", "doit.cfg", "pyproject.toml")

Stat = list[int] | None


def snapshot_path(state_dir: Path, entry: str) -> Path:
    return state_dir / f"noop-{entry}.json"


def eligible(args: Sequence[str]) -> bool:
    """Only the default run qualifies: ``image`` or no argument at all, optionally with ``--continue`` (which
    changes nothing when nothing runs); other options and tasks go to doit."""
    rest = [a for a in args if a not in ("--continue", "-c")]
    return rest in ([], ["image"])


def doit_args() -> list[str] | None:
    """The arguments of the ``doit`` command running this process, or None when this is not ``doit`` (a test,
    another program importing a ``dodo.py``)."""
    name = os.path.basename(sys.argv[0]).lower()
    if "doit" not in sys.modules or not (name in ("doit", "doit.exe", "doit-script.py")
                                         or sys.argv[0].endswith(os.path.join("doit", "__main__.py"))):
        return None
    return sys.argv[1:]


# -- reading ------------------------------------------------------------------------------------------------------


def answer_doit() -> None:
    """In ``doit image`` run from the module root: answer a no-op while doit imports ``dodo.py`` (which imports
    :mod:`wgobuild.doit_tasks`), before the rest of wgobuild loads; exits 0 when the snapshot holds. The snapshot
    names the root and config file the ``dodo.py`` loaded, and holds the ``dodo.py``'s stat: while it is unchanged
    it loads the same again. Elsewhere (another folder, another command, not doit) it does nothing."""
    args = doit_args()
    if args is None or not eligible(args):
        return
    cwd = Path.cwd()
    try:
        context = json.loads(snapshot_path(cwd / ".wgobuild", "doit").read_text(encoding="utf-8"))["context"]
        root, config_file = Path(context[2]), Path(context[3])
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return
    if root == cwd and answer(root, "doit", args, config_file):
        raise SystemExit(0)



def answer(root: Path, entry: str, args: Sequence[str], config_file: Path | None = None) -> bool:
    """Print doit's no-op output and return True when the stored snapshot still holds; else False (run doit).

    Never raises for a missing or damaged snapshot: any doubt declines.
    """
    if not eligible(args) or os.environ.get("WGOBUILD_NO_FASTPATH"):
        return False
    root = root.resolve()
    config_file = config_file.resolve() if config_file else root / "wgobuild.toml"
    state_dir = root / ".wgobuild"
    snapshot = snapshot_path(state_dir, entry)
    try:
        data = json.loads(snapshot.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict) or data.get("context") != _context(root, entry, config_file):
        return False
    from wgobuild import runlock  # one run at a time: a run building now may be changing what we compare

    if not runlock.try_hold(state_dir):
        return False
    if not _holds(data):
        return False
    _say(data, snapshot)
    return True


def _holds(data: dict[str, Any]) -> bool:
    try:
        if data["programs"] != _programs():
            return False
        if any(_stat(path) != seen for path, seen in data["files"].items()):
            return False
        if any(_kind(path) != kind for path, kind in data["kinds"].items()):
            return False
        if _walk(data["tops"], set(data["skip"]), data["git_refs"]) != data["tree"]:
            return False
        from wgobuild import records

        return all(records.stale_reason(Path(record)) is None for record in data["records"])
    except (KeyError, TypeError, AttributeError):
        return False


def _say(data: dict[str, Any], snapshot: Path) -> None:
    from wgobuild import history

    started = time.time()
    for line in data["stderr"]:
        print(line, file=sys.stderr)
    steps = data["steps"]
    sys.stdout.write("".join(f"-- {step}\n" for step in steps) + history.NOTHING_TO_DO.format(steps=len(steps)) + "\n")
    sys.stdout.flush()
    with contextlib.suppress(OSError):  # the history is a convenience: a read-only folder must not fail a no-op
        history.save(Path(data["reports_dir"]) / "runs", started, {}, len(steps), shortcut=snapshot.name)


# -- what is compared ---------------------------------------------------------------------------------------------


def _context(root: Path, entry: str, config_file: Path) -> list[Any]:
    env = sorted((k, v) for k, v in os.environ.items() if k not in _VOLATILE_ENV)
    digest = hashlib.sha256(json.dumps(env).encode()).hexdigest()
    return [FORMAT, entry, str(root), str(config_file), os.getcwd(), sys.executable,
            sys.version, digest]


def _programs() -> dict[str, str | None]:
    from wgobuild import programs

    return {name: programs.find_program(name) for name in ("go", "git")}


def _stat(path: str) -> Stat:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _walk(tops: Iterable[str], skip: set[str], plain: Iterable[str] = ()) -> dict[str, Stat]:
    """Every folder and file under ``tops`` (dot-folders, which Go ignores, skipped outside ``testdata``; the
    output and state folders skipped) and under ``plain`` (git's refs: nothing skipped), with their stats."""
    found: dict[str, Stat] = {}
    walked = set(tops) | set(plain)
    for top, everything in [*((t, False) for t in tops), *((t, True) for t in plain)]:
        stack = [(top, everything or os.path.basename(top) == "testdata")]
        while stack:
            folder, keep_dots = stack.pop()
            try:
                entries = list(os.scandir(folder))
                found[folder + os.sep] = _stat(folder)
            except OSError:
                found[folder + os.sep] = None
                continue
            for entry in entries:
                if entry.path in skip or (entry.name in _SKIP_DIRS and not everything):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if (keep_dots or not entry.name.startswith(".")) and entry.path not in walked:
                            stack.append((entry.path, keep_dots or entry.name == "testdata"))
                        continue
                    st = entry.stat()
                    found[entry.path] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
                except OSError:
                    found[entry.path] = None
    return found


# -- writing ------------------------------------------------------------------------------------------------------


class Run:
    """What a doit run that may store a snapshot knows before its tasks run (see :func:`begin`)."""

    def __init__(self, root: Path, entry: str, config_file: Path, out_dir: Path, records: list[str], git: bool,
                 stderr: list[str] | None = None) -> None:
        self.root, self.entry, self.config_file, self.out_dir = root, entry, config_file, out_dir
        self.records, self.git, self.stderr = records, git, stderr or []
        self.started_ns = 0
        self.context: list[Any] = []
        self.programs: dict[str, str | None] = {}


_RUN: Run | None = None


def begin(run: Run) -> None:
    """Called once the run holds the run lock: the start time (the lock owner note's mtime, by the file system's
    own clock) and everything about the process that the snapshot will hold."""
    global _RUN
    state_dir = run.root / ".wgobuild"
    try:
        run.started_ns = os.stat(state_dir / "run.owner").st_mtime_ns
    except OSError:
        return  # no clock to judge edits during the run by: store nothing
    run.context = _context(run.root, run.entry, run.config_file)
    run.programs = _programs()
    _RUN = run


class TaskSeen(NamedTuple):
    """One doit task as the reporter saw it: its name, whether it has actions, its inputs and outputs."""

    name: str
    actions: bool
    file_dep: tuple[str, ...]
    targets: tuple[str, ...]


def store(tasks: Sequence[TaskSeen], selected: Sequence[str], order: Sequence[str], ok: bool,
          extra_files: Iterable[str] = ()) -> Path | None:
    """After a run: write the snapshot when the run was the default one (``image``), every task was seen and none
    failed, and no source changed while it ran; else remove any snapshot. Returns the snapshot written."""
    run = _RUN
    if run is None:
        return None
    state_dir = run.root / ".wgobuild"
    path = snapshot_path(state_dir, run.entry)
    seen = set(order)
    complete = ok and list(selected) == ["image"] and all(t.name in seen for t in tasks if t.actions)
    if not complete:
        _remove(path)
        return None
    targets = {t for task in tasks for t in task.targets}
    names = {p for task in tasks for p in task.file_dep} | targets | set(extra_files) | _fixed_files(run)
    files = {name: _stat(name) for name in sorted(names)}
    tops, skip = _tops(run), [str(run.out_dir), str(state_dir)]
    git_refs = _git_refs(run) if run.git else []
    tree = _walk(tops, set(skip), git_refs)
    racy = any(stat is not None and stat[1] >= run.started_ns for name, stat in [*files.items(), *tree.items()]
               if name not in targets and not name.startswith(str(state_dir) + os.sep))
    if racy:  # a source changed while this run ran: doit saw something else; let the next run look for itself
        _remove(path)
        return None
    data = {"context": run.context, "programs": run.programs, "files": files, "tops": tops, "skip": skip,
            "kinds": {path: _kind(path) for path in sorted(_kinds(run))},
            "git_refs": git_refs, "tree": tree, "records": run.records, "stderr": run.stderr,
            "steps": [name for name in order], "reports_dir": str(run.out_dir / "reports")}
    from wgobuild import files as files_mod

    files_mod.write_text(path, json.dumps(data))
    return path


def forget(state_dir: Path) -> None:
    """Drop every stored snapshot: called by any doit command other than the default run (``forget``, ``ignore``,
    ``clean``, another task, options), since doit's state DB (rewritten by every run, so not compared by stat) may
    change under it."""
    for entry in ENTRIES:
        _remove(snapshot_path(state_dir, entry))


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _fixed_files(run: Run) -> set[str]:
    """Files every run reads besides the tasks' lists."""
    from wgobuild import gotool

    names = {str(run.config_file), str(gotool._goenv_file())}
    with contextlib.suppress(WgobuildError):  # no go: this run failed before getting here
        names.add(str(gotool.find_go()))
    for folder in (run.root, *run.root.parents):  # a go.work appearing above the module changes the build
        names.add(str(folder / "go.work"))
    if run.entry == "doit":
        names.update(str(Path.cwd() / name) for name in _DOIT_FILES)
        doit = sys.modules.get("doit")
        if doit is not None and doit.__file__:
            names.add(doit.__file__)
    package = Path(__file__).parent
    names.update(str(p) for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    if run.git:
        top = None
        for folder in (run.root, *run.root.parents):
            if (folder / ".git").is_file():  # a worktree's pointer (a .git folder changes with every git status)
                names.add(str(folder / ".git"))
            if folder != run.root:
                names.add(str(folder / ".gitignore"))  # the module's own are in the walk
            if (folder / ".git").exists():
                top = folder
                break
        gitdir, common = _gitdirs(top / ".git") if top else (None, None)
        if gitdir is not None and common is not None:
            names.update(str(gitdir / n) for n in ("HEAD", "index"))
            names.update(str(common / n) for n in ("packed-refs", "config", "info/exclude"))
    return names


def _kinds(run: Run) -> set[str]:
    """Paths whose kind (folder, file, absent) is compared, not their stat: doit's state DB (rewritten by every
    run) and, with ``version = "git"``, where ``.git`` is."""
    paths = {str(run.root / ".wgobuild" / "doit-state.sqlite3")}
    if run.git:
        for folder in (run.root, *run.root.parents):
            paths.add(str(folder / ".git"))
            if (folder / ".git").exists():
                break
    return paths


def _kind(path: str) -> str | None:
    return "dir" if os.path.isdir(path) else "file" if os.path.exists(path) else None


def _gitdirs(dotgit: Path) -> tuple[Path | None, Path | None]:
    """The git folder and its common folder (they differ for a worktree, whose ``.git`` is a file)."""
    gitdir = dotgit
    if dotgit.is_file():
        try:
            text = dotgit.read_text(encoding="utf-8").strip()
        except OSError:
            return None, None
        if not text.startswith("gitdir:"):
            return None, None
        gitdir = (dotgit.parent / text.removeprefix("gitdir:").strip()).resolve()
    common = gitdir
    with contextlib.suppress(OSError):
        common = (gitdir / (gitdir / "commondir").read_text(encoding="utf-8").strip()).resolve()
    return gitdir, common


def _git_refs(run: Run) -> list[str]:
    for folder in (run.root, *run.root.parents):
        if (folder / ".git").exists():
            _, common = _gitdirs(folder / ".git")
            return [str(common / "refs")] if common else []
    return []


def _tops(run: Run) -> list[str]:
    """The module and the local modules outside it that the source scan walks (from its cache)."""
    try:
        roots = json.loads((run.root / ".wgobuild" / "deps.json").read_text(encoding="utf-8")).get("roots", [])
    except (OSError, ValueError, AttributeError):
        roots = []
    return [str(run.root), *(str(r) for r in roots if isinstance(r, str))]
