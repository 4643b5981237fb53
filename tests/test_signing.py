"""Keys, signatures, provenance and attached SBOMs, judged by tools that are not ours, all offline.

One real `doit image --push` of examples/hello (windows and linux images under one index, daemonless, on the suite's
registry) with ``[sign] key`` set is shared by the module. The oracles: cosign (built by tests/run.sh from the Go
module proxy) verifies the ``.sig`` signatures, the Sigstore bundles (``--new-bundle-format``) and the provenance
(``verify-attestation --type slsaprovenance1``); sigstore-js (tests/sigstore-js, from the npm registry) verifies each
bundle; Debian's skopeo, built with sigstore disabled, must find the ``.sig`` signature. Each accepts what was
pushed and rejects an unsigned, tampered or transplanted image.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from fixtures_go import copy_hello, run_doit
from services import service_missing
from test_peers import find_peer

from wgobuild import proc, signing
from wgobuild.oci import attach
from wgobuild.oci import manifest as mf
from wgobuild.oci.registry import Client

pytestmark = pytest.mark.registry
PASSWORD = "correct horse battery staple"
ORACLE = Path(__file__).parent / "sigstore-js"
SLSA = "https://slsa.dev/provenance/v1"


@dataclass
class Pushed:
    root: Path
    host: str
    repo: str
    index: str  # digest of the pushed index
    manifests: dict[str, str]  # os -> manifest digest
    output: str

    @property
    def name(self) -> str:
        return f"{self.host}/{self.repo}"

    def ref(self, digest: str) -> str:
        return f"{self.name}@{digest}"

    @property
    def client(self) -> Client:
        return Client(self.host)


def wgobuild(*args: object, env: dict[str, str] | None = None, cwd: Path | None = None) -> proc.ProcResult:
    return proc.run([sys.executable, "-c", "import sys; from wgobuild.cli import main; sys.exit(main())", *args],
                    env={**os.environ, **(env or {})}, cwd=cwd, quiet=True, timeout=120)


@pytest.fixture(scope="module")
def cosign() -> Path:
    found = find_peer("cosign")
    if found is None:
        service_missing("cosign (go install github.com/sigstore/cosign/v2/cmd/cosign@v2.6.1, as tests/run.sh does)")
    assert found is not None
    return found


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if found is None or not (ORACLE / "node_modules/@sigstore/verify").is_dir():
        service_missing("sigstore-js (node, and `npm ci` in tests/sigstore-js, as tests/run.sh does)")
    assert found is not None
    return found


@pytest.fixture(scope="module")
def pushed(seeded_bases: Any, tmp_path_factory: pytest.TempPathFactory) -> Pushed:
    host = seeded_bases.registry.host
    root = copy_hello(tmp_path_factory.mktemp("signed") / "hello", backend='"oci"',
                      windows_base=f'"{seeded_bases.windows}"', repository=f'"{host}/signed/hello"', tag='"v1"')
    made = wgobuild("keygen", root, env={signing.PASSWORD_ENV: PASSWORD})
    assert made.returncode == 0, made.output
    toml = root / "wgobuild.toml"
    toml.write_text(toml.read_text() + '\n[sign]\nkey = "wgobuild.key"\n')
    result = run_doit(root, "image", "--push", env={signing.PASSWORD_ENV: PASSWORD})
    assert result.returncode == 0, result.output
    client = Client(host)
    data, _ = client.get_manifest("signed/hello", "v1")
    index = json.loads(data)
    manifests = {m["platform"]["os"]: m["digest"] for m in index["manifests"]}
    return Pushed(root, host, "signed/hello", mf.digest_of(data), manifests, result.output)


def run_cosign(cosign: Path, *args: object) -> proc.ProcResult:
    return proc.run([cosign, *args], quiet=True, timeout=120, env={**os.environ, "COSIGN_YES": "true",
                                                                    "COSIGN_PASSWORD": PASSWORD})


def cosign_verify(cosign: Path, pushed: Pushed, ref: str, *extra: object) -> proc.ProcResult:
    return run_cosign(cosign, "verify", "--key", pushed.root / "wgobuild.pub", "--insecure-ignore-tlog=true",
                      "--allow-insecure-registry", *extra, ref)


def trusted_root(tmp_path: Path) -> Path:
    """An empty trusted root: cosign's new bundle format wants one, and with a key it needs nothing in it."""
    path = tmp_path / "trusted_root.json"
    path.write_text(json.dumps({"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}))
    return path


# --- keys ------------------------------------------------------------------------------------------------------
def test_keygen_writes_a_key_cosign_decrypts_and_never_overwrites(cosign: Path, tmp_path: Path) -> None:
    made = wgobuild("keygen", tmp_path, env={signing.PASSWORD_ENV: PASSWORD})
    assert made.returncode == 0, made.output
    key, pub = tmp_path / "wgobuild.key", tmp_path / "wgobuild.pub"
    assert key.read_text().startswith("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    assert oct(key.stat().st_mode & 0o777) == oct(0o600)
    derived = proc.run([cosign, "public-key", "--key", key], quiet=True, timeout=60,
                       env={**os.environ, "COSIGN_PASSWORD": PASSWORD})
    assert derived.returncode == 0, derived.output
    assert derived.output.strip().endswith(pub.read_text().strip())
    wrong = proc.run([cosign, "public-key", "--key", key], quiet=True, timeout=60,
                     env={**os.environ, "COSIGN_PASSWORD": "not it"})
    assert wrong.returncode != 0 and "decryption failed" in wrong.output

    before = key.read_bytes()
    again = wgobuild("keygen", tmp_path, env={signing.PASSWORD_ENV: PASSWORD})
    assert again.returncode == 1
    assert f"wgobuild: {key} exists: keep it, or pass --force to replace the key pair" in again.output
    assert key.read_bytes() == before
    forced = wgobuild("keygen", tmp_path, "--force", env={signing.PASSWORD_ENV: PASSWORD})
    assert forced.returncode == 0, forced.output
    assert key.read_bytes() != before


def test_keys_cosign_writes_are_read_and_a_wrong_password_is_named(cosign: Path, tmp_path: Path) -> None:
    made = proc.run([cosign, "generate-key-pair"], cwd=tmp_path, quiet=True, timeout=60,
                    env={**os.environ, "COSIGN_PASSWORD": PASSWORD})
    assert made.returncode == 0, made.output
    signer = signing.Signer.load(tmp_path / "cosign.key", PASSWORD.encode())
    assert signing.public_pem(signer.public) == signing.public_pem(signing.load_public(tmp_path / "cosign.pub"))
    with pytest.raises(signing.SigningError) as wrong:
        signing.Signer.load(tmp_path / "cosign.key", b"not it")
    assert str(wrong.value) == (f"{tmp_path / 'cosign.key'}: wrong password (from WGOBUILD_SIGNING_PASSWORD or the "
                                "terminal)")


def test_no_password_and_no_terminal_is_one_clear_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != signing.PASSWORD_ENV}
    result = proc.run([sys.executable, "-c", "import sys; from wgobuild.cli import main; sys.exit(main())",
                       "keygen", tmp_path], env=env, quiet=True, timeout=60)
    assert result.returncode == 1
    assert (f"wgobuild: {tmp_path / 'wgobuild.key'}: no password: set WGOBUILD_SIGNING_PASSWORD (there is no "
            "terminal to ask on)") in result.output
    assert not (tmp_path / "wgobuild.key").exists()



def test_sign_key_setting_and_a_missing_key_file_are_named(tmp_path: Path) -> None:
    from wgobuild import config
    from wgobuild.errors import ConfigError

    (tmp_path / "main.go").write_text("package main\n\nfunc main() {}\n")
    with pytest.raises(ConfigError) as blank:
        config.from_dict({"binaries": [{"name": "x"}], "sign": {"key": "  "}}, tmp_path, tmp_path / "wgobuild.toml")
    assert "[sign].key: '  ': name the key file wgobuild keygen wrote, such as 'wgobuild.key'" in str(blank.value)
    cfg = config.from_dict({"binaries": [{"name": "x"}], "sign": {"key": "gone.key"}}, tmp_path,
                           tmp_path / "wgobuild.toml")
    with pytest.raises(signing.SigningError) as missing:
        signing.signer_for(cfg)
    assert str(missing.value).startswith(f"[sign] key {tmp_path / 'gone.key'}: cannot read it (")
    assert str(missing.value).endswith("); write one with `wgobuild keygen`")
    unsigned = config.from_dict({"binaries": [{"name": "x"}]}, tmp_path, tmp_path / "wgobuild.toml")
    assert signing.signer_for(unsigned) is None


# --- what one signed push leaves in the registry -------------------------------------------------------------
def test_push_signs_every_manifest_and_the_index_in_both_forms(pushed: Pushed) -> None:
    client = pushed.client
    for digest in [pushed.index, *pushed.manifests.values()]:
        assert f"signed {pushed.name}@{digest}" in pushed.output
        layers = attach.tagged_layers(client, pushed.repo, attach.cosign_tag(digest, "sig"))
        assert [layer.media_type for layer in layers] == [signing.SIMPLE_SIGNING_MEDIA]
        payload = json.loads(layers[0].data)
        assert payload == {"critical": {"identity": {"docker-reference": pushed.name},
                                        "image": {"docker-manifest-digest": digest},
                                        "type": "cosign container image signature"}, "optional": None}
        bundles = attach.referrers(client, pushed.repo, digest, signing.BUNDLE_MEDIA)
        kinds = sorted(doc["annotations"]["dev.sigstore.bundle.predicateType"] for doc, _ in bundles)
        assert kinds == [signing.COSIGN_SIGN_PREDICATE, SLSA]
        for doc, layer in bundles:
            assert doc["artifactType"] == signing.BUNDLE_MEDIA and doc["subject"]["digest"] == digest
            assert doc["config"] == {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2,
                                     "digest": mf.digest_of(b"{}")}
            bundle = json.loads(layer.data)
            assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
            assert set(bundle) == {"mediaType", "verificationMaterial", "dsseEnvelope"}


def test_cosign_verifies_both_forms_and_the_provenance(cosign: Path, pushed: Pushed, tmp_path: Path) -> None:
    root = trusted_root(tmp_path)
    for digest in [pushed.index, *pushed.manifests.values()]:
        legacy = cosign_verify(cosign, pushed, pushed.ref(digest))
        assert legacy.returncode == 0, legacy.output
        assert "The signatures were verified against the specified public key" in legacy.output
        bundle = cosign_verify(cosign, pushed, pushed.ref(digest), "--new-bundle-format", "--trusted-root", root)
        assert bundle.returncode == 0, bundle.output
    tag = cosign_verify(cosign, pushed, f"{pushed.name}:v1")
    assert tag.returncode == 0, tag.output
    for ref in [f"{pushed.name}:v1", *map(pushed.ref, pushed.manifests.values())]:
        for extra in ((), ("--new-bundle-format", "--trusted-root", root)):
            att = run_cosign(cosign, "verify-attestation", "--type", "slsaprovenance1", "--key",
                             pushed.root / "wgobuild.pub", "--insecure-ignore-tlog=true", "--allow-insecure-registry",
                             *extra, ref)
            assert att.returncode == 0, att.output
            assert "The claims were validated" in att.output or "verified" in att.output.lower()




# --- rejections: an unsigned, a tampered and a transplanted image --------------------------------------------
@dataclass
class Forgeries:
    unsigned: str  # a reference: the suite's linux base image, which nobody signed
    tampered: str  # the signed linux image changed after signing (one annotation added): a digest never signed
    transplanted: str  # another changed copy, carrying the linux image's .sig, .att and bundles copied over


@pytest.fixture(scope="module")
def forged(pushed: Pushed, seeded_bases: Any) -> Forgeries:
    client, repo = pushed.client, pushed.repo
    source = pushed.manifests["linux"]
    data, media = client.get_manifest(repo, source)

    def variant(note: str) -> str:
        doc = json.loads(data)
        doc["annotations"] = {**doc.get("annotations", {}), "org.example.note": note}
        raw = mf.canonical(doc)
        client.put_manifest(repo, note, raw, media)
        return mf.digest_of(raw)

    tampered, transplanted = variant("tampered"), variant("transplanted")
    target = attach.Subject(transplanted, media, len(mf.canonical(json.loads(data))))
    attach.put_tagged(client, repo, attach.cosign_tag(transplanted, "sig"),
                      attach.tagged_layers(client, repo, attach.cosign_tag(source, "sig")))
    attach.put_tagged(client, repo, attach.cosign_tag(transplanted, "att"),
                      attach.tagged_layers(client, repo, attach.cosign_tag(source, "att")))
    for doc, layer in attach.referrers(client, repo, source, signing.BUNDLE_MEDIA):
        attach.put_referrer(client, repo, target, signing.BUNDLE_MEDIA, layer, doc.get("annotations"))
    return Forgeries(seeded_bases.linux, tampered, transplanted)


def test_cosign_rejects_unsigned_tampered_and_transplanted(cosign: Path, pushed: Pushed, forged: Forgeries,
                                                           tmp_path: Path) -> None:
    root = trusted_root(tmp_path)
    for ref, legacy_says in ((forged.unsigned, "no signatures found"),
                             (pushed.ref(forged.tampered), "no signatures found"),
                             (pushed.ref(forged.transplanted), "invalid or missing digest in claim")):
        legacy = cosign_verify(cosign, pushed, ref)
        assert legacy.returncode != 0 and legacy_says in legacy.output, legacy.output
        bundle = cosign_verify(cosign, pushed, ref, "--new-bundle-format", "--trusted-root", root)
        assert bundle.returncode != 0, bundle.output
        assert "no valid bundles exist" in bundle.output or "no matching attestations" in bundle.output, bundle.output
        att = run_cosign(cosign, "verify-attestation", "--type", "slsaprovenance1", "--key",
                         pushed.root / "wgobuild.pub", "--insecure-ignore-tlog=true", "--allow-insecure-registry", ref)
        assert att.returncode != 0, att.output
    # negative control: an attestation type that was never attached is not found on the signed image either
    other = run_cosign(cosign, "verify-attestation", "--type", "spdxjson", "--key", pushed.root / "wgobuild.pub",
                       "--insecure-ignore-tlog=true", "--allow-insecure-registry",
                       pushed.ref(pushed.manifests["linux"]))
    assert other.returncode != 0 and "none of the attestations matched the predicate type" in other.output, other.output


def test_cosign_rejects_another_key(cosign: Path, pushed: Pushed, tmp_path: Path) -> None:
    made = wgobuild("keygen", tmp_path, env={signing.PASSWORD_ENV: PASSWORD})
    assert made.returncode == 0, made.output
    result = run_cosign(cosign, "verify", "--key", tmp_path / "wgobuild.pub", "--insecure-ignore-tlog=true",
                        "--allow-insecure-registry", pushed.ref(pushed.index))
    assert result.returncode != 0 and "invalid signature when validating ASN.1 encoded signature" in result.output


def sigstore_js(node: str, bundle: Path, key: Path, digest: str, predicate: str) -> proc.ProcResult:
    return proc.run([node, ORACLE / "verify.js", bundle, key, digest, predicate], cwd=ORACLE, quiet=True, timeout=60)


def test_sigstore_js_verifies_each_bundle_and_rejects_tampered_or_transplanted(
        node: str, pushed: Pushed, forged: Forgeries, tmp_path: Path) -> None:
    key = pushed.root / "wgobuild.pub"
    checked = 0
    for digest in [pushed.index, *pushed.manifests.values()]:
        for doc, layer in attach.referrers(pushed.client, pushed.repo, digest, signing.BUNDLE_MEDIA):
            predicate = doc["annotations"]["dev.sigstore.bundle.predicateType"]
            path = tmp_path / f"{checked}.sigstore.json"
            path.write_bytes(layer.data)
            good = sigstore_js(node, path, key, digest, predicate)
            assert good.returncode == 0 and good.output.strip() == "verified", good.output
            moved = sigstore_js(node, path, key, forged.transplanted, predicate)
            assert moved.returncode == 1, moved.output
            assert moved.output.strip() == f"rejected: the statement is not about {forged.transplanted}"
            bundle = json.loads(layer.data)
            statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
            statement["subject"][0]["digest"]["sha256"] = forged.transplanted.removeprefix("sha256:")
            bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
            path.write_text(json.dumps(bundle))
            tampered = sigstore_js(node, path, key, forged.transplanted, predicate)
            assert tampered.returncode == 1 and "signature verification failed" in tampered.output, tampered.output
            checked += 1
    assert checked == 6, "a signature and a provenance bundle for the index and for each image"


def skopeo_copy(pushed: Pushed, tmp_path: Path, digest: str) -> proc.ProcResult:
    if shutil.which("skopeo") is None:
        service_missing("skopeo (apt-get install skopeo)")
    (tmp_path / "policy.json").write_text(json.dumps({"default": [{"type": "reject"}], "transports": {"docker": {
        pushed.host: [{"type": "sigstoreSigned", "keyPath": str(pushed.root / "wgobuild.pub"),
                       "signedIdentity": {"type": "matchRepository"}}]}}}))
    (tmp_path / "registries.d").mkdir(exist_ok=True)
    (tmp_path / "registries.d/default.yaml").write_text(
        f"docker:\n  {pushed.host}:\n    use-sigstore-attachments: true\n")
    return proc.run(["skopeo", "--policy", tmp_path / "policy.json", "--registries.d", tmp_path / "registries.d",
                     "copy", "--src-tls-verify=false", f"docker://{pushed.ref(digest)}",
                     f"oci:{tmp_path / digest[7:19]}:x"], quiet=True, timeout=120)


def test_skopeo_finds_the_sig_signature(pushed: Pushed, forged: Forgeries, tmp_path: Path) -> None:
    # Debian's skopeo 1.9 is built with sigstore disabled: it finds the signature and says it cannot check it
    found = skopeo_copy(pushed, tmp_path, pushed.manifests["linux"])
    assert found.returncode == 1 and "Source image rejected: Debian-local change: sigstore disabled" in found.output
    none = skopeo_copy(pushed, tmp_path, forged.tampered)
    assert none.returncode == 1, none.output
    assert "Source image rejected: A signature was required, but no signature exists" in none.output, none.output


def test_wgobuild_verify_accepts_the_push_and_rejects_the_forgeries(pushed: Pushed, forged: Forgeries,
                                                                  tmp_path: Path) -> None:
    key = pushed.root / "wgobuild.pub"
    good = wgobuild("verify", f"{pushed.name}:v1", "--key", key)
    assert good.returncode == 0, good.output
    lines = good.output.splitlines()
    assert lines[-1] == f"{pushed.name}:v1: verified with {key}"
    assert sum(line.startswith("ok   ") for line in lines) == 3 * 3, "sig, bundle, provenance: index and images"
    for digest, reason in ((forged.tampered, f"sig: no {attach.cosign_tag(forged.tampered, 'sig')} signature"),
                           (forged.transplanted, f"sig: the signature is for {pushed.manifests['linux']}, not this "
                                                 "image")):
        bad = wgobuild("verify", pushed.ref(digest), "--key", key)
        assert bad.returncode == 1, bad.output
        assert f"FAIL {digest[:19]} {reason}" in bad.output
        assert bad.output.splitlines()[-1] == f"{pushed.ref(digest)}: NOT verified with {key}"
    moved = wgobuild("verify", pushed.ref(forged.transplanted), "--key", key).output
    assert f"FAIL {forged.transplanted[:19]} bundle: the bundle's statement is about another image" in moved
    other = tmp_path / "other"
    assert wgobuild("keygen", other, env={signing.PASSWORD_ENV: PASSWORD}).returncode == 0
    wrong = wgobuild("verify", pushed.ref(pushed.index), "--key", other / "wgobuild.pub")
    assert wrong.returncode == 1 and "sig: the signature does not verify with this key" in wrong.output
    base = wgobuild("verify", forged.unsigned, "--key", key)
    assert base.returncode == 1 and base.output.splitlines()[-1] == f"{forged.unsigned}: NOT verified with {key}"
    assert "bundle: no bundle attached" in base.output


# --- provenance and SBOM ---------------------------------------------------------------------------------------
def test_provenance_is_written_signed_and_names_what_was_pushed(pushed: Pushed) -> None:
    from wgobuild.config import load

    cfg = load(pushed.root)
    public = signing.load_public(pushed.root / "wgobuild.pub")
    for os_name, digest in pushed.manifests.items():
        path = pushed.root / f"dist/provenance/{os_name}-amd64.intoto.jsonl"
        lines = path.read_text().splitlines()
        assert len(lines) == 1
        opened = signing.open_envelope(public, json.loads(lines[0]))
        assert opened is not None and opened[0] == "application/vnd.in-toto+json"
        statement = json.loads(opened[1])
        assert statement["_type"] == "https://in-toto.io/Statement/v1" and statement["predicateType"] == SLSA
        assert statement["subject"] == [{"name": pushed.name, "digest": {"sha256": digest.removeprefix("sha256:")}}]
        build = statement["predicate"]["buildDefinition"]
        assert build["buildType"] == "urn:wgobuild:buildtype:image:v1"
        params = build["externalParameters"]
        assert params["config"]["digest"]["sha256"] == hashlib_hex(pushed.root / "wgobuild.toml")
        assert params["source"] == {"commit": "", "dirty": False}, "the copy is not a git checkout"
        assert params["platforms"] == [f"{os_name}/amd64"]
        deps = {d["name"]: d for d in build["resolvedDependencies"]}
        from wgobuild import provenance

        assert deps["source"]["digest"]["sha256"] == provenance.source_digest(cfg)
        assert deps["go.sum"]["digest"]["sha256"] == hashlib_hex(pushed.root / "go.sum")
        record = json.loads((pushed.root / f"dist/images/{os_name}-amd64.json").read_text())
        if os_name == "windows":
            assert deps["base image"]["digest"]["sha256"] == record["extra"]["base"]["digest"].removeprefix("sha256:")
        go_version = proc.run([proc_go(), "env", "GOVERSION"], quiet=True).output.strip()
        assert deps["go toolchain"]["annotations"]["version"] == go_version
        assert statement["predicate"]["runDetails"]["builder"]["id"] == "pkg:pypi/wgobuild"

    index = json.loads((pushed.root / "dist/provenance/index.intoto.jsonl").read_text())
    opened = signing.open_envelope(public, index)
    assert opened is not None
    statement = json.loads(opened[1])
    assert [s["digest"]["sha256"] for s in statement["subject"]] == [
        d.removeprefix("sha256:") for d in (pushed.index, *pushed.manifests.values())]
    assert statement["predicate"]["buildDefinition"]["externalParameters"]["platforms"] == [
        "windows/amd64", "linux/amd64"]


def hashlib_hex(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def proc_go() -> str:
    from wgobuild import gotool

    return str(gotool.find_go())


def test_source_digest_follows_the_sources_only(tmp_path: Path) -> None:
    from fixtures_registry import oci_config

    from wgobuild import provenance

    cfg = oci_config(tmp_path / "m", ["linux/amd64"])
    first = provenance.source_digest(cfg)
    (cfg.out_dir / "linux-amd64").mkdir(parents=True)
    (cfg.out_dir / "linux-amd64/hello").write_bytes(b"built")
    (cfg.state_dir).mkdir()
    (cfg.state_dir / "x").write_text("state")
    assert provenance.source_digest(cfg) == first, "build outputs and state are not sources"
    (cfg.root / "main.go").write_text("package main\n\nfunc main() { println() }\n")
    assert provenance.source_digest(cfg) != first


def test_image_sbom_is_attached_with_subject_and_under_the_sbom_tag(pushed: Pushed) -> None:
    client = pushed.client
    for os_name, digest in pushed.manifests.items():
        sbom = (pushed.root / f"dist/sbom/image-{os_name}-amd64.spdx.json").read_bytes()
        found = attach.referrers(client, pushed.repo, digest, "application/spdx+json")
        assert len(found) == 1
        doc, layer = found[0]
        assert doc["subject"]["digest"] == digest and layer.data == sbom
        assert layer.media_type == "application/spdx+json"
        tagged = attach.tagged_layers(client, pushed.repo, attach.cosign_tag(digest, "sbom"))
        assert [(t.media_type, t.data) for t in tagged] == [("text/spdx+json", sbom)]
    # the registry has no referrers API: the referrers tag lists every artifact about the image
    api = requests.get(f"http://{pushed.host}/v2/{pushed.repo}/referrers/{pushed.index}", timeout=10)
    assert api.status_code == 404
    index = json.loads(client.get_manifest(pushed.repo, attach.fallback_tag(pushed.manifests["linux"]))[0])
    assert sorted(m["artifactType"] for m in index["manifests"]) == sorted(
        ["application/spdx+json", signing.BUNDLE_MEDIA, signing.BUNDLE_MEDIA])


def test_a_push_without_a_key_attaches_the_sbom_and_signs_nothing(seeded_bases: Any, tmp_path: Path) -> None:
    host = seeded_bases.registry.host
    root = copy_hello(tmp_path / "hello", backend='"oci"', windows_base=f'"{seeded_bases.windows}"',
                      repository=f'"{host}/unsigned/hello"', tag='"v1"')
    toml = root / "wgobuild.toml"
    toml.write_text(toml.read_text().replace('platforms = ["windows/amd64", "linux/amd64"]',
                                             'platforms = ["linux/amd64"]'))
    result = run_doit(root, "image", "--push")
    assert result.returncode == 0, result.output
    digest = mf.digest_of(Client(host).get_manifest("unsigned/hello", "v1")[0])
    assert f"[oci] sbom linux/amd64 -> {host}/unsigned/hello:{attach.cosign_tag(digest, 'sbom')}" in result.output
    assert "signed " not in result.output and not (root / "dist/provenance").exists()
    assert attach.tagged_layers(Client(host), "unsigned/hello", attach.cosign_tag(digest, "sig")) == []


def test_a_wrong_password_pushes_nothing(pushed: Pushed, seeded_bases: Any, tmp_path: Path) -> None:
    host = seeded_bases.registry.host
    root = copy_hello(tmp_path / "hello", backend='"oci"', windows_base=f'"{seeded_bases.windows}"',
                      repository=f'"{host}/wrongpw/hello"', tag='"v1"')
    shutil.copy(pushed.root / "wgobuild.key", root / "wgobuild.key")
    toml = root / "wgobuild.toml"
    toml.write_text(toml.read_text().replace('platforms = ["windows/amd64", "linux/amd64"]',
                                             'platforms = ["linux/amd64"]') + '\n[sign]\nkey = "wgobuild.key"\n')
    result = run_doit(root, "image", "--push", env={signing.PASSWORD_ENV: "not it"})
    assert result.returncode != 0
    assert f"{root / 'wgobuild.key'}: wrong password (from WGOBUILD_SIGNING_PASSWORD or the terminal)" in result.output
    assert "pushed " not in result.output and "Traceback" not in result.output
    assert requests.get(f"http://{host}/v2/wrongpw/hello/tags/list", timeout=10).status_code == 404


def test_pushing_again_replaces_our_signatures_and_keeps_anothers(cosign: Path, pushed: Pushed,
                                                                  tmp_path: Path) -> None:
    """Last in the module: it pushes the shared image again."""
    made = proc.run([cosign, "generate-key-pair"], cwd=tmp_path, quiet=True, timeout=60,
                    env={**os.environ, "COSIGN_PASSWORD": PASSWORD})
    assert made.returncode == 0, made.output
    linux = pushed.manifests["linux"]
    theirs = run_cosign(cosign, "sign", "--key", tmp_path / "cosign.key", "--tlog-upload=false",
                        "--allow-insecure-registry", pushed.ref(linux))
    assert theirs.returncode == 0, theirs.output
    client = pushed.client

    def counts() -> tuple[int, int]:
        return (len(attach.tagged_layers(client, pushed.repo, attach.cosign_tag(linux, "sig"))),
                len(attach.tagged_layers(client, pushed.repo, attach.cosign_tag(linux, "att"))))

    assert counts() == (2, 1)
    stale = pushed.root / "dist/provenance/windows-arm64.intoto.jsonl"  # from a push with another platform list
    stale.write_text("{}\n")
    again = run_doit(pushed.root, "image", "--push", env={signing.PASSWORD_ENV: PASSWORD})
    assert again.returncode == 0, again.output
    assert not stale.exists(), "a previous push's provenance does not stay beside this one's"
    assert sorted(p.name for p in (pushed.root / "dist/provenance").iterdir()) == [
        "index.intoto.jsonl", "linux-amd64.intoto.jsonl", "windows-amd64.intoto.jsonl"]
    assert f"signed {pushed.ref(linux)}" in again.output
    assert counts() == (2, 1), "our signature and provenance replaced, cosign's signature kept"
    for key in (tmp_path / "cosign.pub", pushed.root / "wgobuild.pub"):
        result = run_cosign(cosign, "verify", "--key", key, "--insecure-ignore-tlog=true",
                            "--allow-insecure-registry", pushed.ref(linux))
        assert result.returncode == 0, result.output


@pytest.mark.parametrize("which", ["auth_registry", "token_registry"])
def test_a_signed_push_to_a_registry_with_auth_verifies(which: str, cosign: Path, tmp_path: Path,
                                                        request: pytest.FixtureRequest) -> None:
    """Signatures, provenance, the SBOM and the inputs marker go through the registry's auth (htpasswd with
    credentials from DOCKER_CONFIG; the bearer-token flow, each request with the scope it needs), and cosign and
    wgobuild verify, with the same credentials, accept what was pushed."""
    registry = request.getfixturevalue(which)
    host, repo = registry.host, f"signed/{which}"
    root = copy_hello(tmp_path / "hello", backend='"oci"', repository=f'"{host}/{repo}"', tag='"v1"')
    toml = root / "wgobuild.toml"
    toml.write_text(toml.read_text().replace('["windows/amd64", "linux/amd64"]', '["linux/amd64"]')
                    + '\n[sign]\nkey = "wgobuild.key"\n')
    env = {signing.PASSWORD_ENV: PASSWORD}
    if registry.user:
        env["DOCKER_CONFIG"] = str(registry.docker_config(tmp_path / "docker"))
    assert wgobuild("keygen", root, env=env).returncode == 0
    result = run_doit(root, "image", "--push", env=env)
    assert result.returncode == 0, result.output
    verified = wgobuild("verify", f"{host}/{repo}:v1", "--key", root / "wgobuild.pub", env=env)
    assert verified.returncode == 0, verified.output
    checked = proc.run([cosign, "verify", "--key", root / "wgobuild.pub", "--insecure-ignore-tlog=true",
                        "--allow-insecure-registry", f"{host}/{repo}:v1"], quiet=True, timeout=120,
                       env={**os.environ, **env})
    assert checked.returncode == 0, checked.output
    if registry.user:
        anonymous = wgobuild("verify", f"{host}/{repo}:v1", "--key", root / "wgobuild.pub",
                             env={"DOCKER_CONFIG": str(tmp_path / "nobody")})
        assert anonymous.returncode != 0, "negative control: without credentials nothing is read"


@pytest.mark.docker
def test_an_engine_pushed_image_is_signed_and_cosign_verifies_it(cosign: Path, docker_host: str, registry: Any,
                                                                 tmp_path: Path) -> None:
    """backend = "engine": docker push sends the image, then its manifest is read back from the registry, signed in
    both forms and given its SBOM and provenance; cosign and wgobuild verify accept it."""
    reference = f"{registry.host}/signed/engine:v1"
    root = copy_hello(tmp_path / "hello", backend='"engine"', repository=f'"{registry.host}/signed/engine"',
                      tag='"v1"')
    toml = root / "wgobuild.toml"
    toml.write_text(toml.read_text().replace('["windows/amd64", "linux/amd64"]', '["linux/amd64"]')
                    + '\n[sign]\nkey = "wgobuild.key"\n')
    env = {signing.PASSWORD_ENV: PASSWORD, "DOCKER_HOST": docker_host}
    assert wgobuild("keygen", root, env=env).returncode == 0
    result = run_doit(root, "image", "--push", env=env)
    assert result.returncode == 0, result.output
    assert f"signed {registry.host}/signed/engine@sha256:" in result.output, result.output
    assert (root / "dist/provenance/linux-amd64.intoto.jsonl").is_file()
    checked = proc.run([cosign, "verify", "--key", root / "wgobuild.pub", "--insecure-ignore-tlog=true",
                        "--allow-insecure-registry", reference], quiet=True, timeout=120, env={**os.environ, **env})
    assert checked.returncode == 0, checked.output
    att = proc.run([cosign, "verify-attestation", "--type", "slsaprovenance1", "--key", root / "wgobuild.pub",
                    "--insecure-ignore-tlog=true", "--allow-insecure-registry", reference], quiet=True, timeout=120,
                   env={**os.environ, **env})
    assert att.returncode == 0, att.output
    verified = wgobuild("verify", reference, "--key", root / "wgobuild.pub", env=env)
    assert verified.returncode == 0, verified.output
