"""deploy/docker/Dockerfile, read statically: a slim Python base, the wheel built in a builder
stage and installed (never editable), a non-root user, the port, a health check on /health
without curl, a graceful stop, and the server on 0.0.0.0 inside the container."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, ...
    args: str  # continuation lines joined
    stage: int  # 0 for the first FROM's stage, then 1, ...


def parse(text: str) -> list[Instruction]:
    """The instructions, with ``\\`` continuations joined and comments dropped."""
    out: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        keyword, _, args = full.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(keyword, args.strip(), stage))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse(DOCKERFILE.read_text(encoding="utf-8"))


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def base_images(instructions: list[Instruction]) -> list[str]:
    """Each FROM's image with ``${ARG}`` defaults (global ARGs) filled in."""
    defaults = {}
    for ins in instructions:
        if ins.stage == -1 and ins.keyword == "ARG" and "=" in ins.args:
            name, _, value = ins.args.partition("=")
            defaults[name] = value
    images = []
    for ins in instructions:
        if ins.keyword == "FROM":
            image = ins.args.split()[0]
            images.append(re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], image))
    return images


def test_bases_are_slim_python_311(instructions: list[Instruction]) -> None:
    images = base_images(instructions)
    assert len(images) >= 2, "a builder stage and the final stage"
    assert all(re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", image) for image in images), images


def test_builder_builds_a_wheel_and_installs_it_not_editable(
    instructions: list[Instruction],
) -> None:
    runs = " ".join(i.args for i in instructions if i.keyword == "RUN")
    assert "python -m build --wheel" in runs
    installs = re.findall(r"pip install ([^&;]+)", runs)
    assert any(".whl" in a for a in installs), installs
    assert not any(re.search(r"(^|\s)(-e|--editable)(\s|$)", a) for a in installs), installs
    final = final_stage(instructions)
    assert not any("/src" in i.args and i.keyword == "COPY" and "--from" not in i.args
                   for i in final), "the final stage copies the venv, not the sources"
    assert any(i.keyword == "COPY" and i.args.startswith("--from=") for i in final)


def test_runs_as_a_non_root_user(instructions: list[Instruction]) -> None:
    users = [i.args for i in final_stage(instructions) if i.keyword == "USER"]
    assert users, "no USER in the final stage"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert users[-1] == "tidings"
    runs = " ".join(i.args for i in final_stage(instructions) if i.keyword == "RUN")
    assert re.search(r"useradd\b.*\btidings\b", runs), "the user is created"


def test_exposes_8000_and_listens_on_all_addresses(instructions: list[Instruction]) -> None:
    final = final_stage(instructions)
    assert any("8000" in i.args.split() for i in final if i.keyword == "EXPOSE")
    env = " ".join(i.args for i in final if i.keyword == "ENV")
    assert re.search(r"\bTIDINGS_HTTP_SERVER_ADDRESS=0\.0\.0\.0\b", env), env


def test_health_check_asks_health_with_urllib(instructions: list[Instruction]) -> None:
    [check] = [i.args for i in final_stage(instructions) if i.keyword == "HEALTHCHECK"]
    options, _, command = check.partition("CMD ")
    assert command, check
    argv = json.loads(command)  # exec form: no shell needed
    assert argv[:2] == ["python", "-c"], argv
    code = argv[2]
    compile(code, "HEALTHCHECK", "exec")  # valid Python
    assert "urllib.request.urlopen" in code and "/health" in code
    assert "curl" not in check
    assert "--timeout=" in options


def test_stops_with_sigterm_and_serves_the_config_file(instructions: list[Instruction]) -> None:
    final = final_stage(instructions)
    assert [i.args for i in final if i.keyword == "STOPSIGNAL"] == ["SIGTERM"]
    [entrypoint] = [json.loads(i.args) for i in final if i.keyword == "ENTRYPOINT"]
    [cmd] = [json.loads(i.args) for i in final if i.keyword == "CMD"]
    argv = [*entrypoint, *cmd]  # exec form: the server is PID 1 and gets the signal itself
    assert argv == ["tidings", "serve", "--config", "/etc/tidings/config.json"], argv
    runs = " ".join(i.args for i in final if i.keyword == "RUN")
    assert "/etc/tidings/config.json" in runs, "the image ships a config file to mount over"


def test_copies_only_what_the_build_needs(instructions: list[Instruction]) -> None:
    sources = {word for i in instructions if i.keyword == "COPY" and "--from" not in i.args
               for word in shlex.split(i.args)[:-1]}
    assert sources == {"pyproject.toml", "README.md", "src"}, sources
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert "*" in ignore and {"!pyproject.toml", "!README.md", "!src/"} <= set(ignore)
