"""wgobuild's modules form no import cycle, counting imports inside functions (they are cycles waiting to bite)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "wgobuild"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """Every wgobuild module ``path`` imports, anywhere in the file (``from . import x`` resolved)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from a import b`: module a.b when there is one, else the name b from module a.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for target in targets:
            # `import a.b.c` imports a, a.b and a.b.c; keep the longest name that is a module of the package.
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def module_graph(root: Path) -> dict[str, set[str]]:
    paths = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    known = set(paths)
    return {name: imports_of(path, name, known) for name, path in paths.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None. A package importing its own submodules is not a cycle:
    ``wgobuild.oci`` -> ``wgobuild.oci.x`` edges from ``__init__`` are kept, the implicit child -> parent ones
    (Python runs the parent package first) are not edges here."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_wgobuild_has_no_import_cycle() -> None:
    graph = module_graph(PACKAGE)
    assert {"wgobuild.image", "wgobuild.engine", "wgobuild.oci.backend", "wgobuild.config"} <= set(graph)
    assert "wgobuild.config" in graph["wgobuild.engine"]  # the walk sees real edges
    assert find_cycle(graph) is None


def test_a_cycle_through_a_function_level_import_is_found(tmp_path: Path) -> None:
    """Negative control: a package whose only cycle goes through an import inside a function."""
    pkg = tmp_path / "wgobuild"
    (pkg / "oci").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "oci" / "__init__.py").write_text("")
    (pkg / "image.py").write_text("from wgobuild.oci import backend\n")
    (pkg / "oci" / "backend.py").write_text("from . import blobs\n")
    (pkg / "oci" / "blobs.py").write_text("def f() -> None:\n    from ..image import x\n")
    graph = module_graph(pkg)
    assert graph["wgobuild.oci.blobs"] == {"wgobuild.image"}
    assert find_cycle(graph) == ["wgobuild.image", "wgobuild.oci.backend", "wgobuild.oci.blobs", "wgobuild.image"]


@pytest.mark.parametrize(("source", "expected"), [
    ("import wgobuild.oci.layer\n", {"wgobuild.oci.layer"}),
    ("from wgobuild import proc, oci\n", {"wgobuild.proc", "wgobuild.oci"}),
    ("from .layer import Layer\n", {"wgobuild.oci.layer"}),
    ("from .. import files\n", {"wgobuild.files"}),
    ("import json\n", set()),
])
def test_imports_are_resolved_to_modules(tmp_path: Path, source: str, expected: set[str]) -> None:
    known = {"wgobuild", "wgobuild.proc", "wgobuild.files", "wgobuild.oci", "wgobuild.oci.layer", "wgobuild.oci.x"}
    path = tmp_path / "x.py"
    path.write_text(source)
    assert imports_of(path, "wgobuild.oci.x", known) == expected
