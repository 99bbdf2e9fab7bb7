"""The settings the web-framework integrations share, and the tokens they mint.

One mapping, the same keys in every framework (Django's ``TIDINGS = {...}``, Flask's
``app.config["TIDINGS"]``, FastAPI's ``Tidings(...)`` keywords); names are Centrifugo's
flat (v5) names where it has one, in any case (``API_KEY`` or ``api_key``):

=============================== ==========================================================
``api_url``, ``api_key``        the HTTP API of a Tidings running beside the app
``config``                      a Tidings config (dict or file path): the keys below, when
                                not given, are read from it (the app and Tidings share one
                                file); with ``embedded`` the server in this process runs it
``embedded``                    run Tidings inside this process (a development server, a
                                single-process app) instead of calling ``api_url``
``connection_url``              where the page's client connects (default: from
                                ``api_url``, ``ws://host:port/connection/websocket``); a
                                path (``/connection/websocket``) is completed by the page
``token_hmac_secret_key``       the server's ``client.token.hmac_secret_key``
``token_audience``,             ``client.token.audience`` / ``issuer`` / ``user_id_claim``
``token_issuer``,
``token_user_id_claim``
``subscription_token_hmac_...`` the server's ``client.subscription_token.hmac_secret_key``
``token_ttl``,                  lifetime of minted tokens (seconds or ``"1h"``; default 1 h;
``subscription_token_ttl``      0: no expiry)
``allow_anonymous``             give users who are not logged in an anonymous token (user "")
                                instead of 401
``timeout``, ``retries``        of the HTTP publish client (``tidings.client``)
=============================== ==========================================================

Tokens are signed by ``tidings.tokentool.sign_token``, the function ``tidings gentoken``
uses: the claims (user in ``user_id_claim``, ``aud``, ``iss``, ``exp``) are the ones the
server checks.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tidings.config import Config, config_to_dict, parse_duration
from tidings.config.schema import ConfigError
from tidings.embed import ConfigSource, build_config
from tidings.tokentool import TokenToolError, sign_token

__all__ = ["Settings", "SettingsError", "Tokens"]


class SettingsError(ValueError):
    """The integration's settings cannot be used; the message names the key."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    api_url: str = ""
    api_key: str = ""
    config: ConfigSource = None
    embedded: bool = False
    connection_url: str = ""
    token_hmac_secret_key: str = ""
    token_audience: str = ""
    token_issuer: str = ""
    token_user_id_claim: str = ""
    subscription_token_hmac_secret_key: str = ""
    token_ttl: float = 3600.0
    subscription_token_ttl: float = 3600.0
    allow_anonymous: bool = False
    timeout: float = 3.0
    retries: int = 2
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Keys of one framework's own (Django's ``can_subscribe``), lower-cased."""

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], *, extra: Sequence[str] = (),
                     where: str = "TIDINGS") -> Settings:
        """Settings from a mapping with any-case keys; ``extra`` names the framework's own
        keys. An unknown key is an error naming the closest known one."""
        known = {f.name for f in dataclasses.fields(cls) if f.name != "extra"}
        values: dict[str, Any] = {}
        own: dict[str, Any] = {}
        for key, value in raw.items():
            name = str(key).lower()
            if name in known:
                values[name] = value
            elif name in extra:
                own[name] = value
            else:
                close = difflib.get_close_matches(name, [*known, *extra], n=1)
                hint = ""
                if close:  # in the case the key was written in
                    near = close[0].upper() if str(key).isupper() else close[0]
                    hint = f" (did you mean {near!r}?)"
                raise SettingsError(f"{where}: unknown key {key!r}{hint}")
        for name in ("token_ttl", "subscription_token_ttl", "timeout"):
            if name in values:
                try:
                    values[name] = parse_duration(values[name], f"{where}.{name}")
                except ConfigError as exc:
                    raise SettingsError(str(exc)) from exc
        return cls(**values, extra=own)

    def server_config(self, base: Config | None = None) -> Config:
        """The Tidings config the tokens and the embedded server follow: ``base`` (the
        config of a server given in code) or ``config``, with the explicit keys laid over
        it (a copy: ``base`` is not changed)."""
        try:
            config = build_config(self.config if base is None else config_to_dict(base))
        except (ConfigError, OSError) as exc:
            raise SettingsError(f"TIDINGS config: {exc}") from exc
        token = config.client.token
        for name in ("hmac_secret_key", "audience", "issuer", "user_id_claim"):
            value = getattr(self, f"token_{name}")
            if value:
                setattr(token, name, value)
        if self.subscription_token_hmac_secret_key:
            config.client.subscription_token.enabled = True
            config.client.subscription_token.hmac_secret_key = \
                self.subscription_token_hmac_secret_key
        if self.api_key:
            config.http_api.key = self.api_key
        return config


class Tokens:
    """Connection and subscription JWTs for the page's client, as the server checks them."""

    def __init__(self, settings: Settings, config: Config) -> None:
        self.settings = settings
        self.config = config

    def connection(self, user: str, *, info: Any = None, channels: Sequence[str] = (),
                   ttl: float | None = None) -> str:
        """A connection token for ``user`` ("" is anonymous), with ``info`` (what other
        clients see of it) and server-side ``channels`` when given."""
        extra: dict[str, Any] = {}
        if info is not None:
            extra["info"] = info
        if channels:
            extra["channels"] = list(channels)
        return self._sign(user, self.settings.token_ttl if ttl is None else ttl, False, extra)

    def subscription(self, user: str, channel: str, *, info: Any = None,
                     ttl: float | None = None) -> str:
        """A subscription token for ``user`` and ``channel``."""
        extra: dict[str, Any] = {"channel": channel}
        if info is not None:
            extra["info"] = info
        ttl = self.settings.subscription_token_ttl if ttl is None else ttl
        return self._sign(user, ttl, True, extra)

    def _sign(self, user: str, ttl: float, subscription: bool, extra: dict[str, Any]) -> str:
        try:
            return sign_token(self.config, user, ttl=ttl, subscription=subscription,
                              extra=extra)
        except TokenToolError as exc:
            raise SettingsError(f"TIDINGS: cannot sign tokens: {exc} (set "
                                "token_hmac_secret_key, or config)") from exc
