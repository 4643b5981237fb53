// sigstore-js as an outside oracle: verify one Sigstore bundle offline against a public key.
// usage: node verify.js BUNDLE.json KEY.pub sha256:DIGEST PREDICATE_TYPE
// Exit 0 and "verified" when the bundle verifies with the key and its in-toto statement has that predicate type
// and names the digest; exit 1 with the reason otherwise. sigstore-js ignores the digest when no transparency log
// entry is present, so the statement's subject is checked here.
"use strict";
const crypto = require("node:crypto");
const fs = require("node:fs");
const { bundleFromJSON } = require("@sigstore/bundle");
const { toSignedEntity, toTrustMaterial, Verifier } = require("@sigstore/verify");

function main([bundlePath, keyPath, digest, predicateType]) {
  const bundle = bundleFromJSON(JSON.parse(fs.readFileSync(bundlePath, "utf8")));
  const publicKey = crypto.createPublicKey(fs.readFileSync(keyPath));
  const trust = toTrustMaterial(
    { certificateAuthorities: [], timestampAuthorities: [], tlogs: [], ctlogs: [] },
    () => ({ publicKey, validFor: () => true }),
  );
  const verifier = new Verifier(trust, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 });
  verifier.verify(toSignedEntity(bundle));
  if (bundle.content.$case !== "dsseEnvelope") throw new Error("the bundle holds no DSSE envelope");
  const envelope = bundle.content.dsseEnvelope;
  if (envelope.payloadType !== "application/vnd.in-toto+json") throw new Error("not an in-toto payload");
  const statement = JSON.parse(envelope.payload.toString("utf8"));
  if (statement.predicateType !== predicateType) throw new Error(`predicate type ${statement.predicateType}`);
  const hex = digest.replace(/^sha256:/, "");
  if (!statement.subject.some((s) => s.digest && s.digest.sha256 === hex)) {
    throw new Error(`the statement is not about ${digest}`);
  }
  console.log("verified");
}

try {
  main(process.argv.slice(2));
} catch (err) {
  console.log(`rejected: ${err.message}`);
  process.exit(1);
}
