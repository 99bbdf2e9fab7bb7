"""The release artefacts: ``python -m build`` makes an sdist and a wheel holding every file of the
package, and the wheel installed in a fresh venv (dependencies from the index) serves.

The build runs on a copy of the source tree in a temp dir, so no ``build/``, ``dist/`` or
``*.egg-info`` lands in the checkout. One build and one venv serve the whole module (~20-30 s
with a warm pip cache).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.support.raw import json_websocket
from tests.support.server import API_KEY, SECRET, make_token, start_server
from tests.support.timing import TIMEOUT_FACTOR

ROOT = Path(__file__).resolve().parents[2]
# What a build reads: the project table, the readme it names, the sources.
SOURCES = ("pyproject.toml", "README.md", "src")
BUILD_TIMEOUT = 180 * TIMEOUT_FACTOR  # cold caches fetch setuptools and the dependencies


@dataclass(frozen=True)
class Built:
    tree: Path  # the copy of the sources the artefacts were built from
    sdist: Path
    wheel: Path
    venv: Path  # the wheel installed, with its dependencies

    @property
    def tidings(self) -> Path:
        return self.venv / "bin" / "tidings"


def package_files(package: Path) -> set[str]:
    """Every file of ``package`` (a ``.../tidings`` folder) as ``tidings/...``, caches and
    bytecode left out."""
    return {
        path.relative_to(package.parent).as_posix()
        for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def run(cmd: list[str], *, cwd: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TIDINGS_", "PYTHONPATH", "PIP_REQUIRE_VIRTUALENV"))}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    tmp = tmp_path_factory.mktemp("wheel")
    tree = tmp / "tree"
    tree.mkdir()
    for name in SOURCES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tree / name, ignore=shutil.ignore_patterns(
                "__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(src, tree / name)
    before = {p.name for p in ROOT.iterdir()}
    dist = tmp / "dist"
    # sdist first, then the wheel built from the unpacked sdist: both artefacts are checked
    run([sys.executable, "-m", "build", "--outdir", str(dist), str(tree)], cwd=tmp)
    assert {p.name for p in ROOT.iterdir()} == before, "the build wrote into the checkout"
    [sdist] = dist.glob("tidings-*.tar.gz")
    [wheel] = dist.glob("tidings-*.whl")
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp)
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", str(wheel)], cwd=tmp)
    yield Built(tree, sdist, wheel, venv)


def test_dists_hold_every_package_file(built: Built) -> None:
    # the copy, not the checkout: files others add meanwhile are not in this build
    wanted = package_files(built.tree / "src" / "tidings")
    assert "tidings/py.typed" in wanted
    in_wheel = {n for n in zipfile.ZipFile(built.wheel).namelist() if n.startswith("tidings/")}
    assert wanted - in_wheel == set(), "files missing from the wheel (package-data?)"
    with tarfile.open(built.sdist) as sdist:
        root = sdist.getnames()[0].split("/")[0]  # tidings-VERSION
        in_sdist = {n.removeprefix(f"{root}/src/") for n in sdist.getnames()}
    assert wanted - in_sdist == set(), "files missing from the sdist"
    [entry_points] = [n for n in zipfile.ZipFile(built.wheel).namelist()
                      if n.endswith(".dist-info/entry_points.txt")]
    assert "tidings = tidings.cli:main" in zipfile.ZipFile(built.wheel).read(entry_points).decode()


def test_installed_package_is_the_wheel(built: Built) -> None:
    # not the checkout's src/ (an editable install or PYTHONPATH would hide a missing file)
    done = subprocess.run(
        [str(built.venv / "bin" / "python"), "-c",
         "import importlib.resources as r, tidings; print(tidings.__file__); "
         "print(r.files('tidings').joinpath('py.typed').is_file())"],
        capture_output=True, text=True, timeout=30 * TIMEOUT_FACTOR, cwd=built.venv,
        env={"PATH": os.environ.get("PATH", "")},
    )
    assert done.returncode == 0, done.stderr
    location, has_marker = done.stdout.split()
    assert Path(location).is_relative_to(built.venv / "lib"), location
    assert has_marker == "True"


async def test_installed_wheel_serves(built: Built, tmp_path: Path) -> None:
    config = {"client": {"token": {"hmac_secret_key": SECRET}}, "http_api": {"key": API_KEY}}
    server = start_server(tmp_path, config, program=[str(built.tidings)],
                          env_vars={"PYTHONPATH": ""})
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{server.http_url}/health") as r:
                assert r.status == 200
                assert await r.json() == {}
            async with http.post(f"{server.api_url}/info", json={},
                                 headers={"X-API-Key": API_KEY}) as r:
                assert r.status == 200
                assert len((await r.json())["result"]["nodes"]) == 1
        async with json_websocket(server.ws_url, token=make_token("42")) as ws:
            # a command after connect, answered: 108 "not available" (no RPC hook configured)
            reply = await ws.command(rpc={"method": "nothing"})
            assert reply["error"]["code"] == 108, reply
    finally:
        code = server.stop()  # SIGTERM to its PID: a graceful shutdown
    assert code == 0, server.log_text()
