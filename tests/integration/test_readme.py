"""The README says what works: its layout names files that exist, the quick-start config is
valid, and the "Try it" snippet runs as written against a server started with that config."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from tests.support.server import ServerFactory

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _block_after(marker: str) -> str:
    start = README.index(marker)
    return README[start:].split("```sh\n", 1)[1].split("```", 1)[0]


def test_layout_names_what_exists() -> None:
    layout = README.split("## Layout", 1)[1].split("```", 2)[1]
    for folder in ("config", "protocol", "core", "proxy", "hooks", "engine", "transports",
                   "api", "metrics"):
        assert f"  {folder}/" in layout and (ROOT / "src" / "tidings" / folder).is_dir()
    for path in ("deploy/grafana", "deploy/docker", "packaging", "docs/production.md",
                 "docs/errors.md", "docs/monitoring.md", "LICENSE", "CHANGELOG.md"):
        assert (ROOT / path).exists(), path


def test_quickstart_config_is_valid_and_enables_what_the_readme_shows() -> None:
    run = subprocess.run([sys.executable, "-m", "tidings", "checkconfig", "--config",
                          str(ROOT / "examples" / "quickstart.json")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "config is valid" in run.stdout, run.stderr
    assert "uni_sse" in README  # the README shows an EventSource on uni_sse ...
    assert '"uni_sse": {"enabled": true}' in (ROOT / "examples" / "quickstart.json").read_text()


def test_try_it_snippet_runs_as_written(tidings_server: ServerFactory) -> None:
    import json

    config = json.loads((ROOT / "examples" / "quickstart.json").read_text())
    server = tidings_server(config=config)
    snippet = _block_after("Try it with the quick-start config")
    lines = [line.split("  #", 1)[0].strip() for line in snippet.replace("\\\n", " ").splitlines()]
    gentoken, curl = [line for line in lines if line]
    argv = shlex.split(gentoken)
    assert argv[0].endswith("tidings") and argv[1] == "gentoken"
    token = subprocess.run([sys.executable, "-m", "tidings", *argv[1:]], cwd=ROOT,
                           capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", token.splitlines()[-1]), token
    curl = curl.replace("http://127.0.0.1:8000", server.http_url)
    answer = subprocess.run(shlex.split(curl), capture_output=True, text=True, timeout=60,
                            check=True).stdout
    assert "result" in json.loads(answer), answer
