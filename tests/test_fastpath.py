"""The no-op shortcut (wgobuild/fastpath.py): it answers "nothing to do" only when doit would, and then says it
exactly as doit does; any edit doit could see makes it decline, so doit runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures_go import DoitRun, run_doit, write_module

from wgobuild import fastpath

pytestmark = pytest.mark.slow


def run_wgobuild(root: Path, *args: str, env: dict[str, str] | None = None) -> DoitRun:
    result = subprocess.run([sys.executable, "-m", "wgobuild.cli", *args], cwd=root, capture_output=True, text=True,
                            timeout=600, env={**os.environ, **(env or {})})
    return DoitRun(result.returncode, result.stdout + result.stderr)


def last_record(root: Path) -> dict[str, object]:
    """The newest run record under dist/reports/runs/ (every run, shortcut or not, writes one)."""
    newest = max((root / "dist/reports/runs").glob("*.json"))
    record: dict[str, object] = json.loads(newest.read_text())
    return record


def answered(root: Path) -> bool:
    """Did the last run end in the shortcut (doit never loaded)?"""
    return "shortcut" in last_record(root)


def git(root: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e"}
    subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)


def settle(root: Path, env: dict[str, str] | None = None) -> DoitRun:
    """No-op runs until one is answered by the snapshot: the first goes through doit and stores it, unless a
    source is as new as the run (git rewrites its index on every `git status` within the second a tracked file
    changed in, since it compares whole seconds: runs a quarter of a second apart reach the next one)."""
    for _ in range(8):
        run = run_doit(root, "image", env=env)
        assert run.returncode == 0 and run.ran == set(), run.output
        if answered(root):
            return run
        time.sleep(0.25)
    raise AssertionError(f"eight no-op runs and none answered by the snapshot:\n{run.output}")


def test_a_noop_is_answered_as_doit_answers_it_through_both_entry_points(tmp_path: Path) -> None:
    root = write_module(tmp_path / "multi")
    assert run_doit(root, "image").returncode == 0
    answer = settle(root)
    assert not (root / ".wgobuild/noop-wgobuild.json").exists(), "each entry point keeps its own snapshot"
    by_doit = run_doit(root, "image", env={"WGOBUILD_NO_FASTPATH": "1"})
    assert not answered(root), "negative control: with the shortcut off doit answers"
    assert by_doit.returncode == 0 and by_doit.ran == set()
    assert sorted(answer.output.splitlines()) == sorted(by_doit.output.splitlines()), "the same lines as doit's"
    assert answer.output.rstrip().endswith("wgobuild: nothing to do, all 7 steps up to date."), answer.output
    record = last_record(root)  # the shortcut's own run record, like any no-op run's
    assert record["ran"] == {} and record["up_to_date"] == 7

    first = run_wgobuild(root, "image")
    second = run_wgobuild(root)
    assert first.returncode == second.returncode == 0 and first.ran == second.ran == set(), second.output
    assert answered(root), second.output
    assert set(second.skipped) == set(answer.skipped)


def test_the_shortcut_declines_whenever_doit_would_run(tmp_path: Path) -> None:
    root = write_module(tmp_path / "multi")
    (root / ".gitignore").write_text("dist/\n.wgobuild/\n")
    assert run_doit(root, "image").returncode == 0
    settle(root)

    def declined(expected: set[str], *args: str, env: dict[str, str] | None = None, ok: bool = True) -> DoitRun:
        result = run_doit(root, *(args or ("image",)), env=env)
        assert not answered(root), f"the shortcut answered after an edit doit sees:\n{result.output}"
        assert (result.returncode == 0) == ok, result.output
        assert expected <= result.ran, result.output
        return result

    def edit(name: str, old: str, new: str) -> None:
        path = root / name
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))

    worker = {"compile:worker-linux-amd64"}
    edit("lib/jobs/jobs.go", "return 1", "return 2 - 1")  # a body edit
    declined(worker)
    settle(root)
    (root / "lib/jobs/extra.go").write_text("package jobs\n\n// Extra is new.\nfunc Extra() int { return 3 }\n")
    declined(worker)  # a new file in a package folder
    settle(root)
    (root / "lib/jobs/extra.go").unlink()  # a deleted file
    declined(worker)
    settle(root)
    (root / "lib/jobs/tagged.go").write_text("//go:build ignore\n\npackage jobs\n\nconst Tagged = 1\n")
    declined(set())  # a file no build reads today: doit looks (its go list cache sees a new file) and does nothing
    settle(root)
    edit("lib/jobs/tagged.go", "//go:build ignore\n\n", "")  # the same file, now built: no step listed it
    declined(worker)
    settle(root)
    edit("wgobuild.toml", 'version = "1.0.0"', 'version = "1.0.1"')  # a config change
    declined({"compile:api-linux-amd64", "compile:worker-linux-amd64"})
    settle(root)
    declined(worker, env={"GOAMD64": "v2"})  # an environment variable that changes the binaries
    settle(root, env={"GOAMD64": "v2"})
    (root / "dist/linux-amd64/api").unlink()  # a vanished output
    declined({"compile:api-linux-amd64"})
    settle(root)
    image = json.loads((root / "dist/images/linux-amd64.json").read_text())
    tar = next(Path(out) for out in image["outputs"] if out.endswith(".docker.tar"))
    tar.unlink()  # an image output that vanished: found as doit's up-to-date check finds it (the record's outputs)
    declined({"image-platform:linux-amd64"})
    settle(root)
    subprocess.run([sys.executable, "-m", "doit", "forget", "image-platform"], cwd=root, check=True,
                   capture_output=True)  # doit's state changed under the snapshot
    declined({"image-platform:linux-amd64"})
    settle(root)
    declined({"image"}, "image", "--push", ok=False)  # an option: doit decides (the push has nowhere to go here)
    assert "image" in declined({"image"}).ran, "the failed push left the publish step to do"
    settle(root)

    edit("wgobuild.toml", 'version = "1.0.1"', 'version = "git"')
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-qm", "first")
    declined(worker)
    settle(root)
    git(root, "tag", "v2.0.0")  # a new tag: every binary gets the new version
    result = declined({"compile:api-linux-amd64", "compile:worker-linux-amd64"})
    assert "settings changed: version" in result.reasons["compile:api-linux-amd64"], result.output
    settle(root)
    (root / "notes.txt").write_text("untracked\n")  # a file in the module folder, even one no step reads
    declined(set())
    settle(root)


def test_a_run_that_saw_a_file_change_while_it_ran_stores_no_snapshot(tmp_path: Path) -> None:
    root = write_module(tmp_path / "multi")
    state = root / ".wgobuild"
    state.mkdir()
    (state / "run.owner").write_text("{}\n")
    run = fastpath.Run(root=root, entry="doit", config_file=root / "wgobuild.toml", out_dir=root / "dist",
                       records=[], git=False)
    fastpath.begin(run)
    task = fastpath.TaskSeen("compile:api-linux-amd64", True, (str(root / "cmd/api/main.go"),),
                             (str(root / "dist/linux-amd64/api"),))
    time.sleep(0.05)
    written = fastpath.store([task], ["image"], [task.name], ok=True)
    assert written == state / "noop-doit.json", "negative control: nothing changed during the run, stored"
    time.sleep(0.05)
    (root / "lib/unused/unused.go").write_text("package unused\n")  # after the run began: doit may have seen either
    assert fastpath.store([task], ["image"], [task.name], ok=True) is None
    assert not written.exists(), "the old snapshot is dropped too"
    os.utime(root / "lib/unused/unused.go", ns=(0, 0))
    assert fastpath.store([task], ["image"], [task.name], ok=False) is None, "a failed step: nothing stored"
    assert fastpath.store([task], ["compile"], [task.name], ok=True) is None, "not the default task: nothing stored"
    assert fastpath.store([task], ["image"], [], ok=True) is None, "a step not seen: nothing stored"
    assert fastpath.store([task], ["image"], [task.name], ok=True) == written
    snapshot = json.loads(written.read_text())
    assert fastpath._holds(snapshot), "negative control: nothing changed since it was stored"
    extra = root / "lib/unused/extra.go"
    extra.write_text("//go:build ignore\n\npackage unused\n")  # listed by no task: only the walk sees it
    os.utime(extra, ns=(0, 0))
    os.utime(extra.parent, ns=(0, 0))  # an old folder and file: the storing run below did not see them change
    assert not fastpath._holds(snapshot), "a new file in a module folder"
    assert fastpath.store([task], ["image"], [task.name], ok=True) == written
    snapshot = json.loads(written.read_text())
    assert fastpath._holds(snapshot), "negative control: stored again with the new file"
    (root / "lib/unused/unused.go").write_text("package unused\n\nconst X = 1\n")  # no task lists it either
    assert not fastpath._holds(snapshot), "an edited file in a module folder"


def test_the_shortcut_is_only_for_the_default_run() -> None:
    assert fastpath.eligible([]) and fastpath.eligible(["image"]) and fastpath.eligible(["--continue", "image"])
    for args in (["image", "--push"], ["-a", "image"], ["compile"], ["-n", "2"], ["list"], ["image", "test"]):
        assert not fastpath.eligible(args), args
    assert fastpath.doit_args() is None, "pytest is not doit: importing a dodo.py here never exits"


def test_a_damaged_snapshot_declines(tmp_path: Path) -> None:
    root = write_module(tmp_path / "multi")
    (root / ".wgobuild").mkdir()
    for text in ("", "[]", "{", '{"context": 1}'):
        (root / ".wgobuild/noop-wgobuild.json").write_text(text)
        assert not fastpath.answer(root, "wgobuild", ["image"])
    shutil.rmtree(root / ".wgobuild")
    assert not fastpath.answer(root, "wgobuild", ["image"])
