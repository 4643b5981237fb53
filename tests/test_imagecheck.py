"""The DLLs each Windows executable imports, read with pefile from real binaries (plain Go, and cgo built with the
mingw-w64 cross compiler), checked against the runtime before an image is built."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import shutil
import tarfile
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


def windows_layout(folder: Path, layers: list[list[tuple[str, bytes | None]]]) -> Path:
    """An OCI layout holding one windows/amd64 ltsc2022 image whose layers hold ``layers`` (None: a folder)."""
    blobs = folder / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    descriptors, diff_ids = [], []
    for entries in layers:
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, content in entries:
                info = tarfile.TarInfo(name)
                if content is None:
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                else:
                    info.size = len(content)
                    tar.addfile(info, io.BytesIO(content))
        diff_ids.append("sha256:" + hashlib.sha256(raw.getvalue()).hexdigest())
        descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            **put(gzip.compress(raw.getvalue(), mtime=0))})
    image_config = {"architecture": "amd64", "os": "windows", "os.version": "10.0.20348.1",
                    "config": {"User": "ContainerUser"}, "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           **put(json.dumps(image_config).encode())}, "layers": descriptors}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", **put(json.dumps(manifest).encode()),
         "platform": {"architecture": "amd64", "os": "windows", "os.version": "10.0.20348.1"}}]}
    (folder / "index.json").write_text(json.dumps(index))
    (folder / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return folder


SYS32 = "Files/Windows/System32/"


def on_base(cfg: Config, layout: Path) -> Config:
    return dataclasses.replace(cfg, image=dataclasses.replace(cfg.image, backend="oci", windows_base=f"oci:{layout}",
                                                              outputs=["oci-layout"]))


def test_the_base_images_own_system32_decides_when_its_layers_are_at_hand(hello_cfg: Config, tmp_path: Path) -> None:
    layout = windows_layout(tmp_path / "base", [
        [("Files", None), ("Files/Windows", None), (SYS32.rstrip("/"), None), (SYS32 + "KERNEL32.dll", b"MZ"),
         (SYS32 + "ntdll.dll", b"MZ"), (SYS32 + "gone.dll", b"MZ"), ("Hives", None)],
        [(SYS32 + ".wh.gone.dll", b""), (SYS32 + "drivers/deep.dll", b"MZ"), (SYS32 + "notes.txt", b"x"),
         ("Files/app/other.dll", b"MZ")],
    ])
    cfg = on_base(hello_cfg, layout)
    assert imagecheck.base_system32(cfg, WINDOWS) == {"kernel32.dll", "ntdll.dll"}
    cached = sorted((cfg.state_dir / "oci" / "system32").glob("*.json"))
    assert len(cached) == 2, "one listing per layer digest"
    result = imaging.build_platform(cfg, WINDOWS, "1")  # hello.exe imports kernel32.dll alone: the base has it
    assert result.backend == "oci" and result.extra["dll_imports"] == {"hello": ["kernel32.dll"]}

    lacking = on_base(hello_cfg, windows_layout(tmp_path / "lacking", [[(SYS32 + "ntdll.dll", b"MZ")]]))
    with pytest.raises(StepFailed, match=r"^image windows/amd64: hello\.exe imports kernel32\.dll, which the base "
                                         r"image's System32 does not have: the container would exit at once"):
        imaging.build_platform(lacking, WINDOWS, "1")
    assert not imaging.record_path(lacking, WINDOWS).exists()

    # A base whose layers list no DLL under System32 (not a Windows base we can read): the documented list decides.
    plain = on_base(hello_cfg, windows_layout(tmp_path / "plain", [[(SYS32 + "kernel.txt", b"x")]]))
    assert imagecheck.base_system32(plain, WINDOWS) is None
    assert imaging.build_platform(plain, WINDOWS, "1").backend == "oci"
    # The engine holds its own bases: no layers at hand.
    engine = dataclasses.replace(cfg, image=dataclasses.replace(cfg.image, backend="engine"))
    assert imagecheck.base_system32(engine, WINDOWS) is None
