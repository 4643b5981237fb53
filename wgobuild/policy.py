"""The policy gate: ``[policy]`` rules every image must meet before anything is published or pushed.

Checked by the ``image`` step on the per-platform records, before the combined outputs are written and before the
push: ``max_image_mb`` (each image's size as the size table shows it), ``forbid_dlls`` (DLLs no shipped Windows
executable may import, from the imports the image step read) and ``require_signature`` (a push needs ``[sign]
key``). Each broken rule is one line; nothing is pushed and ``dist/reports/images.json`` is removed, so the next
run checks again. The secret scan's allowlist lives in ``[policy]`` too; the scan itself is :mod:`wgobuild.secrets`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wgobuild.errors import StepFailed

if TYPE_CHECKING:
    from wgobuild.config import Config
    from wgobuild.image import ImageResult


def violations(cfg: Config, results: list[ImageResult], push: bool) -> list[str]:
    """One line per broken ``[policy]`` rule, naming the key, the image and what to do."""
    policy = cfg.policy
    problems: list[str] = []
    built = [r for r in results if r.backend != "none"]
    if policy.max_image_mb:
        limit = policy.max_image_mb * 1_000_000
        problems += [f"[policy] max_image_mb = {policy.max_image_mb}: the {r.platform} image is "
                     f"{r.size / 1e6:.1f} MB ({r.base_size / 1e6:.1f} MB of it the base): ship less, use a smaller "
                     "base, or raise the limit" for r in built if r.size > limit]
    forbidden = {dll.lower() for dll in policy.forbid_dlls}
    for r in built:
        imports = r.extra.get("dll_imports")
        for name, dlls in sorted(imports.items()) if isinstance(imports, dict) else []:
            if found := sorted(forbidden.intersection(dlls)):
                problems.append(f"[policy] forbid_dlls: {name} in the {r.platform} image imports "
                                f"{', '.join(found)}: build it without that dependency, or take the DLL off the list")
    key = getattr(getattr(cfg, "sign", None), "key", "")
    if push and policy.require_signature and not key:
        problems.append("[policy] require_signature = true: the push would be unsigned; set [sign] key = "
                        "\"wgobuild.key\" (make one with `wgobuild keygen`)")
    return problems


def enforce(cfg: Config, results: list[ImageResult], push: bool) -> None:
    """:class:`StepFailed` listing every broken rule, before anything is published; the image summary is removed
    so the step runs (and checks) again next time."""
    problems = violations(cfg, results, push)
    if problems:
        from wgobuild import files

        files.remove(cfg.reports_dir / "images.json")
        raise StepFailed("policy: nothing published or pushed:\n" + "\n".join(problems))
