"""``wgobuild graph``: the task graph as Graphviz DOT (or SVG), steps that would run told apart from up-to-date ones.

A doit command, so it sees exactly the tasks and the state a run would: each step's own up-to-date check decides its
colour (orange: would run, with the reason it would give; grey: up to date); a step after one that would run may run
too (dashed). Arrows go from a step to the steps that use its output.

    wgobuild graph                 # DOT on stdout
    wgobuild graph -o graph.svg    # SVG through Graphviz's dot (installed separately)
    wgobuild graph --svg > g.svg
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from doit.cmd_base import DoitCmdBase

from wgobuild import files, proc
from wgobuild.errors import WgobuildError

_OPTIONS = (
    {"name": "output", "short": "o", "long": "output", "type": str, "default": "",
     "help": "write to this file (.svg: rendered by Graphviz's dot; anything else: DOT) instead of stdout"},
    {"name": "svg", "long": "svg", "type": bool, "default": False,
     "help": "render SVG with Graphviz's dot (needs the graphviz package)"},
)

_STYLE = {
    "run": 'style="filled,bold" fillcolor="#ffd8a8" color="#e8590c"',
    "may": 'style="filled,dashed" fillcolor="#fff4e6" color="#e8590c"',
    "up-to-date": 'style="filled" fillcolor="#f1f3f5" color="#adb5bd" fontcolor="#495057"',
    "group": 'shape=ellipse style="dashed" color="#868e96"',
}


class Graph(DoitCmdBase):
    """The doit command behind ``wgobuild graph``."""

    name = "graph"
    doc_purpose = "print the task graph as DOT (SVG with --svg or -o x.svg), showing which steps would run"
    doc_usage = ""
    doc_description = None
    cmd_options = _OPTIONS

    def _execute(self, output: str = "", svg: bool = False) -> int:
        from wgobuild.doit_tasks import Reporter, why

        tasks = {t.name: t for t in self.task_list}
        state: dict[str, str] = {}
        reasons: dict[str, str] = {}
        for name, task in tasks.items():
            if not task.actions:
                state[name] = "group"
                continue
            status = self.dep_manager.get_status(task, tasks).status
            state[name] = "run" if status != "up-to-date" else "up-to-date"
            if state[name] == "run":
                reasons[name] = why(task, Reporter.root)
        self.dep_manager.close()
        edges = sorted(set(dependencies(tasks)))
        text = dot(state, reasons, edges)
        if svg or output.lower().endswith(".svg"):
            try:
                text = render_svg(text)
            except WgobuildError as exc:  # doit would print a traceback: one line instead
                sys.stderr.write(f"wgobuild: {exc}\n")
                return exc.exit_code
        if output:
            files.write_text(Path(output), text)
            self.outstream.write(f"wrote {output}\n")
        else:
            self.outstream.write(text)
        return 0


def dependencies(tasks: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    """(producer, user) pairs: ``task_dep`` entries and ``file_dep`` files that are another task's target."""
    producer = {target: name for name, task in tasks.items() for target in task.targets}
    for name, task in tasks.items():
        for dep in task.task_dep:
            if dep in tasks:
                yield dep, name
        for path in task.file_dep:
            if path in producer and producer[path] != name:
                yield producer[path], name


def dot(state: Mapping[str, str], reasons: Mapping[str, str], edges: list[tuple[str, str]]) -> str:
    """DOT text of the graph; a step downstream of one that would run is drawn as "may run"."""
    users: dict[str, list[str]] = {}
    for before, after in edges:
        users.setdefault(before, []).append(after)
    shown = dict(state)
    todo = [n for n, s in state.items() if s == "run"]
    while todo:
        for user in users.get(todo.pop(), []):
            if shown[user] == "up-to-date":
                shown[user] = "may"
                todo.append(user)
    lines = ["digraph wgobuild {", "  rankdir=LR;", '  node [shape=box fontname="Helvetica" fontsize=11];',
             '  edge [color="#868e96"];']
    for name in sorted(shown):
        label = {"run": f"{name}\\nwould run: {reasons.get(name, '')}", "may": f"{name}\\nmay run",
                 "up-to-date": f"{name}\\nup to date", "group": name}[shown[name]]
        lines.append(f"  {_quote(name)} [label={_quote(label, escaped=True)} {_STYLE[shown[name]]}];")
    lines += [f"  {_quote(a)} -> {_quote(b)};" for a, b in edges]
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_svg(text: str) -> str:
    """SVG of DOT ``text`` through Graphviz's ``dot`` (one clear error when it is not installed)."""
    program = shutil.which("dot")
    if program is None:
        raise WgobuildError("graph: Graphviz's `dot` is not on PATH; install graphviz (apt-get install graphviz, "
                            "winget install graphviz) or write DOT with `wgobuild graph -o graph.dot`")
    with tempfile.TemporaryDirectory(prefix="wgobuild-graph-") as tmp:
        source, target = Path(tmp) / "graph.dot", Path(tmp) / "graph.svg"
        source.write_text(text, encoding="utf-8")
        proc.run([program, "-Tsvg", "-o", str(target), str(source)], quiet=True, check=True, step="graph: dot")
        return target.read_text(encoding="utf-8")


def _quote(text: str, escaped: bool = False) -> str:
    """A DOT quoted ID; ``escaped`` keeps ``\\n`` line breaks made above."""
    body = text.replace('"', '\\"') if escaped else text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{body}"'
