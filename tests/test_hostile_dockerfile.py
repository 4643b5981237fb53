"""Hostile ENV, LABEL and CMD values, rendered by wgobuild and built by the real dockerd, come back unchanged.

The project's own parser (tests/test_dockerfile.py) could share a misunderstanding with the renderer; the engine
cannot. Both escape characters are built: the linux Dockerfile (``# escape=\\``) as rendered, and the Windows
Dockerfile (``# escape=```) as rendered too, with only its FROM line pointed at ``scratch`` so a linux engine
builds it (LABEL, ENV and CMD are read by the same builder code on every OS). The values are read back from
``docker inspect`` through the SDK.
"""

from __future__ import annotations

import contextlib
import io
import re
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wgobuild import config, dockerfile, engine
from wgobuild.config import Platform

HOSTILE = [
    'say "hi"',
    "it's 'single'",
    "C:\\path\\to\\",  # trailing backslash
    "\\",
    "`",
    "back`tick` and ``double``",
    "trailing backtick`",
    "$HOME and ${x} and $$ and ${x:-default} and $",
    "\\$HOME `$HOME",
    "# not a comment",
    "  spaces  around  ",
    "a=b c=d",
    "naïve – 日本語 ✓ 😀",
    "",
]
ENV = {f"HOSTILE_{i}": value for i, value in enumerate(HOSTILE)}
LABELS = {f"com.example.hostile{i}": value for i, value in enumerate(HOSTILE)}
CMD = [*HOSTILE, '"]\\n"', '["x"]']
FROM = re.compile(r"^FROM \S+$", re.MULTILINE)


def hostile_config(root: Path) -> config.Config:
    root.mkdir(parents=True, exist_ok=True)
    (root / "go.mod").write_text("module example.com/svc\n\ngo 1.22\n")
    (root / "main.go").write_text("package main\n\nfunc main() {}\n")
    data = {
        "project": {"name": "svc", "version": "1.0.0"},
        "binaries": [{"name": "svc", "package": "."}],
        "build": {"platforms": ["windows/amd64", "linux/amd64"]},
        "image": {"linux_base": "scratch", "env": ENV, "labels": LABELS, "args": CMD},
    }
    return config.from_dict(data, root, root / "wgobuild.toml")


def context_tar(files: dict[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


@pytest.fixture
def client(docker_host: str) -> Iterator[Any]:
    client = engine.connect()
    try:
        yield client
    finally:
        client.close()


def build(client: Any, text: str, binaries: dict[str, bytes]) -> dict[str, Any]:
    """Build ``text`` with the classic builder (as wgobuild's engine backend does); the image's config."""
    tag = f"wgbtest-hostile-{uuid.uuid4().hex[:8]}:1"
    stream = client.api.build(fileobj=context_tar({"Dockerfile": text.encode(), **binaries}), custom_context=True,
                              tag=tag, rm=True, forcerm=True, decode=True)
    log = list(stream)
    errors = [chunk["error"] for chunk in log if "error" in chunk]
    assert not errors, errors
    try:
        return dict(client.api.inspect_image(tag)["Config"])
    finally:
        with contextlib.suppress(Exception):
            client.api.remove_image(tag, force=True)


@pytest.mark.docker
@pytest.mark.parametrize(("platform", "escape"), [("linux/amd64", "\\"), ("windows/amd64", "`")])
def test_hostile_values_survive_a_real_build(client: Any, tmp_path: Path, platform: str, escape: str) -> None:
    cfg = hostile_config(tmp_path / "svc")
    target = Platform.parse(platform)
    text = dockerfile.render(cfg, target, "1.0.0")["Dockerfile"]
    assert text.startswith("# escape=`\n") == (escape == "`")
    assert len(FROM.findall(text)) == 1
    text = FROM.sub("FROM scratch", text)  # the one change: a base this linux engine can build on
    binary = dockerfile.binary_arcname(cfg, cfg.binaries[0], target)
    image = build(client, text, {binary: b"not run: only the image config is inspected\n"})

    env = dict(item.split("=", 1) for item in image["Env"] or [])
    assert {k: v for k, v in env.items() if k.startswith("HOSTILE_")} == ENV
    assert {k: v for k, v in (image["Labels"] or {}).items() if k.startswith("com.example.")} == LABELS
    assert image["Cmd"] == CMD


@pytest.mark.docker
def test_the_engine_would_notice_a_wrong_quote(client: Any) -> None:
    """Negative control: quoting for the other escape character, or none, does not give the value back."""
    value = 'say "hi" to $HOME'
    wrong_escape = dockerfile.quote(value, "\\")  # right for a linux Dockerfile, wrong under escape=`
    text = (f"# escape=`\nFROM scratch\nLABEL com.example.x={wrong_escape}\n"
            f'ENV HOSTILE_X="{value}"\n')
    image = build(client, text, {})
    env = dict(item.split("=", 1) for item in image["Env"] or [])
    assert env["HOSTILE_X"] == 'say hi to '  # unescaped: quotes eaten, $HOME expanded (to nothing in scratch)
    assert image["Labels"]["com.example.x"] != value
    assert build(client, f"# escape=`\nFROM scratch\nLABEL com.example.x={dockerfile.quote(value, '`')}\n",
                 {})["Labels"]["com.example.x"] == value
