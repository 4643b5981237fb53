"""wgobuild.toml validation: every bad input names the file and key, and says what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures_go import copy_hello, run_doit

from wgobuild import config
from wgobuild.config import Platform
from wgobuild.errors import ConfigError


def write(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "main.go").write_text("package main\n\nfunc main() {}\n")
    (root / "wgobuild.toml").write_text(text)
    return root


MINIMAL = '[[binaries]]\nname = "svc"\npackage = "."\n'


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path / "svc", MINIMAL))
    assert cfg.project.name == "svc"
    assert [str(p) for p in cfg.platforms] == ["windows/amd64", "linux/amd64"]
    assert cfg.binary_path(cfg.binaries[0], cfg.platforms[0]) == tmp_path / "svc/dist/windows-amd64/svc.exe"
    assert cfg.binary_path(cfg.binaries[0], cfg.platforms[1]) == tmp_path / "svc/dist/linux-amd64/svc"
    assert cfg.state_dir == tmp_path / "svc/.wgobuild"


def test_example_config_loads() -> None:
    cfg = config.load(Path(__file__).parents[1] / "examples/hello")
    assert [b.name for b in cfg.binaries] == ["hello"]
    assert cfg.golden[0].binary == "hello"


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ('[[binaries]\nname = "svc"', "", "malformed TOML"),
        (MINIMAL + "[build]\nplatform = []\n", "[build].platform", "unknown key"),
        (MINIMAL + "[bild]\n", "bild", "unknown section"),
        (MINIMAL + '[build]\nplatforms = ["windows/386"]\n', "[build].platforms[0]", "not a supported platform"),
        (MINIMAL + '[build]\nplatforms = ["linux/amd64:10.0.20348"]\n', "[build].platforms[0]", "only windows"),
        (MINIMAL + '[build]\nplatforms = ["windows/amd64:10.0.99999"]\n', "[build].platforms", "LTSC"),
        (MINIMAL + "[build]\ncgo = \"yes\"\n", "[build].cgo", "expected bool"),
        (MINIMAL + "[build]\nplatforms = \"linux/amd64\"\n", "[build].platforms", "expected a list"),
        ('[[binaries]]\nname = "svc"\npackage = "./cmd/none"\n', "binaries[0].package", "no 'package main'"),
        ('[[binaries]]\npackage = "."\n', "binaries[0].name", "required"),
        ("[project]\n", "binaries", "at least one"),
        (MINIMAL + '[image]\nrepository = "Bad Name"\n', "[image].repository", "not a valid image repository"),
        (MINIMAL + '[image]\ntag = "a:b"\n', "[image].tag", "not a valid image tag"),
        (MINIMAL + '[image]\nbackend = "podman"\n', "[image].backend", "choose one of"),
        (MINIMAL + '[limits]\nmemory = "12 parsecs"\n', "[limits].memory", "not a size"),
        (MINIMAL + '[[golden]]\nname = "g"\ninput = "in.txt"\nexpected = "out.txt"\n', "golden[0].input",
         "no such file"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path: Path, text: str, key: str, words: str) -> None:
    root = write(tmp_path / "svc", text)
    with pytest.raises(ConfigError) as caught:
        config.load(root)
    message = str(caught.value)
    assert message.startswith(str(root / "wgobuild.toml"))
    assert key in message
    assert words in message
    assert caught.value.exit_code == 2


def test_missing_config_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="wgobuild init"):
        config.load(tmp_path)


def test_platform_parsing() -> None:
    plat = Platform.parse("windows/amd64:10.0.17763")
    assert (plat.os, plat.arch, plat.ltsc, plat.key, plat.exe_suffix) == (
        "windows", "amd64", "ltsc2019", "windows-amd64-17763", ".exe")
    assert Platform.parse("windows/arm64").ltsc == "ltsc2022"
    assert Platform.parse("linux/arm64").key == "linux-arm64"
    with pytest.raises(ValueError) as caught:
        Platform.parse("plan9/amd64")
    assert str(caught.value) == ("'plan9/amd64' is not a supported platform; allowed: windows/amd64, windows/arm64, "
                                 "linux/amd64, linux/arm64, linux/arm, darwin/amd64, darwin/arm64")


def test_parse_size() -> None:
    assert config.parse_size("512MiB") == 512 * 1024**2
    assert config.parse_size("1GB") == 10**9
    assert config.parse_size("64k") == 64 * 1024
    with pytest.raises(ValueError) as caught:
        config.parse_size("0MiB")
    assert str(caught.value) == "'0MiB' must be more than 0"


def test_doit_with_bad_config_exits_2_and_builds_nothing(tmp_path: Path) -> None:
    root = copy_hello(tmp_path / "hello")
    text = (root / "wgobuild.toml").read_text().replace('"linux/amd64"]', '"linux/amd64", "x/y"]')
    (root / "wgobuild.toml").write_text(text)
    result = run_doit(root, "image")
    assert result.returncode == 2, result.output
    assert "wgobuild.toml: [build].platforms[2]: 'x/y' is not a supported platform" in result.output
    assert "Traceback" not in result.output
    assert not (root / "dist").exists()


def test_base_source_per_platform(tmp_path: Path) -> None:
    text = MINIMAL + ('[build]\nplatforms = ["windows/amd64:10.0.17763", "windows/amd64", "linux/amd64"]\n'
                      '[image]\nbases = { "windows-amd64-17763" = "oci:nano2019", "linux/amd64" = "reg:5000/b:1" }\n')
    cfg = config.load(write(tmp_path / "svc", text))
    old, new, linux = cfg.platforms
    assert cfg.base_source(old) == "oci:nano2019"
    assert cfg.base_source(new) == "mcr.microsoft.com/windows/nanoserver"
    assert cfg.base_source(linux) == "reg:5000/b:1"
    servercore = config.load(write(tmp_path / "sc", MINIMAL + '[image]\nruntime = "servercore"\n'))
    assert servercore.base_source(servercore.platforms[0]) == "mcr.microsoft.com/windows/servercore"
