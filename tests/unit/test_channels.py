"""Unit tests for tidings.protocol.channels (PROTOCOL.md §9.1, §9.3)."""

from __future__ import annotations

import pytest

from tidings.config import ChannelConfig, ChannelOptions, Namespace
from tidings.errors import ErrorCode, ReplyError
from tidings.protocol.channels import ChannelRules, check_data_format

CHAT = Namespace(name="chat", presence=True, allow_subscribe_for_client=True)
DIALOG = Namespace(name="dialog", allow_user_limited_channels=True)
STRICT = Namespace(name="strict", channel_regex=r"[a-z]{3,5}")
UNICODE = Namespace(name="uni", channel_regex=r"\w+")
WITHOUT = ChannelOptions(join_leave=True)


def rules(*, insecure: bool = False, max_length: int = 255) -> ChannelRules:
    config = ChannelConfig(
        without_namespace=WITHOUT,
        namespaces=[CHAT, DIALOG, STRICT, UNICODE],
        max_length=max_length,
    )
    return ChannelRules(config, insecure=insecure)


def reply_code(r: ChannelRules, channel: str) -> int:
    with pytest.raises(ReplyError) as info:
        r.options(channel)
    return info.value.code


# ------------------------------------------------------------------ namespaces and names


@pytest.mark.parametrize(
    ("channel", "namespace", "rest"),
    [
        ("news", "", "news"),
        ("chat:room", "chat", "room"),
        ("chat:room:sub", "chat", "room:sub"),
        ("$chat:secret", "chat", "secret"),
        ("$news", "", "news"),
        ("dialog:#42,43", "dialog", "#42,43"),
        ("#42", "", "#42"),
    ],
)
def test_namespace_of(channel: str, namespace: str, rest: str) -> None:
    assert rules().namespace_of(channel) == (namespace, rest)


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        ("news", WITHOUT),
        ("$news", WITHOUT),
        ("chat:room", CHAT),
        ("$chat:room", CHAT),
        ("dialog:#1,2", DIALOG),
        ("#42", WITHOUT),
    ],
)
def test_options_resolution(channel: str, expected: ChannelOptions) -> None:
    assert rules().options(channel) is expected


@pytest.mark.parametrize("channel", ["unknown:room", "$unknown:room", "Chat:room", "chatx:y"])
def test_unknown_namespace_is_102(channel: str) -> None:
    assert reply_code(rules(), channel) == 102
    with pytest.raises(ReplyError) as info:
        rules().options(channel)
    assert info.value == ErrorCode.UNKNOWN_CHANNEL


@pytest.mark.parametrize(
    "channel",
    ["", "x" * 256, "chat:" + "x" * 251, "канал", "news-ü", "chat:комната", "$ñ"],
)
def test_bad_name_is_107(channel: str) -> None:
    assert reply_code(rules(), channel) == 107
    assert ErrorCode.BAD_REQUEST.code == 107


def test_max_length_boundary() -> None:
    assert rules().options("x" * 255) is WITHOUT
    assert rules().options("chat:" + "x" * 250) is CHAT
    short = rules(max_length=10)
    assert short.options("x" * 10) is WITHOUT
    assert reply_code(short, "x" * 11) == 107


def test_channel_regex() -> None:
    r = rules()
    assert r.options("strict:abc") is STRICT
    assert r.options("$strict:abcde") is STRICT
    for bad in ("strict:ab", "strict:abcdef", "strict:ABC", "strict:abc1", "strict:"):
        assert reply_code(r, bad) == 107


def test_channel_regex_allows_non_ascii() -> None:
    assert rules().options("uni:комната") is UNICODE
    assert reply_code(rules(), "uni:a b") == 107


def test_channel_regex_without_namespace() -> None:
    config = ChannelConfig(without_namespace=ChannelOptions(channel_regex=r"room-\d+"))
    r = ChannelRules(config)
    assert r.options("room-12") is config.without_namespace
    assert r.options("$room-7") is config.without_namespace  # prefix not part of the match
    assert reply_code(r, "room-x") == 107


def test_custom_boundaries() -> None:
    config = ChannelConfig(
        namespaces=[Namespace(name="chat", allow_user_limited_channels=True)],
        private_prefix="!",
        namespace_boundary=".",
        user_boundary="@",
        user_separator=";",
    )
    r = ChannelRules(config)
    assert r.namespace_of("!chat.room") == ("chat", "room")
    assert r.is_private("!chat.room") is True
    assert r.is_private("$chat.room") is False
    assert r.options("chat.room") is config.namespaces[0]
    assert r.options("chat:room") is config.without_namespace  # ':' is no boundary here
    assert r.user_allowed("chat.d@1;2", "2") is True
    assert r.personal_channel("5", "chat") == "chat.@5"


# ------------------------------------------------------------------ private, user-limited, personal


def test_is_private() -> None:
    r = rules()
    assert r.is_private("$chat:x") is True
    assert r.is_private("$x") is True
    assert r.is_private("chat:$x") is False
    assert r.is_private("x") is False
    assert ChannelRules(ChannelConfig(private_prefix="")).is_private("$x") is False


def test_user_limited() -> None:
    r = rules()
    assert r.is_user_limited("dialog:#42,43", DIALOG) is True
    assert r.is_user_limited("dialog:room", DIALOG) is False
    assert r.is_user_limited("chat:#42,43", CHAT) is False  # namespace does not allow it
    assert r.user_allowed("dialog:#42,43", "42") is True
    assert r.user_allowed("dialog:#42,43", "43") is True
    assert r.user_allowed("dialog:#42,43", "4") is False
    assert r.user_allowed("dialog:#42,43", "42,43") is False
    assert r.user_allowed("dialog:#42,43", "") is False
    assert r.user_allowed("dialog#42", "42") is True


def test_personal_channel() -> None:
    r = rules()
    assert r.personal_channel("42", "") == "#42"
    assert r.personal_channel("42", "personal") == "personal:#42"


# ------------------------------------------------------------------ subscribe permission


def test_subscribe_private_needs_token_even_insecure() -> None:
    for insecure in (False, True):
        r = rules(insecure=insecure)
        assert r.can_subscribe_without_token("$chat:room", CHAT, "42") is False


def test_subscribe_for_client_and_anonymous() -> None:
    r = rules()
    assert r.can_subscribe_without_token("chat:room", CHAT, "42") is True
    assert r.can_subscribe_without_token("chat:room", CHAT, "") is False
    anon = ChannelOptions(allow_subscribe_for_client=True, allow_subscribe_for_anonymous=True)
    assert r.can_subscribe_without_token("x", anon, "") is True
    anon_only = ChannelOptions(allow_subscribe_for_anonymous=True)  # needs *_for_client too
    assert r.can_subscribe_without_token("x", anon_only, "") is False
    assert r.can_subscribe_without_token("x", anon_only, "42") is False
    assert r.can_subscribe_without_token("news", WITHOUT, "42") is False


def test_subscribe_user_limited() -> None:
    r = rules()
    assert r.can_subscribe_without_token("dialog:#42,43", DIALOG, "42") is True
    assert r.can_subscribe_without_token("dialog:#42,43", DIALOG, "44") is False
    assert r.can_subscribe_without_token("dialog:#42,43", DIALOG, "") is False
    # allow_subscribe_for_client does not open a user-limited channel to other users.
    both = Namespace(name="d2", allow_user_limited_channels=True, allow_subscribe_for_client=True)
    assert r.can_subscribe_without_token("d2:#42,43", both, "44") is False
    assert r.can_subscribe_without_token("d2:room", both, "44") is True
    # Without allow_user_limited_channels, '#' has no meaning.
    assert r.can_subscribe_without_token("chat:#42", CHAT, "44") is True
    assert r.can_subscribe_without_token("dialog:#42", DIALOG, "42") is True
    assert rules(insecure=True).can_subscribe_without_token("dialog:#42", DIALOG, "44") is True


def test_subscribe_insecure() -> None:
    r = rules(insecure=True)
    assert r.can_subscribe_without_token("news", WITHOUT, "") is True
    assert r.can_subscribe_without_token("chat:room", CHAT, "") is True


# ------------------------------------------------------------------ publish / presence / history

KINDS = ("publish", "presence", "history")


def _opts(kind: str, *suffixes: str) -> ChannelOptions:
    fields = {f"allow_{kind}_for_{s}": True for s in suffixes}
    return ChannelOptions(**fields)  # type: ignore[arg-type]


def _can(r: ChannelRules, kind: str, opts: ChannelOptions, user: str, subscribed: bool) -> bool:
    check = {"publish": r.can_publish, "presence": r.can_presence, "history": r.can_history}
    return check[kind](opts, user, subscribed)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("suffixes", "user", "subscribed", "allowed"),
    [
        ((), "42", True, False),
        ((), "", True, False),
        (("client",), "42", False, True),
        (("client",), "42", True, True),
        (("client",), "", False, False),
        (("client",), "", True, False),
        (("client", "anonymous"), "", False, True),
        (("subscriber",), "42", True, True),
        (("subscriber",), "42", False, False),
        (("subscriber",), "", True, False),
        (("subscriber", "anonymous"), "", True, True),
        (("subscriber", "anonymous"), "", False, False),
        (("anonymous",), "", True, False),
        (("anonymous",), "42", True, False),
    ],
)
def test_permission_matrix(
    kind: str, suffixes: tuple[str, ...], user: str, subscribed: bool, allowed: bool
) -> None:
    opts = _opts(kind, *suffixes)
    assert _can(rules(), kind, opts, user, subscribed) is allowed
    assert _can(rules(insecure=True), kind, opts, user, subscribed) is True


@pytest.mark.parametrize("kind", KINDS)
def test_permissions_are_per_kind(kind: str) -> None:
    others = [k for k in KINDS if k != kind]
    opts = _opts(kind, "client", "subscriber", "anonymous")
    assert _can(rules(), kind, opts, "", True) is True
    for other in others:
        assert _can(rules(), other, opts, "42", True) is False


def test_publication_data_format() -> None:
    plain = ChannelOptions()
    check_data_format(plain, b"[1]")
    with pytest.raises(ReplyError) as exc:
        check_data_format(plain, b"")
    assert exc.value.code == 107
    objects = ChannelOptions(publication_data_format="json_object")
    check_data_format(objects, b' {"a":1}')
    with pytest.raises(ReplyError):
        check_data_format(objects, b"[1]")
    check_data_format(ChannelOptions(publication_data_format="binary"), b"")
