"""SBOMs from the Go build info inside each binary, checked by the reference validators (spdx-tools for SPDX 2.3,
cyclonedx-python-lib's JSON schema validation for CycloneDX 1.6) and by Go's own reader (`go version -m -json`)."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from fixtures_go import copy_hello, run_doit
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from wgobuild import buildinfo, config, files, gotool, sbom
from wgobuild.config import Config, Platform
from wgobuild.errors import StepFailed

WINDOWS, LINUX = Platform.parse("windows/amd64"), Platform.parse("linux/amd64")
X_SYS = "golang.org/x/sys"  # examples/hello requires it: the dependency list is not empty


def spdx_errors(path: Path) -> list[str]:
    return [e.validation_message for e in validate_full_spdx_document(parse_file(str(path)))]


def cdx_error(text: str) -> str | None:
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    return None if error is None else str(error)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """examples/hello compiled for windows/amd64 and linux/amd64 as the compile step compiles it (real Go,
    golang.org/x/sys from the module cache or the module proxy)."""
    root = copy_hello(tmp_path_factory.mktemp("sbom") / "hello")
    cfg = config.load(root)
    for platform in (WINDOWS, LINUX):
        gotool.build(root, ".", platform, cfg.binary_path(cfg.binaries[0], platform), "1.2.3", tags=["netgo"])
    return cfg


def go_reads(binary: Path) -> dict[str, Any]:
    out = subprocess.run([str(gotool.find_go()), "version", "-m", "-json", str(binary)], capture_output=True,
                         text=True, check=True)
    return dict(json.loads(out.stdout))


@pytest.mark.parametrize("platform", [WINDOWS, LINUX], ids=str)
def test_build_info_is_what_go_reads(built: Config, platform: Platform) -> None:
    binary = built.binary_path(built.binaries[0], platform)
    info, go = buildinfo.read(binary), go_reads(binary)
    assert info.go_version == go["GoVersion"] and info.path == go["Path"] == "example.com/hello"
    assert (info.main.path, info.main.version) == (go["Main"]["Path"], go["Main"]["Version"])
    assert [(d.path, d.version, d.sum) for d in info.deps] == [(d["Path"], d["Version"], d.get("Sum", ""))
                                                                for d in go.get("Deps", [])]
    assert info.settings == [(s["Key"], s["Value"]) for s in go["Settings"]]
    assert info.setting("GOOS") == platform.os and info.setting("-tags") == "netgo"
    if platform.os == "windows":  # the Windows service code imports golang.org/x/sys/windows/svc
        assert [d.path for d in info.deps] == [X_SYS] and info.deps[0].sum.startswith("h1:")


def test_a_file_without_build_info_is_refused_by_name(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a Go binary\n")
    with pytest.raises(StepFailed, match=r"notes\.txt: no Go build info found \(not a Go binary, or built by Go "
                                         r"older than 1\.18\); rebuild it with a current Go toolchain"):
        buildinfo.read(text)
    fake = tmp_path / "fake"  # the magic alone, without a well-formed header after it
    fake.write_bytes(b"\0" * 64 + buildinfo.MAGIC + b"\x08\x00" + b"\0" * 40)
    with pytest.raises(StepFailed, match="fake: no Go build info found"):
        buildinfo.read(fake)
    with pytest.raises(StepFailed, match="missing: cannot read its Go build info"):
        buildinfo.read(tmp_path / "missing")


def test_replacements_and_quoted_settings_are_parsed() -> None:
    info = buildinfo.parse("go1.22.0", "path\tex.com/a\nmod\tex.com/a\t(devel)\t\n"
                                       "dep\tex.com/b\tv1.0.0\th1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
                                       "=>\t../b\t(devel)\t\n"
                                       'build\t-ldflags="-X main.v=1 -s"\nbuild\t"we=ird"=x\n')
    assert info.deps[0].replace == buildinfo.Module("../b", "(devel)")
    assert info.settings == [("-ldflags", "-X main.v=1 -s"), ("we=ird", "x")]


def test_binary_sboms_pass_the_reference_validators_and_list_every_module(built: Config) -> None:
    ldflags = gotool.build_ldflags("1.2.3", [])
    result = sbom.binary_sbom(built, "hello", WINDOWS, version="1.2.3", ldflags=ldflags)
    assert result.spdx_path == built.out_dir / "sbom/hello-windows-amd64.spdx.json"
    assert result.cyclonedx_path == built.out_dir / "sbom/hello-windows-amd64.cdx.json"
    assert spdx_errors(result.spdx_path) == []
    assert cdx_error(result.cyclonedx_path.read_text()) is None
    assert json.loads(result.spdx_path.read_text()) == result.spdx  # what is returned is what was written

    spdx = result.spdx
    binary = next(p for p in spdx["packages"] if p["primaryPackagePurpose"] == "APPLICATION")
    exe = built.binary_path(built.binaries[0], WINDOWS)
    assert binary["checksums"] == [{"algorithm": "SHA256", "checksumValue": files.sha256_file(exe)}]
    assert binary["externalRefs"][0]["referenceLocator"] == "pkg:golang/example.com/hello@1.2.3"
    settings = {a["comment"].removeprefix("go build setting ") for a in binary["annotations"]}
    assert {"GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0", "-trimpath=true", "-tags=netgo",
            f"-ldflags={ldflags}"} <= settings
    x_sys = next(p for p in spdx["packages"] if p["name"] == X_SYS)
    go_sum = buildinfo.read(exe).deps[0].sum
    assert x_sys["versionInfo"] == "v0.28.0" and x_sys["comment"] == f"go.sum {go_sum}"
    assert x_sys["externalRefs"][0]["referenceLocator"] == "pkg:golang/golang.org/x/sys@v0.28.0"
    assert len(x_sys["checksums"][0]["checksumValue"]) == 64
    stdlib = next(p for p in spdx["packages"] if p["name"] == "stdlib")
    assert "go" + stdlib["versionInfo"] == buildinfo.read(exe).go_version
    assert {(r["relationshipType"], r["relatedSpdxElement"]) for r in spdx["relationships"]
            if r["spdxElementId"] == binary["SPDXID"]} == {("DEPENDS_ON", x_sys["SPDXID"]),
                                                           ("DEPENDS_ON", stdlib["SPDXID"])}

    cdx = result.cyclonedx
    root = cdx["metadata"]["component"]
    assert root["purl"] == "pkg:golang/example.com/hello@1.2.3"
    assert {"name": "wgobuild:go:build:GOOS", "value": "windows"} in root["properties"]
    component = next(c for c in cdx["components"] if c["name"] == X_SYS)
    assert component["purl"] == "pkg:golang/golang.org/x/sys@v0.28.0"
    assert component["properties"] == [{"name": "wgobuild:go:sum", "value": go_sum}]
    assert cdx["dependencies"][0] == {"ref": root["bom-ref"], "dependsOn": [c["bom-ref"] for c in cdx["components"]]}


def test_the_validators_reject_a_broken_document(built: Config, tmp_path: Path) -> None:
    """Negative control: the checks above would see a malformed SBOM."""
    result = sbom.binary_sbom(built, "hello", LINUX)
    broken = copy.deepcopy(result.spdx)
    broken["relationships"].append({"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                                    "relatedSpdxElement": "SPDXRef-Nothing"})
    path = tmp_path / "broken.spdx.json"
    path.write_text(json.dumps(broken))
    assert any("SPDXRef-Nothing" in e for e in spdx_errors(path)), spdx_errors(path)
    cdx = copy.deepcopy(result.cyclonedx)
    cdx["components"][0]["hashes"] = [{"alg": "SHA-256", "content": "not hex"}]
    assert "'not hex' does not match" in str(cdx_error(json.dumps(cdx)))


def test_an_unchanged_binary_gives_identical_sboms(built: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    first = sbom.binary_sbom(built, "hello", WINDOWS, version="1.2.3")
    before = (first.spdx_path.read_bytes(), first.cyclonedx_path.read_bytes())
    again = sbom.binary_sbom(built, "hello", WINDOWS, version="1.2.3")
    assert (again.spdx_path.read_bytes(), again.cyclonedx_path.read_bytes()) == before
    assert first.spdx["creationInfo"]["created"] == "1970-01-01T00:00:00Z"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    dated = sbom.binary_sbom(built, "hello", WINDOWS, version="1.2.3")
    assert dated.spdx["creationInfo"]["created"] == dated.cyclonedx["metadata"]["timestamp"] == "2023-11-14T22:13:20Z"
    other = sbom.binary_sbom(built, "hello", LINUX, version="1.2.3")  # another binary: other ids
    assert other.spdx["documentNamespace"] != dated.spdx["documentNamespace"]
    assert other.cyclonedx["serialNumber"] != dated.cyclonedx["serialNumber"]


def test_a_failed_compile_leaves_no_sbom_looking_current(tmp_path: Path) -> None:
    cfg = config.load(copy_hello(tmp_path / "hello"))
    paths = sbom.binary_paths(cfg, "hello", LINUX)
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")  # an older binary's SBOM
    (cfg.root / "main.go").write_text("package main\n\nfunc main() { undefined() }\n")
    with pytest.raises(StepFailed, match=r"^go build \. for linux/amd64 failed \(exit 1\):"):
        sbom.compile_binary(cfg, cfg.binaries[0], LINUX, "1")
    assert [p.exists() for p in paths] == [False, False]


@pytest.mark.slow
def test_doit_image_writes_every_sbom_and_a_no_op_run_keeps_them(hello: Path, seeded_bases: Any) -> None:
    first = run_doit(hello, "image")
    assert first.returncode == 0, first.output
    assert {"compile:hello-windows-amd64", "compile:hello-linux-amd64"} <= first.ran  # the SBOMs are its outputs
    out = hello / "dist/sbom"
    names = sorted(p.name for p in out.iterdir())
    assert names == ["hello-linux-amd64.cdx.json", "hello-linux-amd64.spdx.json", "hello-windows-amd64.cdx.json",
                     "hello-windows-amd64.spdx.json", "image-linux-amd64.spdx.json", "image-windows-amd64.spdx.json"]
    for path in out.glob("*.spdx.json"):
        assert spdx_errors(path) == [], path
    for path in out.glob("*.cdx.json"):
        assert cdx_error(path.read_text()) is None, path

    record = json.loads((hello / "dist/images/windows-amd64.json").read_text())
    assert record["extra"]["dll_imports"] == {"hello": ["kernel32.dll"]}  # checked against nanoserver, reported
    assert "windows/amd64: hello imports kernel32.dll" in first.output
    summary = json.loads((hello / "dist/reports/images.json").read_text())["images"]
    assert [i["extra"].get("dll_imports") for i in summary if i["platform"] == "windows/amd64"] == [
        {"hello": ["kernel32.dll"]}]
    image = json.loads((out / "image-windows-amd64.spdx.json").read_text())
    by_id = {p["SPDXID"]: p for p in image["packages"]}
    assert by_id["SPDXRef-Image"]["versionInfo"] == record["digest"]
    base = by_id["SPDXRef-Base"]
    assert base["name"] == record["extra"]["base"]["source"] and base["versionInfo"].startswith("sha256:")
    repository = seeded_bases.windows.split("/", 1)[1]  # the base's manifest is what the registry serves there
    served = requests.get(f"{seeded_bases.registry.url}/v2/{repository}/manifests/{base['versionInfo']}",
                          headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json, "
                                             "application/vnd.oci.image.manifest.v1+json"}, timeout=10)
    assert served.status_code == 200, served.text
    app = next(layer for layer in record["layers"] if not layer["from_base"])
    assert by_id["SPDXRef-Layer-app"]["versionInfo"] == app["digest"]
    assert any(p["name"] == X_SYS for p in image["packages"])
    rels = {(r["spdxElementId"], r["relationshipType"], r["relatedSpdxElement"]) for r in image["relationships"]}
    assert {("SPDXRef-Image", "DESCENDANT_OF", "SPDXRef-Base"), ("SPDXRef-Image", "CONTAINS", "SPDXRef-Layer-app"),
            ("SPDXRef-Layer-app", "CONTAINS", "SPDXRef-Binary-hello-windows-amd64")} <= rels
    linux = json.loads((out / "image-linux-amd64.spdx.json").read_text())
    assert "SPDXRef-Base" not in {p["SPDXID"] for p in linux["packages"]}  # scratch: no base to name

    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / "hello-linux-amd64.cdx.json").unlink()
    again = run_doit(hello, "image")
    assert again.returncode == 0, again.output
    assert again.reasons == {"compile:hello-linux-amd64": "output missing: dist/sbom/hello-linux-amd64.cdx.json"}
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before, "the same binary gives the same SBOM"
