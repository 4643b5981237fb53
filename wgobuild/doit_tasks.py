"""doit wiring: turns a :class:`~wgobuild.config.Config` into doit tasks. No build logic lives here.

Tasks (``doit list``): ``compile:<bin>-<os>-<arch>``, ``test``, ``golden:<case>``, ``dockerfile:<platform>``,
``scripts``, ``image-platform:<platform>`` and ``image`` (the default). ``doit clean -a`` removes the whole output
folder and keeps ``.wgobuild/`` (``wgobuild clean --state`` removes that too).
A ``dodo.py`` is two lines::

    from wgobuild.doit_tasks import load_tasks
    globals().update(load_tasks("."))
"""

from __future__ import annotations

import functools
import gc
import importlib
import inspect
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from doit.dependency import MD5Checker as DoitMD5Checker
from doit.exceptions import TaskFailed
from doit.reporter import ConsoleReporter
from doit.tools import config_changed

from wgobuild import fastpath

fastpath.answer_doit()  # a no-op `doit image` ends here, before the rest of wgobuild loads (wgobuild/fastpath.py)

from wgobuild import config as config_mod  # noqa: E402
from wgobuild import files, gotool, proc, progress, runlock  # noqa: E402
from wgobuild.config import Config, Platform  # noqa: E402
from wgobuild.errors import WgobuildError  # noqa: E402
from wgobuild.report import RunReport, StepFigures, changed_inputs, changed_settings  # noqa: E402
from wgobuild.teamcache import Step  # noqa: E402

RUN = RunReport()


def step(name: str, fn: Callable[..., Any], *args: Any, pass_changed: bool = False, **kwargs: Any
         ) -> Callable[..., Any]:
    """Wrap a core call as a doit action: figures go to the run report, a WgobuildError fails only this task.
    ``pass_changed``: the call also gets ``changed``, the inputs doit found changed (all of them when the step runs
    for another reason: first build, settings changed, forced)."""

    def action(task: Any, **options: Any) -> TaskFailed | None:
        start, cpu_start = time.perf_counter(), time.thread_time()
        status = "failed"
        if pass_changed:
            options["changed"] = list(task.dep_changed or task.file_dep)
        with proc.collecting() as runs:
            try:
                proc.check_stopping()
                fn(*args, **kwargs, **options)
                status = "ran"
                return None
            except WgobuildError as exc:
                return TaskFailed(str(exc))
            finally:
                RUN.record(StepFigures(
                    step=name,
                    status=status,
                    wall_s=time.perf_counter() - start,
                    cpu_s=time.thread_time() - cpu_start + sum(r.cpu_s for r in runs),
                    peak_rss=max([r.peak_rss for r in runs], default=0),
                    programs=len(runs),
                ))

    action.__name__ = f"step_{name}"
    return action


def lazy(module: str, name: str) -> Callable[..., Any]:
    """``wgobuild.<module>.<name>``, imported only when its step runs: a no-op run never loads it."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(f"wgobuild.{module}"), name)(*args, **kwargs)

    call.__name__ = name
    return call


class Settings(config_changed):
    """doit's ``config_changed`` that also keeps the settings it saw, so a run can say which keys changed."""

    def configure_task(self, task: Any) -> None:
        super().configure_task(task)
        if isinstance(self.config, dict):
            task.value_savers.append(lambda: {"_settings": _plain(self.config)})

    def __call__(self, task: Any, values: dict[str, Any]) -> bool:
        same = bool(super().__call__(task, values))
        if not same and values:
            old = values.get("_settings")
            new = _plain(self.config) if isinstance(self.config, dict) else {}
            _note(task).settings = changed_settings(old, new) if isinstance(old, dict) else []
        return same


@dataclass
class _Note:
    """What doit's up-to-date checks saw for one task in this run (read when the step starts, to say why)."""

    first: bool = False  # no saved state: never built (or forgotten)
    settings: list[str] | None = None  # settings changed: these keys ([] when not known)
    checks: bool = False  # another uptodate check said "out of date"
    inputs: int | None = None  # number of inputs at the last successful run


_NOTES: dict[str, _Note] = {}


def _note(task: Any) -> _Note:
    return _NOTES.setdefault(task.name, _Note())


class _Probe:
    """First item of every task's ``uptodate``: starts the task's note; never decides anything (returns None)."""

    def configure_task(self, task: Any) -> None:
        task.value_savers.append(lambda: {"_inputs": len(task.file_dep)})

    def __call__(self, task: Any, values: dict[str, Any]) -> None:
        _NOTES[task.name] = _Note(first=not values, inputs=values.get("_inputs"))


def _noting(check: Callable[..., Any]) -> Callable[..., Any]:
    """An uptodate callable taking (task, values) that also notes a "not up to date" answer."""

    def checked(task: Any, values: dict[str, Any]) -> Any:
        result = check(task, values)
        if result is not None and not result:
            _note(task).checks = True
        return result

    return functools.wraps(check)(checked)  # `doit info` shows the check's own name


def _explained(tasks: Any) -> Any:
    """A creator's task dict(s) with the probes that let each step say why it runs (see :func:`why`)."""
    if isinstance(tasks, dict):
        return _explain(tasks)
    return (_explain(task) for task in tasks)


def _explain(task: dict[str, Any]) -> dict[str, Any]:
    if not task.get("actions"):
        return task
    checks: list[Any] = [_Probe()]
    for check in task.get("uptodate", []):
        if type(check) is config_changed:
            check = Settings(check.config, check.encoder)
        elif (not isinstance(check, config_changed) and callable(check)
              and list(inspect.signature(check).parameters)[:2] == ["task", "values"]):
            check = _noting(check)
        checks.append(check)
    return {**task, "uptodate": checks}


def why(task: Any, root: Path) -> str:
    """One short reason ``task`` runs: first build, settings changed, an output missing, which input changed, or
    forced (``doit -a``, or a step that always runs)."""
    note = _NOTES.get(task.name)
    if note is None:
        return "always runs"
    if note.first:
        return "first build"
    if note.settings is not None:
        keys = note.settings
        return "settings changed" + (f": {', '.join(keys[:4])}{', …' if len(keys) > 4 else ''}" if keys else "")
    if note.checks:
        return _check_reason(task, root)
    missing = next((t for t in task.targets if not os.path.exists(t)), None)
    if missing is not None:
        return f"output missing: {_rel(missing, root)}"
    if task.dep_changed:
        return changed_inputs(sorted(task.dep_changed), root)
    if note.inputs is not None and note.inputs != len(task.file_dep):
        fewer = note.inputs - len(task.file_dep)
        return f"{abs(fewer)} input{'s' if abs(fewer) > 1 else ''} {'removed' if fewer > 0 else 'added'}"
    return "forced"


def _check_reason(task: Any, root: Path) -> str:
    if task.name.startswith("image-platform:") and task.targets:
        from wgobuild import imaging

        return imaging.stale_reason(Path(task.targets[0]), root) or "the recorded image is gone"
    if (task.options or {}).get("push"):
        return "--push"
    return "an up-to-date check says it is not"


def _plain(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` as it reads back from doit's state (JSON: tuples become lists)."""
    return dict(json.loads(json.dumps(config, sort_keys=True, default=str)))


def _rel(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return path


class Reporter(ConsoleReporter):
    """doit's console output with the reason each step runs, live lines on a terminal, wgobuild's per-step table,
    and the run's reports (run.json, trace.json, runs/) at the end."""

    reports_dir: Path | None = None
    root: Path = Path()

    def __init__(self, outstream: Any, options: Any) -> None:
        super().__init__(outstream, options)
        self.tasks: dict[str, Any] = {}
        self.selected: list[str] = []
        self.seen: list[str] = []  # steps with actions, as they ran or were skipped (for the no-op shortcut)
        self.ok = True

    def initialize(self, tasks: dict[str, Any], selected_tasks: list[str]) -> None:
        self.tasks, self.selected = tasks, list(selected_tasks)

    def write(self, text: str) -> None:
        progress.write(text)  # one lock for every line: parallel steps never interleave mid-line

    def execute_task(self, task: Any) -> None:
        if task.actions:
            self.seen.append(task.name)
        if task.actions and task.name[0] != "_":
            reason = why(task, self.root)
            RUN.because(task.name, reason)
            self.write(f".  {task.title()} ({reason})\n")
            progress.start(task.name)

    def add_success(self, task: Any) -> None:
        progress.finish(task.name)

    def add_failure(self, task: Any, fail: Any) -> None:
        self.ok = False
        progress.finish(task.name)
        super().add_failure(task, fail)

    def skip_uptodate(self, task: Any) -> None:
        if task.actions:
            self.seen.append(task.name)
        super().skip_uptodate(task)
        RUN.record(StepFigures(step=task.name, status="up-to-date"))

    def skip_ignore(self, task: Any) -> None:
        self.ok = False
        super().skip_ignore(task)

    def runtime_error(self, msg: str) -> None:
        self.ok = False
        super().runtime_error(msg)

    def complete_run(self) -> None:
        progress.close()
        super().complete_run()
        self.write(RUN.table() + "\n")
        if self.reports_dir is not None:
            RUN.save(self.reports_dir)
        fastpath.store([fastpath.TaskSeen(t.name, bool(t.actions), tuple(t.file_dep), tuple(t.targets))
                        for t in self.tasks.values()], self.selected, self.seen, self.ok and not self.failures)
        if fastpath.doit_args() is not None or Path(sys.argv[0]).stem == "wgobuild":
            # The process ends with the run: the interpreter's last collection would walk every object the run
            # made (the task graph, caches), 20 ms of every run's end. Frozen objects are left to the exit.
            gc.freeze()


class Project:
    """The tasks of one Go module; computed once per doit run."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.inputs = gotool.ProjectInputs(cfg)
        self.host = self.inputs.host
        self.build_platforms = self.inputs.build_platforms

    @functools.cached_property
    def version(self) -> str:
        """The images' version; says once per run why there is no git version, when there is none."""
        if self.inputs.stamp.note:
            print(f"wgobuild: {self.inputs.stamp.note}", file=sys.stderr)
        return self.inputs.image_version

    def prepare(self) -> None:
        """Work out every input now (go env, go list, git), so that a failure ends the run with one message."""
        self.inputs.dependencies  # noqa: B018
        self.version  # noqa: B018

    def withdraw_outputs(self) -> None:
        """Remove every binary, its SBOMs and the image records: what the sources can no longer be listed for
        (go list failed) must not stay looking current, as a failed go build removes its binary."""
        from wgobuild import imaging, sbom

        for platform in self.build_platforms:
            for binary in self.cfg.binaries:
                for path in (self.cfg.binary_path(binary, platform), *sbom.binary_paths(self.cfg, binary.name,
                                                                                        platform)):
                    files.remove(path)
        for platform in self.cfg.platforms:
            files.remove(imaging.record_path(self.cfg, platform))

    def build_settings(self, platform: Platform) -> dict[str, Any]:
        """Toolchain version and the environment that changes what go build and go test produce."""
        return self.inputs.toolchain.settings(platform.arch, self.cfg.build.cgo)

    # -- tasks ----------------------------------------------------------------------------------------------------

    def task_compile(self) -> Iterator[dict[str, Any]]:
        """Cross-compile every binary for every platform (CGO off, -trimpath, stripped, version stamped) and write
        its SBOMs (SPDX, CycloneDX) into dist/sbom/."""
        from wgobuild import sbom

        cfg, build = self.cfg, self.cfg.build
        batches = gotool.Batches()
        for platform in self.build_platforms:
            requests = {b.name: gotool.BuildRequest(b.package, cfg.binary_path(b, platform),
                                                    self.inputs.binary_version(b.name, platform),
                                                    frozenset(self.inputs.files(b.name, platform)))
                        for b in cfg.binaries}
            for binary in cfg.binaries:
                name = f"{binary.name}-{platform.os}-{platform.arch}"
                output, version = requests[binary.name].output, requests[binary.name].version
                batch = gotool.BatchPlan(batches, requests[binary.name],
                                         tuple(r for n, r in requests.items() if n != binary.name))
                settings = {"package": binary.package, "version": version, "ldflags": build.ldflags,
                            "tags": build.tags, "cgo": build.cgo, "trimpath": build.trimpath,
                            "toolchain": self.build_settings(platform)}
                if os.environ.get("SOURCE_DATE_EPOCH"):  # the SBOMs' creation time
                    settings["sbom_epoch"] = os.environ["SOURCE_DATE_EPOCH"]
                inputs = self.inputs.files(binary.name, platform)
                outputs = [output, *sbom.binary_paths(cfg, binary.name, platform)]
                cached = Step("compile", f"compile:{name}", tuple(inputs), settings, tuple(outputs))
                yield {
                    "name": name,
                    "actions": [step(f"compile:{name}", lazy("teamcache", "run"), cfg, cached, sbom.compile_binary, cfg,
                                     binary, platform, version, label=f"compile:{name}", batch=batch,
                                     pass_changed=True)],
                    "file_dep": inputs,
                    "targets": [str(p) for p in outputs],
                    "uptodate": [config_changed(settings)],
                    "clean": True,
                }

    def task_test(self) -> dict[str, Any]:
        """Run the Go tests (go test -json) and write dist/reports/junit.xml."""
        cfg, test = self.cfg, self.cfg.test
        junit = cfg.reports_dir / "junit.xml"
        if not test.enabled:
            return {"actions": [], "doc": "tests are off ([test].enabled = false)"}
        settings = {"test": [test.packages, test.flags, test.timeout, cfg.build.tags, cfg.build.cgo,
                             self.build_settings(self.host)]}
        cached = Step("test", "test", tuple(self.inputs.test_files), {**settings, "host": str(self.host)}, (junit,))
        return {
            "actions": [step("test", lazy("teamcache", "run"), cfg, cached, lazy("gotest", "test"), cfg.root,
                             test.packages, flags=test.flags, timeout=test.timeout, tags=cfg.build.tags,
                             cgo=cfg.build.cgo, junit=junit, label="test")],
            "file_dep": self.inputs.test_files,
            "targets": [str(junit)],
            "uptodate": [config_changed(settings)],
            "clean": True,
        }

    def task_golden(self) -> Iterator[dict[str, Any]]:
        """Run a built binary on an input file and compare its output with the expected file."""
        cfg = self.cfg
        yield {"name": None, "doc": "golden-output cases (binary < input == expected)"}
        for case in cfg.golden:
            binary = next(b for b in cfg.binaries if b.name == (case.binary or cfg.binaries[0].name))
            exe = cfg.binary_path(binary, self.host)
            inputs = [str(exe), str(cfg.root / case.input), str(cfg.root / case.expected)]
            cached = Step("golden", f"golden:{case.name}", tuple(inputs), {"args": case.args}, ())
            yield {
                "name": case.name,
                "actions": [step(f"golden:{case.name}", lazy("teamcache", "run"), cfg, cached, gotool.golden, exe,
                                 case.args, cfg.root / case.input, cfg.root / case.expected, cwd=cfg.root)],
                "file_dep": inputs,
                "uptodate": [config_changed({"args": case.args})],
            }

    def task_dockerfile(self) -> Iterator[dict[str, Any]]:
        """Render the Dockerfile and .dockerignore of each platform into dist/docker/<platform>/."""
        from wgobuild import dockerfile

        cfg = self.cfg
        for platform in cfg.platforms:
            out = dockerfile.docker_dir(cfg, platform)
            templates = [str(p) for p in dockerfile.template_paths(cfg, platform)]
            yield {
                "name": platform.key,
                "actions": [step(f"dockerfile:{platform.key}", dockerfile.write, cfg, platform, self.version, out)],
                "file_dep": templates,
                "targets": [str(out / "Dockerfile"), str(out / ".dockerignore")],
                "uptodate": [config_changed(self.image_settings(platform))],
                "clean": True,
            }

    def task_scripts(self) -> dict[str, Any]:
        """Render the PowerShell scripts (harden, audit, rotate-logs, cleanup, service) into dist/powershell/."""
        from wgobuild import powershell

        cfg = self.cfg
        out = powershell.script_dir(cfg)
        return {
            "actions": [step("scripts", powershell.write_scripts, cfg, out)],
            "file_dep": [str(powershell.template_path(name)) for name in (*powershell.SCRIPTS, powershell.SHARED)],
            "targets": [str(out / f"{name}.ps1") for name in powershell.SCRIPTS],
            "uptodate": [config_changed({"harden": asdict(cfg.harden), "logs": asdict(cfg.logs),
                                         "service": asdict(cfg.service), "project": asdict(cfg.project)})],
            "clean": True,
        }

    def task_image_platform(self) -> Iterator[dict[str, Any]]:
        """Build one image per platform (Docker Engine, or daemonless OCI where no engine can), beside the tests:
        the image is not tagged in an engine here, so a failing test leaves no new image looking shipped."""
        from wgobuild import dockerfile, imaging

        cfg = self.cfg
        for platform in cfg.platforms:
            record = imaging.record_path(cfg, platform)
            inputs = [str(cfg.binary_path(b, platform)) for b in cfg.image_binaries]
            inputs.append(str(dockerfile.docker_dir(cfg, platform) / "Dockerfile"))
            after: list[str] = []  # not the tests: the image is built beside them; publishing waits for them
            if cfg.image.style == "multistage":  # compiled inside the builder stage: the Go sources are the input
                inputs += sorted({f for b in cfg.binaries for f in self.inputs.files(b.name, platform)})
            if platform.os == "windows" and cfg.image.runtime == "servercore":
                inputs += [str(p) for p in dockerfile.script_files(cfg).values()]
                after.append("scripts")
            yield {
                "name": platform.key,
                "actions": [step(f"image-platform:{platform.key}", imaging.build_platform, cfg, platform,
                                 self.version, push=self.push_requested)],
                "file_dep": inputs,
                "task_dep": after,
                "targets": [str(record)],
                "uptodate": [config_changed({**self.image_settings(platform), **(  # the secret scan's allowlist
                                 {"allow_secrets": allow} if (allow := cfg.policy.allow_secrets) else {})}),
                             lambda task, values, record=record: imaging.still_present(record)],
                "clean": True,
            }

    def task_image(self) -> dict[str, Any]:
        """Once the tests and golden cases pass: tag the images in their engine (loading daemonless ones into it),
        publish them as one tag (OCI layout, docker-save tar, registry push) and report their sizes."""
        from wgobuild import imaging

        cfg = self.cfg
        records = [str(imaging.record_path(cfg, p)) for p in cfg.platforms]
        summary = cfg.reports_dir / "images.json"
        host = Platform.host()

        def host_first(platform: Platform) -> tuple[bool, bool]:
            return platform.os != host.os, platform.arch != host.arch

        steps = [f"image-platform:{p.key}" for p in sorted(cfg.platforms, key=host_first)]
        compiles = [f"compile:{b.name}-{p.os}-{p.arch}" for p in sorted(self.build_platforms, key=host_first)
                    for b in cfg.binaries]
        return {
            "actions": [step("image", imaging.publish, cfg, self.version)],
            "file_dep": records,
            # Nothing is tagged, loaded or pushed before the tests and golden cases pass; image = false binaries
            # are built all the same. The order is the order steps start in, and so the order Go builds and tests
            # take the cores in (gotool.GO_SLOTS): every compile first, this machine's platform leading (the
            # golden cases run its binaries, a local engine loads its image), then the image steps, then the
            # tests, which only this step waits for: the image steps run beside them.
            "task_dep": [*compiles, *steps, "test", "golden", "scripts"],
            "targets": [str(summary)],
            "params": [{"name": "push", "long": "push", "type": bool, "default": False,
                        "help": "push the image(s) to the registry of image.repository"}],
            "uptodate": [config_changed({"push": cfg.image.push, "outputs": cfg.image.outputs,
                                         "reference": cfg.image_repository, "tag": cfg.image.tag,
                                         **({"engines": cfg.engines} if cfg.engines else {}),  # where to load
                                         **({"policy": rules} if any((rules := asdict(cfg.policy)).values()) else {})}),
                         lambda task, values: not (task.options or {}).get("push")],
            "clean": [(clean_outputs, [cfg])],  # the whole output folder, not only the targets doit knows
        }

    # -- helpers --------------------------------------------------------------------------------------------------

    @property
    def push_requested(self) -> bool:
        """``image.push``, or ``--push`` on this run's command line (an option of the ``image`` step only, which the
        image steps before it need to know: they may take an image the repository already holds)."""
        return self.cfg.image.push or "--push" in sys.argv[1:]

    def image_settings(self, platform: Platform) -> dict[str, Any]:
        engine = self.cfg.engine_for(platform)  # [engines]: absent when unmapped, so no upgrade rebuilds
        return {"image": asdict(self.cfg.image), "version": self.version, "platform": str(platform),
                **({"engine": engine} if engine else {}),
                "project": asdict(self.cfg.project), "binaries": [b.name for b in self.cfg.binaries]}


def clean_outputs(cfg: Config) -> None:
    """``doit clean``: remove every file wgobuild wrote under the output folder and say what is kept."""
    from wgobuild import outputs

    for line in outputs.clean(cfg):
        proc.echo(line)


class MD5Checker(DoitMD5Checker):
    """doit's file checker, with each file's digest read once per run and shared. doit hashes a changed file for
    every step that depends on it, twice (before the step and after it), in the thread that starts steps: a new
    binary read by golden cases and image steps was hashed 6-10 times per run, and once more by its SBOM, layer and
    image fingerprint. The digest is :func:`files.sha256_file`'s (remembered while the file's inode, size, mtime and
    ctime are unchanged, and twice as fast as md5 where the CPU has SHA instructions). doit's own name is kept: doit
    re-runs every step when the checker's class name changes; a state saved by its md5 checker is still current
    while mtimes are, and a step whose input was touched since runs once."""

    def md5(self, path: str) -> str:
        return files.sha256_file(Path(path))

    def check_modified(self, file_path: str, file_stat: os.stat_result, state: Any) -> bool:
        timestamp, size, digest = state
        if file_stat.st_mtime == timestamp:
            return False
        return bool(file_stat.st_size != size or digest != self.md5(file_path))

    def get_state(self, dep: str, current_state: Any) -> tuple[float, int, str] | None:
        stat = os.stat(dep)
        if current_state and current_state[0] == stat.st_mtime:
            return None
        return stat.st_mtime, stat.st_size, self.md5(dep)


def doit_config(cfg: Config) -> dict[str, Any]:
    """doit settings: state in a sqlite3 DB under ``.wgobuild/`` (safe for concurrent runs), default ``image``,
    steps in parallel threads."""
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    Reporter.reports_dir, Reporter.root = cfg.reports_dir, cfg.root
    return {
        "dep_file": str(cfg.state_dir / "doit-state.sqlite3"),
        "backend": "sqlite3",
        "default_tasks": ["image"],
        "reporter": Reporter,
        "verbosity": 2,
        "check_file_uptodate": MD5Checker,
        # Independent steps run side by side like `make -j`: links of several platforms, tests beside compiles.
        # Threads, not processes: actions are cheap Python around external programs. `doit -n 1` runs serially.
        # More threads than cores: Go builds and tests take one of a core's slots each (gotool.GO_SLOTS), so the
        # spare threads run steps that mostly wait (image steps, engine loads, remote [engines]).
        "num_process": max(min(8, (os.cpu_count() or 1) + 3), len(set(cfg.engines.values()))),
        "par_type": "thread",
    }


def load_tasks(root: str | Path = ".", config_file: str | Path | None = None) -> dict[str, Any]:
    """Everything a ``dodo.py`` needs (``DOIT_CONFIG`` and ``task_*``), for the Go module at ``root``.

    A bad ``wgobuild.toml`` ends the run here with one message and exit code 2, before any task is created.
    """
    if not Path(root).is_absolute():
        # Relative to the dodo.py's folder when called from one, so `doit -f path/dodo.py` works from anywhere.
        caller = sys._getframe(1).f_globals.get("__file__")
        base = Path(caller).resolve().parent if caller else Path.cwd()
        root = base / root
    args = fastpath.doit_args()  # None unless this process is `doit` itself
    if args is not None and fastpath.answer(Path(root), "doit", args, Path(config_file) if config_file else None):
        raise SystemExit(0)  # nothing to do, said as doit would say it (see wgobuild.fastpath)
    return task_creators(root, config_file, entry="doit" if args is not None and fastpath.eligible(args) else None)


def task_creators(root: str | Path, config_file: str | Path | None = None,
                  entry: str | None = None) -> dict[str, Any]:
    """``DOIT_CONFIG`` and the ``task_*`` creators, in the order doit should list them. ``entry`` (``doit`` or
    ``wgobuild``) names the command of a default run (``image``), whose no-op shortcut a fully successful run
    refreshes; any other command (None) drops the shortcuts (see :mod:`wgobuild.fastpath`)."""
    try:
        cfg = config_mod.load(root, config_file)
        if cfg.engines:  # the docker contexts [engines] names exist (only a build needs them)
            from wgobuild import engine

            engine.check_contexts(cfg)
        runlock.hold(cfg.state_dir)  # one run at a time: before doit opens its state DB and before git/go run
        project = Project(cfg)
    except WgobuildError as exc:
        print(f"wgobuild: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    try:
        project.prepare()
    except WgobuildError as exc:
        project.withdraw_outputs()
        fastpath.forget(cfg.state_dir)
        print(f"wgobuild: {exc}\nwgobuild: the binaries built from the previous sources were removed; fix the "
              "error above and run again", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    if entry is None:
        fastpath.forget(cfg.state_dir)
    else:
        from wgobuild import imaging

        note = project.inputs.stamp.note
        fastpath.begin(fastpath.Run(
            root=cfg.root, entry=entry, config_file=cfg.path, out_dir=cfg.out_dir,
            records=[str(imaging.record_path(cfg, p)) for p in cfg.platforms],
            git=cfg.project.version == "git", stderr=[f"wgobuild: {note}"] if note else []))
    proc.install_signal_handlers()
    creators = {
        "compile": project.task_compile,
        "test": project.task_test,
        "golden": project.task_golden,
        "dockerfile": project.task_dockerfile,
        "scripts": project.task_scripts,
        "image-platform": project.task_image_platform,
        "image": project.task_image,
    }
    return {"DOIT_CONFIG": doit_config(cfg), **{f"task_{name}": _creator(fn) for name, fn in creators.items()}}


def _creator(method: Callable[[], Any]) -> Callable[[], Any]:
    """A one-line task creator: doit reads each creator's source to order them, and short source reads fast."""
    creator = lambda: _explained(method())  # noqa: E731
    creator.__doc__ = method.__doc__
    return creator
