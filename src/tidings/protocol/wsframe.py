"""RFC 6455 framing, sans-I/O: parse client frames, build server frames.

Why not a library's framing: measured here (``benchmarks/micro_framing.py``, docs/design.md),
``websockets``' sans-I/O protocol costs ~6 us to parse one small client frame, ~1.5 us to build
one server frame and ~1.4 KiB of state per connection; this module takes ~1.7 us, ~0.26 us and
~72 bytes. Fan-out builds each server frame once and shares it, so framing must be cheap and
separable from any per-connection object. Server frames are never masked or fragmented.
"""

from __future__ import annotations

import base64
import hashlib
import struct

__all__ = [
    "MAX_FRAGMENTS",
    "MAX_FRAMES_PER_FEED",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONT",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "FrameError",
    "FrameParser",
    "accept_key",
    "build_close",
    "build_frame",
]

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_pack_short = struct.Struct("!BBH").pack
_pack_long = struct.Struct("!BBQ").pack


class FrameError(Exception):
    """The peer broke the framing rules; close with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value for a ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest()).decode("ascii")


def build_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return _pack_short(0x80 | opcode, 126, n) + payload
    return _pack_long(0x80 | opcode, 127, n) + payload


def build_close(code: int, reason: str) -> bytes:
    # At most 123 bytes of reason, cut on a character boundary so it stays valid UTF-8.
    text = reason.encode("utf-8")[:123].decode("utf-8", "ignore").encode("utf-8")
    body = struct.pack("!H", code) + text
    return build_frame(body, OP_CLOSE)


def _unmask(payload: bytes | bytearray, mask: bytes | bytearray) -> bytes:
    n = len(payload)
    if n == 0:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
        n, "little"
    )


# Per message: at most this many fragments (a storm of empty continuation frames is a cheap way
# to make a server work hard for nothing).
MAX_FRAGMENTS = 1024
# Per ``feed`` call: at most this many frames are parsed; the rest waits in the buffer
# (``backlog``) so that one read full of tiny frames cannot hold the event loop for long.
MAX_FRAMES_PER_FEED = 256


class FrameParser:
    """Turns bytes from a client into complete messages ``(opcode, payload)``.

    Data messages are reassembled from fragments; control frames (close, ping, pong) are
    returned as they come. ``max_size`` bounds a whole message (-> close 1009), MAX_FRAGMENTS
    its fragments (-> 1008). Work is linear in the input: a frame still arriving is not parsed
    again until enough bytes are there, and the fragments' total is kept as a number."""

    __slots__ = ("_buf", "_frag_op", "_frag_size", "_frags", "_max_size", "_need", "backlog")

    def __init__(self, max_size: int) -> None:
        self._buf: bytearray | None = None  # made when a frame spans reads (idle: none)
        self._need = 0  # bytes the buffered frame needs before it can be parsed
        self._max_size = max_size
        self._frags: list[bytes] | None = None
        self._frag_size = 0
        self._frag_op = 0
        self.backlog = False  # frames are left in the buffer: call feed(b"") again

    def feed(self, data: bytes, limit: int = MAX_FRAMES_PER_FEED) -> list[tuple[int, bytes]]:
        buf = self._buf
        if buf is not None:
            buf += data
            if len(buf) < self._need:
                return []
            view: bytes | bytearray = buf
        else:
            view = data
        out: list[tuple[int, bytes]] = []
        pos = self._parse(view, out, limit)
        if buf is not None:
            del buf[:pos]
            if not buf:
                self._buf = None
        elif pos < len(view):
            self._buf = bytearray(view[pos:])
        return out

    def _parse(self, buf: bytes | bytearray, out: list[tuple[int, bytes]], limit: int) -> int:
        """Parse complete frames from ``buf`` into ``out``; returns the bytes consumed.

        Complexity 16 (radon): the RFC 6455 header, field by field, in one loop on purpose:
        this runs for every frame a client sends, and each split costs a call per frame."""
        pos = 0
        end = len(buf)
        self._need = 0
        self.backlog = False
        while end - pos >= 2:
            if len(out) >= limit:
                self.backlog = True
                break
            b0 = buf[pos]
            b1 = buf[pos + 1]
            if b0 & 0x70:
                raise FrameError(1002, "reserved bits set")
            if not b1 & 0x80:
                raise FrameError(1002, "client frames must be masked")
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            n = b1 & 0x7F
            hdr = pos + 2
            if n == 126:
                if end - hdr < 2:
                    break
                n = int.from_bytes(buf[hdr : hdr + 2], "big")
                hdr += 2
            elif n == 127:
                if end - hdr < 8:
                    break
                n = int.from_bytes(buf[hdr : hdr + 8], "big")
                hdr += 8
            if opcode >= 0x8:
                if n > 125 or not fin:
                    raise FrameError(1002, "invalid control frame")
            elif n > self._max_size or (
                self._frags is not None and n + self._frag_size > self._max_size
            ):
                raise FrameError(1009, "message too big")
            if end - hdr < 4 + n:
                self._need = hdr + 4 + n - pos
                break
            mask = buf[hdr : hdr + 4]
            payload = _unmask(buf[hdr + 4 : hdr + 4 + n], mask)
            pos = hdr + 4 + n
            self._frame(opcode, fin, payload, out)
        return pos

    def _frame(self, opcode: int, fin: int, payload: bytes, out: list[tuple[int, bytes]]) -> None:
        if opcode >= 0x8:
            if opcode not in (OP_CLOSE, OP_PING, OP_PONG):
                raise FrameError(1002, "unknown opcode")
            out.append((opcode, payload))
        elif opcode == OP_CONT:
            frags = self._frags
            if frags is None:
                raise FrameError(1002, "unexpected continuation frame")
            if len(frags) >= MAX_FRAGMENTS:
                raise FrameError(1008, "too many fragments")
            frags.append(payload)
            self._frag_size += len(payload)
            if fin:
                out.append((self._frag_op, b"".join(frags)))
                self._frags = None
                self._frag_size = 0
        elif opcode in (OP_TEXT, OP_BINARY):
            if self._frags is not None:
                raise FrameError(1002, "expected a continuation frame")
            if fin:
                out.append((opcode, payload))
            else:
                self._frags = [payload]
                self._frag_size = len(payload)
                self._frag_op = opcode
        else:
            raise FrameError(1002, "unknown opcode")
