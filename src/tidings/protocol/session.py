"""Per-connection protocol state and decisions. Sans-I/O: no awaits, time passed in.

Rules (PROTOCOL.md §1.5, §1.7, §2, §9.3):
1. The first command must be ``connect``; anything else, a second connect, or any command after
   a failed connect -> disconnect 3501.
2. A command with ``id`` 0 and no ``send`` is a pong; a pong without a pending ping -> 3501.
3. A command with no known request field -> 3501.
4. Decisions that need no engine (authentication, permissions, granted subscription options,
   recovery verdicts) live here; the async client (``tidings.core.client``) only performs the
   engine calls they describe and hands results back.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field

from tidings.config import ChannelOptions, ClientConfig
from tidings.errors import Disconnect, ErrorCode, ReplyError
from tidings.protocol.channels import ChannelRules, check_data_format
from tidings.protocol.grants import (
    FLAG_REJECT_UNRECOVERED,
    Sub,
    SubscribeDecision,
    as_proxied,
    grant,
    raw_or_none,
    subscribe_result,
)
from tidings.protocol.messages import (
    ClientInfo,
    Command,
    ConnectRequest,
    Publication,
    StreamPosition,
    SubscribeRequest,
    SubscribeResult,
)
from tidings.protocol.tokens import (
    ConnectToken,
    InvalidToken,
    SubscribeOptions,
    SubscriptionToken,
    TokenExpired,
    TokenVerifier,
)

__all__ = [
    "ConnectDecision",
    "Session",
    "State",
    "Sub",
    "SubscribeDecision",
    "command_method",
]


_METHODS = (
    "connect",
    "subscribe",
    "unsubscribe",
    "publish",
    "presence",
    "presence_stats",
    "history",
    "ping",
    "send",
    "rpc",
    "refresh",
    "sub_refresh",
)


def command_method(cmd: Command) -> str:
    """The name of the request field set in ``cmd`` ("" for none)."""
    for name in _METHODS:
        if getattr(cmd, name) is not None:
            return name
    return ""


class State(enum.IntEnum):
    CONNECTING = 0
    CONNECTED = 1
    FAILED = 2  # connect was answered with an error: only a reconnect helps
    CLOSED = 3


@dataclass(slots=True)
class Credentials:
    """Who a connection is, wherever that came from (a connection JWT, an application hook,
    or nobody: anonymous): the first half of a connect. ``decide`` is the second."""

    user: str
    info: bytes | None = None
    expires_at: int = 0  # unix seconds; 0: never
    channels: list[str] = field(default_factory=list)  # subscribed server-side
    subs: dict[str, SubscribeOptions] = field(default_factory=dict)  # the same, with options
    data: bytes | None = None  # for the client, in the connect result (a connect hook's)
    meta: bytes | None = None  # kept server-side for later hooks (a connect hook's)


@dataclass(slots=True)
class ConnectDecision:
    user: str
    info: bytes | None
    expires_at: int
    data: bytes | None = None
    subs: list[SubscribeDecision] = field(default_factory=list)


class Session:
    """Protocol state of one client connection."""

    __slots__ = (
        "awaiting_pong",
        "client_id",
        "config",
        "expires_at",
        "inflight",
        "info",
        "rules",
        "state",
        "sub_verifier",
        "subs",
        "user",
        "verifier",
    )

    def __init__(
        self,
        config: ClientConfig,
        rules: ChannelRules,
        verifier: TokenVerifier,
        sub_verifier: TokenVerifier,
        *,
        client_id: str | None = None,
    ) -> None:
        self.config = config
        self.rules = rules
        self.verifier = verifier
        self.sub_verifier = sub_verifier
        self.client_id = client_id or str(uuid.uuid4())
        self.state = State.CONNECTING
        self.user = ""
        self.info: bytes | None = None
        self.expires_at = 0
        self.subs: dict[str, Sub] = {}
        self.inflight: set[str] = set()
        self.awaiting_pong = False

    # ---------------------------------------------------------------- sequencing

    def check_command(self, cmd: Command) -> str:
        """Validate command order; return the method name ("pong" for a pong)."""
        method = command_method(cmd)
        if cmd.id == 0 and method != "send":
            if method == "" and self.state is State.CONNECTED and self.awaiting_pong:
                self.awaiting_pong = False
                return "pong"
            raise Disconnect.BAD_REQUEST
        if not method:
            raise Disconnect.BAD_REQUEST
        if self.state is State.CONNECTING:
            if method != "connect":
                raise Disconnect.BAD_REQUEST
        elif self.state is State.CONNECTED:
            if method == "connect":
                raise Disconnect.BAD_REQUEST
        else:
            raise Disconnect.BAD_REQUEST
        return method

    def client_info(self, chan_info: bytes | None = None) -> ClientInfo:
        return ClientInfo(
            user=self.user, client=self.client_id, conn_info=raw_or_none(self.info),
            chan_info=raw_or_none(chan_info),
        )

    # ---------------------------------------------------------------- connect

    def _verify_connect_token(self, token: str, now: float) -> ConnectToken:
        try:
            return self.verifier.verify_connect(token, now)
        except TokenExpired:
            if self.config.insecure:
                return self.verifier.verify_connect(token, 0.0)
            raise ErrorCode.TOKEN_EXPIRED from None
        except InvalidToken:
            raise Disconnect.INVALID_TOKEN from None

    def decide_connect(self, req: ConnectRequest, now: float) -> ConnectDecision:
        """Both halves for a connect without application hooks: the token's credentials, or
        anonymous ones; raises ReplyError/Disconnect (FAILED on a ReplyError)."""
        try:
            return self.decide(self.credentials(req, now) or self.anonymous(), req, now)
        except ReplyError:
            self.state = State.FAILED
            raise

    def credentials(self, req: ConnectRequest, now: float) -> Credentials | None:
        """The connection token's credentials; None without a token. Raises for a token
        that does not verify (3500), has expired (109) or is anonymous where that is
        disallowed (3507)."""
        if not req.token:
            return None
        token: ConnectToken = self._verify_connect_token(req.token, now)
        if not token.user and self.config.disallow_anonymous_connection_tokens:
            raise Disconnect.PERMISSION_DENIED
        return Credentials(
            user=token.user, info=token.info,
            expires_at=0 if self.config.insecure else token.expires_at,
            channels=list(token.channels), subs=dict(token.subs), meta=token.meta,
        )

    def anonymous(self) -> Credentials:
        """Credentials for a connection nobody vouched for, where allowed (else 3501)."""
        if self.config.allow_anonymous_connect_without_token or self.config.insecure:
            return Credentials(user="")
        raise Disconnect.BAD_REQUEST

    def decide(self, creds: Credentials, req: ConnectRequest, now: float) -> ConnectDecision:
        """What the connection gets: its identity, expiry and server-side subscriptions (the
        credentials' channels, the personal channel, the requested ``subs`` it may have)."""
        if creds.expires_at and creds.expires_at <= now:
            raise ErrorCode.EXPIRED
        user, info, expires_at = creds.user, creds.info, creds.expires_at
        self.user, self.info = user, info
        decision = ConnectDecision(user=user, info=info, expires_at=expires_at, data=creds.data)

        requested = req.subs or {}
        server_side = self._server_side(creds, requested)
        limit = self.config.channel_limit
        if limit and len(server_side) > limit:
            raise Disconnect.CHANNEL_LIMIT  # as Centrifugo: no connect reply, 3505
        for ch, sub_opts in server_side.items():
            req_sub = requested.get(ch) or SubscribeRequest(channel=ch)
            opts = self.rules.options(ch)  # unknown namespace -> 102
            sub = self.grant(ch, opts, req_sub, sub_opts.override, server_side=True)
            sub.chan_info = sub_opts.info
            decision.subs.append(
                SubscribeDecision(
                    sub=sub,
                    recover=req_sub.recover and sub.recoverable,
                    offset=req_sub.offset,
                    epoch=req_sub.epoch,
                    data=sub_opts.data,
                )
            )
        return decision

    def _server_side(self, creds: Credentials, requested: dict[str, SubscribeRequest]
                     ) -> dict[str, SubscribeOptions]:
        """The channels a connection is subscribed to server-side: the credentials', the
        personal channel, and the requested ones it may subscribe to without a token."""
        server_side: dict[str, SubscribeOptions] = dict(creds.subs)
        if not creds.subs:
            for ch in creds.channels:
                server_side[ch] = SubscribeOptions()
        user = creds.user
        personal = self.config.subscribe_to_user_personal_channel
        if personal.enabled and user:
            ch = self.rules.personal_channel(user, personal.personal_channel_namespace)
            server_side.setdefault(ch, SubscribeOptions())
        for ch in requested:
            if ch in server_side:
                continue
            try:
                opts = self.rules.options(ch)
            except ReplyError:
                raise Disconnect.BAD_REQUEST from None
            if self.rules.can_subscribe_without_token(ch, opts, user):
                server_side[ch] = SubscribeOptions()
        return server_side

    def connected(self, decision: ConnectDecision) -> None:
        self.state = State.CONNECTED
        self.expires_at = decision.expires_at

    # ---------------------------------------------------------------- subscribe

    def grant(self, channel: str, opts: ChannelOptions, req: SubscribeRequest,
              override: dict[str, bool], *, server_side: bool) -> Sub:
        return grant(self.rules, self.user, channel, opts, req, override,
                     server_side=server_side)

    def subscribe_result(self, decision: SubscribeDecision, pubs: list[Publication],
                         top: StreamPosition, now: float) -> tuple[SubscribeResult, int]:
        return subscribe_result(decision, pubs, top, now)

    def decide_subscribe(self, req: SubscribeRequest, now: float) -> SubscribeDecision:
        """Validate a client subscribe; raise ReplyError/Disconnect."""
        channel = req.channel
        if not channel:
            raise Disconnect.BAD_REQUEST
        opts = self.rules.options(channel)
        if channel in self.subs or channel in self.inflight:
            raise ErrorCode.ALREADY_SUBSCRIBED
        if self.config.channel_limit and (
            len(self.subs) + len(self.inflight) >= self.config.channel_limit
        ):
            raise ErrorCode.LIMIT_EXCEEDED
        if req.type != 0:
            raise ErrorCode.PERMISSION_DENIED
        override: dict[str, bool] = {}
        chan_info: bytes | None = None
        data: bytes | None = None
        expires_at = 0
        proxied = False
        if req.token:
            token = self._verify_sub_token(req.token, channel, now, ErrorCode.PERMISSION_DENIED)
            expires_at = token.expires_at
            override = token.options.override
            chan_info, data = token.options.info, token.options.data
        elif self._proxied(channel, opts):
            proxied = True  # the subscribe hook decides (PROXY.md §4.3)
            req = as_proxied(req)
        elif not self.rules.can_subscribe_without_token(channel, opts, self.user):
            raise ErrorCode.PERMISSION_DENIED
        sub = self.grant(channel, opts, req, override, server_side=False)
        sub.chan_info = chan_info
        sub.expires_at = expires_at
        return SubscribeDecision(
            sub=sub,
            recover=req.recover and sub.recoverable,
            offset=req.offset,
            epoch=req.epoch,
            reject_unrecovered=bool(req.flag & FLAG_REJECT_UNRECOVERED),
            data=data,
            # In a namespace with a sub_refresh hook the server refreshes: no expiry in the reply.
            token_expires=expires_at > 0 and not opts.sub_refresh_proxy_enabled,
            proxied=proxied,
        )

    def _proxied(self, channel: str, opts: ChannelOptions) -> bool:
        """A subscribe without a token that the namespace's subscribe hook decides: not a
        private channel (103 without a token) nor a user-limited one (the rules decide)."""
        if not opts.subscribe_proxy_enabled:
            return False
        if self.rules.is_private(channel):
            raise ErrorCode.PERMISSION_DENIED
        return not self.rules.is_user_limited(channel, opts)

    def need_presence_access(self, channel: str) -> ChannelOptions:
        opts = self.rules.options(channel)
        if not opts.presence:
            raise ErrorCode.NOT_AVAILABLE
        if not self.rules.can_presence(opts, self.user, channel in self.subs):
            raise ErrorCode.PERMISSION_DENIED
        return opts

    def need_history_access(self, channel: str) -> ChannelOptions:
        opts = self.rules.options(channel)
        if not opts.history_enabled:
            raise ErrorCode.NOT_AVAILABLE
        if not self.rules.can_history(opts, self.user, channel in self.subs):
            raise ErrorCode.PERMISSION_DENIED
        return opts

    def need_publish_access(self, channel: str, data: bytes) -> ChannelOptions:
        """The channel's options if the client may publish ``data`` there; with a publish
        hook in the namespace, the hook decides instead of the permission rules."""
        opts = self.rules.options(channel)
        if not opts.publish_proxy_enabled and not self.rules.can_publish(
                opts, self.user, channel in self.subs):
            raise ErrorCode.PERMISSION_DENIED
        check_data_format(opts, data)
        return opts

    # ---------------------------------------------------------------- refresh

    def refresh(self, token: str, now: float) -> int:
        """Connection token refresh; returns the new expiry (0: never)."""
        if not token:
            raise Disconnect.BAD_REQUEST
        try:
            claims = self.verifier.verify_connect(token, now)
        except TokenExpired:
            raise Disconnect.EXPIRED from None
        except InvalidToken:
            raise Disconnect.INVALID_TOKEN from None
        if claims.user != self.user:
            raise Disconnect.INVALID_TOKEN
        expires_at = 0 if self.config.insecure else claims.expires_at
        if expires_at and expires_at <= now:
            raise ErrorCode.EXPIRED
        self.expires_at = expires_at
        if claims.info is not None:
            self.info = claims.info
        return expires_at

    def _verify_sub_token(
        self, token: str, channel: str, now: float, invalid: ReplyError | Disconnect
    ) -> SubscriptionToken:
        """Verify a subscription token for ``channel``: an unverifiable token raises
        ``invalid`` (103 on subscribe, 3500 on sub_refresh), an expired one 109, one issued for
        another channel, user or client 3500, an ``expire_at`` in the past 110."""
        try:
            claims = self.sub_verifier.verify_subscribe(token, now)
        except TokenExpired:
            raise ErrorCode.TOKEN_EXPIRED from None
        except InvalidToken:
            raise invalid from None
        if claims.channel != channel or claims.user != self.user:
            raise Disconnect.INVALID_TOKEN
        if claims.client and claims.client != self.client_id:
            raise Disconnect.INVALID_TOKEN
        if claims.expires_at and claims.expires_at <= now:
            raise ErrorCode.EXPIRED
        return claims

    def sub_refresh(self, channel: str, token: str, now: float) -> int:
        """Subscription token refresh; returns the new expiry (0: never)."""
        if not channel:
            raise Disconnect.BAD_REQUEST
        sub = self.subs.get(channel)
        if sub is None:
            raise ErrorCode.PERMISSION_DENIED
        if sub.opts.sub_refresh_proxy_enabled:
            raise Disconnect.BAD_REQUEST  # the server refreshes this one (sub_refresh hook)
        if not token:
            raise ErrorCode.BAD_REQUEST
        expires_at = self._verify_sub_token(
            token, channel, now, Disconnect.INVALID_TOKEN
        ).expires_at
        sub.expires_at = expires_at
        return expires_at
