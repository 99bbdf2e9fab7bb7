"""The test kit as users run it: the example test files of docs/testing.md (a Django view's
test, FastAPI routes' tests; examples/) run by pytest in a process of their own, with the kit
loaded as an installed plugin (the ``pytest11`` entry point), and each must pass."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.timing import TIMEOUT_FACTOR
from tests.support.webapps import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"


def run_pytest(folder: Path) -> str:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TIDINGS_", "DJANGO_", "PYTEST_"))}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                          cwd=folder, env=env, capture_output=True, text=True,
                          timeout=120 * TIMEOUT_FACTOR, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.parametrize("folder", ["django_app", "fastapi_app"])
def test_the_documented_example_tests_pass(folder: str) -> None:
    out = run_pytest(EXAMPLES / folder)
    assert re.search(r"^3 passed", out, re.M), out


def test_the_plugin_is_registered_under_its_entry_point() -> None:
    from importlib.metadata import entry_points

    (plugin,) = [ep for ep in entry_points(group="pytest11") if ep.name == "tidings"]
    assert plugin.value == "tidings.testing.plugin"
