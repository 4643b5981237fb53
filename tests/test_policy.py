"""The [policy] gate: real `doit image` runs on examples/hello (windows and linux images, daemonless on the test
registry's bases) fail before anything is published or pushed, one line per broken rule; the same project within
its rules passes and pushes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fixtures_go import run_doit
from fixtures_registry import repository_tags as tags

from wgobuild import config
from wgobuild.errors import ConfigError


def set_policy(root: Path, repository: str, policy: str) -> None:
    toml = root / "wgobuild.toml"
    text = toml.read_text().split("\n[policy]\n")[0]
    if f'repository = "{repository}"' not in text:
        text = text.replace("[image]\n", f'[image]\nrepository = "{repository}"\ntag = "v1"\n')
    toml.write_text(text + "\n[policy]\n" + policy)


def test_each_policy_key_fails_doit_image_before_push_and_a_project_within_them_pushes(
        hello: Path, seeded_bases: Any) -> None:
    registry = seeded_bases.registry
    repository = f"{registry.host}/policy/hello"
    set_policy(hello, repository, 'max_image_mb = 1\nforbid_dlls = ["KERNEL32.dll", "opengl32.dll"]\n'
                                  "require_signature = true\n")
    refused = run_doit(hello, "image", "--push")
    assert refused.returncode != 0, refused.output
    lines = refused.output.splitlines()
    start = lines.index("policy: nothing published or pushed:")
    rules = lines[start + 1:start + 5]
    for platform in ("windows/amd64", "linux/amd64"):
        assert any(line.startswith(f"[policy] max_image_mb = 1: the {platform} image is ") and
                   line.endswith(" MB of it the base): ship less, use a smaller base, or raise the limit")
                   for line in rules), refused.output
    assert ("[policy] forbid_dlls: hello in the windows/amd64 image imports kernel32.dll: build it without that "
            "dependency, or take the DLL off the list") in rules
    assert ('[policy] require_signature = true: the push would be unsigned; set [sign] key = "wgobuild.key" (make '
            "one with `wgobuild keygen`)") in rules
    assert "pushed " not in refused.output and tags(registry.url, "policy/hello") == []
    assert not (hello / "dist/reports/images.json").exists()
    assert not (hello / "dist/images/index").exists(), "nothing published"
    assert "Traceback" not in refused.output

    # Within the rules: a bigger limit, DLLs the binary does not import; a signature is only needed to push.
    set_policy(hello, repository, 'max_image_mb = 100\nforbid_dlls = ["opengl32.dll"]\nrequire_signature = true\n')
    local = run_doit(hello, "image")
    assert local.returncode == 0, local.output
    assert (hello / "dist/reports/images.json").is_file()
    set_policy(hello, repository, 'max_image_mb = 100\nforbid_dlls = ["opengl32.dll"]\n')
    pushed = run_doit(hello, "image", "--push")
    assert pushed.returncode == 0, pushed.output
    assert "v1" in tags(registry.url, "policy/hello")
    # A stricter rule re-runs the image step on its own: nothing else changed.
    set_policy(hello, repository, "max_image_mb = 1\n")
    stricter = run_doit(hello, "image")
    assert stricter.returncode != 0 and "[policy] max_image_mb = 1: the linux/amd64 image is " in stricter.output
    assert stricter.ran == {"image"}, stricter.output


@pytest.mark.parametrize(("policy", "where", "message"), [
    ({"max_image_mb": -1}, "max_image_mb", "must be 0 (no limit) or a size in MB, such as 300"),
    ({"forbid_dlls": ["opengl32"]}, "forbid_dlls[0]", "'opengl32': name a DLL file, such as 'opengl32.dll'"),
    ({"require_signature": "yes"}, "require_signature", "expected bool, got str 'yes'"),
])
def test_bad_policy_values_name_the_key(tmp_path: Path, policy: dict[str, Any], where: str, message: str) -> None:
    (tmp_path / "main.go").write_text("package main\n\nfunc main() {}\n")
    with pytest.raises(ConfigError) as failed:
        config.from_dict({"binaries": [{"name": "x"}], "policy": policy}, tmp_path, tmp_path / "wgobuild.toml")
    assert f"[policy].{where}: {message}" in str(failed.value)
