"""The team cache in a real registry (wgobuild/teamcache.py): a second clone builds nothing and matches byte for
byte, htpasswd and bearer auth, a tampered entry is refused and rebuilt, a registry that is down is one line and a
local build, read-only mode never writes, a no-op run makes no cache call, and ``wgobuild cache prune``."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from fixtures_go import copy_hello, run_doit
from fixtures_registry import Registry, free_port

from wgobuild import config, teamcache
from wgobuild.errors import ConfigError, WgobuildError
from wgobuild.teamcache import CacheError, Step, Store

OLD = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def with_cache(root: Path, registry: str, mode: str = "readwrite") -> Path:
    with (root / "wgobuild.toml").open("a") as handle:
        handle.write(f'\n[cache]\nregistry = "{registry}"\nmode = "{mode}"\n')
    return root


def outputs(root: Path) -> dict[str, bytes]:
    """Every file under dist/: binaries, SBOMs, JUnit report, Dockerfiles, scripts, images; not the run's figures
    nor the image records (dist/images/<platform>.json: they name this clone's folders)."""
    dist = root / "dist"
    return {p.relative_to(dist).as_posix(): p.read_bytes() for p in dist.rglob("*")
            if p.is_file() and (p.parent.name != "reports" or p.name == "junit.xml") and p.parent.name != "runs"
            and not (p.parent.name == "images" and p.suffix == ".json")}


def tags(reg: Registry, repo: str, auth: tuple[str, str] | None = None) -> list[str]:
    answer = requests.get(f"{reg.url}/v2/{repo}/tags/list", auth=auth, timeout=10)
    return sorted(answer.json().get("tags") or []) if answer.status_code == 200 else []


# --- a second clone in another folder, htpasswd auth, empty state and GOCACHE ----------------------------------------
def test_second_clone_fetches_everything_and_matches_byte_for_byte(tmp_path: Path, auth_registry: Registry,
                                                                   seeded_bases: Any) -> None:
    cache = f"{auth_registry.host}/team/cache"
    env = {"DOCKER_CONFIG": str(auth_registry.docker_config(tmp_path / "docker"))}
    image = {"backend": '"oci"', "windows_base": f'"{seeded_bases.windows}"'}
    first = with_cache(copy_hello(tmp_path / "first", **image), cache)
    built = run_doit(first, "image", env=env)
    assert built.returncode == 0, built.output
    assert "team cache" not in built.output  # every step was a miss and ran; nothing went wrong with the cache
    stored = tags(auth_registry, "team/cache", (auth_registry.user, auth_registry.password))
    assert sorted({t.split("-")[0] for t in stored}) == ["compile", "golden", "test"]
    assert len(stored) == 4  # hello for windows and linux, the tests, one golden case

    second = with_cache(copy_hello(tmp_path / "elsewhere" / "second", **image), cache)
    empty_gocache = tmp_path / "gocache"
    empty_gocache.mkdir()
    fetched = run_doit(second, "image", env={**env, "GOCACHE": str(empty_gocache)})
    assert fetched.returncode == 0, fetched.output
    steps = json.loads((second / "dist" / "reports" / "run.json").read_text())["steps"]
    cached = [s for s in steps if s["step"].split(":")[0] in ("compile", "test", "golden")]
    assert len(cached) == 4 and all(s["status"] == "ran" for s in cached), cached
    assert [s for s in cached if s["programs"]] == []  # no go build, go test or golden binary ran
    assert fetched.output.count("from the team cache") == 4, fetched.output
    first_outputs, second_outputs = outputs(first), outputs(second)
    assert sorted(second_outputs) == sorted(first_outputs)
    assert [name for name in first_outputs if first_outputs[name] != second_outputs[name]] == []
    assert {"linux-amd64/hello", "windows-amd64/hello.exe", "reports/junit.xml", "images/index.docker.tar",
            "sbom/hello-linux-amd64.spdx.json", "sbom/hello-windows-amd64.cdx.json"} <= set(first_outputs)
    assert os.access(second / "dist" / "linux-amd64" / "hello", os.X_OK)

    # A no-op run makes no cache call: unreadable credentials would fail any request to the registry loudly.
    broken = tmp_path / "broken-docker"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    noop = run_doit(second, "image", env={"DOCKER_CONFIG": str(broken), "GOCACHE": str(empty_gocache)})
    assert noop.returncode == 0 and noop.ran == set() and "team cache" not in noop.output, noop.output

    # Negative control of the above: a run that does ask the cache with those credentials says so, and builds.
    (second / "main.go").write_text((second / "main.go").read_text() + "\n// a new line: new keys\n")
    asked = run_doit(second, "compile", env={"DOCKER_CONFIG": str(broken)})  # two steps, one line
    assert asked.returncode == 0, asked.output
    assert asked.output.count("team cache") == 1, asked.output  # one line for the run, whatever fails
    assert "not used in this run: " in asked.output and "config.json: not valid JSON" in asked.output, asked.output


def test_registry_down_builds_locally_with_one_line(tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    root = with_cache(copy_hello(tmp_path / "hello"), f"{dead}/team/cache")
    built = run_doit(root, "compile")
    assert built.returncode == 0, built.output
    assert built.ran == {"compile:hello-linux-amd64", "compile:hello-windows-amd64"}, built.output
    lines = [line for line in built.output.splitlines() if "team cache" in line]
    assert lines == [f"wgobuild: team cache {dead}/team/cache not used in this run: cannot reach registry {dead} "
                     "(no network, or a wrong address); building locally"], built.output
    steps = json.loads((root / "dist" / "reports" / "run.json").read_text())["steps"]
    assert all(s["programs"] > 0 for s in steps if s["status"] == "ran")  # go build ran for both


# --- the cache module against real registries ----------------------------------------------------------------------
def project(root: Path, registry: str, mode: str = "readwrite", key: str = "") -> config.Config:
    root.mkdir(parents=True, exist_ok=True)
    (root / "main.go").write_text("package main\n\nfunc main() {}\n")
    return config.from_dict({"project": {"name": "demo", "version": "1.0.0"}, "binaries": [{"name": "demo"}],
                             "cache": {"registry": registry, "mode": mode}, "sign": {"key": key}}, root,
                            root / "wgobuild.toml")


class Builder:
    """A stand-in build step: writes its output from its input, counts its runs."""

    def __init__(self, source: Path, target: Path) -> None:
        self.source, self.target, self.runs = source, target, 0

    def __call__(self) -> None:
        self.runs += 1
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.target.write_bytes(b"built from " + self.source.read_bytes())


def a_step(root: Path, text: str = "input 1") -> tuple[Step, Builder]:
    source, target = root / "src.txt", root / "dist" / "out.bin"
    source.write_text(text)
    return Step("compile", "compile:demo", (str(source),), {"v": 1}, (target,)), Builder(source, target)


def test_bearer_token_registry_round_trip(tmp_path: Path, token_registry: Registry) -> None:
    cfg = project(tmp_path / "a", f"{token_registry.host}/cache/bearer")
    step, build = a_step(cfg.root)
    teamcache.run(cfg, step, build)
    assert build.runs == 1
    before = len(token_registry.token_service.requests)  # type: ignore[attr-defined]
    (cfg.root / "dist" / "out.bin").unlink()
    teamcache.run(cfg, step, build)
    assert build.runs == 1 and (cfg.root / "dist" / "out.bin").read_bytes() == b"built from input 1"
    assert len(token_registry.token_service.requests) > before  # type: ignore[attr-defined]  # tokens were used


def test_key_follows_contents_and_settings_not_the_folder(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one, _ = a_step(tmp_path / "one")
    two, _ = a_step(tmp_path / "two")
    assert teamcache.fingerprint(tmp_path / "one", one) == teamcache.fingerprint(tmp_path / "two", two)
    other = Step(two.kind, two.name, two.inputs, {"v": 2}, two.outputs)
    assert teamcache.fingerprint(tmp_path / "two", other) != teamcache.fingerprint(tmp_path / "two", two)
    machine = Step(two.kind, two.name, two.inputs, {"v": 1, "toolchain": {"GOROOT": "/x"}}, two.outputs)
    assert teamcache.fingerprint(tmp_path / "two", machine) == teamcache.fingerprint(
        tmp_path / "two", Step(two.kind, two.name, two.inputs, {"v": 1, "toolchain": {"GOROOT": "/y"}}, two.outputs))
    (tmp_path / "two" / "src.txt").write_text("input 2")
    assert teamcache.fingerprint(tmp_path / "one", one) != teamcache.fingerprint(tmp_path / "two", two)


def _blob_file(reg: Registry, digest: str) -> Path:
    hexa = digest.split(":")[1]
    return reg.folder / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexa[:2] / hexa / "data"


def test_tampered_entry_is_refused_and_rebuilt(tmp_path: Path, registry: Registry,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    cfg = project(tmp_path / "a", f"{registry.host}/cache/tamper")
    step, build = a_step(cfg.root, "tamper me")
    teamcache.run(cfg, step, build)
    key = teamcache.fingerprint(cfg.root, step)
    manifest = requests.get(f"{registry.url}/v2/cache/tamper/manifests/compile-{key}", timeout=10,
                            headers={"Accept": teamcache.OCI_MANIFEST}).json()
    layer = manifest["layers"][0]
    stored = _blob_file(registry, layer["digest"])
    stored.write_bytes(b"built from evil")  # another size
    target = cfg.root / "dist" / "out.bin"
    target.write_bytes(b"previous")
    with pytest.raises(CacheError, match=r"compile-[0-9a-f]{64}: dist/out.bin: .*(digest|bytes where the entry)"):
        teamcache.fetch(Store.of(cfg), cfg.root, step, key)  # type: ignore[arg-type]
    assert target.read_bytes() == b"previous"  # nothing replaced by a refused entry
    assert [p.name for p in target.parent.iterdir()] == ["out.bin"]  # no temporary left behind
    capsys.readouterr()
    teamcache.run(cfg, step, build)
    assert build.runs == 2 and target.read_bytes() == b"built from tamper me"
    assert "team cache entry refused" in capsys.readouterr().out
    # Same size, other bytes: the digest check, not the size check, refuses it.
    stored.write_bytes(b"built from tamper ME")
    with pytest.raises(CacheError, match=r"dist/out.bin: the content's digest is sha256:"):
        teamcache.fetch(Store.of(cfg), cfg.root, step, key)  # type: ignore[arg-type]


def test_entry_of_another_key_is_refused(tmp_path: Path, registry: Registry) -> None:
    cfg = project(tmp_path / "a", f"{registry.host}/cache/swap")
    step, build = a_step(cfg.root, "one")
    build()
    key = teamcache.fingerprint(cfg.root, step)
    teamcache.upload(Store.of(cfg), cfg.root, step, "0" * 64)  # type: ignore[arg-type]
    data = requests.get(f"{registry.url}/v2/cache/swap/manifests/compile-{'0' * 64}", timeout=10,
                        headers={"Accept": teamcache.OCI_MANIFEST}).content
    requests.put(f"{registry.url}/v2/cache/swap/manifests/compile-{key}", data=data, timeout=10,
                 headers={"Content-Type": teamcache.OCI_MANIFEST}).raise_for_status()
    with pytest.raises(CacheError, match=r"its key annotation is '0000.*', not the step's key"):
        teamcache.fetch(Store.of(cfg), cfg.root, step, key)  # type: ignore[arg-type]


def test_registry_down_is_one_line_and_a_local_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = project(tmp_path / "a", f"127.0.0.1:{free_port()}/cache/down")
    teamcache._DOWN.clear()
    try:
        for text in ("first", "second"):
            step, build = a_step(cfg.root, text)
            teamcache.run(cfg, step, build)
            assert build.runs == 1 and (cfg.root / "dist" / "out.bin").read_bytes() == f"built from {text}".encode()
    finally:
        teamcache._DOWN.clear()
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out
    assert out == (f"wgobuild: team cache 127.0.0.1:{cfg.cache.registry.split(':')[1].split('/')[0]}/cache/down not "
                   f"used in this run: cannot reach registry {cfg.cache.registry.split('/')[0]} (no network, or a "
                   "wrong address); building locally\n")


def test_read_mode_never_writes(tmp_path: Path, registry: Registry) -> None:
    cfg = project(tmp_path / "a", f"{registry.host}/cache/readonly", mode="read")
    step, build = a_step(cfg.root)
    teamcache.run(cfg, step, build)
    assert build.runs == 1 and tags(registry, "cache/readonly") == []
    writer = project(tmp_path / "a", f"{registry.host}/cache/readonly")  # readwrite: the control
    teamcache.run(writer, step, build)
    assert build.runs == 2 and len(tags(registry, "cache/readonly")) == 1


def test_mode_from_the_environment(tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = project(tmp_path / "a", f"{registry.host}/cache/envmode")
    step, build = a_step(cfg.root)
    monkeypatch.setenv(teamcache.MODE_ENV, "read")
    teamcache.run(cfg, step, build)
    assert build.runs == 1 and tags(registry, "cache/envmode") == []
    monkeypatch.setenv(teamcache.MODE_ENV, "off")
    assert Store.of(cfg) is None
    monkeypatch.setenv(teamcache.MODE_ENV, "sometimes")
    with pytest.raises(WgobuildError, match=r"^WGOBUILD_CACHE_MODE='sometimes' is not one of readwrite, read, off"):
        teamcache.run(cfg, step, build)
    assert build.runs == 1
    monkeypatch.delenv(teamcache.MODE_ENV)
    teamcache.run(cfg, step, build)  # [cache] mode: readwrite
    assert build.runs == 2 and len(tags(registry, "cache/envmode")) == 1


def test_no_cache_configured_runs_the_step(tmp_path: Path) -> None:
    cfg = project(tmp_path / "a", "")
    step, build = a_step(cfg.root)
    teamcache.run(cfg, step, build)
    teamcache.run(cfg, step, build)
    assert build.runs == 2 and Store.of(cfg) is None


@pytest.mark.parametrize(("value", "key"), [("no-repository", "registry"), ("Host:99/UPPER", "registry"),
                                            ("h:5000/r", "")])
def test_cache_settings_are_checked(tmp_path: Path, value: str, key: str) -> None:
    if not key:
        cfg = project(tmp_path / "ok", value)
        assert Store.of(cfg) == Store("h:5000", "r", "readwrite", ())
        with pytest.raises(ConfigError, match=r"\[cache\]\.mode: 'write' is not allowed; choose one of: readwrite"):
            project(tmp_path / "bad", value, mode="write")
        return
    with pytest.raises(ConfigError, match=rf"\[cache\]\.{key}: {value!r}: use host\[:port\]/repository"):
        project(tmp_path / "a", value)


def test_prune_removes_entries_older_than_the_age(tmp_path: Path, registry: Registry) -> None:
    cfg = project(tmp_path / "a", f"{registry.host}/cache/prune")
    store = Store.of(cfg)
    assert store is not None
    old, _ = a_step(cfg.root, "old")
    (cfg.root / "dist").mkdir()
    (cfg.root / "dist" / "out.bin").write_bytes(b"x")
    old_tag = teamcache.upload(store, cfg.root, old, teamcache.fingerprint(cfg.root, old), now=OLD)
    new, _ = a_step(cfg.root, "new")
    new_tag = teamcache.upload(store, cfg.root, new, teamcache.fingerprint(cfg.root, new))
    requests.put(f"{registry.url}/v2/cache/prune/manifests/someone-elses", timeout=10,
                 data=requests.get(f"{registry.url}/v2/cache/prune/manifests/{old_tag}", timeout=10,
                                   headers={"Accept": teamcache.OCI_MANIFEST}).content,
                 headers={"Content-Type": teamcache.OCI_MANIFEST}).raise_for_status()
    (cfg.root / "wgobuild.toml").write_text(f'[project]\nname = "demo"\nversion = "1.0.0"\n[[binaries]]\n'
                                            f'name = "demo"\n[cache]\nregistry = "{registry.host}/cache/prune"\n')
    result = subprocess.run([sys.executable, "-m", "wgobuild.cli", "cache", "prune", "--older-than", "30d"],
                            cwd=cfg.root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"removed {old_tag}" in result.stdout and "1 entry removed, 1 kept" in result.stdout, result.stdout
    assert set(tags(registry, "cache/prune")) == {new_tag}  # a tag that is not an entry went with its manifest
    bad = subprocess.run([sys.executable, "-m", "wgobuild.cli", "cache", "prune", "--older-than", "a month"],
                         cwd=cfg.root, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "'a month' is not an age" in bad.stderr, bad.stderr


def test_prune_without_a_cache_says_what_to_set(tmp_path: Path) -> None:
    root = tmp_path / "a"
    project(root, "")
    (root / "wgobuild.toml").write_text('[project]\nname = "demo"\n[[binaries]]\nname = "demo"\n')
    result = subprocess.run([sys.executable, "-m", "wgobuild.cli", "cache", "prune", "--older-than", "30d"],
                            cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "[cache].registry: not set: name the cache repository" in result.stderr, result.stderr
    shutil.rmtree(root)


def test_signed_entries_are_verified_with_the_sign_key(tmp_path: Path, registry: Registry,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from wgobuild import signing

    monkeypatch.setenv(signing.PASSWORD_ENV, "cache-key-pass")
    signing.keygen(tmp_path / "a")
    signing.keygen(tmp_path / "other")
    teamcache._KEYS.clear()
    cache = f"{registry.host}/cache/signed"
    cfg = project(tmp_path / "a", cache, key="wgobuild.key")
    step, build = a_step(cfg.root, "signed")
    teamcache.run(cfg, step, build)
    key = teamcache.fingerprint(cfg.root, step)
    signed = Store.of(cfg)
    assert signed is not None and signed.public_key == cfg.root / "wgobuild.pub"
    assert teamcache.fetch(signed, cfg.root, step, key)

    # Unsigned entry (a cache written without [sign]): refused where [sign] is set, used where it is not.
    unsigned = Store(signed.registry, signed.repository)
    teamcache.upload(unsigned, cfg.root, step, key)
    with pytest.raises(CacheError, match=r"compile-[0-9a-f]{64}: not signed, and \[sign\] key is set"):
        teamcache.fetch(signed, cfg.root, step, key)
    assert teamcache.fetch(unsigned, cfg.root, step, key)

    # Signed with another key: refused.
    teamcache.upload(Store(signed.registry, signed.repository, key=tmp_path / "other" / "wgobuild.key"), cfg.root,
                     step, key)
    with pytest.raises(CacheError, match=r"its signature does not verify against wgobuild.pub"):
        teamcache.fetch(signed, cfg.root, step, key)
    teamcache._KEYS.clear()
