"""Dockerfile rendering: structure checked by parsing instruction by instruction, quoting checked by round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wgobuild import config, dockerfile
from wgobuild.config import Platform
from wgobuild.errors import ConfigError, WgobuildError

LTSC = {"10.0.17763": "ltsc2019", "10.0.20348": "ltsc2022", "10.0.26100": "ltsc2025"}


def make_config(root: Path, **image: object) -> config.Config:
    root.mkdir(parents=True, exist_ok=True)
    (root / "go.mod").write_text("module example.com/svc\n\ngo 1.22\n")
    (root / "main.go").write_text('package main\n\nvar version = "dev"\n\nfunc main() { println(version) }\n')
    data = {
        "project": {"name": "svc", "version": "1.0.0", "source": "https://example.com/svc.git"},
        "binaries": [{"name": "svc", "package": "."}, {"name": "tool", "package": "."}],
        "build": {"platforms": ["windows/amd64", "linux/amd64"]},
        "image": {"expose": [8080], "args": ["-addr", ":8080"], "env": {"MODE": "prod"}, **image},
    }
    return config.from_dict(data, root, root / "wgobuild.toml")


def dockerfile_of(cfg: config.Config, platform: str, version: str = "1.2.3") -> list[dockerfile.Instruction]:
    return dockerfile.parse(dockerfile.render(cfg, Platform.parse(platform), version)["Dockerfile"])


@pytest.mark.parametrize("os_version", sorted(LTSC))
@pytest.mark.parametrize("style", ["prebuilt", "multistage"])
@pytest.mark.parametrize("runtime", ["nanoserver", "servercore"])
def test_windows_dockerfile_structure(tmp_path: Path, os_version: str, style: str, runtime: str) -> None:
    ltsc = LTSC[os_version]
    pinned = {"go_image": "registry.local/golang:1.22-windowsservercore-1809"} if ltsc == "ltsc2019" else {}
    cfg = make_config(tmp_path / "m", style=style, runtime=runtime, **pinned)
    platform = Platform.parse(f"windows/amd64:{os_version}")
    rendered = dockerfile.render(cfg, platform, "1.2.3")
    text, ignore = rendered["Dockerfile"], rendered[".dockerignore"]
    assert text.splitlines()[0] == "# escape=`"
    stages = dockerfile.stages(dockerfile.parse(text))
    if style == "multistage":
        assert len(stages) == 2
        build = stages[0]
        builder = pinned.get("go_image") or f"golang:1.22-windowsservercore-{ltsc}"  # go.mod says go 1.22
        assert build[0].words() == [builder, "AS", "build"]
        runs = [i for i in build if i.cmd == "RUN"]
        assert [r.json[:2] for r in runs] == [["go", "build"], ["go", "build"]]  # exec form, one per binary
        assert runs[0].json[runs[0].json.index("-ldflags") + 1] == "-s -w -buildid= -X main.version=1.2.3"
        assert not any(i.cmd == "SHELL" for i in build)
    else:
        assert len(stages) == 1
    final = stages[-1]
    assert final[0].cmd == "FROM"
    assert final[0].words() == [f"mcr.microsoft.com/windows/{runtime}:{ltsc}"]
    by_cmd = {i.cmd: i for i in final}
    assert by_cmd["USER"].words() == ["ContainerUser"]
    assert by_cmd["WORKDIR"].words() == ["C:\\app"]
    assert by_cmd["ENTRYPOINT"].json == ["C:\\app\\svc.exe"]
    assert by_cmd["CMD"].json == ["-addr", ":8080"]
    assert by_cmd["EXPOSE"].words() == ["8080/tcp"]
    assert by_cmd["ENV"].pairs() == {"MODE": "prod"}
    labels = by_cmd["LABEL"].pairs()
    assert labels["org.opencontainers.image.version"] == "1.2.3"
    assert labels["org.opencontainers.image.source"] == "https://example.com/svc.git"
    copies = [i for i in final if i.cmd == "COPY" and "C:\\app\\" in " ".join(i.json or [])]
    assert [c.json[-1] for c in copies] == ["C:\\app\\svc.exe", "C:\\app\\tool.exe"]
    if style == "multistage":
        assert all(c.flags == {"from": "build"} for c in copies)
    else:
        sources = [c.json[0] for c in copies]
        assert sources == ["dist/windows-amd64/svc.exe", "dist/windows-amd64/tool.exe"]  # one binary per GOARCH
        assert all(f"!{s}" in ignore.splitlines() for s in sources)
    assert ignore.splitlines()[1] == "*"  # everything else is kept out of the context
    if runtime == "nanoserver":
        # nanoserver has no PowerShell: not one RUN or SHELL in its stage, and no powershell anywhere in it.
        assert not [i for i in final if i.cmd in ("RUN", "SHELL")]
        assert "powershell" not in " ".join(i.args.lower() for i in final)
    else:
        shell = by_cmd["SHELL"].json
        assert shell[0] == "powershell" and "$ErrorActionPreference = 'Stop';" in shell[-1]
        runs = [i for i in final if i.cmd == "RUN"]
        assert len(runs) == 1, "hardening and clean-up must share one RUN (one layer)"
        run = runs[0].args
        assert run.index("harden.ps1") < run.index("cleanup.ps1") < run.index("Remove-Item")
        # harden leaves a restart pending (features off with -NoRestart): no DISM /ResetBase in the build
        assert "cleanup.ps1' -ComponentCleanup $false;" in run
        order = [i.cmd for i in final]
        assert order.index("SHELL") < order.index("RUN") < order.index("USER")
        script_copy = next(i for i in final if i.cmd == "COPY" and "dist/powershell/harden.ps1" in (i.json or []))
        assert script_copy.json[-1] == "C:\\wgobuild\\"


@pytest.mark.parametrize("style", ["prebuilt", "multistage"])
def test_linux_dockerfile_structure(tmp_path: Path, style: str) -> None:
    cfg = make_config(tmp_path / "m", style=style)
    stages = dockerfile.stages(dockerfile_of(cfg, "linux/amd64"))
    final = stages[-1]
    assert final[0].words() == ["scratch"]
    by_cmd = {i.cmd: i for i in final}
    assert by_cmd["USER"].words() == ["65532:65532"]
    assert by_cmd["ENTRYPOINT"].json == ["/app/svc"]
    assert not [i for i in final if i.cmd == "RUN"]  # scratch has no shell
    if style == "multistage":
        assert stages[0][0].words() == ["golang:1.22", "AS", "build"]
        assert stages[0][[i.cmd for i in stages[0]].index("ENV")].pairs()["GOOS"] == "linux"
    else:
        copies = [i.json for i in final if i.cmd == "COPY"]
        assert copies == [["dist/linux-amd64/svc", "/app/svc"], ["dist/linux-amd64/tool", "/app/tool"]]


@pytest.mark.parametrize(
    ("go_mod", "go_image", "platform", "expected"),
    [
        ("go 1.24.3\n", "golang", "windows/amd64:10.0.20348", "golang:1.24-windowsservercore-ltsc2022"),
        ("go 1.24\ntoolchain go1.25.1\n", "golang", "windows/amd64:10.0.26100",
         "golang:1.25-windowsservercore-ltsc2025"),
        ("go 1.25\n", "mirror.local:5000/golang", "linux/amd64", "mirror.local:5000/golang:1.25"),
        # A tag or digest the user wrote is left exactly as written: no suffix appended.
        ("go 1.25\n", "golang:1.25.4-nanoserver-ltsc2022", "windows/amd64", "golang:1.25.4-nanoserver-ltsc2022"),
        ("go 1.25\n", "golang@sha256:" + "a" * 64, "windows/amd64", "golang@sha256:" + "a" * 64),
        ("go 1.25\n", "mirror.local/golang:1.25-windowsservercore-1809", "windows/amd64:10.0.17763",
         "mirror.local/golang:1.25-windowsservercore-1809"),
    ],
)
def test_builder_image_follows_go_mod(tmp_path: Path, go_mod: str, go_image: str, platform: str,
                                      expected: str) -> None:
    cfg = make_config(tmp_path / "m", style="multistage", go_image=go_image)
    (cfg.root / "go.mod").write_text("module example.com/svc\n\n" + go_mod)
    assert dockerfile.builder_image(cfg, Platform.parse(platform)) == expected
    assert dockerfile_of(cfg, platform)[0].words() == [expected, "AS", "build"]


def test_builder_image_refuses_what_does_not_exist(tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "m", style="multistage")
    with pytest.raises(ConfigError, match=r"\[image\]\.go_image: golang images for ltsc2019 are no longer published"):
        dockerfile.render(cfg, Platform.parse("windows/amd64:10.0.17763"), "1.0.0")
    (cfg.root / "go.mod").write_text("module example.com/svc\n")
    with pytest.raises(ConfigError, match=r"\[image\]\.go_image: no go line in .*go\.mod"):
        dockerfile.render(cfg, Platform.parse("linux/amd64"), "1.0.0")
    # prebuilt images need no builder: nothing is asked of go.mod
    prebuilt = make_config(tmp_path / "p")
    (prebuilt.root / "go.mod").write_text("module example.com/svc\n")
    assert dockerfile.render(prebuilt, Platform.parse("windows/amd64:10.0.17763"), "1.0.0")["Dockerfile"]


def test_configured_bases_tags_and_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    win = dockerfile_of(make_config(tmp_path / "w", windows_base="registry.local:5000/base/nano"),
                        "windows/amd64:10.0.26100")
    assert win[0].words() == ["registry.local:5000/base/nano:ltsc2025"]
    assert {i.cmd: i for i in win}["LABEL"].pairs()["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z"
    cfg = make_config(tmp_path / "m", linux_base="busybox:1.36", user="app", workdir="/srv")
    with pytest.raises(ConfigError, match=r"\[image\].workdir"):  # /srv is no Windows folder
        dockerfile.render(cfg, Platform.parse("windows/amd64"), "1")
    linux = {i.cmd: i for i in dockerfile_of(cfg, "linux/amd64")}
    assert linux["FROM"].words() == ["busybox:1.36"]
    assert linux["USER"].words() == ["app"] and linux["WORKDIR"].words() == ["/srv"]
    assert dockerfile.base_images(dockerfile.render(cfg, Platform.parse("linux/amd64"), "1")["Dockerfile"]) == [
        "busybox:1.36"]


@pytest.mark.parametrize("platform", ["windows/amd64", "linux/amd64"])
def test_hostile_values_stay_inside_their_instruction(tmp_path: Path, platform: str) -> None:
    env = {"A": 'x" \\\nRUN evil', "B": "$HOME `whoami` \\", "C": "it's"}
    env["A"] = env["A"].replace("\n", "")  # control characters are refused separately
    args = ['"]\nRUN ["evil', "$(rm -rf /)", "C:\\path with space"]
    cfg = make_config(tmp_path / "m", env=env, args=args, labels={"com.example.note": 'say "hi" $USER'})
    instructions = dockerfile_of(cfg, platform)
    assert [i.cmd for i in instructions].count("RUN") == 0
    by_cmd = {i.cmd: i for i in instructions}
    assert by_cmd["ENV"].pairs() == env
    assert by_cmd["CMD"].json == args
    assert by_cmd["LABEL"].pairs()["com.example.note"] == 'say "hi" $USER'


@pytest.mark.parametrize(("image", "key"), [
    ({"env": {"A": "line1\nline2"}}, "[image].env.A"),
    ({"labels": {"com.x": "a\rb"}}, "[image].labels.com.x"),
    ({"labels": {"Bad Key": "v"}}, "[image].labels.Bad Key"),
    ({"windows_base": "mcr.microsoft.com/windows/nanoserver\nRUN x"}, "[image].windows_base"),
    ({"linux_base": "UPPER/case"}, "[image].linux_base"),
    ({"go_image": "golang:1.23 AS x"}, "[image].go_image"),
    ({"user": "root; rm"}, "[image].user"),
    ({"workdir": "C:\\my app"}, "[image].workdir"),
])
def test_bad_values_name_their_key(tmp_path: Path, image: dict, key: str) -> None:
    cfg = make_config(tmp_path / "m", **image)
    with pytest.raises(ConfigError) as info:
        for platform in ("windows/amd64", "linux/amd64"):
            dockerfile.render(cfg, Platform.parse(platform), "1.0.0")
    assert info.value.key == key


def test_out_dir_with_unsafe_characters_is_refused(tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "m")
    cfg = config.from_dict({"project": {"name": "svc"}, "binaries": [{"name": "svc"}],
                            "build": {"out_dir": "my dist"}}, cfg.root, cfg.path)
    with pytest.raises(ConfigError) as caught:
        dockerfile.render(cfg, Platform.parse("linux/amd64"), "1")
    assert str(caught.value) == (f"{cfg.path}: [build].out_dir: 'my dist/linux-amd64/svc': paths copied into images "
                                 "may hold only letters, digits, '.', '_', '-' and '/'")


def test_non_container_platform(tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "m")
    with pytest.raises(WgobuildError, match="only windows and linux"):
        dockerfile.render(cfg, Platform.parse("darwin/arm64"), "1")


@given(st.text(alphabet=st.characters(min_codepoint=32, blacklist_characters="\x7f"), max_size=40),
       st.sampled_from(["\\", "`"]))
def test_quote_round_trips_through_the_lexer(value: str, escape: str) -> None:
    assert dockerfile.words(dockerfile.quote(value, escape), escape) == [value]


def test_quote_refuses_control_characters() -> None:
    for bad in ("a\nb", "a\rb", "\x00", "tab\there"):
        with pytest.raises(ValueError, match="control character"):
            dockerfile.quote(bad)


def test_parser_reads_continuations_flags_and_comments() -> None:
    text = "# escape=`\n# comment\nFROM a AS b\nCOPY --from=b [\"x\", \"C:\\\\y\"]\nLABEL k=\"v`\"w\" `\n  # inner\n" \
           "  j=2\nRUN echo `\n  hi\n"
    parsed = dockerfile.parse(text)
    assert [i.cmd for i in parsed] == ["FROM", "COPY", "LABEL", "RUN"]
    assert parsed[1].flags == {"from": "b"} and parsed[1].json == ["x", "C:\\y"]
    assert parsed[2].pairs() == {"k": 'v"w', "j": "2"}
    assert parsed[3].args == "echo hi" and parsed[3].line == 8


def test_write_is_atomic_and_stable(tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "m")
    platform = Platform.parse("windows/amd64")
    out = dockerfile.docker_dir(cfg, platform)
    written = dockerfile.write(cfg, platform, "1.0.0", out)
    assert sorted(p.name for p in written) == [".dockerignore", "Dockerfile"]
    before = {p: p.read_bytes() for p in written}
    assert dockerfile.write(cfg, platform, "1.0.0", out) == written
    assert {p: p.read_bytes() for p in written} == before  # same inputs, same bytes
    bad = make_config(tmp_path / "m", env={"A": "x\ny"})
    with pytest.raises(ConfigError) as caught:
        dockerfile.write(bad, platform, "1.0.0", out)
    assert str(caught.value) == (f"{bad.root / 'wgobuild.toml'}: [image].env.A: 'x\\ny' contains a control character "
                                 "(newline, tab, ...)")
    assert {p: p.read_bytes() for p in written} == before  # a failed render leaves the good files
    assert sorted(p.name for p in out.iterdir()) == [".dockerignore", "Dockerfile"]  # no temp files left


def test_template_paths_exist(tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "m", runtime="servercore", style="multistage")
    paths = dockerfile.template_paths(cfg, Platform.parse("windows/amd64"))
    assert len(paths) == 3 and all(p.is_file() for p in paths)


def test_build_labels_carry_revision_and_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make_config(tmp_path / "m")
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    labels = dockerfile.build_labels(cfg)
    assert labels["org.opencontainers.image.created"].endswith("Z")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    assert "org.opencontainers.image.created" not in dockerfile.build_labels(cfg)  # it is in the Dockerfile then
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(WgobuildError) as caught:
        dockerfile.build_labels(cfg)
    assert str(caught.value) == "SOURCE_DATE_EPOCH='yesterday' must be a number of seconds since 1970-01-01"


def test_exec_form_is_json() -> None:
    argv = ['a"b', "c\\d", "ü"]
    assert json.loads(dockerfile.exec_form(argv)) == argv
