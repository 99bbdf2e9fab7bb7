"""The sans-I/O session: command sequencing, connect/subscribe decisions, recovery verdicts."""

from __future__ import annotations

import jwt
import msgspec
import pytest

from tidings.config import Config, config_from_dict
from tidings.errors import Disconnect, ReplyError
from tidings.protocol.channels import ChannelRules
from tidings.protocol.codec import decode_commands
from tidings.protocol.messages import (
    Command,
    ConnectRequest,
    Publication,
    StreamPosition,
    SubscribeRequest,
)
from tidings.protocol.session import Session, State
from tidings.protocol.tokens import TokenVerifier

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
NOW = 1_700_000_000.0


def make_config(**client: object) -> Config:
    config, _ = config_from_dict({
        "client": {"token": {"hmac_secret_key": SECRET}, **client},
        "channel": {
            "without_namespace": {
                "presence": True, "join_leave": True, "history_size": 10,
                "history_ttl": "60s", "force_recovery": True,
                "allow_subscribe_for_client": True,
            },
            "namespaces": [{"name": "locked", "presence": True}],
        },
    })
    return config


def session(config: Config | None = None) -> Session:
    config = config or make_config()
    verifier = TokenVerifier(config.client.token)
    return Session(config.client, ChannelRules(config.channel), verifier, verifier,
                   client_id="client-1")


def token(**claims: object) -> str:
    return jwt.encode(dict(claims), SECRET, algorithm="HS256")


def command(raw: bytes) -> Command:
    (cmd,) = decode_commands(raw)
    return cmd


def connected(user: str = "42", config: Config | None = None) -> Session:
    s = session(config)
    decision = s.decide_connect(ConnectRequest(token=token(sub=user)), NOW)
    s.connected(decision)
    return s


# ------------------------------------------------------------------ sequencing


def test_first_command_must_be_connect() -> None:
    s = session()
    with pytest.raises(Disconnect) as exc:
        s.check_command(command(b'{"id":1,"subscribe":{"channel":"a"}}'))
    assert exc.value.code == 3501


def test_second_connect_and_unknown_command_are_bad_requests() -> None:
    s = connected()
    with pytest.raises(Disconnect) as exc:
        s.check_command(command(b'{"id":2,"connect":{}}'))
    assert exc.value.code == 3501
    with pytest.raises(Disconnect):
        s.check_command(command(b'{"id":3,"foo":{}}'))


def test_pong_only_after_a_ping() -> None:
    s = connected()
    with pytest.raises(Disconnect) as exc:
        s.check_command(command(b"{}"))
    assert exc.value.code == 3501
    s.awaiting_pong = True
    assert s.check_command(command(b"{}")) == "pong"
    assert s.awaiting_pong is False


def test_commands_after_failed_connect_are_rejected() -> None:
    s = session()
    with pytest.raises(ReplyError) as exc:
        s.decide_connect(ConnectRequest(token=token(sub="42", exp=int(NOW) - 5)), NOW)
    assert exc.value.code == 109
    assert s.state is State.FAILED
    with pytest.raises(Disconnect):
        s.check_command(command(b'{"id":2,"subscribe":{"channel":"a"}}'))


def test_malformed_frames_raise_protocol_error() -> None:
    from tidings.errors import ProtocolError

    for frame in (b"not json", b'{"id":"x"}', b'{"id":1,"publish":{"channel":5}}', b"\xff\xfe"):
        with pytest.raises(ProtocolError):
            decode_commands(frame)
    assert len(decode_commands(b'{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"a"}}')) == 2


# ------------------------------------------------------------------ connect


def test_connect_with_token_sets_user_info_and_expiry() -> None:
    s = session()
    decision = s.decide_connect(
        ConnectRequest(token=token(sub="42", exp=int(NOW) + 100, info={"name": "Ann"})), NOW
    )
    assert decision.user == "42"
    assert decision.info == b'{"name":"Ann"}'
    assert decision.expires_at == int(NOW) + 100


OTHER_KEY = "other-secret-0123456789-0123456789"


@pytest.mark.parametrize(
    "bad",
    [
        "invalid_token",
        token(sub="42", channel="x"),
        jwt.encode({"sub": "1"}, OTHER_KEY, algorithm="HS256"),
    ],
)
def test_invalid_tokens_disconnect_3500(bad: str) -> None:
    with pytest.raises(Disconnect) as exc:
        session().decide_connect(ConnectRequest(token=bad), NOW)
    assert exc.value.code == 3500


def test_no_credentials_is_3501_unless_anonymous_allowed() -> None:
    with pytest.raises(Disconnect) as exc:
        session().decide_connect(ConnectRequest(), NOW)
    assert exc.value.code == 3501
    anon = session(make_config(allow_anonymous_connect_without_token=True))
    assert anon.decide_connect(ConnectRequest(), NOW).user == ""
    insecure = session(make_config(insecure=True))
    assert insecure.decide_connect(ConnectRequest(), NOW).user == ""


def test_insecure_mode_ignores_exp() -> None:
    s = session(make_config(insecure=True))
    decision = s.decide_connect(ConnectRequest(token=token(sub="1", exp=int(NOW) - 5)), NOW)
    assert decision.user == "1" and decision.expires_at == 0


def test_server_side_subscriptions_from_token_and_personal_channel() -> None:
    config = make_config(subscribe_to_user_personal_channel={"enabled": True})
    s = session(config)
    decision = s.decide_connect(ConnectRequest(token=token(sub="42", channels=["news"])), NOW)
    assert sorted(d.sub.channel for d in decision.subs) == ["#42", "news"]
    assert all(d.sub.server_side and d.sub.recoverable for d in decision.subs)
    with pytest.raises(ReplyError) as exc:
        session().decide_connect(ConnectRequest(token=token(sub="42", channels=["nope:x"])), NOW)
    assert exc.value.code == 102


# ------------------------------------------------------------------ subscribe


def test_subscribe_errors() -> None:
    s = connected()
    cases = {
        "nope:x": 102,
        "x" * 256: 107,
        "locked:room": 103,
    }
    for channel, code in cases.items():
        with pytest.raises(ReplyError) as exc:
            s.decide_subscribe(SubscribeRequest(channel=channel), NOW)
        assert exc.value.code == code, channel
    with pytest.raises(Disconnect):
        s.decide_subscribe(SubscribeRequest(channel=""), NOW)


def test_already_subscribed_and_channel_limit() -> None:
    s = connected(config=make_config(channel_limit=2))
    d = s.decide_subscribe(SubscribeRequest(channel="a"), NOW)
    s.subs["a"] = d.sub
    with pytest.raises(ReplyError) as exc:
        s.decide_subscribe(SubscribeRequest(channel="a"), NOW)
    assert exc.value.code == 105
    s.inflight.add("b")
    with pytest.raises(ReplyError) as exc:
        s.decide_subscribe(SubscribeRequest(channel="c"), NOW)
    assert exc.value.code == 106


def test_subscription_token_grants_and_is_checked() -> None:
    s = connected()
    ok = s.decide_subscribe(
        SubscribeRequest(channel="locked:room",
                         token=token(sub="42", channel="locked:room", exp=int(NOW) + 60)), NOW
    )
    assert ok.sub.channel == "locked:room" and ok.token_expires
    with pytest.raises(Disconnect) as exc:
        s.decide_subscribe(
            SubscribeRequest(channel="locked:room", token=token(sub="43", channel="locked:room")),
            NOW,
        )
    assert exc.value.code == 3500
    with pytest.raises(ReplyError) as rexc:
        s.decide_subscribe(SubscribeRequest(channel="locked:room", token="invalid_token"), NOW)
    assert rexc.value.code == 103
    with pytest.raises(ReplyError) as rexc:
        s.decide_subscribe(
            SubscribeRequest(channel="locked:room",
                             token=token(sub="42", channel="locked:room", exp=int(NOW) - 1)),
            NOW,
        )
    assert rexc.value.code == 109


def pubs(*offsets: int) -> list[Publication]:
    return [Publication(data=msgspec.Raw(b"{}"), offset=o) for o in offsets]


def test_recovery_result_success_and_failure() -> None:
    s = connected()
    req = SubscribeRequest(channel="a", recover=True, offset=3, epoch="E")
    decision = s.decide_subscribe(req, NOW)
    top = StreamPosition(offset=5, epoch="E")
    result, live_from = s.subscribe_result(decision, pubs(4, 5), top, NOW)
    assert (result.recovered, result.was_recovering, result.offset) == (True, True, 3)
    assert [p.offset for p in result.publications or []] == [4, 5]
    assert live_from == 5
    # a gap: offset 4 fell out of the window
    result, _ = s.subscribe_result(decision, pubs(5), top, NOW)
    assert (result.recovered, result.was_recovering, result.offset) == (False, True, 5)
    assert result.publications is None
    # an epoch change
    result, _ = s.subscribe_result(decision, pubs(4, 5), StreamPosition(5, "F"), NOW)
    assert not result.recovered


def test_reject_unrecovered_flag_gives_112() -> None:
    s = connected()
    decision = s.decide_subscribe(
        SubscribeRequest(channel="a", recover=True, offset=1, epoch="old", flag=3), NOW
    )
    with pytest.raises(ReplyError) as exc:
        s.subscribe_result(decision, pubs(2), StreamPosition(2, "new"), NOW)
    assert exc.value.code == 112


def test_refresh_checks_user_and_expiry() -> None:
    s = connected()
    assert s.refresh(token(sub="42", exp=int(NOW) + 500), NOW) == int(NOW) + 500
    with pytest.raises(Disconnect) as exc:
        s.refresh(token(sub="43"), NOW)
    assert exc.value.code == 3500
    with pytest.raises(Disconnect) as exc:
        s.refresh(token(sub="42", exp=int(NOW) - 1), NOW)
    assert exc.value.code == 3005
