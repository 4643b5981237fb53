"""`wgobuild graph`: the task graph as DOT, rendered by Graphviz's real `dot`, steps that would run told apart."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from fixtures_go import run_doit, write_module
from services import service_missing

pytestmark = pytest.mark.slow


def wgobuild(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wgobuild.cli", *args], cwd=root, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def nodes(dot: str) -> dict[str, str]:
    """Node name -> its attribute text."""
    return dict(re.findall(r'^  "([^"]+)" \[(.*)\];$', dot, re.MULTILINE))


def test_graph_tells_steps_that_would_run_apart_and_renders_with_dot(tmp_path: Path) -> None:
    if shutil.which("dot") is None:
        service_missing("graphviz: `dot` is not installed (apt-get install graphviz)")
    root = write_module(tmp_path / "multi")
    assert run_doit(root, "image").returncode == 0
    jobs = root / "lib/jobs/jobs.go"
    jobs.write_text(jobs.read_text().replace("return 1", "return 2 - 1"))

    result = wgobuild(root, "graph")
    assert result.returncode == 0, result.stderr
    graph = nodes(result.stdout)
    assert "would run: lib/jobs/jobs.go changed" in graph["compile:worker-linux-amd64"]
    assert "would run: lib/jobs/jobs.go changed" in graph["test"]
    assert "up to date" in graph["compile:api-linux-amd64"] and "would run" not in graph["compile:api-linux-amd64"]
    assert "may run" in graph["image-platform:linux-amd64"], "downstream of a step that would run"
    styles = {name: re.search(r'style="([^"]+)"', attrs)[1] for name, attrs in graph.items()}  # type: ignore[index]
    assert styles["compile:worker-linux-amd64"] != styles["compile:api-linux-amd64"]
    edges = set(re.findall(r'^  "([^"]+)" -> "([^"]+)";$', result.stdout, re.MULTILINE))
    assert ("compile:worker-linux-amd64", "image-platform:linux-amd64") in edges
    assert ("image-platform:linux-amd64", "image") in edges

    rendered = subprocess.run(["dot", "-Tsvg"], input=result.stdout, capture_output=True, text=True, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    titles = {t.text for t in ET.fromstring(rendered.stdout).iter("{http://www.w3.org/2000/svg}title")}
    assert {"compile:worker-linux-amd64", "test", "image"} <= titles

    svg = wgobuild(root, "graph", "-o", str(tmp_path / "graph.svg"))
    assert svg.returncode == 0, svg.stderr
    assert ET.parse(tmp_path / "graph.svg").getroot().tag == "{http://www.w3.org/2000/svg}svg"
    assert run_doit(root, "image").ran >= {"compile:worker-linux-amd64", "test"}, "graph changed no state"
    after = nodes(wgobuild(root, "graph").stdout)
    assert all("would run" not in attrs for attrs in after.values()), "after the build every step is up to date"


def test_svg_without_graphviz_says_what_to_do(tmp_path: Path) -> None:
    root = write_module(tmp_path / "multi")
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "go").symlink_to(shutil.which("go") or "/usr/local/go/bin/go")
    result = wgobuild(root, "graph", "--svg", env={"PATH": str(bare)})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Graphviz's `dot` is not on PATH; install graphviz" in result.stderr and "Traceback" not in result.stderr
