"""tests/run.sh, the command CI runs: a failed install stops it; a good one reaches pytest with the caller's args.

Stand-ins for python3 (only its ``-m pip``, ``-m mypy`` and ``-m pytest`` answers), ruff, go, apt-get and dpkg record
what the script called; everything else is the real bash script.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from wgobuild import proc

REPO = Path(__file__).resolve().parents[1]

FAKE_PYTHON = """#!/bin/sh
case "$1 $2" in
  "-m pip") echo "WARNING: Running pip as the 'root' user can result in broken permissions"
            echo "pip $*"; [ "$FAKE_PIP_RC" = 0 ] || echo "ERROR: No matching distribution found for junitparser"
            exit "$FAKE_PIP_RC";;
  "-m pytest") echo "pytest ran with: $*"; exit 0;;
  "-m mypy") echo "mypy ran with: $*"; exit 0;;
esac
echo "unexpected python3 call: $*"; exit 99
"""


def _stand_ins(folder: Path) -> Path:
    folder.mkdir()
    gopath = folder.parent / "gopath"
    (gopath / "bin").mkdir(parents=True)
    scripts = {"python3": FAKE_PYTHON, "ruff": '#!/bin/sh\necho "ruff ran with: $*"\n', "dpkg": "#!/bin/sh\nexit 0\n",
               "apt-get": '#!/bin/sh\necho "apt-get must not run: $*"; exit 98\n',
               "go": f'#!/bin/sh\n[ "$*" = "env GOPATH" ] && echo {gopath} && exit 0\n'
                     'echo "go must not run: $*"; exit 97\n',
               # the Go tools run.sh installs when missing are present, so it installs nothing
               **{f"../gopath/bin/{tool}": "#!/bin/sh\nexit 0\n" for tool in
                  re.findall(r'\[ -x "\$peers/([\w.-]+)" \]', (REPO / "tests/run.sh").read_text())}}
    for name, text in scripts.items():
        (folder / name).write_text(text)
        (folder / name).chmod(0o755 | stat.S_IXUSR)
    return folder


@pytest.mark.skipif(os.name == "nt", reason="tests/run.sh is a bash script (CI runs it on Debian)")
@pytest.mark.parametrize("pip_rc", ["0", "1"])
def test_run_sh_stops_on_a_failed_install_and_passes_args_to_pytest(tmp_path: Path, pip_rc: str) -> None:
    bin_dir = _stand_ins(tmp_path / "bin")
    env = {**os.environ, "PATH": os.pathsep.join([str(bin_dir), os.environ["PATH"]]), "FAKE_PIP_RC": pip_rc}
    result = proc.run(["bash", REPO / "tests/run.sh", "-k", "name", "--count", "3"], env=env, quiet=True, timeout=60)
    lines = result.output.splitlines()
    assert "WARNING: Running pip as the 'root' user can result in broken permissions" not in lines
    assert "pip -m pip install -q --disable-pip-version-check -e .[dev]" in lines
    if pip_rc == "1":
        assert result.returncode == 1, result.output
        assert lines[-1] == "ERROR: No matching distribution found for junitparser"
        assert not [line for line in lines if line.startswith(("ruff ran", "mypy ran", "pytest ran"))]
    else:
        assert result.returncode == 0, result.output
        assert "ruff ran with: check ." in lines
        assert "mypy ran with: -m mypy" in lines
        assert lines[-1] == ("pytest ran with: -m pytest --cov=wgobuild --cov-branch --cov-report=term:skip-covered "
                             "-k name --count 3")
    assert not [line for line in lines if "must not run" in line], lines
