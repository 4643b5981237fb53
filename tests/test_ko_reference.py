"""ko as the reference for daemonless Windows images: the same example, the same base, compared field by field.

ko (github.com/google/ko, installed by tests/run.sh with ``go install``) builds ``examples/hello`` for windows/amd64
onto the synthetic nanoserver stand-in the suite pushes to its registry (``seeded_bases``, the ltsc2022 entry by
digest); wgobuild's daemonless backend builds the same binary onto the same base and pushes it to the same registry.
Both images are read back over the registry API and flattened into facts (config fields, the layers' tar entries:
names, types, modes, PAX records, mtimes, uid/gid, sizes and content). Every fact on which they differ must be in
:data:`EXPECTED` with its reason (docs/windows.md, "ko, field by field" says the same): a new difference fails the
test, and so does a listed one that went away (the list must stay true). Under CI=true a missing ko fails.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from fixtures_registry import EXAMPLE, VERSION, WINDOWS_VERSIONS, Bases, oci_config
from services import service_missing
from test_peers import find_peer

from wgobuild import gotool, proc
from wgobuild.image import ImageRequest
from wgobuild.oci.backend import OciBackend, publish

pytestmark = pytest.mark.registry

KO_VERSION = "v0.19.1"
ACCEPT = ", ".join(["application/vnd.docker.distribution.manifest.v2+json",
                    "application/vnd.oci.image.manifest.v1+json"])
#: ko puts the binary at C:\ko-app\<name> (no .exe); wgobuild at C:\app\<name>.exe. Entries are compared under
#: wgobuild's names; the mapping itself is the fact ``app.binary``.
KO_NAMES = {"Files/ko-app": "Files/app", "Files/ko-app/hello": "Files/app/hello.exe"}
BINARY = "Files/app/hello.exe"

#: fact -> (ko's value, wgobuild's value, why they differ). Nothing else may differ.
EXPECTED: dict[str, tuple[Any, Any, str]] = {
    "app.binary": ("Files/ko-app/hello", BINARY,
                   "ko installs at C:\\ko-app and names the file after the package with no .exe; wgobuild uses the "
                   "configured workdir (C:\\app) and the Windows file name, which PowerShell and sc.exe expect"),
    "app.order": (["Hives", "Files", "Files/app", BINARY], ["Files", "Files/app", BINARY, "Hives"],
                  "wgobuild sorts entries (reproducible); both put parents before children, all hcsshim's importer "
                  "needs"),
    "layers.added": (2, 1, "ko adds a kodata layer even when the module has no kodata folder"),
    "layers.kodata": (["Hives", "Files", "Files/var", "Files/var/run", "Files/var/run/ko"], None,
                      "ko's kodata layer: empty folders for $KO_DATA_PATH; wgobuild has no kodata concept"),
    "config.author": ("github.com/ko-build/ko", None, "ko signs its configs; wgobuild names itself in history"),
    "config.Entrypoint": (["C:\\ko-app\\hello"], ["C:\\app\\hello.exe"], "see app.binary"),
    "config.Env": (["PATH=C:\\ko-app", "KO_DATA_PATH=C:\\var\\run\\ko"], None,
                   "ko sets PATH, which on Windows replaces the PATH the image's registry hive holds (servercore "
                   "would lose PowerShell, Wbem and OpenSSH, nanoserver even system32); wgobuild leaves Env to the "
                   "base (the entrypoint is an absolute path) and has no kodata"),
    "config.WorkingDir": (None, "C:\\app", "ko sets none (C:\\ at run time); wgobuild starts in the app folder"),
    "config.Labels": (None, {"org.opencontainers.image.title": "hello",
                             "org.opencontainers.image.version": VERSION},
                      "wgobuild labels title and version (OCI annotations keys); ko labels nothing"),
    "history.added": ([{"author": "ko", "created": "0001-01-01T00:00:00Z",
                        "created_by": "ko build ko://example.com/hello",
                        "comment": "kodata contents, at $KO_DATA_PATH"},
                       {"author": "ko", "created": "0001-01-01T00:00:00Z",
                        "created_by": "ko build ko://example.com/hello",
                        "comment": "go build output, at /ko-app/hello"}],
                      [{"created": "2024-05-01T00:00:00Z", "created_by": "wgobuild", "comment": f"hello {VERSION}"}],
                      "one entry per added layer; ko dates its steps at Go's zero time, wgobuild at the image's "
                      "created time (the base's, without SOURCE_DATE_EPOCH), so history never predates the base"),
    "manifest.annotations": (["org.opencontainers.image.base.digest", "org.opencontainers.image.base.name"], None,
                             "ko names its base in manifest annotations; wgobuild records the base in "
                             "dist/reports/images.json and keeps Docker schema2 manifests as the base serves them"),
}


@dataclass(frozen=True)
class Image:
    manifest: dict[str, Any]
    config: dict[str, Any]
    layers: list[list[tarfile.TarInfo]]  # entries of every layer, base first
    contents: dict[str, str]  # sha256 of each regular file's bytes in the last layer, by entry name


@pytest.fixture(scope="module")
def ko() -> Path:
    found = find_peer("ko")
    if found is None:
        service_missing(f"ko (go install github.com/google/ko@{KO_VERSION})")
    assert found is not None
    return found


def fetch(host: str, repo: str, reference: str) -> Image:
    """The image ``host/repo@reference`` read over the registry API (no code under test involved)."""
    url = f"http://{host}/v2/{repo}"
    answer = requests.get(f"{url}/manifests/{reference}", headers={"Accept": ACCEPT}, timeout=30)
    answer.raise_for_status()
    manifest = answer.json()
    config = requests.get(f"{url}/blobs/{manifest['config']['digest']}", timeout=30).json()
    layers, contents = [], {}
    for descriptor in manifest["layers"]:
        blob = requests.get(f"{url}/blobs/{descriptor['digest']}", timeout=60).content
        entries = []
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob)), mode="r:") as tar:
            for member in tar:
                entries.append(member)
                handle = tar.extractfile(member) if member.isfile() else None
                if handle is not None:
                    contents[member.name] = hashlib.sha256(handle.read()).hexdigest()
        layers.append(entries)
    return Image(manifest, config, layers, contents)


def facts(image: Image, base_layers: int, names: dict[str, str]) -> dict[str, Any]:
    """Everything compared, flat: config fields, history, rootfs, manifest and the app layer's tar entries."""
    cfg, inner = image.config, image.config.get("config") or {}
    out: dict[str, Any] = {f"config.{key}": cfg.get(key) for key in (
        "os", "os.version", "os.features", "architecture", "created", "author")}
    for key in {*inner, "Entrypoint", "Cmd", "Env", "User", "WorkingDir"}:
        out[f"config.{key}"] = inner.get(key)
    extra = sorted(set(cfg) - {"os", "os.version", "os.features", "architecture", "created", "author", "config",
                               "rootfs", "history"})
    out["config.other"] = extra or None
    out["rootfs.type"] = cfg["rootfs"]["type"]
    out["rootfs.base"] = cfg["rootfs"]["diff_ids"][:base_layers]
    out["history.base"] = cfg["history"][:base_layers]
    out["history.added"] = cfg["history"][base_layers:]
    out["layers.added"] = len(image.layers) - base_layers
    out["layers.base"] = [[m.name for m in layer] for layer in image.layers[:base_layers]]
    out["layers.kodata"] = [m.name for m in image.layers[base_layers]] if len(image.layers) > base_layers + 1 \
        else None
    out["manifest.mediaType"] = image.manifest["mediaType"]
    out["manifest.config"] = image.manifest["config"]["mediaType"]
    out["manifest.layers"] = sorted({d["mediaType"] for d in image.manifest["layers"]})
    out["manifest.annotations"] = sorted(image.manifest.get("annotations") or {}) or None
    app = image.layers[-1]
    binary = [m.name for m in app if m.isfile()]
    out["app.binary"] = binary[0] if len(binary) == 1 else binary
    out["app.order"] = [names.get(m.name, m.name) for m in app]
    for member in app:
        name = names.get(member.name, member.name)
        for attr in ("type", "mode", "mtime", "uid", "gid", "uname", "gname", "size", "linkname"):
            out[f"app[{name}].{attr}"] = getattr(member, attr)
        out[f"app[{name}].pax"] = dict(member.pax_headers)
        if member.isfile():
            out[f"app[{name}].sha256"] = image.contents[member.name]
    return out


def differences(ko_facts: dict[str, Any], ours: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {key: (ko_facts.get(key), ours.get(key)) for key in sorted({*ko_facts, *ours})
            if ko_facts.get(key) != ours.get(key)}


def unexpected(ko_facts: dict[str, Any], ours: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Differences not in :data:`EXPECTED` with exactly these values, and listed ones that went away."""
    found = differences(ko_facts, ours)
    listed = {key: (k, w) for key, (k, w, _) in EXPECTED.items()}
    return {key: found.get(key, ("no longer differs", None)) for key in sorted({*found, *listed})
            if found.get(key) != listed.get(key)}


def base_digest(bases: Bases) -> str:
    """The ltsc2022 entry of the seeded Windows index: one image, so both tools build exactly one."""
    host, repo = bases.windows.split("/", 1)
    index = requests.get(f"http://{host}/v2/{repo}/manifests/ltsc2022", timeout=10,
                         headers={"Accept": "application/vnd.docker.distribution.manifest.list.v2+json"}).json()
    chosen = [m["digest"] for m in index["manifests"] if m["platform"]["os.version"] == WINDOWS_VERSIONS["ltsc2022"]]
    assert len(chosen) == 1, index
    return str(chosen[0])


def clean_env() -> dict[str, str]:
    """go's environment (same toolchain as wgobuild) with no reproducibility dates: both tools use their defaults."""
    env = gotool.go_env_vars()
    for name in ("SOURCE_DATE_EPOCH", "KO_DATA_DATE_EPOCH", "GOFLAGS"):
        env.pop(name, None)
    return env


def ko_build(ko: Path, base: str, host: str, work: Path) -> str:
    """``ko build`` of a copy of examples/hello onto ``base``; the pushed digest."""
    module = work / "ko-module"
    shutil.copytree(EXAMPLE, module, ignore=shutil.ignore_patterns("dist", ".wgobuild"))
    # wgobuild's go build flags (gotool.build_argv); ko adds -trimpath itself and cgo is off in both.
    (module / ".ko.yaml").write_text(json.dumps({"defaultBaseImage": base, "builds": [{
        "id": "hello", "main": ".", "flags": ["-buildvcs=false"],
        "ldflags": ["-s", "-w", "-buildid=", f"-X main.version={VERSION}"]}]}))
    (work / "docker").mkdir()
    env = {**clean_env(), "KO_DOCKER_REPO": f"{host}/ko/hello", "KO_GO_PATH": str(gotool.find_go()),
           "DOCKER_CONFIG": str(work / "docker")}
    done = proc.run([str(ko), "build", "--bare", "--platform", "windows/amd64", "--sbom=none", "--insecure-registry",
                     "."], env=env, cwd=module, quiet=True, timeout=600)
    assert done.ok, done.output
    ref = done.output.strip().splitlines()[-1]
    assert ref.startswith(f"{host}/ko/hello@sha256:"), done.output
    return ref.rsplit("@", 1)[1]


def wgobuild_build(base: str, host: str, binary: Path, work: Path, repo: str) -> str:
    """wgobuild's daemonless build of the same binary onto ``base``, pushed; the pushed digest."""
    config = oci_config(work / repo.replace("/", "-"), ["windows/amd64:10.0.20348"], windows_base=base,
                        repository=f"{host}/{repo}", tag="1.0", outputs=["oci-layout"])
    platform = config.platforms[0]
    result = OciBackend(config).build(ImageRequest(config, platform, {"hello": binary}, f"{host}/{repo}:1.0",
                                                   VERSION))
    return str(publish(config, [result], push=True)["digest"])


@pytest.fixture(scope="module")
def compared(ko: Path, seeded_bases: Bases, oci_binaries: dict[str, Path],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], dict[str, Any], Image]]:
    host = seeded_bases.registry.host
    base = f"{seeded_bases.windows}@{base_digest(seeded_bases)}"
    work = tmp_path_factory.mktemp("ko")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("SOURCE_DATE_EPOCH", raising=False)
        ours = wgobuild_build(base, host, oci_binaries["windows"], work, "wgb/hello")
    theirs = ko_build(ko, base, host, work)
    base_image = fetch(host, "windows/nanoserver", base_digest(seeded_bases))
    n = len(base_image.layers)
    yield (facts(fetch(host, "ko/hello", theirs), n, KO_NAMES), facts(fetch(host, "wgb/hello", ours), n, {}),
           base_image)


def test_ko_and_wgobuild_differ_only_where_documented(compared: tuple[dict[str, Any], dict[str, Any], Image]) -> None:
    ko_facts, ours, _ = compared
    found = differences(ko_facts, ours)
    assert found == {key: (k, w) for key, (k, w, _) in EXPECTED.items()}


def test_the_agreement_is_not_vacuous(compared: tuple[dict[str, Any], dict[str, Any], Image]) -> None:
    """The facts both sides share are the ones that matter: a Windows layer over the very same base, byte-equal."""
    ko_facts, ours, base_image = compared
    assert ours["config.os"] == "windows" and ours["config.os.version"] == WINDOWS_VERSIONS["ltsc2022"]
    assert ours["config.architecture"] == "amd64" and ours["config.User"] == "ContainerUser"
    assert ours["config.created"] == base_image.config["created"]  # no SOURCE_DATE_EPOCH: the base's time
    assert ours["rootfs.base"] == base_image.config["rootfs"]["diff_ids"]
    assert ours["history.base"] == base_image.config["history"]
    assert ours["app[Files].type"] == tarfile.DIRTYPE and ours["app[Hives].type"] == tarfile.DIRTYPE
    assert ours[f"app[{BINARY}].mode"] == 0o555 and ours[f"app[{BINARY}].mtime"] == 0
    assert ours[f"app[{BINARY}].pax"] == {"MSWINDOWS.rawsd": ko_facts[f"app[{BINARY}].pax"]["MSWINDOWS.rawsd"]}
    assert ours["app[Files/app].pax"] == {}
    # The same toolchain and flags: ko's binary and wgobuild's are the same bytes.
    assert ours[f"app[{BINARY}].sha256"] == ko_facts[f"app[{BINARY}].sha256"]
    assert ours[f"app[{BINARY}].size"] > 1_000_000
    assert len([key for key in ours if key.startswith("app[")]) == 4 * 10 + 1  # 4 entries, 10 fields, 1 file


def test_an_undocumented_difference_fails(seeded_bases: Bases, oci_binaries: dict[str, Path],
                                          compared: tuple[dict[str, Any], dict[str, Any], Image],
                                          tmp_path: Path) -> None:
    """Negative control: wgobuild built with SOURCE_DATE_EPOCH dates its entries and config; the comparison sees it
    and names exactly those facts beyond the documented ones."""
    ko_facts, _, base_image = compared
    host = seeded_bases.registry.host
    base = f"{seeded_bases.windows}@{base_digest(seeded_bases)}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOURCE_DATE_EPOCH", "1700000000")
        dated = wgobuild_build(base, host, oci_binaries["windows"], tmp_path, "wgb/dated")
    ours = facts(fetch(host, "wgb/dated", dated), len(base_image.layers), {})
    assert set(unexpected(ko_facts, ours)) == {"config.created", "history.added"} | {
        f"app[{name}].mtime" for name in ("Files", "Files/app", BINARY, "Hives")}
    assert ours["config.created"] == "2023-11-14T22:13:20Z" and ours[f"app[{BINARY}].mtime"] == 1700000000
