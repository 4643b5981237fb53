"""``wgobuild verify IMAGE --key wgobuild.pub``: both signature forms of a pushed image (and of each manifest of an
index), and its provenance when attached. Exit 0: verified; 1: not."""

from __future__ import annotations

from pathlib import Path


def run(reference: str, key: Path, insecure: list[str]) -> int:
    from wgobuild import signing

    public = signing.load_public(key)
    checks = signing.verify(reference, public, insecure)
    for check in checks:
        print(f"{'ok  ' if check.ok else 'FAIL'} {check.digest[:19]} {check.form}: {check.detail}")
    good = all(check.ok for check in checks)
    print(f"{reference}: {'verified' if good else 'NOT verified'} with {key}")
    return 0 if good else 1
