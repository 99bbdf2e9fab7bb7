"""Where the Redis engine connects, and how: addresses (``redis://``, ``rediss://``,
``unix://``, ``host:port``) with their credentials, TLS, client options for redis-py, the jump
consistent hash that places channels on shards, and Redis errors as the engine reports them."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tidings.config import RedisConfig
from tidings.config.tls import client_context

__all__ = [
    "REDIS_ERRORS",
    "Endpoint",
    "RedisReplyError",
    "client_kwargs",
    "describe",
    "jump_hash",
    "open_transport",
    "parse_address",
    "shard_index",
    "ssl_context",
]



class RedisReplyError(Exception):
    """Redis answered a command with an error."""


REDIS_ERRORS = (
    redis.exceptions.RedisError, RedisReplyError, OSError, asyncio.TimeoutError
)


def describe(exc: BaseException) -> str:
    """An exception and its causes in one line (redis-py wraps the interesting part)."""
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(parts) < 4:
        text = str(seen) or type(seen).__name__
        if text not in parts:
            parts.append(text if str(seen) else type(seen).__name__)
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, asyncio.TimeoutError):
        parts.insert(0, "timed out")
    return ": ".join(parts)


def jump_hash(key: int, buckets: int) -> int:
    """Jump consistent hash (Lamping and Veach, 2014): a key's bucket among ``buckets``, moving
    as few keys as possible when the number of buckets changes."""
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        j = int((b + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return b


def shard_index(channel: str, shards: int) -> int:
    if shards == 1:
        return 0
    digest = hashlib.blake2b(channel.encode(), digest_size=8).digest()
    return jump_hash(int.from_bytes(digest, "little"), shards)


@dataclass(frozen=True)
class Endpoint:
    """Where one connection goes: TCP host/port (maybe TLS) or a unix socket."""

    host: str = ""
    port: int = 6379
    path: str = ""
    tls: bool = False
    user: str = ""
    password: str = ""
    db: int = 0

    def __str__(self) -> str:
        return f"unix://{self.path}" if self.path else f"{self.host}:{self.port}"


def parse_address(address: str, cfg: RedisConfig) -> Endpoint:
    """``redis://[user:pass@]host:port[/db]``, ``rediss://...``, ``unix:///path``, or
    ``host:port``; credentials and db in the URL win over the config's."""
    if "://" not in address:
        address = "redis://" + address
    url = urlsplit(address)
    user = unquote(url.username) if url.username else cfg.user
    password = unquote(url.password) if url.password else cfg.password
    if url.scheme == "unix":
        return Endpoint(path=url.path, user=user, password=password, db=cfg.db)
    db = cfg.db
    if url.path.strip("/"):
        db = int(url.path.strip("/"))
    return Endpoint(
        host=url.hostname or "127.0.0.1",
        port=url.port or 6379,
        tls=url.scheme == "rediss" or cfg.tls.enabled,
        user=user,
        password=password,
        db=db,
    )


def ssl_context(cfg: RedisConfig) -> ssl.SSLContext:
    return client_context(cfg.tls)


def client_kwargs(cfg: RedisConfig, ep: Endpoint) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "username": ep.user or None,
        "password": ep.password or None,
        "socket_connect_timeout": cfg.connect_timeout,
        "socket_timeout": cfg.io_timeout,
        "client_name": cfg.client_name or None,
        # One retry: a pooled connection that died with a restarted Redis reconnects once.
        "retry": Retry(NoBackoff(), 1),
    }
    if ep.tls:
        tls = cfg.tls
        kwargs.update(
            ssl=True,
            ssl_ca_certs=tls.server_ca_pem_file or None,
            ssl_certfile=tls.cert_pem_file or None,
            ssl_keyfile=tls.key_pem_file or None,
            ssl_cert_reqs="none" if tls.insecure_skip_verify else "required",
            ssl_check_hostname=not tls.insecure_skip_verify,
        )
    return kwargs


async def open_transport(
    endpoint: Endpoint, cfg: RedisConfig, factory: Callable[[], asyncio.Protocol]
) -> None:
    """Connect ``factory()``'s protocol to ``endpoint`` (TCP, TLS or unix socket)."""
    loop = asyncio.get_running_loop()
    if endpoint.path:
        connecting = loop.create_unix_connection(factory, endpoint.path)
    else:
        connecting = loop.create_connection(
            factory, endpoint.host, endpoint.port,
            ssl=ssl_context(cfg) if endpoint.tls else None,
            server_hostname=(cfg.tls.server_name or endpoint.host) if endpoint.tls else None,
        )
    await asyncio.wait_for(connecting, cfg.connect_timeout)
