"""The DEB and RPM packages that ``packaging/build.py`` builds.

The DEB is installed with apt on this machine, its service started the way the unit starts it
(as the ``tidings`` user, with the generated keys), stopped with SIGTERM and purged; the test then
checks that the machine is as it was. The RPM cannot be installed on Debian: its file list,
scriptlets and requirements are read with ``rpm -qp``.

Needs Debian, root, dpkg-deb and rpmbuild (scripts/test installs ``rpm``), and a machine without
the package or a ``tidings`` user. Anything else fails with the reason: this test changes the
system, so it refuses rather than guesses.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.redisproc import free_port
from tests.support.timing import TIMEOUT_FACTOR, T

REPO = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT = 900 * TIMEOUT_FACTOR  # pip downloads the dependencies; about 1 minute here
APT_TIMEOUT = 300 * TIMEOUT_FACTOR
UNIT = "/lib/systemd/system/tidings.service"
INSTALLED = ["/opt/tidings", "/usr/bin/tidings", "/etc/tidings", UNIT]
# What deb-systemd-helper writes when it enables or masks the unit: purge must undo it.
SYSTEMD_STATE = [Path("/etc/systemd/system"), Path("/var/lib/systemd/deb-systemd-helper-enabled"),
                 Path("/var/lib/systemd/deb-systemd-helper-masked")]


def _run(cmd: list[str], *, timeout: float = 60 * TIMEOUT_FACTOR,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and done.returncode != 0:
        pytest.fail(f"{shlex.join(cmd)} exited with {done.returncode}:\n"
                    f"{done.stdout}\n{done.stderr}")
    return done


def _dpkg_status(package: str) -> str:
    """``install ok installed``, ``deinstall ok config-files``, ... or "" when unknown."""
    done = _run(["dpkg-query", "-W", "-f", "${Status}", package], check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _systemd_state() -> set[str]:
    entries: set[str] = set()
    for top in SYSTEMD_STATE:
        if top.exists():
            entries.add(str(top))
            entries.update(str(p) for p in top.rglob("*"))
    return entries


def _require_machine() -> None:
    """Fail (not skip) with the reason when this machine cannot run the test safely."""
    problems = []
    if not Path("/etc/debian_version").exists():
        problems.append("not a Debian system (no /etc/debian_version)")
    if os.geteuid() != 0:
        problems.append("not running as root (the test installs a package)")
    for tool in ("dpkg-deb", "rpmbuild", "rpm", "apt-get", "setpriv"):
        if shutil.which(tool) is None:
            problems.append(f"{tool} is missing (scripts/test installs it)")
    if problems:
        pytest.fail("cannot test the packages: " + "; ".join(problems))
    if _dpkg_status("tidings"):
        pytest.fail(f"the tidings package is already known to dpkg ({_dpkg_status('tidings')}); "
                    "remove it first: apt-get remove --purge tidings")
    if _user_exists("tidings") or _group_exists("tidings"):
        pytest.fail("a tidings user or group exists already; the test would remove it")
    present = [p for p in INSTALLED if os.path.lexists(p)]
    if present:
        pytest.fail(f"already present, the package would take them over: {present}")


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    _require_machine()
    out = tmp_path_factory.mktemp("packages")
    done = _run([sys.executable, str(REPO / "packaging/build.py"), "--out", str(out)],
                timeout=BUILD_TIMEOUT)
    built = {p.suffix: p for p in out.iterdir()}
    assert set(built) == {".deb", ".rpm"}, done.stdout
    yield built


def _depends(deb: Path) -> list[str]:
    field = _run(["dpkg-deb", "-f", str(deb), "Depends"]).stdout
    return [dep.strip().split()[0] for dep in field.split(",")]


def _unit(path: str) -> dict[str, str]:
    settings = {}
    for line in Path(path).read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            settings[key.strip()] = value.strip()
    return settings


def _env_file(path: str) -> dict[str, str]:
    env = {}
    for line in Path(path).read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    return env


def _http(url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None,
          ) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=T) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait_health(proc: subprocess.Popen[bytes], url: str, log: Path) -> bytes:
    deadline = time.monotonic() + 4 * T
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            status, body = _http(url)
        except OSError:  # not listening yet
            time.sleep(0.1)
            continue
        assert status == 200, body
        return body
    pytest.fail(f"no answer from {url} within {4 * T} s:\n{log.read_text()}")


def _serve_as_the_unit_does(tmp_path: Path) -> None:
    """Start the unit's ExecStart as its User with its EnvironmentFile, on a free port; check
    /health and the API key; stop it with the unit's KillSignal."""
    unit = _unit(UNIT)
    assert unit["ExecStart"] == "/usr/bin/tidings serve --config /etc/tidings/config.json"
    assert unit["User"] == "tidings"
    assert unit["KillSignal"] == "SIGTERM"
    env_file = unit["EnvironmentFile"].removeprefix("-")
    secrets = _env_file(env_file)
    port = free_port()
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", **secrets,
           "TIDINGS_HTTP_SERVER_PORT": str(port)}
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["setpriv", "--reuid=tidings", "--regid=tidings", "--init-groups", "--",
             *shlex.split(unit["ExecStart"])],
            env=env, cwd="/", stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        assert json.loads(_wait_health(proc, f"{base}/health", log)) == {}
        uid = Path(f"/proc/{proc.pid}/status").read_text().split("\nUid:")[1].split()[0]
        assert int(uid) == pwd.getpwnam("tidings").pw_uid
        # The generated key reaches the server: the API takes it and refuses another one.
        good = {"X-API-Key": secrets["TIDINGS_HTTP_API_KEY"], "Content-Type": "application/json"}
        assert _http(f"{base}/api/info", data=b"{}", headers=good)[0] == 200
        bad = {**good, "X-API-Key": "not-the-key"}
        assert _http(f"{base}/api/info", data=b"{}", headers=bad)[0] == 401
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=int(unit["TimeoutStopSec"])) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_deb_installs_serves_and_purges(packages: dict[str, Path], tmp_path: Path) -> None:
    deb = packages[".deb"]
    # apt must install the package alone: a dependency it pulled in would stay after the purge.
    missing = [dep for dep in _depends(deb) if _dpkg_status(dep) != "install ok installed"]
    if missing:
        pytest.fail(f"install {missing} first: the test must not leave them behind")
    systemd_before = _systemd_state()
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=120", "-y", "-q"]
    try:
        _run([*apt, "install", "--no-install-recommends", str(deb)], timeout=APT_TIMEOUT)
        assert _dpkg_status("tidings") == "install ok installed"

        assert os.readlink("/usr/bin/tidings") == "/opt/tidings/bin/tidings"
        assert Path("/opt/tidings/bin/python").resolve().parent == Path("/usr/bin")
        conffiles = _run(["dpkg-query", "-W", "-f", "${Conffiles}", "tidings"]).stdout
        assert "/etc/tidings/config.json" in conffiles
        config = json.loads(Path("/etc/tidings/config.json").read_text())
        assert config["engine"]["type"] == "memory"
        assert config["http_server"] == {"address": "127.0.0.1", "port": 8000}

        user = pwd.getpwnam("tidings")
        assert user.pw_uid < 1000, "not a system user"
        assert user.pw_gid == grp.getgrnam("tidings").gr_gid
        assert not Path(user.pw_dir).exists()
        secrets = os.stat("/etc/tidings/secrets.env")
        assert (secrets.st_uid, secrets.st_gid) == (0, user.pw_gid)
        assert stat.S_IMODE(secrets.st_mode) == 0o640
        keys = _env_file("/etc/tidings/secrets.env")
        assert set(keys) == {"TIDINGS_CLIENT_TOKEN_HMAC_SECRET_KEY", "TIDINGS_HTTP_API_KEY"}
        assert all(len(v) >= 32 for v in keys.values())

        unit = _unit(UNIT)
        assert unit["Restart"] == "on-failure"
        assert unit["LimitNOFILE"] == "1048576"
        assert unit["TimeoutStopSec"] == "35"
        assert unit["AmbientCapabilities"] == ""

        assert "serve" in _run(["/usr/bin/tidings", "--help"]).stdout
        # The shipped config with the generated keys: valid, and no warning (unknown keys).
        check = subprocess.run(
            ["/usr/bin/tidings", "checkconfig", "--config", "/etc/tidings/config.json"],
            env={"PATH": os.environ["PATH"], **keys}, capture_output=True, text=True,
            timeout=60 * TIMEOUT_FACTOR,
        )
        assert (check.returncode, check.stderr) == (0, ""), check.stdout
        _serve_as_the_unit_does(tmp_path)
    finally:
        if _dpkg_status("tidings"):
            _run([*apt, "remove", "--purge", "tidings"], timeout=APT_TIMEOUT)

    assert _dpkg_status("tidings") == ""
    assert [p for p in INSTALLED if os.path.lexists(p)] == []
    assert not _user_exists("tidings")
    assert not _group_exists("tidings")
    assert _systemd_state() == systemd_before


def test_rpm_layout_scripts_and_requirements(packages: dict[str, Path]) -> None:
    rpm = str(packages[".rpm"])
    files = set(_run(["rpm", "-qlp", rpm]).stdout.splitlines())
    assert {"/opt/tidings/bin/tidings", "/opt/tidings/pyvenv.cfg", "/usr/bin/tidings",
            "/etc/tidings/config.json", "/usr/lib/systemd/system/tidings.service"} <= files
    query = ["rpm", "-qp", "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]", rpm]
    flags = dict(line.partition(" ")[::2] for line in _run(query).stdout.splitlines())
    assert flags["/etc/tidings/config.json"] == "cn"  # %config(noreplace)
    scripts = _run(["rpm", "-qp", "--scripts", rpm]).stdout
    assert "useradd -r -g tidings" in scripts
    assert "groupadd -r tidings" in scripts
    assert "TIDINGS_HTTP_API_KEY" in scripts
    requires = _run(["rpm", "-qp", "--requires", rpm]).stdout.split()
    # The venv links to the build machine's interpreter, by its versioned path.
    python = os.path.realpath("/usr/bin/python3")
    assert python in requires
    # AutoReqProv: no -- the venv's libraries are not offered to or taken from the system.
    assert not [r for r in requires if r.startswith(("lib", "python3dist", "python(abi)"))]
