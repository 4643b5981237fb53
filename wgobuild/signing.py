"""Keys and signatures in the formats cosign, sigstore-js and skopeo read; signing and attaching on push.

- Keys (``wgobuild keygen``): ECDSA P-256. The private key is cosign's encrypted format: a PEM block
  ``ENCRYPTED SIGSTORE PRIVATE KEY`` whose body is the JSON envelope of go-securesystemslib's ``encrypted`` package
  (scrypt N=65536 r=8 p=1 over the password, 32-byte salt; nacl secretbox with a 24-byte nonce) around the PKCS#8
  DER key. The public key is a PEM ``PUBLIC KEY`` (SubjectPublicKeyInfo). Signatures are ECDSA over SHA-256 (DER).
- Per pushed manifest and index, two signatures:
  * a Sigstore bundle v0.3 as cosign's ``--new-bundle-format`` writes it (cosign sign.go ``signDigestBundle``): a
    DSSE envelope (payload type ``application/vnd.in-toto+json``) around an in-toto statement whose subject is the
    digest and whose predicate type is ``https://sigstore.dev/cosign/sign/v1``; verification material: the public
    key's hint (base64 SHA-256 of its DER). Attached as an OCI 1.1 artifact with ``subject``.
  * cosign's simple-signing payload (``{"critical": {"identity": {"docker-reference": ...}, "image":
    {"docker-manifest-digest": ...}, "type": "cosign container image signature"}, "optional": null}``) signed as
    is, under the ``sha256-<hex>.sig`` tag (what skopeo and cosign's default mode read).
- Per platform image and for the index, the provenance (wgobuild/provenance.py) in a DSSE envelope: written to
  ``dist/provenance/<platform>.intoto.jsonl`` (``index.intoto.jsonl``), attached as a bundle artifact and under
  ``sha256-<hex>.att``.
- Per platform image, its SBOM (wgobuild/sbom.py's image SPDX), attached as an artifact and under ``.sbom``, signed
  or not.

Key-based only: keyless signing (Fulcio certificates, Rekor log entries) needs the public Sigstore services.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wgobuild.errors import WgobuildError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

    from wgobuild.config import Config
    from wgobuild.image import ImageResult
    from wgobuild.oci.registry import Client
    from wgobuild.oci.writers import Target

PASSWORD_ENV = "WGOBUILD_SIGNING_PASSWORD"
PRIVATE_PEM = "ENCRYPTED SIGSTORE PRIVATE KEY"
PRIVATE_PEMS = (PRIVATE_PEM, "ENCRYPTED COSIGN PRIVATE KEY")  # cosign reads both; older cosign wrote the second
SCRYPT = {"N": 65536, "r": 8, "p": 1}  # go-securesystemslib's "standard" strength, what cosign writes
SCRYPT_ACCEPTED = ({"N": 32768, "r": 8, "p": 1}, SCRYPT, {"N": 131072, "r": 8, "p": 1})  # what it accepts

BUNDLE_MEDIA = "application/vnd.dev.sigstore.bundle.v0.3+json"
INTOTO_PAYLOAD = "application/vnd.in-toto+json"
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
DSSE_MEDIA = "application/vnd.dsse.envelope.v1+json"
SIMPLE_SIGNING_MEDIA = "application/vnd.dev.cosign.simplesigning.v1+json"
SIMPLE_SIGNING_TYPE = "cosign container image signature"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SPDX_ARTIFACT = "application/spdx+json"
SPDX_COSIGN = "text/spdx+json"  # cosign attach sbom --type spdxjson


class SigningError(WgobuildError):
    """A key that cannot be written, read or decrypted; the message names the file and what to do."""


# --- keys ------------------------------------------------------------------------------------------------------
def password(purpose: str, confirm: bool = False) -> bytes:
    """The key password: ``WGOBUILD_SIGNING_PASSWORD``, else asked on the terminal; neither: SigningError."""
    given = os.environ.get(PASSWORD_ENV)
    if given is not None:
        return given.encode()
    if not sys.stdin.isatty():
        raise SigningError(f"{purpose}: no password: set {PASSWORD_ENV} (there is no terminal to ask on)")
    import getpass

    first = getpass.getpass(f"Password for {purpose}: ")
    if confirm and getpass.getpass("Again: ") != first:
        raise SigningError(f"{purpose}: the two passwords differ")
    return first.encode()


def _pem(kind: str, body: bytes) -> str:
    text = base64.b64encode(body).decode()
    lines = [text[i:i + 64] for i in range(0, len(text), 64)]
    return f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----\n"


def _unpem(data: bytes, where: str, kinds: tuple[str, ...]) -> tuple[str, bytes]:
    text = data.decode("ascii", "replace")
    for kind in kinds:
        begin, end = f"-----BEGIN {kind}-----", f"-----END {kind}-----"
        if begin in text and end in text:
            body = text.split(begin, 1)[1].split(end, 1)[0]
            try:
                return kind, base64.b64decode("".join(body.split()), validate=True)
            except ValueError:
                break
    raise SigningError(f"{where}: not a PEM {' or '.join(kinds)} block; write one with `wgobuild keygen`")


def _secretbox_key(password_bytes: bytes, salt: bytes, params: dict[str, int]) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=32, n=params["N"], r=params["r"], p=params["p"]).derive(password_bytes)


def encrypt_private(key: ec.EllipticCurvePrivateKey, password_bytes: bytes) -> bytes:
    """cosign's encrypted private key PEM."""
    import nacl.secret
    from cryptography.hazmat.primitives import serialization

    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    salt, nonce = os.urandom(32), os.urandom(24)
    box = nacl.secret.SecretBox(_secretbox_key(password_bytes, salt, SCRYPT))
    sealed = box.encrypt(der, nonce).ciphertext
    envelope = {"kdf": {"name": "scrypt", "params": SCRYPT, "salt": base64.b64encode(salt).decode()},
                "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
                "ciphertext": base64.b64encode(sealed).decode()}
    return _pem(PRIVATE_PEM, json.dumps(envelope, separators=(",", ":")).encode()).encode()


def decrypt_private(data: bytes, password_bytes: bytes, where: str) -> ec.EllipticCurvePrivateKey:
    import nacl.exceptions
    import nacl.secret
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    _, body = _unpem(data, where, PRIVATE_PEMS)
    try:
        envelope = json.loads(body)
        kdf, cipher = envelope["kdf"], envelope["cipher"]
        params = {"N": int(kdf["params"]["N"]), "r": int(kdf["params"]["r"]), "p": int(kdf["params"]["p"])}
        salt, nonce = base64.b64decode(kdf["salt"]), base64.b64decode(cipher["nonce"])
        sealed = base64.b64decode(envelope["ciphertext"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SigningError(f"{where}: not cosign's encrypted key format ({exc}); write one with `wgobuild keygen`"
                           ) from None
    if kdf.get("name") != "scrypt" or cipher.get("name") != "nacl/secretbox" or params not in SCRYPT_ACCEPTED \
            or len(nonce) != 24:
        raise SigningError(f"{where}: unsupported key encryption (scrypt with cosign's parameters and nacl/secretbox "
                           "expected); write a new key with `wgobuild keygen`")
    try:
        der = nacl.secret.SecretBox(_secretbox_key(password_bytes, salt, params)).decrypt(sealed, nonce)
    except nacl.exceptions.CryptoError:
        raise SigningError(f"{where}: wrong password (from {PASSWORD_ENV} or the terminal)") from None
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise SigningError(f"{where}: not an ECDSA P-256 key; write one with `wgobuild keygen`")
    return key


def public_pem(key: ec.EllipticCurvePublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public(path: Path) -> ec.EllipticCurvePublicKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SigningError(f"{path}: cannot read the public key ({exc.strerror or exc})") from None
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise SigningError(f"{path}: not a PEM public key (wgobuild keygen writes wgobuild.pub)") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise SigningError(f"{path}: not an ECDSA P-256 public key")
    return key


def keygen(folder: Path, force: bool = False, name: str = "wgobuild") -> tuple[Path, Path]:
    """Write ``<name>.key`` (encrypted) and ``<name>.pub`` into ``folder``; existing files only with ``force``."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from wgobuild import files

    key_path, pub_path = folder / f"{name}.key", folder / f"{name}.pub"
    existing = [p for p in (key_path, pub_path) if p.exists()]
    if existing and not force:
        raise SigningError(f"{existing[0]} exists: keep it, or pass --force to replace the key pair (images signed "
                           "with the old key then no longer verify against the new wgobuild.pub)")
    secret = password(str(key_path), confirm=True)
    key = ec.generate_private_key(ec.SECP256R1())
    with files.atomic_path(key_path) as tmp:  # owner-only before a byte of the key is written
        os.chmod(tmp, 0o600)
        tmp.write_bytes(encrypt_private(key, secret))
    files.write_bytes(pub_path, public_pem(key.public_key()))
    return key_path, pub_path


@dataclass
class Signer:
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def load(cls, path: Path, password_bytes: bytes | None = None) -> Signer:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SigningError(f"[sign] key {path}: cannot read it ({exc.strerror or exc}); write one with "
                               "`wgobuild keygen`") from None
        secret = password_bytes if password_bytes is not None else password(str(path))
        return cls(decrypt_private(data, secret, str(path)))

    @property
    def public(self) -> ec.EllipticCurvePublicKey:
        return self.key.public_key()

    def sign(self, data: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))

    def dsse(self, payload_type: str, payload: bytes) -> dict[str, Any]:
        """A DSSE envelope (JSON form: base64 payload and signatures) signed over the PAE."""
        sig = self.sign(pae(payload_type, payload))
        return {"payload": base64.b64encode(payload).decode(), "payloadType": payload_type,
                "signatures": [{"keyid": "", "sig": base64.b64encode(sig).decode()}]}

    def bundle(self, envelope: dict[str, Any]) -> bytes:
        return bundle_of(self.public, envelope)


def verify_signature(public: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


# --- documents -------------------------------------------------------------------------------------------------
def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what is actually signed."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def key_hint(public: ec.EllipticCurvePublicKey) -> str:
    """cosign's bundle key hint: base64 of the SHA-256 of the key's DER SubjectPublicKeyInfo."""
    from cryptography.hazmat.primitives import serialization

    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def bundle_of(public: ec.EllipticCurvePublicKey, envelope: dict[str, Any]) -> bytes:
    """A Sigstore bundle v0.3 around a DSSE envelope, as cosign's MakeNewBundle writes it for a key."""
    doc = {"mediaType": BUNDLE_MEDIA, "verificationMaterial": {"publicKey": {"hint": key_hint(public)}},
           "dsseEnvelope": {"payload": envelope["payload"], "payloadType": envelope["payloadType"],
                            "signatures": [{"sig": s["sig"]} for s in envelope["signatures"]]}}
    return json.dumps(doc, separators=(",", ":")).encode()


def simple_signing(docker_reference: str, digest: str) -> bytes:
    """cosign's simple-signing payload for ``digest`` pushed to ``docker_reference`` (registry/repository)."""
    return json.dumps({"critical": {"identity": {"docker-reference": docker_reference},
                                    "image": {"docker-manifest-digest": digest}, "type": SIMPLE_SIGNING_TYPE},
                       "optional": None}, separators=(",", ":")).encode()


def open_envelope(public: ec.EllipticCurvePublicKey, envelope: dict[str, Any]) -> tuple[str, bytes] | None:
    """(payload type, payload) of a DSSE envelope (JSON or bundle form) one of whose signatures verifies."""
    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
        kind = str(envelope["payloadType"])
        sigs = [base64.b64decode(s["sig"], validate=True) for s in envelope["signatures"]]
    except (KeyError, TypeError, ValueError):
        return None
    if any(verify_signature(public, sig, pae(kind, payload)) for sig in sigs):
        return kind, payload
    return None


def statement_about(payload: bytes, digest: str, predicate_type: str) -> dict[str, Any] | None:
    """The in-toto statement in ``payload`` if it has ``predicate_type`` and names ``digest`` among its subjects."""
    try:
        doc = json.loads(payload)
        subjects = [s["digest"]["sha256"] for s in doc["subject"]]
    except (ValueError, KeyError, TypeError):
        return None
    from wgobuild.provenance import STATEMENT_TYPE

    if doc.get("_type") != STATEMENT_TYPE or doc.get("predicateType") != predicate_type:
        return None
    return doc if digest.removeprefix("sha256:") in subjects else None


# --- push ------------------------------------------------------------------------------------------------------
def signer_for(config: Config) -> Signer | None:
    """The configured key, decrypted (before anything is pushed, so a wrong password pushes nothing)."""
    if not config.sign.key:
        return None
    return Signer.load(config.root / config.sign.key)


def provenance_path(config: Config, platform_key: str) -> Path:
    return config.out_dir / "provenance" / f"{platform_key}.intoto.jsonl"


def after_engine_push(config: Config, results: list[ImageResult], signer: Signer | None) -> list[str]:
    """:func:`after_push` for images an engine pushed (``docker push``, one tag per platform, no index): each
    manifest is read back from the registry under its tag and gets its SBOM, and with a key its signatures and
    provenance."""
    from wgobuild import files
    from wgobuild.oci import manifest as mf
    from wgobuild.oci.registry import Client, Reference
    from wgobuild.oci.writers import Built, Target

    insecure = list(config.image.insecure_registries)
    for old in sorted((config.out_dir / "provenance").glob("*.intoto.jsonl")):
        files.remove(old)  # a previous push's: none may look like this push's provenance
    lines: list[str] = []
    for result in results:
        ref = Reference.parse(result.reference)
        data, media_type = Client(ref.registry, insecure).get_manifest(ref.repository, ref.ref)
        target = Target(result.reference, [Built(result.reference, data, media_type, {})])
        pushed = f"{ref.registry}/{ref.repository}@{mf.digest_of(data)}"
        lines += after_push(config, pushed, target, [result], signer, insecure, fresh=False)
    return lines


def after_push(config: Config, pushed: str, target: Target, results: list[ImageResult],
               signer: Signer | None, insecure: list[str], fresh: bool = True) -> list[str]:
    """Attach each platform image's SBOM, and with a key sign every manifest and the index and attach their
    provenance.

    ``pushed`` is ``registry/repository@digest`` as the registry writer returned it; ``fresh``: this is the whole
    push (the previous push's provenance files go first). Returns one line per document attached.
    """
    from wgobuild import files, provenance
    from wgobuild.config import Platform
    from wgobuild.oci import attach
    from wgobuild.oci import manifest as mf
    from wgobuild.oci.registry import Client, Reference

    ref = Reference.parse(pushed)
    client, repo = Client(ref.registry, insecure), ref.repository
    name = f"{ref.registry}/{repo}"
    lines: list[str] = []
    for old in sorted((config.out_dir / "provenance").glob("*.intoto.jsonl")) if fresh else []:
        files.remove(old)  # a previous push's: none may look like this push's provenance
    subjects: list[tuple[attach.Subject, ImageResult | None]] = [
        (attach.Subject(image.digest, image.media_type, len(image.manifest)), result)
        for image, result in zip(target.images, results, strict=True)]
    if len(target.images) > 1:
        top, media = target.top
        subjects.append((attach.Subject(mf.digest_of(top), media, len(top)), None))
    for subject, result in subjects:
        if result is not None and isinstance(sbom_file := result.extra.get("sbom"), str) and Path(sbom_file).is_file():
            data = Path(sbom_file).read_bytes()
            attach.put_referrer(client, repo, subject, SPDX_ARTIFACT, attach.Layer(data, SPDX_ARTIFACT))
            attach.put_tagged(client, repo, attach.cosign_tag(subject.digest, "sbom"),
                              [attach.Layer(data, SPDX_COSIGN)])
            lines.append(f"sbom {result.platform} -> {name}:{attach.cosign_tag(subject.digest, 'sbom')}")
        elif result is not None:
            lines.append(f"sbom {result.platform}: no image SBOM recorded, nothing attached")
        if signer is None:
            continue
        _sign(client, repo, name, subject, signer)
        lines.append(f"signed {name}@{subject.digest}")
        if result is None:  # the index: its provenance names it and every image in it
            about, what, key = results, "index", "index"
            named = [(name, subject.digest), *[(name, image.digest) for image in target.images]]
        else:
            about, what, key = [result], result.platform, Platform.parse(result.platform).key
            named = [(name, subject.digest)]
        envelope = signer.dsse(INTOTO_PAYLOAD, provenance.statement(config, about, named))
        files.write_text(provenance_path(config, key), json.dumps(envelope, separators=(",", ":")) + "\n")
        attach.put_referrer(client, repo, subject, BUNDLE_MEDIA, attach.Layer(signer.bundle(envelope), BUNDLE_MEDIA),
                            {"dev.sigstore.bundle.content": "dsse-envelope",
                             "dev.sigstore.bundle.predicateType": provenance.PREDICATE_TYPE})
        _add_layer(client, repo, attach.cosign_tag(subject.digest, "att"), signer, attach.Layer(
            json.dumps(envelope, separators=(",", ":")).encode(), DSSE_MEDIA,
            {SIGNATURE_ANNOTATION: "", "predicateType": provenance.PREDICATE_TYPE}))
        lines.append(f"provenance {what} -> {name}:{attach.cosign_tag(subject.digest, 'att')}")
    return lines


def _sign(client: Client, repo: str, name: str, subject: Any, signer: Signer) -> None:
    from wgobuild.oci import attach
    from wgobuild.provenance import in_toto

    envelope = signer.dsse(INTOTO_PAYLOAD, in_toto([("", subject.digest)], COSIGN_SIGN_PREDICATE))
    attach.put_referrer(client, repo, subject, BUNDLE_MEDIA, attach.Layer(signer.bundle(envelope), BUNDLE_MEDIA),
                        {"dev.sigstore.bundle.content": "dsse-envelope",
                         "dev.sigstore.bundle.predicateType": COSIGN_SIGN_PREDICATE})
    payload = simple_signing(name, subject.digest)
    sig = base64.b64encode(signer.sign(payload)).decode()
    _add_layer(client, repo, attach.cosign_tag(subject.digest, "sig"), signer,
               attach.Layer(payload, SIMPLE_SIGNING_MEDIA, {SIGNATURE_ANNOTATION: sig}))


def _add_layer(client: Client, repo: str, tag: str, signer: Signer, new: Any) -> None:
    """Add a signature or attestation to one of cosign's tags, as cosign does: what others signed stays; what this
    key signed before for the same payload (``.sig``) or predicate type (``.att``) is replaced, so pushing the same
    image again does not grow the list."""
    from wgobuild.oci import attach

    def same(layer: attach.Layer) -> bool:
        if layer.media_type != new.media_type:
            return False
        if layer.media_type == SIMPLE_SIGNING_MEDIA:
            try:
                sig = base64.b64decode(layer.annotations.get(SIGNATURE_ANNOTATION, ""), validate=True)
            except ValueError:
                return False
            return layer.data == new.data and verify_signature(signer.public, sig, layer.data)
        try:
            envelope = json.loads(layer.data)
        except ValueError:
            return False
        return (layer.annotations.get("predicateType") == new.annotations.get("predicateType")
                and isinstance(envelope, dict) and open_envelope(signer.public, envelope) is not None)

    kept = [layer for layer in attach.tagged_layers(client, repo, tag) if not same(layer)]
    attach.put_tagged(client, repo, tag, [*kept, new])


# --- verify ----------------------------------------------------------------------------------------------------
@dataclass
class Check:
    digest: str
    form: str  # "bundle" | "sig" | "provenance"
    ok: bool
    detail: str


def verify(reference: str, public: ec.EllipticCurvePublicKey, insecure: list[str] | tuple[str, ...] = ()
           ) -> list[Check]:
    """Check the image ``reference`` names (and each manifest of an index) for both signature forms made with
    ``public``'s key; the provenance too, when one is attached (a present but bad one fails)."""
    from wgobuild.oci import manifest as mf
    from wgobuild.oci.registry import Client, Reference

    ref = Reference.parse(reference)
    client, repo = Client(ref.registry, list(insecure)), ref.repository
    name = f"{ref.registry}/{repo}"
    data, media = client.get_manifest(repo, ref.ref)
    top = mf.digest_of(data)
    if ref.digest and ref.digest != top:
        return [Check(ref.digest, "manifest", False, f"the registry answered {top} for {ref.digest}")]
    digests = [top]
    if mf.media_type_of(json.loads(data), media) in mf.INDEXES:
        digests += [str(m["digest"]) for m in json.loads(data).get("manifests", [])]
    checks: list[Check] = []
    for digest in digests:
        checks.append(_check_sig(client, repo, name, digest, public))
        checks.append(_check_bundle(client, repo, digest, public, COSIGN_SIGN_PREDICATE, "bundle"))
        from wgobuild import provenance

        found = _check_bundle(client, repo, digest, public, provenance.PREDICATE_TYPE, "provenance")
        absent = ("no bundle attached", f"no bundle with predicate {provenance.PREDICATE_TYPE}")
        if found.ok or found.detail not in absent:  # provenance is checked where one is attached
            checks.append(found)
    return checks


def _check_sig(client: Client, repo: str, name: str, digest: str, public: ec.EllipticCurvePublicKey) -> Check:
    from wgobuild.oci import attach

    layers = attach.tagged_layers(client, repo, attach.cosign_tag(digest, "sig"))
    if not layers:
        return Check(digest, "sig", False, f"no {attach.cosign_tag(digest, 'sig')} signature")
    why = "no layer is a simple-signing payload"
    for layer in layers:
        if layer.media_type != SIMPLE_SIGNING_MEDIA:
            continue
        try:
            sig = base64.b64decode(layer.annotations.get(SIGNATURE_ANNOTATION, ""), validate=True)
        except ValueError:
            sig = b""
        if not verify_signature(public, sig, layer.data):
            why = "the signature does not verify with this key"
            continue
        try:
            critical = json.loads(layer.data)["critical"]
            signed_digest = critical["image"]["docker-manifest-digest"]
            identity = critical["identity"]["docker-reference"]
        except (ValueError, KeyError, TypeError):
            why = "the signed payload is not cosign's simple-signing JSON"
            continue
        if signed_digest != digest:
            why = f"the signature is for {signed_digest}, not this image"
            continue
        if identity != name:
            why = f"the signature names {identity}, not {name}"
            continue
        return Check(digest, "sig", True, f"{attach.cosign_tag(digest, 'sig')} verified")
    return Check(digest, "sig", False, why)


def _check_bundle(client: Client, repo: str, digest: str, public: ec.EllipticCurvePublicKey, predicate_type: str,
                  form: str) -> Check:
    from wgobuild.oci import attach

    found = attach.referrers(client, repo, digest, BUNDLE_MEDIA)
    if not found:
        return Check(digest, form, False, "no bundle attached")
    why = f"no bundle with predicate {predicate_type}"
    for _, layer in found:
        try:
            bundle = json.loads(layer.data)
            envelope = bundle["dsseEnvelope"]
            media_ok = bundle.get("mediaType") == BUNDLE_MEDIA
        except (ValueError, KeyError, TypeError):
            why = "a bundle is not Sigstore bundle JSON"
            continue
        opened = open_envelope(public, envelope) if media_ok else None
        if opened is None:
            why = "the bundle's signature does not verify with this key"
            continue
        kind, payload = opened
        if kind != INTOTO_PAYLOAD:
            continue
        try:
            stated = json.loads(payload).get("predicateType")
        except (ValueError, AttributeError):
            continue
        if stated != predicate_type:
            continue
        if statement_about(payload, digest, predicate_type) is None:
            why = "the bundle's statement is about another image"
            continue
        return Check(digest, form, True, "bundle verified")
    return Check(digest, form, False, why)
