"""The DLLs each Windows executable imports, read with pefile from real binaries (plain Go, and cgo built with the
mingw-w64 cross compiler), checked against the runtime before an image is built."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fixtures_go import copy_hello
from services import service_missing

from wgobuild import config, gotool, imagecheck, imaging, sbom
from wgobuild.config import Config, Platform
from wgobuild.errors import StepFailed

WINDOWS = Platform.parse("windows/amd64")
MINGW = "x86_64-w64-mingw32-gcc"

PTHREAD = """package main

// #cgo LDFLAGS: -lwinpthread
// #include <pthread.h>
// static int self(void) { return pthread_self() != 0; }
import "C"

func main() { println(C.self()) }
"""
PLAIN_CGO = """package main

// static int two(void) { return 2; }
import "C"

func main() { println(C.two()) }
"""


def cgo_binary(root: Path, source: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``source`` as a cgo main package cross-compiled for windows/amd64 by the compile step's own code."""
    if shutil.which(MINGW) is None:
        service_missing(f"{MINGW} (apt-get install gcc-mingw-w64-x86-64)")
    root.mkdir(parents=True)
    (root / "go.mod").write_text("module example.com/cgo\n\ngo 1.22\n")
    (root / "main.go").write_text(source)
    monkeypatch.setenv("CC", MINGW)
    out = root / "dist" / "cgo.exe"
    gotool.build(root, ".", WINDOWS, out, "1", cgo=True)
    return out


@pytest.fixture(scope="module")
def hello_cfg(tmp_path_factory: pytest.TempPathFactory) -> Config:
    root = copy_hello(tmp_path_factory.mktemp("dll") / "hello")
    cfg = config.load(root)
    gotool.build(root, ".", WINDOWS, cfg.binary_path(cfg.binaries[0], WINDOWS), "1")
    return cfg


def test_a_plain_go_binary_imports_kernel32_alone_and_passes(hello_cfg: Config) -> None:
    exe = hello_cfg.binary_path(hello_cfg.binaries[0], WINDOWS)
    assert imagecheck.imported_dlls(exe) == ["kernel32.dll"]
    for runtime in ("nanoserver", "servercore"):
        assert imagecheck.check_windows_binaries({"hello": exe}, runtime, "windows/amd64") == {
            "hello": ["kernel32.dll"]}


def test_a_cgo_binary_needing_libwinpthread_fails_naming_the_dll(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    exe = cgo_binary(tmp_path / "cgo", PTHREAD, monkeypatch)
    imports = imagecheck.imported_dlls(exe)
    assert "libwinpthread-1.dll" in imports and "kernel32.dll" in imports, imports
    for runtime in ("nanoserver", "servercore"):  # no Windows image ships mingw's runtime
        with pytest.raises(StepFailed) as failed:
            imagecheck.check_windows_binaries({"cgo": exe}, runtime, "windows/amd64")
        assert str(failed.value).startswith("image windows/amd64: cgo.exe imports libwinpthread-1.dll, which ")
        assert "Build without cgo ([build] cgo = false), link the C runtime statically" in str(failed.value)
        assert "image.runtime = 'servercore'" in str(failed.value)


def test_a_cgo_binary_on_the_c_runtime_alone_passes_nanoserver(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    exe = cgo_binary(tmp_path / "cgo", PLAIN_CGO, monkeypatch)
    imports = imagecheck.imported_dlls(exe)
    assert "msvcrt.dll" in imports or any(d.startswith("api-ms-win-crt-") for d in imports), imports
    assert not any(d.startswith("lib") for d in imports), imports
    assert imagecheck.check_windows_binaries({"cgo": exe}, "nanoserver", "windows/amd64") == {"cgo": imports}


def test_the_base_images_own_system32_decides_when_known() -> None:
    imports = ["api-ms-win-crt-runtime-l1-1-0.dll", "kernel32.dll", "winmm.dll"]
    assert imagecheck.missing_dlls(imports, "nanoserver") == []
    assert imagecheck.missing_dlls(imports, "nanoserver", frozenset({"kernel32.dll"})) == ["winmm.dll"]
    assert imagecheck.missing_dlls(["opengl32.dll"], "nanoserver") == ["opengl32.dll"]
    assert imagecheck.missing_dlls(["opengl32.dll"], "servercore") == []


def test_a_file_that_is_not_an_executable_is_named(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.exe"
    bogus.write_text("MZ but not really")
    with pytest.raises(StepFailed, match=r"bogus\.exe: cannot read it as a Windows executable: "):
        imagecheck.imported_dlls(bogus)


def test_the_image_step_refuses_before_building_and_leaves_no_record(hello_cfg: Config, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    exe = hello_cfg.binary_path(hello_cfg.binaries[0], WINDOWS)
    good = exe.read_bytes()
    record = imaging.record_path(hello_cfg, WINDOWS)
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text("{}")  # an older build's record
    sbom.image_path(hello_cfg, WINDOWS).parent.mkdir(parents=True, exist_ok=True)
    sbom.image_path(hello_cfg, WINDOWS).write_text("{}")
    shutil.copyfile(cgo_binary(tmp_path / "cgo", PTHREAD, monkeypatch), exe)
    try:
        with pytest.raises(StepFailed, match=r"^image windows/amd64: hello\.exe imports libwinpthread-1\.dll, which "
                                             r"nanoserver does not have: the container would exit"):
            imaging.build_platform(hello_cfg, WINDOWS, "1")
        assert not record.exists() and not sbom.image_path(hello_cfg, WINDOWS).exists()
    finally:
        exe.write_bytes(good)
