"""What the checks before each image cost: the secret scan of everything that enters it, and the DLL check.

Run: python bench/secrets_scan.py [--runs N]. Builds examples/hello (a copy in a temporary folder) for
windows/amd64 and linux/amd64 once, then times, per platform and run, in this process:

- load: importing detect-secrets' detectors (paid once per run that builds an image);
- inputs: ``imagecheck.image_inputs`` (the files each binary is built from, from the go list cache);
- scan: ``secrets.check`` on them, the detectors' patterns already kept in the state folder (every run after
  the first), so a clean scan loads no detector;
- exe: the detectors on the executable's printable runs (what scanning the binary too would add);
- dlls: ``imagecheck.imported_dlls`` of the Windows executable.

Prints medians as a Markdown table (docs/supply-chain.md quotes them).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    start = time.perf_counter()
    from wgobuild import secrets

    plugins = secrets._plugins()
    load = time.perf_counter() - start
    _printable = re.compile(rb"[\x20-\x7e\t]{8,}")
    from wgobuild import config, gotool, imagecheck

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "hello"
        shutil.copytree(REPO / "examples" / "hello", root, ignore=shutil.ignore_patterns("dist", ".wgobuild"))
        cfg = config.load(root)
        for platform in cfg.platforms:
            gotool.build(root, ".", platform, cfg.binary_path(cfg.binaries[0], platform), "1")
        rows = [f"| detectors loaded (once per run) | {load:.2f} s |"]
        for platform in cfg.platforms:
            exe = cfg.binary_path(cfg.binaries[0], platform)
            figures: dict[str, list[float]] = {"inputs": [], "scan": [], "exe": [], "dlls": []}
            secrets.check(str(platform), imagecheck.image_inputs(cfg, platform), [], state_dir=cfg.state_dir)
            for _ in range(runs):
                start = time.perf_counter()
                entries = imagecheck.image_inputs(cfg, platform)
                figures["inputs"].append(time.perf_counter() - start)
                start = time.perf_counter()
                secrets.check(str(platform), entries, [], state_dir=cfg.state_dir)
                figures["scan"].append(time.perf_counter() - start)
                start = time.perf_counter()
                text = "\n".join(run.decode("ascii") for run in _printable.findall(exe.read_bytes()))
                for plugin in plugins:
                    list(plugin.analyze_string(text))
                figures["exe"].append(time.perf_counter() - start)
                if platform.os == "windows":
                    start = time.perf_counter()
                    imagecheck.imported_dlls(exe)
                    figures["dlls"].append(time.perf_counter() - start)
            size = exe.stat().st_size / 1e6
            for name, values in figures.items():
                if values:
                    rows.append(f"| {platform} {name} ({size:.1f} MB binary, {len(entries)} files) | "
                                f"{statistics.median(values):.3f} s |")
    print(f"| step (median of {runs}) | wall |\n| --- | --- |\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
