"""Unit tests for tidings.protocol.tokens (PROTOCOL.md §5): keys, validity, claims mapping."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tidings.config import TokenConfig
from tidings.protocol.tokens import (
    InvalidToken,
    SubscribeOptions,
    TokenExpired,
    TokenVerifier,
)

NOW = 1_700_000_000.0
SECRET = "a-long-enough-hmac-secret-key-for-hs512-tokens-0123456789abcdef!"
OLD_SECRET = "the-previous-hmac-secret-key-still-accepted-during-rotation-0123"
OTHER_SECRET = "some-other-hmac-secret-key-that-nobody-configured-0123456789abcd"


def _pem(public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def hs(claims: dict[str, Any], key: str = SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=alg)


def _b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64url(header)}.{_b64url(claims)}."


def verifier(**kwargs: Any) -> TokenVerifier:
    return TokenVerifier(TokenConfig(hmac_secret_key=SECRET, **kwargs))


# ------------------------------------------------------------------ algorithms and keys


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_algorithms(alg: str) -> None:
    token = verifier().verify_connect(hs({"sub": "42"}, alg=alg), NOW)
    assert token.user == "42"


def test_rs256(rsa_key: rsa.RSAPrivateKey) -> None:
    v = TokenVerifier(TokenConfig(rsa_public_key=_pem(rsa_key.public_key())))
    assert v.configured is True
    token = v.verify_connect(jwt.encode({"sub": "7"}, rsa_key, algorithm="RS256"), NOW)
    assert token.user == "7"
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(InvalidToken):
        v.verify_connect(jwt.encode({"sub": "7"}, other, algorithm="RS256"), NOW)
    with pytest.raises(InvalidToken):  # no HMAC key configured
        v.verify_connect(hs({"sub": "7"}), NOW)


def test_es256(ec_key: ec.EllipticCurvePrivateKey, rsa_key: rsa.RSAPrivateKey) -> None:
    v = TokenVerifier(TokenConfig(ecdsa_public_key=_pem(ec_key.public_key())))
    token = v.verify_connect(jwt.encode({"sub": "8"}, ec_key, algorithm="ES256"), NOW)
    assert token.user == "8"
    with pytest.raises(InvalidToken):  # RSA token, only an EC key configured
        v.verify_connect(jwt.encode({"sub": "8"}, rsa_key, algorithm="RS256"), NOW)
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(InvalidToken):
        v.verify_connect(jwt.encode({"sub": "8"}, other, algorithm="ES256"), NOW)


def test_previous_hmac_key_rotation() -> None:
    v = TokenVerifier(TokenConfig(hmac_secret_key=SECRET, hmac_previous_secret_key=OLD_SECRET))
    assert v.verify_connect(hs({"sub": "new"}), NOW).user == "new"
    assert v.verify_connect(hs({"sub": "old"}, key=OLD_SECRET), NOW).user == "old"
    with pytest.raises(InvalidToken):
        v.verify_connect(hs({"sub": "x"}, key=OTHER_SECRET), NOW)
    without_previous = verifier()
    with pytest.raises(InvalidToken):
        without_previous.verify_connect(hs({"sub": "old"}, key=OLD_SECRET), NOW)


def test_configured() -> None:
    assert TokenVerifier(TokenConfig()).configured is False
    assert verifier().configured is True


@pytest.mark.parametrize(
    "token",
    [
        "invalid_token",
        "",
        "a.b.c",
        "not-a-jwt-at-all",
        hs({"sub": "42"}, key=OTHER_SECRET),
        hs({"sub": "42"})[:-3] + "AAA",
        _unsigned({"alg": "none", "typ": "JWT"}, {"sub": "42"}),
        _unsigned({"alg": "HS256", "typ": "JWT"}, {"sub": "42"}),
        _unsigned({"typ": "JWT"}, {"sub": "42"}),
    ],
)
def test_invalid_tokens(token: str) -> None:
    v = verifier()
    with pytest.raises(InvalidToken):
        v.verify_connect(token, NOW)
    with pytest.raises(InvalidToken):
        v.verify_subscribe(token, NOW)


def test_no_key_configured_rejects_everything() -> None:
    with pytest.raises(InvalidToken):
        TokenVerifier(TokenConfig()).verify_connect(hs({"sub": "42"}), NOW)


def test_skip_signature_accepts_any_key() -> None:
    v = TokenVerifier(TokenConfig(), skip_signature=True)
    assert v.verify_connect(hs({"sub": "42"}, key=OTHER_SECRET), NOW).user == "42"
    with pytest.raises(InvalidToken):
        v.verify_connect("invalid_token", NOW)
    with pytest.raises(TokenExpired):  # claims are still checked
        v.verify_connect(hs({"sub": "42", "exp": int(NOW) - 1}, key=OTHER_SECRET), NOW)


# ------------------------------------------------------------------ exp / nbf


def test_expired_relative_to_now() -> None:
    v = verifier()
    token = hs({"sub": "42", "exp": int(NOW) - 10})
    with pytest.raises(TokenExpired):
        v.verify_connect(token, NOW)
    with pytest.raises(TokenExpired):
        v.verify_subscribe(hs({"sub": "42", "channel": "c", "exp": int(NOW) - 10}), NOW)
    # The same token is fine at an earlier "now": no wall clock is involved.
    assert v.verify_connect(token, NOW - 20).exp == int(NOW) - 10
    assert v.verify_connect(hs({"sub": "42", "exp": int(NOW) + 10}), NOW).exp == int(NOW) + 10


def test_exp_zero_means_no_expiry() -> None:
    token = verifier().verify_connect(hs({"sub": "42", "exp": 0}), NOW)
    assert token.exp == 0
    assert token.expires_at == 0


def test_expired_token_with_bad_signature_is_invalid() -> None:
    with pytest.raises(InvalidToken):
        verifier().verify_connect(hs({"exp": int(NOW) - 10}, key=OTHER_SECRET), NOW)


def test_nbf() -> None:
    v = verifier()
    with pytest.raises(InvalidToken):
        v.verify_connect(hs({"sub": "42", "nbf": int(NOW) + 60}), NOW)
    assert v.verify_connect(hs({"sub": "42", "nbf": int(NOW) - 60}), NOW).user == "42"


@pytest.mark.parametrize("claim", ["exp", "nbf", "expire_at"])
def test_non_numeric_time_claims(claim: str) -> None:
    with pytest.raises(InvalidToken):
        verifier().verify_connect(hs({"sub": "42", claim: "tomorrow"}), NOW)


# ------------------------------------------------------------------ audience / issuer


def test_audience() -> None:
    v = verifier(audience="chat-app")
    assert v.verify_connect(hs({"sub": "1", "aud": "chat-app"}), NOW).user == "1"
    assert v.verify_connect(hs({"sub": "1", "aud": ["other", "chat-app"]}), NOW).user == "1"
    for claims in ({"sub": "1"}, {"sub": "1", "aud": "other"}, {"sub": "1", "aud": ["x"]}):
        with pytest.raises(InvalidToken):
            v.verify_connect(hs(claims), NOW)
    # Not configured: any aud passes.
    assert verifier().verify_connect(hs({"sub": "1", "aud": "whatever"}), NOW).user == "1"


def test_audience_regex() -> None:
    v = verifier(audience_regex=r"app-\d+")
    assert v.verify_connect(hs({"sub": "1", "aud": "app-12"}), NOW).user == "1"
    assert v.verify_connect(hs({"sub": "1", "aud": ["zz", "app-3"]}), NOW).user == "1"
    for aud in ("app-x", "my-app-12", "app-12-beta"):  # full match only
        with pytest.raises(InvalidToken):
            v.verify_connect(hs({"sub": "1", "aud": aud}), NOW)
    with pytest.raises(InvalidToken):
        v.verify_connect(hs({"sub": "1"}), NOW)


def test_issuer() -> None:
    v = verifier(issuer="auth.example.com")
    assert v.verify_connect(hs({"sub": "1", "iss": "auth.example.com"}), NOW).user == "1"
    for claims in ({"sub": "1"}, {"sub": "1", "iss": "evil.example.com"}):
        with pytest.raises(InvalidToken):
            v.verify_connect(hs(claims), NOW)
    assert verifier().verify_connect(hs({"sub": "1", "iss": "any"}), NOW).user == "1"


def test_issuer_regex() -> None:
    v = verifier(issuer_regex=r"auth\d?\.example\.com")
    assert v.verify_connect(hs({"sub": "1", "iss": "auth2.example.com"}), NOW).user == "1"
    for claims in ({"sub": "1"}, {"sub": "1", "iss": "xauth.example.com"}):
        with pytest.raises(InvalidToken):
            v.verify_connect(hs(claims), NOW)


def test_aud_and_iss_apply_to_subscription_tokens() -> None:
    v = verifier(audience="a1", issuer="i1")
    good = v.verify_subscribe(hs({"channel": "c", "aud": "a1", "iss": "i1"}), NOW)
    assert good.channel == "c"
    with pytest.raises(InvalidToken):
        v.verify_subscribe(hs({"channel": "c", "aud": "a1", "iss": "i2"}), NOW)


# ------------------------------------------------------------------ connection token claims


def test_connect_claims_mapping() -> None:
    claims: dict[str, Any] = {
        "sub": "42",
        "exp": int(NOW) + 3600,
        "info": {"name": "Alice", "n": 1},
        "channels": ["news", "chat:room"],
        "meta": {"role": "admin"},
        "iat": int(NOW),
        "jti": "abc",
    }
    token = verifier().verify_connect(hs(claims), NOW)
    assert token.user == "42"
    assert token.exp == int(NOW) + 3600
    assert token.expire_at is None
    assert token.expires_at == int(NOW) + 3600
    assert token.info is not None
    assert json.loads(token.info) == {"name": "Alice", "n": 1}
    assert token.channels == ("news", "chat:room")
    assert token.subs == {}
    assert token.meta is not None
    assert json.loads(token.meta) == {"role": "admin"}


def test_connect_minimal_is_anonymous() -> None:
    token = verifier().verify_connect(hs({"iat": 1738078824}), NOW)
    assert token.user == ""
    assert (token.exp, token.expire_at, token.expires_at) == (0, None, 0)
    assert (token.info, token.meta, token.channels, token.subs) == (None, None, (), {})


def test_connect_b64info() -> None:
    raw = b"\x00\x01binary\xff"
    claims = {"sub": "1", "b64info": base64.b64encode(raw).decode()}
    assert verifier().verify_connect(hs(claims), NOW).info == raw
    with pytest.raises(InvalidToken):
        verifier().verify_connect(hs({"sub": "1", "b64info": "%%%not base64"}), NOW)


def test_info_wins_over_b64info() -> None:
    claims = {"sub": "1", "info": "text", "b64info": base64.b64encode(b"bin").decode()}
    assert verifier().verify_connect(hs(claims), NOW).info == b'"text"'


@pytest.mark.parametrize(
    ("exp", "expire_at", "expires_at"),
    [
        (int(NOW) + 100, int(NOW) + 5000, int(NOW) + 5000),
        (int(NOW) + 100, 0, 0),  # expire_at 0: never, whatever exp says
        (None, int(NOW) + 50, int(NOW) + 50),
    ],
)
def test_expire_at_vs_exp(exp: int | None, expire_at: int, expires_at: int) -> None:
    claims: dict[str, Any] = {"sub": "1", "expire_at": expire_at}
    if exp is not None:
        claims["exp"] = exp
    token = verifier().verify_connect(hs(claims), NOW)
    assert token.expire_at == expire_at
    assert token.exp == (exp or 0)
    assert token.expires_at == expires_at


def test_channel_claim_forbidden_in_connection_token() -> None:
    with pytest.raises(InvalidToken):
        verifier().verify_connect(hs({"sub": "42", "channel": "news"}), NOW)


def test_subs_claim_with_override() -> None:
    claims = {
        "sub": "42",
        "subs": {
            "news": {
                "info": {"color": "red"},
                "b64data": base64.b64encode(b"\x01\x02").decode(),
                "override": {
                    "presence": {"value": True},
                    "join_leave": {"value": False},
                    "force_recovery": "yes",  # not {"value": bool}: ignored
                },
            },
            "chat:x": {},
        },
    }
    token = verifier().verify_connect(hs(claims), NOW)
    assert set(token.subs) == {"news", "chat:x"}
    news = token.subs["news"]
    assert news.info is not None
    assert json.loads(news.info) == {"color": "red"}
    assert news.data == b"\x01\x02"
    assert news.override == {"presence": True, "join_leave": False}
    assert token.subs["chat:x"] == SubscribeOptions()


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": 42},
        {"sub": "1", "channels": "news"},
        {"sub": "1", "channels": ["ok", 5]},
        {"sub": "1", "subs": ["news"]},
    ],
)
def test_connect_bad_claim_types(claims: dict[str, Any]) -> None:
    with pytest.raises(InvalidToken):
        verifier().verify_connect(hs(claims), NOW)


def test_user_id_claim() -> None:
    v = verifier(user_id_claim="user_id")
    assert v.verify_connect(hs({"sub": "ignored", "user_id": "99"}), NOW).user == "99"
    assert v.verify_connect(hs({"sub": "ignored"}), NOW).user == ""


# ------------------------------------------------------------------ subscription tokens


def test_subscription_token_claims() -> None:
    claims = {
        "sub": "42",
        "channel": "$private:room",
        "client": "client-id-1",
        "exp": int(NOW) + 60,
        "info": {"seat": 3},
        "data": {"welcome": True},
        "override": {"force_positioning": {"value": True}},
    }
    token = verifier().verify_subscribe(hs(claims), NOW)
    assert token.user == "42"
    assert token.channel == "$private:room"
    assert token.client == "client-id-1"
    assert (token.exp, token.expire_at, token.expires_at) == (int(NOW) + 60, None, int(NOW) + 60)
    assert token.options.info is not None
    assert json.loads(token.options.info) == {"seat": 3}
    assert token.options.data is not None
    assert json.loads(token.options.data) == {"welcome": True}
    assert token.options.override == {"force_positioning": True}


def test_subscription_token_minimal_and_b64() -> None:
    claims = {
        "channel": "test1",
        "b64info": base64.b64encode(b"ci").decode(),
        "b64data": base64.b64encode(b"\xfe\xff").decode(),
        "expire_at": 0,
        "exp": int(NOW) + 10,
    }
    token = verifier().verify_subscribe(hs(claims), NOW)
    assert (token.user, token.channel, token.client) == ("", "test1", "")
    assert token.options.info == b"ci"
    assert token.options.data == b"\xfe\xff"
    assert token.expires_at == 0


@pytest.mark.parametrize("claims", [{"sub": "42"}, {"sub": "42", "channel": ""}, {"channel": 5}])
def test_subscription_token_requires_channel(claims: dict[str, Any]) -> None:
    with pytest.raises(InvalidToken):
        verifier().verify_subscribe(hs(claims), NOW)
