"""Connecting to PostgreSQL the way Centrifugo's pgx does, with asyncpg (docs/design.md).

A Centrifugo ``dsn`` works as is:

- a URI (``postgresql://user:pass@host:5432/db?sslmode=require``) or libpq's keyword/value
  form (``host=/run/postgresql dbname=app user=app``), turned into a URI for asyncpg;
- pgx's pool options in the query (``pool_max_conns``, ``pool_min_conns``; the other
  ``pool_*`` are read by pgx only and dropped here, since PostgreSQL would refuse them as
  server settings);
- ``postgresql.tls`` (when enabled) as an ``ssl.SSLContext``, its ``*_pem`` keys raw PEM,
  base64 of PEM, or a file path.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import shlex
import ssl
import tempfile
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from tidings.config.consumerschema import ConsumerTLSConfig

__all__ = ["PoolOptions", "connect_kwargs", "pool_options", "tls_context"]

# pgx's default pool size is max(4, CPUs); a partition holds one connection while it works.
MIN_POOL = 4


@dataclass(frozen=True)
class PoolOptions:
    dsn: str  # a URI asyncpg reads
    min_size: int
    max_size: int


def _keyword_dsn(dsn: str) -> str:
    """libpq's ``key=value key='v a l'`` form as a ``postgresql://`` URI (all in the query)."""
    try:
        words = shlex.split(dsn, posix=True)
    except ValueError as exc:
        raise ValueError(f"invalid dsn: {exc}") from None
    params: list[tuple[str, str]] = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise ValueError(f"invalid dsn: {word!r} is not key=value")
        params.append(("database" if key == "dbname" else key, value))
    return "postgresql://?" + urlencode(params, quote_via=quote)


def pool_options(dsn: str, partitions: int, cpus: int | None = None) -> PoolOptions:
    """The DSN for asyncpg and the pool's size: ``pool_max_conns`` when given, else
    max(4, CPUs, partitions + 1) so every partition can hold a connection."""
    uri = dsn if "://" in dsn else _keyword_dsn(dsn)
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(k, v) for k, v in query if not k.startswith("pool_")]
    pool = dict((k, v) for k, v in query if k.startswith("pool_"))
    default = max(MIN_POOL, cpus or os.cpu_count() or 1, partitions + 1)
    max_size = _positive(pool.get("pool_max_conns"), "pool_max_conns") or default
    min_size = min(_positive(pool.get("pool_min_conns"), "pool_min_conns") or 0, max_size)
    rest = urlencode(kept, quote_via=quote)
    clean = f"{parts.scheme}://{parts.netloc}{parts.path}" + (f"?{rest}" if rest else "")
    return PoolOptions(clean, min_size, max_size)


def _positive(value: str | None, key: str) -> int | None:
    if value is None:
        return None
    if not re.fullmatch(r"\d+", value) or int(value) <= 0:
        raise ValueError(f"invalid dsn: {key} must be a positive integer, got {value!r}")
    return int(value)


def _pem(value: str) -> tuple[str, bytes]:
    """("file", path) or ("data", PEM bytes) for a ``*_pem`` value."""
    text = value.strip()
    if text.startswith("-----BEGIN"):
        return "data", text.encode()
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if decoded.lstrip().startswith(b"-----BEGIN"):
        return "data", decoded
    return "file", value.encode()


def _as_file(value: str, keep: list[str]) -> str:
    kind, data = _pem(value)
    if kind == "file":
        return data.decode()
    fd, path = tempfile.mkstemp(suffix=".pem")  # mode 0600: it may hold a private key
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    keep.append(path)
    return path


def tls_context(tls: ConsumerTLSConfig) -> ssl.SSLContext:
    """The client context of ``postgresql.tls`` (TLS >= 1.2, as Centrifugo)."""
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.server_ca_pem:
        kind, data = _pem(tls.server_ca_pem)
        if kind == "file":
            ctx.load_verify_locations(cafile=data.decode())
        else:
            ctx.load_verify_locations(cadata=data.decode())
    if tls.cert_pem:
        temporary: list[str] = []
        try:
            cert = _as_file(tls.cert_pem, temporary)
            key = _as_file(tls.key_pem, temporary) if tls.key_pem else None
            ctx.load_cert_chain(cert, key)
        finally:
            for path in temporary:
                os.unlink(path)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def connect_kwargs(tls: ConsumerTLSConfig) -> dict[str, Any]:
    """Extra ``asyncpg.connect`` arguments: ``ssl`` when ``tls.enabled``."""
    return {"ssl": tls_context(tls)} if tls.enabled else {}
