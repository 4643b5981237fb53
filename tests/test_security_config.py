"""Hostile input catalogue for what a wgobuild.toml, a checkout or a state folder can hold (issue 11: H2, H3, M2,
L1, L2, L3) and the error table of config.py (every ``raise ConfigError`` hit, each with its key and words)."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wgobuild import config, dockerfile, invoke_support, powershell, programs, supervisor
from wgobuild.config import Platform
from wgobuild.errors import ConfigError, WgobuildError

REPO = Path(__file__).resolve().parents[1]
MINIMAL = '[[binaries]]\nname = "svc"\npackage = "."\n'
Setup = Callable[[Path], None]


def module(root: Path, text: str | bytes = MINIMAL, setup: Setup | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "main.go").write_text("package main\n\nfunc main() {}\n")
    (root / "in.txt").write_text("in\n")
    data = text.encode() if isinstance(text, str) else text
    (root / "wgobuild.toml").write_bytes(data)
    if setup:
        setup(root)
    return root


def _outside_link(name: str) -> Setup:
    def make(root: Path) -> None:
        outside = root.parent / f"outside-{root.name}"
        outside.mkdir(exist_ok=True)
        (outside / "main.go").write_text("package main\n\nfunc main() {}\n")
        (outside / "passwd").write_text("root:x:0:0\n")
        (root / name).symlink_to(outside, target_is_directory=True)
    return make


def _no_main(root: Path) -> None:
    (root / "cmd" / "lib").mkdir(parents=True)
    (root / "cmd" / "lib" / "lib.go").write_text("package lib\n")


# One row per `raise ConfigError` in config.py: (id, toml, key, words in the problem, setup).
M = MINIMAL
ROWS: list[tuple[str, str | bytes, str, str, Setup | None]] = [
    ("choice", M + '[image]\nbackend = "podman"\n', "[image].backend", "choose one of", None),
    ("name", '[[binaries]]\nname = "a b"\n', "binaries[0].name", "1-63 letters", None),
    ("version", M + '[project]\nversion = "1.0\\n"\n', "[project].version", "version such as 1.2.3", None),
    ("package", '[[binaries]]\nname = "svc"\npackage = "./a;b"\n', "binaries[0].package", "not a Go package", None),
    ("no platforms", M + "[build]\nplatforms = []\n", "[build].platforms", "at least one platform", None),
    ("bad platform", M + '[build]\nplatforms = ["windows/386"]\n', "[build].platforms[0]", "not a supported", None),
    ("duplicate platform", M + '[build]\nplatforms = ["linux/amd64", "linux/amd64"]\n', "[build].platforms[1]",
     "listed twice", None),
    ("build tag", M + '[build]\ntags = ["a b"]\n', "[build].tags[0]", "not a Go build tag", None),
    ("build tag newline", M + '[build]\ntags = ["ok\\n"]\n', "[build].tags[0]", "not a Go build tag", None),
    ("out_dir empty", M + '[build]\nout_dir = ""\n', "[build].out_dir", "is empty", None),
    ("test timeout", M + '[test]\ntimeout = "10 minutes"\n', "[test].timeout", "Go duration", None),
    ("repository", M + '[image]\nrepository = "Bad Name"\n', "[image].repository", "not a valid image repository",
     None),
    ("tag newline", M + '[image]\ntag = "v1\\n"\n', "[image].tag", "not a valid image tag", None),
    ("expose range", M + "[image]\nexpose = [70000]\n", "[image].expose[0]", "not a TCP port", None),
    ("image env name", M + '[image]\nenv = { "A-B" = "x" }\n', "[image].env.A-B", "letters, digits", None),
    ("bases key", M + '[image]\nbases = { "plan9" = "x" }\n', "[image].bases.plan9", "platform key", None),
    ("bases value", M + '[image]\nbases = { "linux/amd64" = " " }\n', "[image].bases.linux/amd64",
     "name a registry image", None),
    ("policy size", M + "[policy]\nmax_image_mb = -5\n", "[policy].max_image_mb", "0 (no limit)", None),
    ("policy dll", M + '[policy]\nforbid_dlls = ["evil.dll\\n"]\n', "[policy].forbid_dlls[0]", "name a DLL file",
     None),
    ("policy allowlist", M + '[policy]\nallow_secrets = ["key.pem:"]\n', "[policy].allow_secrets[0]",
     "path-glob:rule", None),
    ("sign key", M + '[sign]\nkey = " "\n', "[sign].key", "name the key file wgobuild keygen wrote", None),
    ("account", M + '[harden]\nidentity = "local-user"\n', "[harden].account", "needs an account", None),
    ("logs keep", M + "[logs]\nkeep = 100001\n", "[logs].keep", "must be 0-100000", None),
    ("schedule newline", M + '[logs]\nschedule = "03:00\\n"\n', "[logs].schedule", "time of day", None),
    ("restart_delay_s", M + "[service]\nrestart_delay_s = 90000\n", "[service].restart_delay_s", "0-86400", None),
    ("stop_timeout_s", M + "[service]\nstop_timeout_s = 0\n", "[service].stop_timeout_s", "1-3600", None),
    ("memory 400 digits", M + '[limits]\nmemory = "' + "9" * 400 + 'MiB"\n', "[limits].memory", "not a size", None),
    ("memory above 1PiB", M + '[limits]\nmemory = "2048TiB"\n', "[limits].memory", "more than 1PiB", None),
    ("memory minimum", M + '[limits]\nmemory = "1MiB"\n', "[limits].memory", "6MiB minimum", None),
    ("cpus", M + "[limits]\ncpus = 2000\n", "[limits].cpus", "CPU count", None),
    ("handles", M + "[limits]\nhandles = 5\n", "[limits].handles", "32 or more", None),
    ("pids", M + "[limits]\npids = 2\n", "[limits].pids", "4 or more", None),
    ("affinity", M + "[limits]\naffinity = [0, 0]\n", "[limits].affinity[1]", "each listed once", None),
    ("ports form", M + '[run]\nports = ["80:80\\n"]\n', "[run].ports[0]", "HOST:CONTAINER", None),
    ("ports range", M + '[run]\nports = ["0:80"]\n', "[run].ports[0]", "ports are 1-65535", None),
    ("ports twice", M + '[run]\nports = ["80:80", "80:81"]\n', "[run].ports[1]", "published twice", None),
    ("retries", M + "[run]\nretries = -1\n", "[run].retries", "0 or more", None),
    ("log_max_mb", M + "[run]\nlog_max_mb = 0\n", "[run].log_max_mb", "1 or more", None),
    ("backoff_initial_s", M + "[run]\nbackoff_initial_s = 0\n", "[run].backoff_initial_s", "more than 0", None),
    ("backoff_max_s", M + "[run]\nbackoff_max_s = 0.5\n", "[run].backoff_max_s", "at least backoff_initial_s",
     None),
    ("run user", M + '[run]\nuser = "root\\n"\n', "[run].user", "not a user name", None),
    ("run env name", M + '[run]\nenv = { "1X" = "y" }\n', "[run].env.1X", "letters, digits", None),
    ("list expected", M + '[build]\nplatforms = "linux/amd64"\n', "[build].platforms", "expected a list", None),
    ("table expected", M + "[image]\nenv = 1\n", "[image].env", "expected a table", None),
    ("key NUL", M + '[image]\nlabels = { "a\\u0000" = "x" }\n', "[image].labels.'a\\x00'", "printable", None),
    ("float too big", M + "[limits]\ncpus = 10000000000\n", "[limits].cpus", "between", None),
    ("type", M + '[build]\ncgo = "yes"\n', "[build].cgo", "expected bool", None),
    ("value NUL", M + '[project]\nsource = "a\\u0000b"\n', "[project].source", "NUL character", None),
    ("int 400 digits", M + "[run]\nretries = " + "9" * 400 + "\n", "[run].retries", "between", None),
    ("float inf", M + "[run]\nbackoff_max_s = inf\n", "[run].backoff_max_s", "finite", None),
    ("section not a table", "project = 1\n" + M, "[project]", "expected a table", None),
    ("unknown key", M + "[build]\nplatform = []\n", "[build].platform", "unknown key", None),
    ("required", '[[binaries]]\npackage = "."\n', "binaries[0].name", "is required", None),
    ("not found", b"", "", "wgobuild init", lambda root: (root / "wgobuild.toml").unlink()),
    ("unreadable", b"", "", "cannot be read", lambda root: ((root / "wgobuild.toml").unlink(),
                                                          (root / "wgobuild.toml").symlink_to("wgobuild.toml"))),
    ("not a regular file", b"", "", "not a regular file", lambda root: ((root / "wgobuild.toml").unlink(),
                                                                      (root / "wgobuild.toml").mkdir())),
    ("over 1 MiB", M + "#" * (1024 * 1024), "", "larger than 1024 KiB", None),
    ("not UTF-8", b"\xff\xfe" + M.encode(), "", "not UTF-8", None),
    ("malformed", '[[binaries]\nname = "svc"', "", "malformed TOML", None),
    ("dotted-key bomb", M + "a" + ".a" * 20000 + " = 1\n", "", "more than 16 parts", None),
    ("too many keys", M + "[image.env]\n" + "".join(f"K{i} = '1'\n" for i in range(10001)), "", "more than 10000 keys",
     None),
    ("nested 600", M + "[run]\nargs = " + "[" * 600 + "]" * 600 + "\n", "", "nested more than 8", None),
    ("nested dotted", M + "[run.a.b.c.d.e.f.g.h]\nx = 1\n", "", "nested more than 8", None),
    ("too many tables", M + "".join(f"[t{i}]\n" for i in range(1001)), "", "more than 1000 [tables]", None),
    ("unknown section", M + "[bild]\n", "bild", "unknown section", None),
    ("binaries not array", "binaries = 1\n", "binaries", "expected an array of tables", None),
    ("no binaries", "[project]\n", "binaries", "at least one", None),
    ("entrypoint image", '[[binaries]]\nname = "svc"\nimage = false\n', "binaries[0].image", "entrypoint", None),
    ("package symlink escape", '[[binaries]]\nname = "svc"\npackage = "./ext"\n', "binaries[0].package",
     "not inside the module", _outside_link("ext")),
    ("no package main", '[[binaries]]\nname = "svc"\npackage = "./cmd/lib"\n', "binaries[0].package",
     "no 'package main'", _no_main),
    ("golden binary", M + '[[golden]]\nname = "g"\ninput = "in.txt"\nexpected = "in.txt"\nbinary = "x"\n',
     "golden[0].binary", "not one of the binaries", None),
    ("golden outside", M + '[[golden]]\nname = "g"\ninput = "in.txt"\nexpected = "/etc/passwd"\n',
     "golden[0].expected", "relative to the module", None),
    ("golden missing", M + '[[golden]]\nname = "g"\ninput = "in.txt"\nexpected = "none.txt"\n',
     "golden[0].expected", "no such file", None),
    ("out_dir symlink escape", M + '[build]\nout_dir = "out"\n', "[build].out_dir", "not inside the module",
     _outside_link("out")),
    ("out_dir .git", M + '[build]\nout_dir = ".git"\n', "[build].out_dir", "git or wgobuild keeps", None),
    ("log_dir /var/run", M + '[run]\nlog_dir = "/var/run"\n', "[run].log_dir", "system folder", None),
    ("duplicate binary", M + M, "binaries[1].name", "used twice", None),
    ("engines key", M + '[engines]\n"linux/386" = "ctx"\n', '[engines]."linux/386"', "not a supported platform", None),
    ("engines platform not built", M + '[engines]\n"darwin/arm64" = "ctx"\n', '[engines]."darwin/arm64"',
     "not built by this project", None),
    ("engines scheme", M + '[engines]\n"linux/amd64" = "http://h:2375"\n', '[engines]."linux/amd64"',
     "an engine URL starts with", None),
    ("engines context name", M + '[engines]\n"linux/amd64" = "a b"\n', '[engines]."linux/amd64"',
     "neither a docker context name", None),
    ("cache registry", M + '[cache]\nregistry = "host:5000/Repo\\n"\n', "[cache].registry",
     "use host[:port]/repository", None),
]


def _load(tmp_path: Path, text: str | bytes, setup: Setup | None) -> ConfigError:
    root = module(tmp_path / "m", text, setup)
    with pytest.raises(ConfigError) as caught:
        config.load(root)
    return caught.value


@pytest.mark.parametrize(("text", "key", "words", "setup"), [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_every_config_error_names_key_and_problem(tmp_path: Path, text: str | bytes, key: str, words: str,
                                                  setup: Setup | None) -> None:
    error = _load(tmp_path, text, setup)
    assert error.exit_code == 2
    assert error.key == key, str(error)
    assert words in error.problem, str(error)
    message = str(error)
    assert message.startswith(str(tmp_path / "m" / "wgobuild.toml")) and "\n" not in message


def _raise_sites() -> set[int]:
    tree = ast.parse(Path(config.__file__).read_text(encoding="utf-8"))
    return {node.lineno for node in ast.walk(tree) if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)
            and getattr(node.exc.func, "id", "") == "ConfigError"}


def test_the_error_table_hits_every_raise_site(tmp_path: Path) -> None:
    sites = _raise_sites()
    assert len(sites) >= 60  # the count itself: a parse that finds nothing must not pass
    target = config.__file__
    hit: set[int] = set()

    def tracer(frame, event, _arg):  # type: ignore[no-untyped-def]
        if frame.f_code.co_filename != target:
            return None
        if event == "line":
            hit.add(frame.f_lineno)
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        for i, (_id, text, _key, _words, setup) in enumerate(ROWS):
            _load(tmp_path / str(i), text, setup)
    finally:
        sys.settrace(previous)
    missed = sorted(sites - hit)
    assert not missed, f"raise ConfigError lines no table row reaches: {missed}"


def test_a_hostile_config_is_one_line_and_exit_2_on_the_command_line(tmp_path: Path) -> None:
    root = module(tmp_path / "m", M + '[limits]\nmemory = "' + "9" * 400 + 'MiB"\n')
    result = subprocess.run([sys.executable, "-m", "invoke", "-r", str(REPO), "scripts", "--root", str(root)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "[limits].memory" in lines[0] and "Traceback" not in lines[0], lines


@pytest.mark.parametrize(("overrides", "flag", "words"), [
    ({"run": {"retries": ("--retries", 10**40)}}, "--retries", "between -2147483648 and 2147483647"),
    ({"limits": {"cpus": ("--cpus", float("inf"))}}, "--cpus", "finite"),
    ({"logs": {"dir": ("--log-dir", "C:\\logs\x00")}}, "--log-dir", "NUL"),
    ({"limits": {"handles": ("--handles", "12")}}, "--handles", "expected int"),
])
def test_flag_overrides_get_the_bounds_of_the_file(tmp_path: Path, overrides: dict, flag: str, words: str) -> None:
    root = module(tmp_path / "m")
    with pytest.raises(ConfigError) as caught:
        invoke_support.load_config(str(root), **overrides)
    assert (caught.value.path, caught.value.key) == ("command line", flag) and words in caught.value.problem


# ---------------------------------------------------------------------------------------------------------------
# Random TOML-ish input: loads or one ConfigError line, never another exception, quickly and in little memory

_KEYS = ["name", "package", "platforms", "out_dir", "memory", "args", "env", "labels", "log_dir", "ports", "cpus",
         "retries", "tag", "expected", "input", "a.b.c", '"q.k"', "schedule", "post_rotate"]
_SECTIONS = ["[build]", "[image]", "[run]", "[limits]", "[logs]", "[[binaries]]", "[[golden]]", "[image.env]", "[x.y]"]
_VALUES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=30).map(lambda s: json.dumps(s)),
    st.lists(st.text(max_size=8).map(json.dumps), max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
    st.sampled_from(['"/etc"', '"C:foo"', '"\\\\foo"', '"../x"', '""', '"dist"', "true", "[[[[[[[[[[1]]]]]]]]]]",
                     '"""a""""', "{a.b.c.d.e = 1}"]),
)
_LINE = st.one_of(st.sampled_from(_SECTIONS), st.tuples(st.sampled_from(_KEYS), _VALUES).map(" = ".join),
                  st.text(max_size=40))
_DOCS = st.one_of(st.lists(_LINE, max_size=12).map(lambda ls: MINIMAL + "\n".join(ls) + "\n"),
                  st.binary(max_size=200).map(lambda b: MINIMAL.encode() + b))


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=_DOCS)
def test_random_configs_load_or_fail_in_one_line(tmp_path: Path, doc: str | bytes) -> None:
    root = tmp_path / "h"
    shutil.rmtree(root, ignore_errors=True)
    module(root, doc)
    try:
        config.load(root)
    except ConfigError as exc:
        assert "\n" not in str(exc) and exc.exit_code == 2


_PEAK = r"""
import os, sys
if os.name == "nt":
    import psutil
    peak = psutil.Process().memory_info().peak_wset
elif os.path.exists("/proc/self/status"):  # VmHWM: this program's own peak; ru_maxrss keeps the parent's across exec
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    peak = int(line.split()[1]) * 1024
else:
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
print(peak, worst)
"""

_BATCH = r"""
import os, random, sys, tempfile, time
from pathlib import Path
from wgobuild import config
from wgobuild.errors import ConfigError
random.seed(11)
root = Path(tempfile.mkdtemp())
(root / "main.go").write_text("package main\n\nfunc main() {}\n")
head = '[[binaries]]\nname = "svc"\n'
bombs = [head + "a" + ".a" * 400000 + " = 1\n", head + "x = " + "[" * 300000 + "\n",
         head + "".join(f"[t{i}]\n" for i in range(60000)), head + "#" * (2 << 20),
         head + "[image.env]\n" + "".join(f"K{i} = '{'v' * 40}'\n" for i in range(20000)),
         head + "[run.a.b.c.d.e.f.g.h.i.j.k.l.m.n.o]\n"]
alphabet = '[]{}=."\'\n #abc,0123456789-:\\'
worst = 0.0
for i in range(400):
    soup = "".join(random.choice(alphabet) for _ in range(random.randint(0, 3000)))
    doc = bombs[i] if i < len(bombs) else head + soup
    (root / "wgobuild.toml").write_text(doc)
    t0 = time.perf_counter()
    try:
        config.load(root)
    except ConfigError as exc:
        assert "\n" not in str(exc), str(exc)
    worst = max(worst, time.perf_counter() - t0)
""" + _PEAK


def test_the_peak_measure_sees_a_big_child() -> None:
    """Negative control of the memory bound: a child that touches 150 MiB reports a peak over 100 MiB, while a big
    parent does not leak into a small child's figure."""
    ballast = bytearray(120 * 1024 * 1024)  # the parent is big (touched, so resident): the small child must not
    ballast[::4096] = b"1" * len(ballast[::4096])  # report it, as ru_maxrss would after fork and exec
    big = "worst = 0\nx = bytearray(150 * 1024 * 1024)\nx[::4096] = b'1' * len(x[::4096])\n" + _PEAK
    small = "worst = 0\n" + _PEAK
    peaks = [int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                                check=True).stdout.split()[0]) for code in (big, small)]
    del ballast
    assert peaks[0] > 150 * 1024 * 1024 > 100 * 1024 * 1024 > peaks[1], peaks


def test_hostile_configs_stay_within_time_and_memory_bounds() -> None:
    """Bombs (a 400,000-part dotted key, 300,000 open brackets, 60,000 tables, a 2 MiB file, 20,000 keys) and
    random bracket soup in a child process: each load ends within 2 s and the child's peak RSS stays under 100 MB."""
    # Not traced by coverage (tests/run.sh measures children too): tracing adds its own memory to the peak.
    plain = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    result = subprocess.run([sys.executable, "-c", _BATCH], capture_output=True, text=True, timeout=300,
                            env={**plain, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-2000:]
    peak, worst = result.stdout.split()
    assert int(peak) < 100 * 1024 * 1024, f"peak RSS {int(peak) / 2**20:.0f} MiB"
    assert float(worst) < 2.0, f"slowest load {float(worst):.2f}s"


# ---------------------------------------------------------------------------------------------------------------
# L2: whole-string patterns; L3: paths


def test_a_label_key_with_a_trailing_newline_is_refused_by_the_dockerfile(tmp_path: Path) -> None:
    cfg = config.load(module(tmp_path / "m"))
    hostile = dataclasses.replace(cfg, image=dataclasses.replace(cfg.image, labels={"zz.key\n": "x"}))
    with pytest.raises(ConfigError) as caught:
        dockerfile.render(hostile, Platform.parse("linux/amd64"), "1.0")
    assert caught.value.key.startswith("[image].labels") and "zz.key" in str(caught.value)
    fine = dataclasses.replace(cfg, image=dataclasses.replace(cfg.image, labels={"zz.key": "x"}))
    assert 'zz.key="x"' in "".join(dockerfile.render(fine, Platform.parse("linux/amd64"), "1.0").values())


@pytest.mark.parametrize("value", ["C:foo", "\\foo", "/abs", "a/../../b", "..", "x" * 300])
def test_relative_paths_refuse_drives_roots_and_escapes(value: str) -> None:
    assert config.relative_path_problem(value) != ""


@pytest.mark.parametrize(("folder", "windows", "refused"), [
    ("/", False, True), ("/etc", False, True), ("/etc/cron.d", False, True), ("/var", False, True),
    ("/run", False, True), ("/var/run/x", False, True), ("/usr/local", False, True), ("/proc/self", False, True),
    ("/sys", False, True), ("/var/lib/docker", False, True), ("/root/.ssh", False, True), ("/var/log", False, True),
    ("/var/log/svc", False, False), ("/srv/svc/logs", False, False), ("/tmp/svc-logs", False, False),
    ("C:\\", True, True), ("C:\\Windows", True, True), ("c:\\windows\\system32\\tasks", True, True),
    ("D:\\Program Files", True, True), ("C:\\ProgramData", True, True), ("C:\\ProgramData\\Microsoft\\x", True, True),
    ("C:\\logs\\svc", True, False), ("C:\\ProgramData\\svc", True, False), ("C:\\Program Files\\svc", True, False),
    ("//etc/cron.d", False, True), ("C:\\Windows.\\Tasks", True, True), ("C:\\WINDOW~1\\Tasks", True, True),
    ("C:\\PROGRA~1", True, True), ("C:\\logs:ads", True, True), ("\\\\server\\share\\Windows", True, True),
])
def test_system_folder_rule(folder: str, windows: bool, refused: bool) -> None:
    assert bool(config.system_folder_problem(folder, windows)) is refused


def test_log_folder_never_holds_the_module_or_its_tool_folders(tmp_path: Path) -> None:
    root = module(tmp_path / "m")
    out = root / "dist"
    for folder in (root, tmp_path, root / ".wgobuild", root / ".git" / "hooks", out, out / "powershell"):
        assert config.log_folder_problem(folder, root, out) != "", folder
    assert config.log_folder_problem(root / "logs", root, out) == ""


def test_serve_never_writes_a_log_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.write_text("precious\n")
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "svc.out.log").symlink_to(target)
    with pytest.raises(WgobuildError, match="symbolic link"):
        supervisor.RotatingLog(logs / "svc.out.log", 1024, 2)
    assert target.read_text() == "precious\n"
    log = supervisor.RotatingLog(logs / "svc.err.log", 1024, 2)  # control: a plain file is written
    log.write(b"line\n")
    log.close()
    assert (logs / "svc.err.log").read_bytes() == b"line\n"


# ---------------------------------------------------------------------------------------------------------------
# H2: programs only from absolute PATH folders


def _fake_windows(tmp_path: Path, files: list[str]) -> Callable[[str], bool]:
    """A Windows folder tree under tmp_path: ``C:\\x\\go.exe`` lives at ``tmp_path/C/x/go.exe``."""
    for name in files:
        path = tmp_path / name.replace(":", "").replace("\\", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")

    def is_file(path: str) -> bool:
        return (tmp_path / path.replace(":", "").replace("\\", "/")).is_file()

    return is_file


def test_windows_lookup_never_takes_the_current_folder_or_a_relative_entry(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("go.bat", "go.exe", "git.cmd", "powershell.bat", "powershell.exe"):
        (checkout / name).write_text("")
    monkeypatch.chdir(checkout)
    is_file = _fake_windows(tmp_path, ["C:\\Go\\bin\\go.exe", "C:\\Go\\bin\\go.bat", "bin\\git.exe",
                                       "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
                                       "C:\\tools\\powershell.exe", "C:\\pwsh\\pwsh.exe"])

    def find(name: str, path: str, **env: str) -> str | None:
        def seen(p: str) -> bool:  # the real current folder is consulted as well: it must never be asked for
            return is_file(p) or (p[1:2] != ":" and os.path.isfile(p))
        return programs.find_program(name, os_name="nt", env={"PATH": path, **env}, is_file=seen)

    assert find("go", ".;bin;;C:\\Go\\bin") == "C:\\Go\\bin\\go.exe"
    assert find("go", ".;bin;") is None  # only the current folder and relative entries: nothing
    assert find("go.bat", "C:\\Go\\bin") is None  # batch files are never run by name
    assert find("git", "bin;.") is None
    assert find("powershell", "C:\\tools;.", SystemRoot="C:\\Windows") == (
        "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe")
    assert find("powershell", "C:\\tools", SystemRoot="Windows") is None  # a relative SystemRoot is not trusted
    assert find("pwsh", '"C:\\pwsh";.') == "C:\\pwsh\\pwsh.exe"
    assert find(".\\go.exe", "C:\\Go\\bin") is None and find("C:\\Go\\bin\\go.exe", "") == "C:\\Go\\bin\\go.exe"
    assert programs.trusted_dirs({"PATH": "\\\\server\\share;C:\\a;C:b;\\c;C:\\a"}, "nt") == ["C:\\a"]


def test_posix_lookup_skips_empty_and_relative_path_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    here = tmp_path / "here"
    here.mkdir()
    planted = here / "go"
    planted.write_text("#!/bin/sh\n")
    planted.chmod(0o755)
    monkeypatch.chdir(here)
    if os.name != "nt":
        assert shutil.which("go", path=":" + str(tmp_path / "none")) == "go"  # what the old lookup did
    assert programs.find_program("go", os_name="posix", env={"PATH": ":.:here"}) is None
    assert programs.find_program("go", os_name="posix", env={"PATH": f":{here}"}) == str(planted)


# ---------------------------------------------------------------------------------------------------------------
# H3: what SYSTEM runs


@pytest.mark.parametrize("hook", ["Invoke-Expression", "iex", "Invoke-Command", "icm", "Start-Process", "saps",
                                  "& { Stop-Computer }", ". { x }", "{ x }", "Restart-Service; rm", "a\nb",
                                  "C:\\Windows\\System32\\cmd.exe", "C:\\app\\reopen.ps1", "powershell.exe", "pwsh",
                                  "$x", "Restart-Service|x"])
def test_hooks_refuse_evaluators_script_blocks_and_chaining(hook: str) -> None:
    with pytest.raises(ValueError, match="hook"):
        powershell.hook_command(hook)


def test_hooks_take_a_cmdlet_or_an_exe() -> None:
    assert powershell.hook_command("Restart-Service") == "Restart-Service"
    assert powershell.hook_command("C:/app/reopen.exe") == "C:\\app\\reopen.exe"


@pytest.mark.parametrize(("section", "key", "value"), [
    ("harden", "install_dir", "C:\\Windows\\System32"), ("harden", "log_dir", "C:\\"),
    ("harden", "install_dir", "C:\\" + "a\\" * 600),
    ("logs", "dir", "c:\\windows\\tasks"), ("logs", "post_rotate", "iex"),
])
def test_scripts_refuse_system_folders_and_evaluating_hooks(tmp_path: Path, section: str, key: str,
                                                           value: str) -> None:
    cfg = config.load(module(tmp_path / "m"))
    hostile = dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **{key: value})})
    with pytest.raises(ConfigError) as caught:
        powershell.write_scripts(hostile)
    assert caught.value.key == f"[{section}].{key}"
    assert not (cfg.out_dir / "powershell").exists()


def test_rotate_logs_registers_an_admin_only_hash_checked_copy(tmp_path: Path) -> None:
    cfg = config.load(module(tmp_path / "m"))
    text = powershell.render_all(cfg)["rotate-logs.ps1"]
    register = text[text.index("function Register-Rotation"):text.index("\ntry {")]
    assert "Bypass -File" not in register  # the old task ran the checkout's own file
    assert "CommonApplicationData" in register and "Set-AdminOnly $vault" in register
    assert "Get-FileHash -LiteralPath `$p -Algorithm SHA256).Hash -ne '$hash'" in register
    assert "-EncodedCommand $encoded" in register and "New-ScheduledTaskAction -Execute $exe" in register
    assert register.index("Set-AdminOnly $vault") < register.index("Copy-Item")  # locked before the copy lands
    assert "'/inheritance:r'" in text and "'*S-1-5-18:(OI)(CI)F' '*S-1-5-32-544:(OI)(CI)F'" in text
    assert "Assert-AdminOnly $PostRotate" in text
    service = powershell.render_all(cfg)["service.ps1"]
    assert 'Assert-AdminOnly $BinaryPath "the service $ServiceName"' in service
    harden = powershell.render_all(cfg)["harden.ps1"]
    assert harden.index("    Protect-InstallDir") < harden.index("Set-FolderGrant $InstallDir $sid")
    audit = powershell.render_all(cfg)["audit.ps1"]
    assert "'acl:install-dir-admin-only'" in audit and "@(Get-WritableBy $InstallDir)" in audit
    install = service[service.index("function Install-AppService"):service.index("function Set-BinaryHash")]
    assert "\r\n    Set-BinaryHash\r\n" in install  # recorded on every install
    assert "'service:binary-sha256'" in audit and "[string] $BinaryPath = 'C:\\app\\svc.exe'" in audit


def test_script_parameters_match_the_whole_value(tmp_path: Path) -> None:
    """PowerShell's ``$`` also matches before a final newline, as Python's does: patterns end in ``\\z``."""
    rendered = powershell.render_all(config.load(module(tmp_path / "m")))
    patterns = [line for text in rendered.values() for line in text.splitlines() if "[ValidatePattern(" in line]
    assert len(patterns) >= 10
    assert all(line.rstrip().endswith("\\z')]") and "$|" not in line for line in patterns), patterns


# ---------------------------------------------------------------------------------------------------------------
# M2: `stop` signals only the recorded wgobuild supervisor


@pytest.fixture
def state(tmp_path: Path) -> Path:
    folder = tmp_path / ".wgobuild"
    folder.mkdir(mode=0o700)
    return folder


def _status_for(state: Path, pid: int, cmdline: list[str] | None = None) -> None:
    p = psutil.Process(pid)
    status = {"name": "svc", "state": "running", "supervisor_pid": pid, "supervisor_created": p.create_time(),
              "supervisor_cmdline": p.cmdline() if cmdline is None else cmdline}
    (state / supervisor.STATUS_NAME).write_text(json.dumps(status))


@pytest.fixture
def bystander() -> Iterator[psutil.Popen]:
    child = psutil.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield child
    child.kill()
    child.wait()


def test_stop_never_signals_pid_1(state: Path) -> None:
    status = {"name": "svc", "state": "running", "supervisor_pid": 1, "supervisor_cmdline": ["invoke", "serve"],
              "supervisor_created": psutil.Process(1).create_time() if psutil.pid_exists(1) else 0.0}
    (state / supervisor.STATUS_NAME).write_text(json.dumps(status))
    assert supervisor.read_status(state)["alive"] is False
    assert supervisor.request_stop(state, grace_s=0, wait_s=0.1) == "serve: not running"
    assert supervisor.signal_refusal(json.loads((state / supervisor.STATUS_NAME).read_text())).startswith("pid 1 ")


def test_stop_never_signals_itself_or_an_ancestor(state: Path) -> None:
    _status_for(state, os.getpid())
    message = supervisor.request_stop(state, grace_s=0, wait_s=0.1)
    assert "not signalled: " in message and "this process or one of its ancestors" in message, message
    parent = psutil.Process(os.getppid())
    forged = [sys.executable, "-m", "invoke", "serve"]  # even when its command line looked like a supervisor's
    status = {"supervisor_pid": parent.pid, "supervisor_created": parent.create_time(), "supervisor_cmdline": forged}
    assert supervisor.signal_refusal(status) == f"pid {parent.pid} is this process or one of its ancestors"
    _status_for(state, parent.pid)
    assert supervisor.request_stop(state, grace_s=0, wait_s=0.1) == "serve: not running"
    assert parent.is_running()


def test_stop_never_signals_an_unrelated_process(state: Path, bystander: psutil.Popen) -> None:
    _status_for(state, bystander.pid)  # its real pid, create time and command line
    assert supervisor.read_status(state)["alive"] is False
    assert supervisor.request_stop(state, grace_s=0, wait_s=0.1) == "serve: not running"
    real = json.loads((state / supervisor.STATUS_NAME).read_text())
    assert "is not a wgobuild supervisor" in supervisor.signal_refusal(real)
    _status_for(state, bystander.pid, cmdline=[sys.executable, "-m", "invoke", "serve"])  # a forged command line
    message = supervisor.request_stop(state, grace_s=0, wait_s=0.1)
    assert message == "serve: not running", message
    forged = json.loads((state / supervisor.STATUS_NAME).read_text())
    assert "no longer the recorded supervisor" in supervisor.signal_refusal(forged)
    real["supervisor_created"] -= 5  # a reused pid: same number and command line, another start
    assert "no longer the recorded supervisor" in supervisor.signal_refusal(real)
    time.sleep(0.2)
    assert bystander.is_running() and bystander.status() != psutil.STATUS_ZOMBIE


def test_a_boot_time_step_of_one_second_is_still_the_recorded_process(state: Path, bystander: psutil.Popen,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """psutil adds the kernel's boot time (whole seconds, moved by a VM's clock sync now and then) to the start;
    a one-second step must not make a running supervisor look gone, another start must. The kernel's answer is held
    still here: this machine's own boot time steps too, which would add a second step of its own."""
    _status_for(state, bystander.pid)
    recorded = json.loads((state / supervisor.STATUS_NAME).read_text())
    monkeypatch.setattr(psutil.Process, "create_time", lambda self: recorded["supervisor_created"])
    for step, same in ((1.0, True), (-1.0, True), (0.5, False), (2.0, False)):
        shifted = {**recorded, "supervisor_created": recorded["supervisor_created"] + step}
        refusal = supervisor.signal_refusal(shifted)
        assert ("no longer the recorded supervisor" not in refusal) is same, (step, refusal)


def test_stop_signals_a_recorded_wgobuild_supervisor(state: Path) -> None:
    """Control: the checks do let a real, stuck supervisor be killed."""
    stuck = psutil.Popen([sys.executable, "-c", "import time, wgobuild; time.sleep(60)"],
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        _wait_for(lambda: "wgobuild" in " ".join(stuck.cmdline()))
        _status_for(state, stuck.pid)
        message = supervisor.request_stop(state, grace_s=0, wait_s=0.1)
        assert message.endswith("killed it and its tree"), message
        stuck.wait(10)
    finally:
        with contextlib.suppress(psutil.Error):
            stuck.kill()


def _wait_for(cond: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.mark.skipif(os.name == "nt", reason="POSIX modes and owners; Windows relies on the module's ACL")
def test_state_folder_is_private(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o777)
    with pytest.raises(WgobuildError, match="writable by group or others"):
        supervisor.read_status(loose)
    tight = tmp_path / "tight"
    tight.mkdir()
    tight.chmod(0o755)
    supervisor.secure_state_dir(tight)
    assert tight.stat().st_mode & 0o777 == 0o700
    made = tmp_path / "made" / ".wgobuild"
    supervisor.secure_state_dir(made, create=True)
    assert made.stat().st_mode & 0o777 == 0o700
    if os.geteuid() == 0:  # only root can hand a folder to another user
        foreign = tmp_path / "foreign"
        foreign.mkdir(mode=0o700)
        os.chown(foreign, 65534, 65534)
        with pytest.raises(WgobuildError, match="belongs to uid 65534"):
            supervisor.read_status(foreign)
