"""The live-comments example's docker-compose.yml (which cannot run here: no Docker engine) kept
consistent with what ``./run`` runs (stack.py, exercised by tests/e2e/test_live_comments.py):

- the YAML parses and has every service of the stack;
- each Tidings node gets, from its environment over tidings.json, the same config as stack.py's
  nodes, but for the addresses (and both are valid configs);
- the site's containers get every setting stack.py gives gunicorn, and settings.py reads each;
- nginx's template names exactly the placeholders both fill in;
- the files the Dockerfile copies exist.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.livecomments import EXAMPLE, Stack
from tidings.config import config_to_dict, load_config

COMPOSE = EXAMPLE / "docker-compose.yml"
SERVICES = {"postgres", "redis", "setup", "web1", "web2", "tidings1", "tidings2", "nginx"}
# What may differ between the file and a deployment: where things are, and who the node is.
ADDRESSES = [("node", "name"), ("http_server", "port"), ("engine", "redis", "address"),
             ("client", "proxy", "connect", "endpoint"),
             ("channel", "proxy", "publish", "endpoint")]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def env_of(compose: dict[str, Any], service: str) -> dict[str, str]:
    env = compose["services"][service]["environment"]
    assert all(isinstance(v, str) for v in env.values()), env  # quoted, as Docker wants
    return dict(env)


def without_addresses(env: dict[str, str]) -> dict[str, Any]:
    config, warnings = load_config(EXAMPLE / "tidings.json", env=env)
    assert warnings == []
    raw = config_to_dict(config)
    for path in ADDRESSES:
        parent = raw
        for key in path[:-1]:
            parent = parent[key]
        parent.pop(path[-1], None)
    for consumer in raw["consumers"]:
        consumer["postgresql"].pop("dsn")
    return raw


def test_compose_has_the_whole_stack(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == SERVICES
    assert compose["services"]["nginx"]["ports"] == ["8080:80"]


@pytest.mark.parametrize("node", [0, 1])
def test_tidings_nodes_get_the_same_config_as_the_run_script(
        compose: dict[str, Any], node: int, tmp_path: Path) -> None:
    service = f"tidings{node + 1}"
    compose_env = env_of(compose, service)
    stack_env = Stack(tmp_path).tidings_env(node)
    assert compose_env["TIDINGS_NODE_NAME"] == stack_env["TIDINGS_NODE_NAME"] == service
    from_compose, from_stack = without_addresses(compose_env), without_addresses(stack_env)
    assert from_compose == from_stack == without_addresses({})
    config, _ = load_config(EXAMPLE / "tidings.json", env=compose_env)
    assert config.consumers[0].postgresql.dsn.endswith("@postgres:5432/live_comments")
    assert config.engine.redis.address == ["redis://redis:6379"]


def test_the_site_gets_every_setting_of_the_run_script(
        compose: dict[str, Any], tmp_path: Path) -> None:
    settings = (EXAMPLE / "livecomments" / "settings.py").read_text()
    read = {f"LIVE_COMMENTS_{name}" for name in re.findall(r'env\("([A-Z_]+)"', settings)}
    read |= {"LIVE_COMMENTS_STATE_DIR", "DJANGO_SETTINGS_MODULE"}
    stack_env = set(Stack(tmp_path).django_env()) - {"LIVE_COMMENTS_STATE_DIR"}
    for service in ("setup", "web1", "web2"):
        env = set(env_of(compose, service))
        assert stack_env <= env, stack_env - env
        assert env <= read, env - read  # nothing settings.py ignores
    partitions = re.search(r'TIDINGS_OUTBOX = \{"num_partitions": (\d+)\}', settings)
    config, _ = load_config(EXAMPLE / "tidings.json", env={})
    assert partitions is not None
    assert int(partitions.group(1)) == config.consumers[0].postgresql.num_partitions


def test_nginx_template_placeholders_are_filled_by_both(
        compose: dict[str, Any], tmp_path: Path) -> None:
    template = (EXAMPLE / "nginx.conf.template").read_text()
    names = set(re.findall(r"\$\{(LC_[A-Z0-9_]+)\}", template))
    env = env_of(compose, "nginx")
    assert {k for k in env if k.startswith("LC_")} == names
    rendered = Stack(tmp_path).nginx_conf()
    assert "${LC_" not in rendered and "$http_upgrade" in rendered


def test_dockerfile_copies_what_exists() -> None:
    dockerfile = (EXAMPLE / "Dockerfile").read_text()
    root = EXAMPLE.parents[1]
    sources = re.findall(r"^COPY (?!--)(\S+)", dockerfile, re.M)
    assert sources, dockerfile
    for source in sources:
        assert (root / source).exists(), source
