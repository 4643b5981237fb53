"""`wgobuild init` on modules it has never seen: what it chooses, why it says so, and what works right after.

Every test runs the real command line on a generated module; the module mirrors what a new user brings: a CLI
(``cmd/shopctl``, an HTTP client), the service (``cmd/shopd``, which listens), a dev helper under ``tools/`` and a
``//go:build tools`` command.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from wgobuild import config, gotool, proc
from wgobuild.config import Platform
from wgobuild.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

CTL = ('package main\n\nimport (\n\t"fmt"\n\t"net/http"\n)\n\n'
       'func main() {\n\tr, err := http.Get("http://localhost:8080/")\n\tfmt.Println(r, err)\n}\n')
SERVER = ('package main\n\nimport (\n\t"fmt"\n\t"net/http"\n)\n\n'
          'func main() {\n\thttp.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {\n'
          '\t\tfmt.Fprintln(w, "hi")\n\t})\n\tfmt.Println(http.ListenAndServe(":8080", nil))\n}\n')
PLAIN = 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("plain") }\n'
TOOLS_TAG = '//go:build tools\n\npackage main\n\nimport "fmt"\n\nfunc main() { fmt.Println("tool") }\n'


def write_shop(root: Path, module: str = "example.com/acme/shop", **extra: str) -> Path:
    """A module named like the finding: ``cmd/shopctl`` sorts before ``cmd/shopd``, the one that serves."""
    sources = {"go.mod": f"module {module}\n\ngo 1.22\n", "cmd/shopctl/main.go": CTL, "cmd/shopd/main.go": SERVER,
               "tools/gen/main.go": PLAIN, "hack/pin/main.go": TOOLS_TAG, **extra}
    for name, text in sources.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def wgobuild(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wgobuild.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def binaries(root: Path) -> list[tuple[str, str, bool]]:
    """(name, package, image) of every [[binaries]] entry, in order, as the config loader reads them."""
    return [(b.name, b.package, b.image) for b in config.load(root).binaries]


def test_init_picks_the_server_says_why_and_leaves_helpers_out(tmp_path: Path) -> None:
    root = write_shop(tmp_path / "checkout-2")  # the folder's name is not the project's
    result = wgobuild(root, "init")
    assert result.returncode == 0, result.stderr
    assert binaries(root) == [("shopd", "./cmd/shopd", True), ("shopctl", "./cmd/shopctl", True)]
    cfg = config.load(root)
    assert cfg.project.name == "shop" and cfg.entrypoint.name == "shopd"
    lines = result.stdout.splitlines()
    assert lines[0] == "module example.com/acme/shop: project 'shop', 2 binaries"
    entry = next(line for line in lines if line.lstrip().startswith("entrypoint"))
    assert "shopd" in entry and "it serves: calls http.ListenAndServe (cmd/shopd/main.go)" in entry
    assert any("shopctl" in line and "shipped in the image too" in line for line in lines)
    gen = next(line for line in lines if " gen " in line)
    assert gen.lstrip().startswith("left out") and "under tools/, a development helper" in gen
    pin = next(line for line in lines if " pin " in line)
    assert pin.lstrip().startswith("left out") and "//go:build tools" in pin
    assert f"wrote wgobuild.toml, dodo.py, tasks.py in {root}" in lines
    assert lines[-2].startswith("next: doit image") and "invoke --list" in lines[-1]
    text = (root / "wgobuild.toml").read_text()
    assert "# shopd, because it serves: calls http.ListenAndServe (cmd/shopd/main.go)." in text
    assert '# Left out: under tools/, a development helper.' in text and '# package = "./tools/gen"' in text
    assert '# package = "./hack/pin"' in text and 'add "tools" to [build].tags' in text
    assert "docs/config.md" in text and all(len(line) <= 120 for line in text.splitlines())
    # Uncommenting a left-out helper as its comment says gives a config that loads, helper last.
    helper = '[[binaries]]\nname = "gen"\npackage = "./tools/gen"'
    (root / "wgobuild.toml").write_text(text.replace("# " + helper.replace("\n", "\n# "), helper + "\nimage = false"))
    assert binaries(root)[-1] == ("gen", "./tools/gen", False)


def test_init_prefers_the_binary_named_like_the_module(tmp_path: Path) -> None:
    root = write_shop(tmp_path / "m", module="example.com/acme/shop/v2", **{"cmd/shop/main.go": PLAIN})
    result = wgobuild(root, "init")
    assert result.returncode == 0, result.stderr
    assert [b[0] for b in binaries(root)] == ["shop", "shopctl", "shopd"]
    assert "named like the module's last path element ('shop')" in result.stdout
    assert config.load(root).project.name == "shop"  # the /v2 suffix is not a name


def test_init_without_a_server_takes_the_first_and_says_so(tmp_path: Path) -> None:
    root = write_shop(tmp_path / "m", **{"cmd/shopd/main.go": PLAIN, "cmd/shopctl/main.go": PLAIN})
    result = wgobuild(root, "init")
    assert result.returncode == 0, result.stderr
    assert [b[0] for b in binaries(root)] == ["shopctl", "shopd"]
    assert "the first main package in path order (none is named like the module or serves)" in result.stdout


def test_init_counts_one_binary_in_the_singular(tmp_path: Path) -> None:
    root = tmp_path / "one"
    root.mkdir()
    (root / "go.mod").write_text("module one\n\ngo 1.22\n")
    (root / "main.go").write_text(SERVER)
    result = wgobuild(root, "init")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "module one: project 'one', 1 binary"
    assert binaries(root) == [("one", ".", True)]


def test_entrypoint_flag_overrides_and_may_pick_a_helper(tmp_path: Path) -> None:
    root = write_shop(tmp_path / "m")
    result = wgobuild(root, "init", "--entrypoint", "shopctl")
    assert result.returncode == 0, result.stderr
    assert [b[0] for b in binaries(root)] == ["shopctl", "shopd"]
    assert "you chose it with --entrypoint" in result.stdout
    again = wgobuild(root, "init", "--force", "--entrypoint", "./tools/gen")
    assert again.returncode == 0, again.stderr
    assert [b[0] for b in binaries(root)] == ["gen", "shopctl", "shopd"]
    assert '# package = "./tools/gen"' not in (root / "wgobuild.toml").read_text()


def test_unknown_entrypoint_lists_the_choices_and_writes_nothing(tmp_path: Path) -> None:
    root = write_shop(tmp_path / "m")
    result = wgobuild(root, "init", "--entrypoint", "nope")
    assert result.returncode == 1
    assert result.stderr.strip() == ("wgobuild: --entrypoint nope: no such main package; choose one of: "
                                     "shopctl (./cmd/shopctl), shopd (./cmd/shopd), gen (./tools/gen)")
    assert sorted(p.name for p in root.iterdir()) == ["cmd", "go.mod", "hack", "tools"]


def test_init_never_overwrites_without_force(tmp_path: Path) -> None:
    root = write_shop(tmp_path / "m")
    (root / "tasks.py").write_text("# my own tasks\n")
    first = wgobuild(root, "init")
    assert first.returncode == 0, first.stderr
    assert (root / "tasks.py").read_text() == "# my own tasks\n"
    assert "kept tasks.py (exists; --force overwrites it)" in first.stdout
    (root / "tasks.py").unlink()
    (root / "wgobuild.toml").write_text((root / "wgobuild.toml").read_text() + "# mine\n")
    second = wgobuild(root, "init")
    assert second.returncode == 0, second.stderr
    assert "wrote tasks.py" in second.stdout and "kept wgobuild.toml" in second.stdout
    assert "dodo.py (unchanged)" in second.stdout and "entrypoint" not in second.stdout
    assert (root / "wgobuild.toml").read_text().endswith("# mine\n")
    refused = wgobuild(root, "init")
    assert refused.returncode == 1
    assert refused.stderr.strip() == (f"wgobuild: wgobuild.toml, dodo.py, tasks.py already exist in {root}; "
                                      "use --force to overwrite them")
    forced = wgobuild(root, "init", "--force")
    assert forced.returncode == 0 and "# mine" not in (root / "wgobuild.toml").read_text()


def test_invoke_tasks_work_in_the_initialised_module(tmp_path: Path) -> None:
    """The admin tour in the user's own module: the real invoke CLI finds the tasks through the two-line tasks.py."""
    root = write_shop(tmp_path / "m")

    def invoke(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=root, capture_output=True, text=True,
                              timeout=120)

    before = invoke("--list")  # what a user met before init wrote tasks.py
    assert before.returncode == 1 and "Can't find any collection named 'tasks'" in before.stderr
    assert wgobuild(root, "init").returncode == 0
    assert (root / "tasks.py").read_text().count("\n") == 2
    listed = invoke("--list")
    assert listed.returncode == 0, listed.stderr
    for task in ("harden", "audit", "scripts", "rotate-logs", "install-service", "run", "serve"):
        assert f"\n  {task} " in listed.stdout
    scripts = invoke("scripts")
    assert scripts.returncode == 0, scripts.stderr
    rendered = root / "dist" / "powershell"
    assert sorted(p.name for p in rendered.glob("*.ps1")) == [
        "audit.ps1", "cleanup.ps1", "harden.ps1", "rotate-logs.ps1", "service.ps1"]
    assert "$BinaryPath = 'C:\\app\\shopd.exe'" in (rendered / "service.ps1").read_text(encoding="utf-8-sig")
    harden = invoke("harden", "--dry-run")
    assert "Can't find any collection" not in harden.stderr
    if not (shutil.which("pwsh") or shutil.which("powershell.exe")):  # no PowerShell: one plain line, nothing run
        assert harden.returncode == 1 and "PowerShell not found" in harden.stderr, harden.stderr
    else:
        assert harden.returncode == 0, harden.stderr


def test_first_binary_must_ship_in_the_image(tmp_path: Path) -> None:
    root = write_shop(tmp_path / "m")
    data = {"binaries": [{"name": "gen", "package": "./tools/gen", "image": False},
                         {"name": "shopd", "package": "./cmd/shopd"}]}
    with pytest.raises(ConfigError) as info:
        config.from_dict(data, root, root / "wgobuild.toml")
    assert info.value.key == "binaries[0].image"
    assert "the first [[binaries]] entry is the image's entrypoint" in info.value.problem
    data["binaries"].reverse()
    cfg = config.from_dict(data, root, root / "wgobuild.toml")
    assert [b.name for b in cfg.image_binaries] == ["shopd"] and cfg.entrypoint.name == "shopd"


@pytest.mark.slow
def test_image_false_is_built_but_not_shipped(tmp_path: Path) -> None:
    """A binary with image = false is compiled for every platform, and neither Dockerfile nor image holds it."""
    import json
    import tarfile

    root = write_shop(tmp_path / "m")
    (root / "wgobuild.toml").write_text(
        '[project]\nname = "shop"\nversion = "1.0.0"\n\n[build]\nplatforms = ["linux/amd64"]\n\n'
        '[[binaries]]\nname = "shopd"\npackage = "./cmd/shopd"\n\n'
        '[[binaries]]\nname = "gen"\npackage = "./tools/gen"\nimage = false\n\n'
        '[image]\nbackend = "oci"\noutputs = ["oci-layout"]\n')
    result = wgobuild(root, "image")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (root / "dist/linux-amd64/gen").is_file() and (root / "dist/linux-amd64/shopd").is_file()
    dockerfile = (root / "dist/docker/linux-amd64/Dockerfile").read_text()
    assert "shopd" in dockerfile and "gen" not in dockerfile
    record = json.loads((root / "dist/images/linux-amd64.json").read_text())
    layout = next(Path(p) for p in record["outputs"] if Path(p, "index.json").is_file())
    blobs = layout / "blobs" / "sha256"
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((blobs / index["manifests"][0]["digest"].split(":")[1]).read_text())
    image_config = json.loads((blobs / manifest["config"]["digest"].split(":")[1]).read_text())
    assert image_config["config"]["Entrypoint"] == ["/app/shopd"]
    names = []
    for layer in manifest["layers"]:
        with tarfile.open(blobs / layer["digest"].split(":")[1]) as tar:
            names += tar.getnames()
    assert "app/shopd" in names and not [n for n in names if n.endswith("gen")], names


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Go's listener does: TIME_WAIT is no obstacle
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def test_the_bundled_example_serves_with_invoke_serve(tmp_path: Path) -> None:
    """The admin tour's `invoke serve` on examples/hello serves on :8080 with the example's own [run] settings."""
    root = tmp_path / "hello"
    shutil.copytree(REPO / "examples/hello", root, ignore=shutil.ignore_patterns("dist", ".wgobuild", "dodo.py"))
    cfg = config.load(root)
    assert cfg.run.args == ["-addr", ":8080"]
    if not _port_free(8080):
        pytest.fail("port 8080 is in use on this machine; the example serves there")
    exe = cfg.binary_path(cfg.entrypoint, Platform.host())
    gotool.build(root, ".", Platform.host(), exe, "tour")
    serve = subprocess.Popen([sys.executable, "-m", "invoke", "-r", str(REPO), "serve", "--root", str(root)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, body = time.monotonic() + 30, b""
        while not body:
            try:
                with urllib.request.urlopen("http://127.0.0.1:8080/hello?name=tour", timeout=2) as response:
                    body = response.read()
            except OSError:
                assert time.monotonic() < deadline and serve.poll() is None, "invoke serve did not serve on :8080"
                time.sleep(0.1)
        assert b"tour" in body
        stopped = subprocess.run([sys.executable, "-m", "invoke", "-r", str(REPO), "stop", "--root", str(root),
                                  "--what", "serve"], capture_output=True, text=True, timeout=60)
        output, _ = serve.communicate(timeout=30)
    finally:
        if serve.poll() is None:  # a failed test must not leave the service running
            proc.kill_tree(serve.pid)
            serve.wait(10)
    assert "serve: stopped" in stopped.stdout, stopped.stdout + stopped.stderr
    assert serve.returncode == 0, output


def test_version_names_the_copy_that_runs() -> None:
    from importlib.metadata import version

    import wgobuild

    result = wgobuild_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(f"wgobuild {wgobuild.__version__} from {REPO / 'wgobuild'} (Python 3.")
    assert version("wgobuild") == wgobuild.__version__  # the package metadata reads the same single source


def wgobuild_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wgobuild.cli", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ})
