"""Admin login: the token ``/admin/auth`` gives for the password, and the throttle of wrong
passwords.

The token is Centrifugo's (ADMIN.md §3.3, gorilla/securecookie with an HMAC-SHA256 key and
no encryption), so a token of one works with the other given the same ``admin.secret``::

    value = base64url(gob("authorized"))
    mac   = HMAC-SHA256(secret, "token|" + ts + "|" + value)
    token = base64url(ts + "|" + value + "|" + mac)

It is valid for ``MAX_AGE`` (30 days, securecookie's default) from ``ts`` or until the secret
changes; there is no server-side session. Every comparison of a secret is constant-time.

The throttle counts wrong passwords per client address (IPv6: per /64). After ``FREE`` of
them, each attempt must wait ``BASE_DELAY`` seconds after the last failure, doubling with each
further failure up to ``MAX_DELAY``; an attempt made earlier is answered 429 with the wait,
the password unchecked. A right password clears the address's count.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["MAX_AGE", "Throttle", "make_token", "password_matches", "token_valid"]

MAX_AGE = 30 * 24 * 3600  # seconds (securecookie's default maxAge)
MAX_TOKEN_LENGTH = 4096
CLOCK_SKEW = 300  # seconds a token's time may be ahead of ours
_NAME = b"token"
# gob's encoding of the string "authorized": length, type id (string), value length, bytes.
_GOB_AUTHORIZED = bytes([0x0D, 0x0C, 0x00, 0x0A]) + b"authorized"


def _b64encode(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data)


def _mac(secret: bytes, ts: bytes, value: bytes) -> bytes:
    return hmac.new(secret, _NAME + b"|" + ts + b"|" + value, hashlib.sha256).digest()


def make_token(secret: str, now: float | None = None) -> str:
    """A login token signed with ``secret`` (issued ``now``, unix seconds)."""
    key = secret.encode()
    ts = str(int(time.time() if now is None else now)).encode()
    value = _b64encode(_GOB_AUTHORIZED)
    return _b64encode(ts + b"|" + value + b"|" + _mac(key, ts, value)).decode("ascii")


def token_valid(token: str, secret: str, now: float | None = None) -> bool:
    """Whether ``token`` was signed with ``secret`` and is not expired (nor from the
    future, beyond ``CLOCK_SKEW``). An empty secret validates nothing."""
    if not secret or not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        return False
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
    except (binascii.Error, ValueError):
        return False
    parts = raw.split(b"|", 2)
    if len(parts) != 3:
        return False
    ts, value, mac = parts
    if not hmac.compare_digest(mac, _mac(secret.encode(), ts, value)):
        return False
    if not ts.isdigit():
        return False
    issued = int(ts)
    current = time.time() if now is None else now
    if issued < current - MAX_AGE or issued > current + CLOCK_SKEW:
        return False
    try:
        return base64.urlsafe_b64decode(value) == _GOB_AUTHORIZED
    except (binascii.Error, ValueError):
        return False


def password_matches(given: str, password: str) -> bool:
    """Constant-time, whatever the lengths (digests of equal size are compared)."""
    if not password:
        return False
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(),
                               hashlib.sha256(password.encode()).digest())


def address_key(address: str) -> str:
    """Whom a failure is counted against: the IP address, an IPv6 one by its /64 (one host
    usually holds a whole /64)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class Throttle:
    """Wrong passwords per client address, and how long an address must wait (see the
    module doc). At most ``max_entries`` addresses are remembered (the least recently failed
    go first); an entry is forgotten ``forget_after`` seconds after its last failure."""

    FREE = 5
    BASE_DELAY = 5.0
    MAX_DELAY = 300.0

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 max_entries: int = 10_000, forget_after: float = 3600.0) -> None:
        self.clock = clock
        self.max_entries = max_entries
        self.forget_after = forget_after
        # address key -> (failures, time of the last failure), least recent first
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def wait(self, address: str) -> float:
        """Seconds ``address`` must wait before its next attempt (0: it may try now)."""
        key = address_key(address)
        entry = self._failures.get(key)
        if entry is None:
            return 0.0
        failures, last = entry
        now = self.clock()
        if now - last > self.forget_after:
            del self._failures[key]
            return 0.0
        if failures < self.FREE:
            return 0.0
        delay = min(self.BASE_DELAY * 2.0 ** (failures - self.FREE), self.MAX_DELAY)
        return max(0.0, last + delay - now)

    def failed(self, address: str) -> None:
        key = address_key(address)
        failures = self._failures.pop(key, (0, 0.0))[0]
        self._failures[key] = (failures + 1, self.clock())
        while len(self._failures) > self.max_entries:
            self._failures.popitem(last=False)

    def succeeded(self, address: str) -> None:
        self._failures.pop(address_key(address), None)

    def __len__(self) -> int:
        return len(self._failures)
