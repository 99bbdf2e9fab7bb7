"""The admin's pure parts: login tokens (Centrifugo's format), the wrong-password throttle, the
admin config checks, which paths are the admin's and which files the UI may serve."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import pytest

from tidings.admin.assets import Assets, relative_name
from tidings.admin.auth import (
    MAX_AGE,
    Throttle,
    address_key,
    make_token,
    password_matches,
    token_valid,
)
from tidings.admin.endpoints import subpath
from tidings.config import ConfigError, config_from_dict
from tidings.config.adminschema import AdminConfig
from tidings.core.conninfo import DEFAULT_LIMIT, MAX_LIMIT, limit_of

SECRET = "0123456789abcdef0123456789abcdef"
NOW = 1_800_000_000.0


def test_token_is_centrifugos_securecookie_layout() -> None:
    token = make_token(SECRET, now=NOW)
    ts, value, mac = base64.urlsafe_b64decode(token).split(b"|", 2)
    assert ts == b"1800000000"
    assert base64.urlsafe_b64decode(value) == b"\x0d\x0c\x00\x0aauthorized"  # gob("authorized")
    expected = hmac.new(SECRET.encode(), b"token|" + ts + b"|" + value, hashlib.sha256).digest()
    assert mac == expected
    assert token_valid(token, SECRET, now=NOW)


def test_token_expires_and_needs_the_secret() -> None:
    token = make_token(SECRET, now=NOW)
    assert token_valid(token, SECRET, now=NOW + MAX_AGE - 1)
    assert not token_valid(token, SECRET, now=NOW + MAX_AGE + 1)
    assert not token_valid(token, SECRET, now=NOW - 3600)  # issued an hour in the future
    assert not token_valid(token, SECRET + "x", now=NOW)
    assert not token_valid(token, "", now=NOW)
    assert not token_valid(make_token("", now=NOW), "", now=NOW)


@pytest.mark.parametrize("token", [
    "", "x", "not base64 !!", base64.urlsafe_b64encode(b"1800000000|abc").decode(),
    base64.urlsafe_b64encode(b"-1|abc|def").decode(), "é" * 10, "A" * 5000,
])
def test_malformed_tokens_are_refused(token: str) -> None:
    assert not token_valid(token, SECRET, now=NOW)


def test_a_token_with_another_value_or_time_is_refused() -> None:
    ts, value, mac = base64.urlsafe_b64decode(make_token(SECRET, now=NOW)).split(b"|", 2)
    other_value = base64.urlsafe_b64encode(b"\x0d\x0c\x00\x0aauthorizee")
    for forged in (b"1900000000|" + value + b"|" + mac, ts + b"|" + other_value + b"|" + mac):
        assert not token_valid(base64.urlsafe_b64encode(forged).decode(), SECRET, now=NOW)
    # Signed right but not "authorized": refused too.
    other = base64.urlsafe_b64encode(b"\x0a\x0c\x00\x07nobody!")
    signed = hmac.new(SECRET.encode(), b"token|" + ts + b"|" + other, hashlib.sha256).digest()
    token = base64.urlsafe_b64encode(ts + b"|" + other + b"|" + signed).decode()
    assert not token_valid(token, SECRET, now=NOW)


def test_password_matches_only_the_password() -> None:
    assert password_matches("hunter2 but longer", "hunter2 but longer")
    assert not password_matches("hunter2", "hunter2 but longer")
    assert not password_matches("", "")
    assert not password_matches("x", "")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_throttle_waits_double_after_the_free_failures() -> None:
    clock = Clock()
    throttle = Throttle(clock=clock)
    for _ in range(Throttle.FREE - 1):
        throttle.failed("10.0.0.1")
        assert throttle.wait("10.0.0.1") == 0
    throttle.failed("10.0.0.1")
    assert throttle.wait("10.0.0.1") == Throttle.BASE_DELAY
    assert throttle.wait("10.0.0.2") == 0  # others are not held up
    clock.now += Throttle.BASE_DELAY
    assert throttle.wait("10.0.0.1") == 0
    throttle.failed("10.0.0.1")
    assert throttle.wait("10.0.0.1") == 2 * Throttle.BASE_DELAY
    for _ in range(20):
        throttle.failed("10.0.0.1")
    assert throttle.wait("10.0.0.1") == Throttle.MAX_DELAY
    throttle.succeeded("10.0.0.1")
    assert throttle.wait("10.0.0.1") == 0


def test_throttle_forgets_and_stays_bounded() -> None:
    clock = Clock()
    throttle = Throttle(clock=clock, max_entries=3, forget_after=60)
    for _ in range(Throttle.FREE):
        throttle.failed("10.0.0.1")
    clock.now += 61
    assert throttle.wait("10.0.0.1") == 0 and len(throttle) == 0
    for i in range(10):
        throttle.failed(f"10.0.1.{i}")
    assert len(throttle) == 3


def test_addresses_are_counted_per_host() -> None:
    assert address_key("2001:db8::1") == address_key("2001:db8::ffff") == "2001:db8::/64"
    assert address_key("::ffff:10.1.2.3") == "10.1.2.3"
    assert address_key("10.1.2.3") == "10.1.2.3"
    assert address_key("") == ""


@pytest.mark.parametrize(("admin", "problem"), [
    ({"enabled": True}, "'admin.password' is required"),
    ({"enabled": True, "password": "p"}, "'admin.secret' is required"),
    ({"enabled": True, "password": "p", "secret": "s", "handler_prefix": "admin"},
     "admin.handler_prefix"),
    ({"enabled": True, "insecure": True, "handler_prefix": "/api"}, "admin.handler_prefix"),
    ({"enabled": True, "insecure": True, "handler_prefix": "/connection/x"},
     "admin.handler_prefix"),
    ({"enabled": True, "insecure": True, "web_path": "/no/such/dir"}, "admin.web_path"),
    ({"enabled": True, "insecure": True, "web_proxy_address": "http://x"},
     "admin.web_proxy_address"),
])
def test_admin_config_errors_name_the_key(admin: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem.replace(".", r"\.")):
        config_from_dict({"admin": admin})


def test_admin_config_warnings() -> None:
    _, warnings = config_from_dict({"admin": {"enabled": True, "insecure": True}})
    assert any("admin.insecure is on" in w for w in warnings)
    _, warnings = config_from_dict({"admin": {"enabled": True, "password": "short",
                                              "secret": "short"}})
    assert any("admin.secret is shorter" in w for w in warnings)
    _, warnings = config_from_dict({"admin": {"enabled": True, "password": "x" * 20,
                                              "secret": "y" * 40, "handler_prefix": "/ops/"}})
    assert not [w for w in warnings if "admin" in w]
    # Off: nothing is checked.
    config, warnings = config_from_dict({"admin": {"insecure": True}})
    assert not config.admin.enabled and not warnings


def test_subpath_is_the_path_under_the_prefix() -> None:
    root = AdminConfig(enabled=True)
    assert subpath(root, "/admin/api") == "/admin/api"
    ops = AdminConfig(enabled=True, handler_prefix="/ops/")
    assert subpath(ops, "/ops/admin/api") == "/admin/api"
    assert subpath(ops, "/ops/") == "/"
    assert subpath(ops, "/ops") == ""
    assert subpath(ops, "/opsx/admin/api") is None
    assert subpath(ops, "/admin/api") is None


@pytest.mark.parametrize(("path", "name"), [
    ("/", "index.html"), ("", "index.html"), ("/js/app.js", "js/app.js"),
    ("/js/", "js/index.html"), ("/../secret", None), ("/js/../../x", None),
    ("/%2e%2e/x", None), ("/.env", None), ("/a//b", None), ("/a\\b", None), ("/a%00b", None),
])
def test_ui_file_names_stay_under_the_root(path: str, name: str | None) -> None:
    assert relative_name(path) == name


def test_builtin_ui_files_are_found() -> None:
    assets = Assets()
    index = assets.find("/")
    assert index is not None and index.content_type == "text/html; charset=utf-8"
    app = assets.find("/js/app.js")
    assert app is not None and app.content_type.startswith("text/javascript")
    assert assets.find("/nope.js") is None


def test_web_path_files_cannot_escape(tmp_path: Path) -> None:
    root = tmp_path / "ui"
    root.mkdir()
    (root / "index.html").write_text("<p>mine</p>")
    (tmp_path / "outside.txt").write_text("secret")
    (root / "link.txt").symlink_to(tmp_path / "outside.txt")
    assets = Assets(str(root))
    found = assets.find("/")
    assert found is not None and found.body == b"<p>mine</p>"
    assert assets.find("/link.txt") is None
    assert assets.find("/../outside.txt") is None


def test_connections_limit() -> None:
    assert limit_of({}) == DEFAULT_LIMIT
    assert limit_of({"limit": 5}) == 5
    assert limit_of({"limit": 10**9}) == MAX_LIMIT
    assert limit_of({"limit": -1}) == limit_of({"limit": "7"}) == limit_of({"limit": True}) == (
        DEFAULT_LIMIT)
