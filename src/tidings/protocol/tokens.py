"""JWT verification for connection and subscription tokens (PROTOCOL.md §5).

Pure: the current time is passed in, so expiry rules are testable without a clock. Signature
checking is PyJWT's; the claims rules (``exp``/``nbf`` against ``now``, ``aud``/``iss`` with
optional regexes, ``channel`` forbidden in connection tokens) are Centrifugo's.
"""

from __future__ import annotations

import base64
import binascii
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import jwt
import msgspec

from tidings.config import TokenConfig

__all__ = [
    "ConnectToken",
    "InvalidToken",
    "SubscribeOptions",
    "SubscriptionToken",
    "TokenExpired",
    "TokenVerifier",
]

_json = msgspec.json.Encoder()
_json_decode = msgspec.json.Decoder().decode
# PyJWT's implementations of the algorithms Centrifugo accepts (never "none").
_ALGORITHMS = {
    name: algo
    for name, algo in jwt.algorithms.get_default_algorithms().items()
    if name in ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512")
}


def _b64url(segment: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"bad base64url segment: {exc}") from exc

_HMAC = ("HS256", "HS384", "HS512")
_RSA = ("RS256", "RS384", "RS512")
_EC = ("ES256", "ES384", "ES512")


class InvalidToken(Exception):
    """Bad signature, malformed token, wrong claims: connect -> 3500, subscribe -> 103."""


class TokenExpired(Exception):
    """``exp`` is in the past: reply error 109 so the SDK fetches a new token."""


@dataclass(frozen=True, slots=True)
class SubscribeOptions:
    """Per-channel options from a connection token's ``subs`` claim (or a sub token)."""

    info: bytes | None = None
    data: bytes | None = None
    override: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ConnectToken:
    user: str
    exp: int  # 0: none
    expire_at: int | None  # None: follow exp; 0: never
    info: bytes | None
    channels: tuple[str, ...]
    subs: dict[str, SubscribeOptions]
    meta: bytes | None

    @property
    def expires_at(self) -> int:
        """Connection expiry in unix seconds, 0 for never."""
        return self.exp if self.expire_at is None else self.expire_at


@dataclass(frozen=True, slots=True)
class SubscriptionToken:
    user: str
    channel: str
    client: str
    exp: int
    expire_at: int | None
    options: SubscribeOptions

    @property
    def expires_at(self) -> int:
        return self.exp if self.expire_at is None else self.expire_at


def _json_claim(claims: dict[str, Any], name: str, b64name: str) -> bytes | None:
    if name in claims and claims[name] is not None:
        return _json.encode(claims[name])
    b64 = claims.get(b64name)
    if isinstance(b64, str) and b64:
        try:
            return base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidToken(f"invalid {b64name} claim") from exc
    return None


def _int_claim(claims: dict[str, Any], name: str) -> int | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"invalid {name} claim")
    return int(value)


def _override(raw: object) -> dict[str, bool]:
    result: dict[str, bool] = {}
    if isinstance(raw, dict):
        for key, val in raw.items():
            if isinstance(val, dict) and isinstance(val.get("value"), bool):
                result[str(key)] = val["value"]
    return result


def _sub_options(raw: object) -> SubscribeOptions:
    if not isinstance(raw, dict):
        return SubscribeOptions()
    return SubscribeOptions(
        info=_json_claim(raw, "info", "b64info"),
        data=_json_claim(raw, "data", "b64data"),
        override=_override(raw.get("override")),
    )


class TokenVerifier:
    """Verifies tokens with the keys of one ``TokenConfig``."""

    def __init__(self, config: TokenConfig, *, skip_signature: bool = False) -> None:
        self._config = config
        self._skip_signature = skip_signature
        keys = (config.hmac_secret_key, config.hmac_previous_secret_key)
        self._hmac_keys = [k for k in keys if k]
        self._aud_re = re.compile(config.audience_regex) if config.audience_regex else None
        self._iss_re = re.compile(config.issuer_regex) if config.issuer_regex else None
        self._verifiers: dict[str, list[tuple[Any, Any]]] = {}

    @property
    def configured(self) -> bool:
        c = self._config
        return bool(self._hmac_keys or c.rsa_public_key or c.ecdsa_public_key)

    def _keys_for(self, alg: str) -> list[str]:
        if alg in _HMAC:
            return self._hmac_keys
        if alg in _RSA and self._config.rsa_public_key:
            return [self._config.rsa_public_key]
        if alg in _EC and self._config.ecdsa_public_key:
            return [self._config.ecdsa_public_key]
        return []

    def _decode(self, token: str, now: float) -> dict[str, Any]:
        """Split, verify the signature with PyJWT's algorithm objects and keys prepared once,
        decode the claims. ``jwt.decode`` re-prepares (and re-checks) the key on every call,
        which made JWT checks the largest cost of a connect storm (docs/design.md)."""
        parts = token.split(".")
        if len(parts) != 3:
            raise InvalidToken("malformed token: expected three segments")
        header_b64, payload_b64, signature_b64 = parts
        try:
            header = _json_decode(_b64url(header_b64))
            claims = _json_decode(_b64url(payload_b64))
            signature = _b64url(signature_b64)
        except (ValueError, msgspec.DecodeError) as exc:
            raise InvalidToken(f"malformed token: {exc}") from exc
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise InvalidToken("malformed token: header and payload must be objects")
        if not self._skip_signature:
            alg = str(header.get("alg", ""))
            verifiers = self._verifiers_for(alg)
            if not verifiers:
                raise InvalidToken(f"no key configured for algorithm {alg!r}")
            signing_input = f"{header_b64}.{payload_b64}".encode("ascii", "replace")
            if not any(algo.verify(signing_input, key, signature) for algo, key in verifiers):
                raise InvalidToken("token signature verification failed")
        self._check_times(claims, now)
        self._check_aud_iss(claims)
        return claims

    def _verifiers_for(self, alg: str) -> list[tuple[Any, Any]]:
        cached = self._verifiers.get(alg)
        if cached is not None:
            return cached
        verifiers: list[tuple[Any, Any]] = []
        algo = _ALGORITHMS.get(alg)
        if algo is not None:
            for key in self._keys_for(alg):
                try:
                    with warnings.catch_warnings():
                        # Short HMAC keys are the operator's choice; warned about at start-up.
                        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
                        verifiers.append((algo, algo.prepare_key(key)))
                except (jwt.PyJWTError, ValueError, TypeError) as exc:
                    raise InvalidToken(f"configured key unusable for {alg}: {exc}") from exc
        self._verifiers[alg] = verifiers
        return verifiers

    def _check_times(self, claims: dict[str, Any], now: float) -> None:
        nbf = _int_claim(claims, "nbf")
        if nbf is not None and now < nbf:
            raise InvalidToken("token not valid yet (nbf)")
        exp = _int_claim(claims, "exp")
        if exp is not None and exp > 0 and exp <= now:
            raise TokenExpired("token expired")

    def _check_aud_iss(self, claims: dict[str, Any]) -> None:
        c = self._config
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else list(aud) if isinstance(aud, list) else []
        if c.audience and c.audience not in auds:
            raise InvalidToken("invalid audience")
        if self._aud_re is not None and not any(self._aud_re.fullmatch(str(a)) for a in auds):
            raise InvalidToken("invalid audience")
        iss = claims.get("iss")
        if c.issuer and iss != c.issuer:
            raise InvalidToken("invalid issuer")
        if self._iss_re is not None and not (isinstance(iss, str) and self._iss_re.fullmatch(iss)):
            raise InvalidToken("invalid issuer")

    def _user(self, claims: dict[str, Any]) -> str:
        claim = self._config.user_id_claim or "sub"
        user = claims.get(claim, "")
        if user is None:
            return ""
        if not isinstance(user, str):
            raise InvalidToken(f"invalid {claim} claim")
        return user

    def verify_connect(self, token: str, now: float) -> ConnectToken:
        claims = self._decode(token, now)
        if "channel" in claims:
            raise InvalidToken("connection token must not contain a channel claim")
        channels = claims.get("channels") or []
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            raise InvalidToken("invalid channels claim")
        raw_subs = claims.get("subs") or {}
        if not isinstance(raw_subs, dict):
            raise InvalidToken("invalid subs claim")
        meta = claims.get("meta")
        return ConnectToken(
            user=self._user(claims),
            exp=_int_claim(claims, "exp") or 0,
            expire_at=_int_claim(claims, "expire_at"),
            info=_json_claim(claims, "info", "b64info"),
            channels=tuple(channels),
            subs={str(ch): _sub_options(opts) for ch, opts in raw_subs.items()},
            meta=_json.encode(meta) if meta is not None else None,
        )

    def verify_subscribe(self, token: str, now: float) -> SubscriptionToken:
        claims = self._decode(token, now)
        channel = claims.get("channel")
        if not isinstance(channel, str) or not channel:
            raise InvalidToken("subscription token has no channel claim")
        client = claims.get("client", "")
        return SubscriptionToken(
            user=self._user(claims),
            channel=channel,
            client=client if isinstance(client, str) else "",
            exp=_int_claim(claims, "exp") or 0,
            expire_at=_int_claim(claims, "expire_at"),
            options=_sub_options(claims),
        )
