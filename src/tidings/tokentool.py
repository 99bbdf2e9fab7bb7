"""Tokens made and checked from the command line (``tidings gentoken``, ``gensubtoken``,
``checktoken``), with the keys and claim rules the server itself uses
(``protocol/tokens.py``): a subscription token is signed with
``client.subscription_token`` when that is enabled, else with ``client.token``; the user goes
in ``user_id_claim`` (default ``sub``); ``audience``/``issuer``, when set, are claimed.

Only HS256 can be signed here: ``rsa_public_key``/``ecdsa_public_key`` are public keys, and
the private key that signs lives with the application."""

from __future__ import annotations

import base64
import json
import time
import warnings
from typing import Any

import jwt

from tidings.config import Config, TokenConfig
from tidings.protocol.tokens import InvalidToken, TokenExpired, TokenVerifier

__all__ = ["TokenToolError", "check_token", "key_section", "sign_token"]


class TokenToolError(Exception):
    """A token cannot be made or checked; the message says why (one line)."""


def key_section(config: Config, *, subscription: bool) -> tuple[TokenConfig, str]:
    """The keys the server verifies this kind of token with, and their config path."""
    sub = config.client.subscription_token
    if subscription and sub.enabled:
        return sub, "client.subscription_token"
    return config.client.token, "client.token"


def sign_token(config: Config, user: str, *, ttl: float, subscription: bool,
               extra: dict[str, Any] | None = None, now: float | None = None) -> str:
    """An HS256 token for ``user`` (``extra`` claims added: channel, channels, info), expiring
    in ``ttl`` seconds (0: never)."""
    keys, where = key_section(config, subscription=subscription)
    if not keys.hmac_secret_key:
        if keys.rsa_public_key or keys.ecdsa_public_key:
            raise TokenToolError(
                f"{where} has only an RSA/ECDSA public key: tokens for it are signed with the "
                f"private key, in your application; set {where}.hmac_secret_key to sign HS256 "
                "tokens here")
        raise TokenToolError(f"{where}.hmac_secret_key is not set")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {keys.user_id_claim or "sub": user, "iat": issued}
    if ttl > 0:
        claims["exp"] = issued + max(1, round(ttl))
    if keys.audience:
        claims["aud"] = keys.audience
    if keys.issuer:
        claims["iss"] = keys.issuer
    claims.update(extra or {})
    with warnings.catch_warnings():
        # A short key is the operator's choice (checkconfig and serve warn about it).
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(claims, keys.hmac_secret_key, algorithm="HS256")


def check_token(config: Config, token: str, *, subscription: bool,
                now: float | None = None) -> dict[str, Any]:
    """The token's claims when the server would accept it; else :class:`TokenToolError`."""
    keys, where = key_section(config, subscription=subscription)
    skip = config.client.insecure_skip_token_signature_verify
    verifier = TokenVerifier(keys, skip_signature=skip)
    if not verifier.configured and not skip:
        raise TokenToolError(f"no key in {where} to verify with")
    at = time.time() if now is None else now
    try:
        if subscription:
            verifier.verify_subscribe(token, at)
        else:
            verifier.verify_connect(token, at)
    except TokenExpired as exc:
        raise TokenToolError(f"token expired ({where})") from exc
    except InvalidToken as exc:
        raise TokenToolError(f"invalid token ({where}): {exc}") from exc
    payload = token.split(".")[1]  # verified above: three segments, JSON objects
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload)
                                                                                 % 4)))
    return claims
