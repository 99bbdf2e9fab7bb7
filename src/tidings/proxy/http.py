"""Hooks over HTTP: Centrifugo's JSON proxy protocol (PROXY.md §3), on aiohttp's client.

One ``HttpPool`` per node: one aiohttp session whose connector keeps connections to each
backend alive and reuses them (no connection per call). The request body is the request
struct as JSON (payloads verbatim); the answer must be a 200 with a JSON object, read up to
``max_response_size`` bytes; ``http.status_to_code_transforms`` turn chosen statuses into an
error or a disconnect answer instead of a failure.
"""

from __future__ import annotations

import logging
import ssl
from typing import TypeVar

import aiohttp
import msgspec

from tidings.config.proxyschema import ProxyConfig, ProxyTLSConfig
from tidings.protocol.proxyproto import Disconnect, Error
from tidings.proxy.base import HookFailure, Who, forwarded

__all__ = ["MAX_RESPONSE_SIZE", "HttpCaller", "HttpPool"]

log = logging.getLogger("tidings.proxy")

R = TypeVar("R", bound=msgspec.Struct)

MAX_RESPONSE_SIZE = 8 * 1024 * 1024  # an answer larger than this is a failure (error 100)
_POOL_LIMIT = 512  # connections open at once to all backends; more calls wait for one
_encode = msgspec.json.Encoder().encode


class HttpPool:
    """The node's HTTP client for hooks; created on first use, inside the running loop."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=_POOL_LIMIT, keepalive_timeout=60.0,
                                             ttl_dns_cache=10)
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=True, skip_auto_headers=("User-Agent",),
                headers={"User-Agent": "tidings-proxy"},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _ssl_context(tls: ProxyTLSConfig) -> ssl.SSLContext | None:
    if not tls.enabled:
        return None
    ctx = ssl.create_default_context(cafile=tls.server_ca_pem_file or None)
    if tls.cert_pem_file:
        ctx.load_cert_chain(tls.cert_pem_file, tls.key_pem_file or None)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class HttpCaller:
    """One proxy object with an ``http(s)://`` endpoint."""

    def __init__(self, name: str, config: ProxyConfig, pool: HttpPool) -> None:
        self.name = name
        self.config = config
        self._pool = pool
        self._timeout = aiohttp.ClientTimeout(total=config.timeout)
        self._ssl = _ssl_context(config.http.tls)
        self._static = {k.lower(): v for k, v in config.http.static_headers.items()}
        self._transforms = {t.status_code: t for t in config.http.status_to_code_transforms}

    async def call(self, hook: str, request: msgspec.Struct, response: type[R],
                   who: Who | None) -> R:
        headers = {**self._static, **forwarded(self.config, who),
                   "content-type": "application/json"}
        try:
            body = _encode(request)
        except (TypeError, msgspec.EncodeError) as exc:
            raise self._failed(hook, f"request not encodable: {exc}") from None
        try:
            async with self._pool.session().post(
                self.config.endpoint, data=body, headers=headers, timeout=self._timeout,
                ssl=self._ssl if self._ssl is not None else True,
            ) as resp:
                if resp.status != 200:
                    return self._transformed(hook, resp.status, response)
                raw = await _read_limited(resp)
        except TimeoutError:
            raise self._failed(hook, f"no answer within {self.config.timeout:g}s") from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise self._failed(hook, f"{type(exc).__name__}: {exc}") from None
        try:
            return msgspec.json.decode(raw, type=response)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise self._failed(hook, f"unreadable answer: {exc}") from None

    def _transformed(self, hook: str, status: int, response: type[R]) -> R:
        transform = self._transforms.get(status)
        if transform is None:
            raise self._failed(hook, f"status {status}")
        if transform.to_error.code:
            err = transform.to_error
            return response(error=Error(code=err.code, message=err.message,
                                        temporary=err.temporary))
        dis = transform.to_disconnect
        return response(disconnect=Disconnect(code=dis.code, reason=dis.reason))

    def _failed(self, hook: str, why: str) -> HookFailure:
        log.warning("%s proxy %r (%s) failed: %s", hook, self.name, self.config.endpoint, why)
        return HookFailure(why)


async def _read_limited(resp: aiohttp.ClientResponse) -> bytes:
    length = resp.content_length
    if length is not None and length > MAX_RESPONSE_SIZE:
        raise ValueError(f"answer of {length} bytes is over {MAX_RESPONSE_SIZE}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(65536):
        size += len(chunk)
        if size > MAX_RESPONSE_SIZE:
            raise ValueError(f"answer over {MAX_RESPONSE_SIZE} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
