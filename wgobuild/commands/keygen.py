"""``wgobuild keygen``: the signing key pair ``wgobuild.key`` (cosign's encrypted format) and ``wgobuild.pub``."""

from __future__ import annotations

from pathlib import Path


def run(folder: Path, force: bool = False) -> int:
    from wgobuild import signing

    key, pub = signing.keygen(folder, force=force)
    print(f"wrote {key} (encrypted with the password from {signing.PASSWORD_ENV} or the terminal; keep it secret)")
    print(f"wrote {pub} (give it to whoever verifies: wgobuild verify IMAGE --key {pub.name}, cosign verify --key)")
    print(f"sign pushed images with it: [sign] key = \"{key.name}\" in wgobuild.toml")
    return 0
