"""Secrets never reach an image: real-looking keys made at test time, embedded with //go:embed in a generated
module, fail `doit image` naming file, line and rule; the same module without them passes; the allowlist lets a
false positive through. The detectors are detect-secrets' own plugins."""

from __future__ import annotations

import dataclasses
import io
import secrets as random
import string
import subprocess
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fixtures_go import DODO, run_doit

from wgobuild import config, secrets
from wgobuild.errors import ConfigError, StepFailed


def pem_private_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


def aws_key_id() -> str:
    return "AKIA" + "".join(random.choice(string.ascii_uppercase + string.digits) for _ in range(16))


def github_token() -> str:
    return "ghp_" + "".join(random.choice(string.ascii_letters + string.digits) for _ in range(36))


MAIN = """package main

import (
\t_ "embed"
\t"fmt"
)

//go:embed assets/key.pem
var key string

//go:embed assets/settings.ini
var settings string

func main() { fmt.Println(len(key), len(settings)) }
"""


def secret_module(root: Path, key: str, settings: str, allow: str = "") -> Path:
    """A one-binary module for linux/amd64 (daemonless, from scratch) embedding two files."""
    files = {
        "go.mod": "module example.com/leaky\n\ngo 1.22\n",
        "main.go": MAIN,
        "assets/key.pem": key,
        "assets/settings.ini": settings,
        "dodo.py": DODO,
        "wgobuild.toml": '[project]\nname = "leaky"\nversion = "1.0.0"\n\n[build]\nplatforms = ["linux/amd64"]\n\n'
        '[test]\nenabled = false\n\n[[binaries]]\nname = "leaky"\n\n[image]\nbackend = "oci"\n'
        f'outputs = ["oci-layout"]\n\n[policy]\nallow_secrets = [{allow}]\n',
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_embedded_keys_fail_the_image_step_and_the_allowlist_or_removing_them_passes(tmp_path: Path) -> None:
    aws = aws_key_id()
    root = secret_module(tmp_path / "leaky", pem_private_key(), f"[aws]\naws_access_key_id = {aws}\n")
    record = root / "dist" / "images" / "linux-amd64.json"
    failed = run_doit(root, "image")
    assert failed.returncode != 0, failed.output
    assert "image linux/amd64: secrets in files that would enter the image:\n" in failed.output, failed.output
    assert "  assets/key.pem line 1: Private Key\n" in failed.output
    assert "  assets/settings.ini line 2: AWS Access Key\n" in failed.output
    assert ('[policy] allow_secrets = ["assets/key.pem:Private Key", "assets/settings.ini:AWS Access Key"] in '
            "wgobuild.toml") in failed.output
    assert "(in the executable's bytes)" not in failed.output, "a secret an embed put in the binary: named once"
    assert aws not in failed.output, "the secret itself is never printed"
    assert not record.exists() and not (root / "dist" / "images" / "linux-amd64").exists()

    # The exact keys the failure printed let both through.
    allow = '"assets/key.pem:Private Key", "assets/*.ini:AWS Access Key"'
    secret_module(root, (root / "assets/key.pem").read_text(), (root / "assets/settings.ini").read_text(), allow)
    allowed = run_doit(root, "image")
    assert allowed.returncode == 0, allowed.output
    assert record.is_file()
    # Taking a key off the allowlist scans again: nothing else changed.
    secret_module(root, (root / "assets/key.pem").read_text(), (root / "assets/settings.ini").read_text(),
                  '"assets/key.pem:Private Key"')
    narrowed = run_doit(root, "image")
    assert narrowed.returncode != 0 and "  assets/settings.ini line 2: AWS Access Key\n" in narrowed.output
    assert "assets/key.pem line" not in narrowed.output

    # Negative control: the same module without the secrets and without an allowlist passes.
    clean = secret_module(tmp_path / "clean", "not a key\n", "[aws]\nregion = eu-west-1\n")
    passed = run_doit(clean, "image")
    assert passed.returncode == 0, passed.output
    assert "secrets" not in passed.output


@pytest.mark.parametrize(("text", "rule"), [
    (pem_private_key(), "Private Key"),
    (f"id={aws_key_id()}", "AWS Access Key"),
    (f'token := "{github_token()}"', "GitHub Token"),
    ("url = https://deploy:hunter2hunter2@git.example.com/x.git", "Basic Auth Credentials"),
])
def test_each_rule_finds_its_secret_and_plain_text_passes(text: str, rule: str) -> None:
    found = secrets.scan_text("f.txt", "first line\n" + text + "\n")
    assert [(f.name, f.line, f.rule) for f in found][:1] == [("f.txt", 2, rule)]
    assert secrets.scan_text("f.txt", "first line\nAKIA is a prefix; ghp_ too; BEGIN PUBLIC KEY\n") == []


def test_a_secret_in_ldflags_fails_the_image_step_naming_the_key(tmp_path: Path) -> None:
    """-X values end up in the binary: a token passed through [build].ldflags is found where it was written."""
    root = secret_module(tmp_path / "m", "plain\n", "port = 8080\n")
    toml = root / "wgobuild.toml"
    token = github_token()
    text = toml.read_text().replace('platforms = ["linux/amd64"]\n',
                                    f'platforms = ["linux/amd64"]\nldflags = ["-X main.token={token}"]\n')
    toml.write_text(text)
    failed = run_doit(root, "image")
    assert failed.returncode != 0, failed.output
    assert "[build].ldflags line 1: GitHub Token" in failed.output, failed.output
    assert token not in failed.output, "the secret itself is never printed"
    toml.write_text(text.replace("allow_secrets = []", 'allow_secrets = ["[build].ldflags:GitHub Token"]'))
    assert run_doit(root, "image").returncode == 0, "the printed key lets it through"


def test_a_clean_scan_reads_the_detectors_patterns_from_the_state_and_finds_what_they_find(tmp_path: Path) -> None:
    """The detectors' own patterns, kept per detect-secrets version, decide whether a text needs the detectors:
    a clean text after the first scan is answered from them; one that holds a key still finds it."""
    first = secrets.Scanner(tmp_path)
    assert first.scan_text("a.go", "package main\n") == []
    cached = list(tmp_path.glob("secret-patterns-*.json"))
    assert len(cached) == 1, "the patterns are kept for the next run"
    later = secrets.Scanner(tmp_path)
    assert later.scan_text("b.go", "package main\n") == [] and later._loaded is None, "no detector loaded"
    found = later.scan_text("k.pem", "x\n" + pem_private_key())
    assert [(f.line, f.rule) for f in found] == [(2, "Private Key")]
    cached[0].write_text("[]")  # negative control: with no patterns nothing would ever be looked at
    assert secrets.Scanner(tmp_path).scan_text("k.pem", pem_private_key()) == []


def test_a_file_over_the_size_limit_is_skipped_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = tmp_path / "big.bin"
    big.write_text(pem_private_key())
    monkeypatch.setattr(secrets, "MAX_SCAN_BYTES", 100)
    skipped: list[str] = []
    assert secrets.check("x", {"big.bin": big}, [], skipped) == []
    assert skipped == ["big.bin: not scanned for secrets: larger than 0 MiB"]
    monkeypatch.setattr(secrets, "MAX_SCAN_BYTES", 1 << 20)
    with pytest.raises(StepFailed, match=r"big\.bin line 1: Private Key"):
        secrets.check("x", {"big.bin": big}, [], skipped)


def test_an_allowlist_key_without_a_rule_is_refused(tmp_path: Path) -> None:
    (tmp_path / "main.go").write_text("package main\n\nfunc main() {}\n")
    data = {"binaries": [{"name": "x"}], "policy": {"allow_secrets": ["certs/test.pem"]}}
    with pytest.raises(ConfigError, match=r"\[policy\]\.allow_secrets\[0\]: 'certs/test\.pem': use "
                                          r"'path-glob:rule' as the secret scan prints it"):
        config.from_dict(data, tmp_path, tmp_path / "wgobuild.toml")


def test_multistage_builders_get_no_credentials_and_a_vendored_private_module_builds_from_the_context_alone(
        tmp_path: Path) -> None:
    from fixtures_go import use_lib, write_lib, write_module

    from wgobuild import dockerfile, engine, gotool, imagecheck
    from wgobuild.config import Platform

    linux = Platform.parse("linux/amd64")
    root = write_module(tmp_path / "multi")
    use_lib(root, write_lib(tmp_path / "private-lib"), "vendor")  # example.com/lib: reachable from no proxy
    toml = root / "wgobuild.toml"
    toml.write_text(toml.read_text().replace('backend = "oci"', 'backend = "engine"\nstyle = "multistage"'))
    cfg = config.load(root)
    folder = dockerfile.docker_dir(cfg, linux)
    dockerfile.write(cfg, linux, "1.0.0", folder)
    instructions = dockerfile.parse((folder / "Dockerfile").read_text())
    assert not [i for i in instructions if i.cmd == "ARG"], "no build arg reaches any stage"
    builder = dockerfile.stages(instructions)[0]
    assert [i.pairs() for i in builder if i.cmd == "ENV"] == [
        {"CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": "amd64", "GOTOOLCHAIN": "local"}]
    assert "!vendor/**" in (folder / ".dockerignore").read_text().splitlines()

    entries = engine.context_entries(cfg, linux, folder)
    assert {"vendor/modules.txt", "vendor/example.com/lib/lib.go", "lib/web/page.html"} <= set(entries)
    assert all(not name.startswith(("/", "..")) for name in entries), "nothing from outside the module"
    packed = io.BytesIO()
    engine.write_context(entries, packed)
    context = tmp_path / "context"
    packed.seek(0)
    with tarfile.open(fileobj=packed) as tar:
        tar.extractall(context, filter="data")
    env = {**gotool.go_env_vars(linux), "GOFLAGS": "-mod=vendor", "GOPROXY": "off", "GOPRIVATE": "example.com",
           "GOMODCACHE": str(tmp_path / "empty-modcache"), "GOWORK": "off"}

    def build() -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(gotool.find_go()), "build", "-o", str(tmp_path / "out") + "/", "./cmd/..."],
                              cwd=context, env=env, capture_output=True, text=True, timeout=300)

    built = build()
    assert built.returncode == 0, built.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["api", "worker"]
    (context / "vendor" / "modules.txt").unlink()  # negative control: without it the builder needs the network
    assert build().returncode != 0

    # Credentials through build args are refused before anything is built, by name or by value.
    for args, where, why in (({"GITHUB_TOKEN": "x"}, "GITHUB_TOKEN", "its name says it carries a credential"),
                             ({"VERSION": github_token()}, "VERSION", "its value is flagged as GitHub Token"),
                             ({"GOPROXY": "https://ci:s3cr3tpass@proxy.example.com"}, "GOPROXY",
                              "its value is flagged as Basic Auth Credentials")):
        bad = dataclasses.replace(cfg, image=dataclasses.replace(cfg.image, build_args=args))
        with pytest.raises(ConfigError) as refused:
            imagecheck.before_build(bad, linux)
        assert f"[image].build_args.{where}: {why}; build args end up in the image's history" in str(refused.value)
    secrets.check_build_args({"GO_VERSION": "1.22", "AUTHOR": "team"}, cfg.path)  # ordinary ones pass
