"""Unit tests for tidings.protocol.wsframe (RFC 6455 framing, sans-I/O)."""

from __future__ import annotations

import base64
import functools
import hashlib
import struct

import pytest

from tests.support import raw
from tidings.protocol.wsframe import (
    MAX_FRAGMENTS,
    MAX_FRAMES_PER_FEED,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameError,
    FrameParser,
    accept_key,
    build_close,
    build_frame,
)

MASK = b"\x37\xfa\x21\x3d"


# Frames of these tests are masked with MASK unless a test says otherwise.
client_frame = functools.partial(raw.client_frame, mask=MASK)


def frame_error(parser: FrameParser, data: bytes) -> FrameError:
    with pytest.raises(FrameError) as info:
        parser.feed(data)
    return info.value


# ------------------------------------------------------------------ parsing


def test_single_frame() -> None:
    parser = FrameParser(65536)
    assert parser.feed(client_frame(b'{"id":1,"connect":{}}')) == [
        (OP_TEXT, b'{"id":1,"connect":{}}')
    ]
    assert parser.feed(client_frame(b"\x00\xff\x10", OP_BINARY)) == [(OP_BINARY, b"\x00\xff\x10")]


def test_mask_is_applied() -> None:
    frame = client_frame(b"Hello", mask=b"\x01\x02\x03\x04")
    expected = [ord("H") ^ 1, ord("e") ^ 2, ord("l") ^ 3, ord("l") ^ 4, ord("o") ^ 1]
    assert frame[6:] == bytes(expected)
    assert FrameParser(100).feed(frame) == [(OP_TEXT, b"Hello")]


def test_empty_payload() -> None:
    assert FrameParser(10).feed(client_frame(b"")) == [(OP_TEXT, b"")]


def test_several_frames_in_one_feed() -> None:
    data = client_frame(b"one") + client_frame(b"", OP_PING) + client_frame(b"three", OP_BINARY)
    assert FrameParser(1000).feed(data) == [
        (OP_TEXT, b"one"),
        (OP_PING, b""),
        (OP_BINARY, b"three"),
    ]


def test_split_byte_by_byte() -> None:
    payloads = [b"a" * 5, b"b" * 300, b"c" * 70000]
    data = b"".join(client_frame(p) for p in payloads)
    parser = FrameParser(100000)
    out: list[tuple[int, bytes]] = []
    for i in range(len(data)):
        got = parser.feed(data[i : i + 1])
        if got:
            # A message appears exactly when its last byte arrives.
            assert i + 1 in (11, 11 + 308, len(data))
        out += got
    assert out == [(OP_TEXT, p) for p in payloads]
    assert parser.feed(b"") == []


def test_split_at_every_offset() -> None:
    data = client_frame(b"x" * 200) + client_frame(b"ping!", OP_PING)
    for cut in range(len(data) + 1):
        parser = FrameParser(1000)
        out = parser.feed(data[:cut]) + parser.feed(data[cut:])
        assert out == [(OP_TEXT, b"x" * 200), (OP_PING, b"ping!")], cut


@pytest.mark.parametrize(
    ("size", "length_bytes"), [(125, 0), (126, 2), (65535, 2), (65536, 8), (100, 2), (10, 8)]
)
def test_length_encodings(size: int, length_bytes: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    frame = client_frame(payload, OP_BINARY, length_bytes=length_bytes)
    assert len(frame) == 2 + length_bytes + 4 + size
    assert FrameParser(70000).feed(frame) == [(OP_BINARY, payload)]


def test_fragmented_message() -> None:
    data = (
        client_frame(b"Hel", OP_TEXT, fin=False)
        + client_frame(b"lo, ", OP_CONT, fin=False)
        + client_frame(b"World", OP_CONT)
    )
    parser = FrameParser(100)
    assert parser.feed(data) == [(OP_TEXT, b"Hello, World")]
    # The parser is ready for the next message.
    assert parser.feed(client_frame(b"next")) == [(OP_TEXT, b"next")]


def test_fragmented_binary_across_feeds() -> None:
    parser = FrameParser(100)
    assert parser.feed(client_frame(b"\x01", OP_BINARY, fin=False)) == []
    assert parser.feed(client_frame(b"\x02", OP_CONT, fin=False)) == []
    assert parser.feed(client_frame(b"\x03", OP_CONT)) == [(OP_BINARY, b"\x01\x02\x03")]


def test_ping_inside_fragmented_message() -> None:
    data = (
        client_frame(b"frag1-", OP_TEXT, fin=False)
        + client_frame(b"are you there", OP_PING)
        + client_frame(b"frag2", OP_CONT)
        + client_frame(b"", OP_PONG)
    )
    assert FrameParser(100).feed(data) == [
        (OP_PING, b"are you there"),
        (OP_TEXT, b"frag1-frag2"),
        (OP_PONG, b""),
    ]


def test_close_frame() -> None:
    body = struct.pack("!H", 1000) + b"bye"
    assert FrameParser(100).feed(client_frame(body, OP_CLOSE)) == [(OP_CLOSE, body)]


# ------------------------------------------------------------------ protocol errors


def test_unmasked_frame_is_1002() -> None:
    err = frame_error(FrameParser(100), client_frame(b"hi", masked=False))
    assert err.code == 1002


@pytest.mark.parametrize("rsv", [1, 2, 4])
def test_reserved_bits_are_1002(rsv: int) -> None:
    assert frame_error(FrameParser(100), client_frame(b"hi", rsv=rsv)).code == 1002


@pytest.mark.parametrize("opcode", [0x3, 0x7, 0xB, 0xF])
def test_unknown_opcode_is_1002(opcode: int) -> None:
    assert frame_error(FrameParser(100), client_frame(b"x", opcode)).code == 1002


def test_control_frame_too_long_is_1002() -> None:
    assert frame_error(FrameParser(1000), client_frame(b"p" * 126, OP_PING)).code == 1002
    # Rejected from the header alone, before the payload arrives.
    header = client_frame(b"p" * 200, OP_PONG)[:8]
    assert frame_error(FrameParser(1000), header).code == 1002
    assert FrameParser(1000).feed(client_frame(b"p" * 125, OP_PING)) == [(OP_PING, b"p" * 125)]


def test_fragmented_control_frame_is_1002() -> None:
    assert frame_error(FrameParser(100), client_frame(b"", OP_PING, fin=False)).code == 1002


def test_continuation_without_start_is_1002() -> None:
    assert frame_error(FrameParser(100), client_frame(b"x", OP_CONT)).code == 1002


def test_new_message_inside_fragmented_one_is_1002() -> None:
    data = client_frame(b"a", OP_TEXT, fin=False) + client_frame(b"b", OP_TEXT)
    assert frame_error(FrameParser(100), data).code == 1002


def test_oversized_single_frame_is_1009() -> None:
    assert FrameParser(10).feed(client_frame(b"x" * 10)) == [(OP_TEXT, b"x" * 10)]
    assert frame_error(FrameParser(10), client_frame(b"x" * 11)).code == 1009
    big = client_frame(b"y" * 70000, OP_BINARY)
    assert frame_error(FrameParser(65536), big[:14]).code == 1009  # header alone is enough


def test_oversized_fragmented_message_is_1009() -> None:
    parser = FrameParser(10)
    assert parser.feed(client_frame(b"x" * 4, OP_TEXT, fin=False)) == []
    assert parser.feed(client_frame(b"x" * 4, OP_CONT, fin=False)) == []
    assert frame_error(parser, client_frame(b"x" * 3, OP_CONT)).code == 1009
    exact = FrameParser(10)
    data = client_frame(b"x" * 4, OP_TEXT, fin=False) + client_frame(b"y" * 6, OP_CONT)
    assert exact.feed(data) == [(OP_TEXT, b"xxxxyyyy" + b"yy")]


def test_frame_error_attributes() -> None:
    err = FrameError(1009, "message too big")
    assert (err.code, err.reason) == (1009, "message too big")
    assert str(err) == "1009 message too big"


# ------------------------------------------------------------------ building


@pytest.mark.parametrize(
    ("size", "header"),
    [
        (0, b"\x81\x00"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (65535, b"\x81\x7e\xff\xff"),
        (65536, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
    ],
)
def test_build_frame_header(size: int, header: bytes) -> None:
    payload = b"z" * size
    frame = build_frame(payload)
    assert frame[: len(header)] == header
    assert frame[len(header) :] == payload
    assert len(frame) == len(header) + size


def test_build_frame_opcodes() -> None:
    assert build_frame(b"\x01", OP_BINARY) == b"\x82\x01\x01"
    assert build_frame(b"", OP_PING) == b"\x89\x00"
    assert build_frame(b"ab", OP_PONG) == b"\x8a\x02ab"


def test_build_close() -> None:
    assert build_close(3500, "invalid token") == b"\x88\x0f\x0d\xacinvalid token"
    assert build_close(1000, "") == b"\x88\x02\x03\xe8"


def test_build_close_truncates_reason_to_123_bytes() -> None:
    frame = build_close(3001, "r" * 300)
    assert frame[:2] == b"\x88\x7d"  # 125 bytes: the control frame maximum
    assert frame[2:4] == struct.pack("!H", 3001)
    assert frame[4:] == b"r" * 123


def test_build_close_reason_stays_valid_utf8() -> None:
    # RFC 6455 §5.5.1: the reason is UTF-8; PROTOCOL.md §1.2: "the plain reason string (max 123
    # bytes)". A 2-byte character must not be cut in half (peers fail the connection with 1007).
    frame = build_close(3001, "é" * 100)
    reason = frame[4:]
    assert len(frame) <= 127
    assert len(reason) <= 123
    assert reason.decode("utf-8") == "é" * 61


def test_accept_key_rfc6455_example() -> None:
    # RFC 6455 §1.3 / §4.2.2 worked example.
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_accept_key_matches_definition() -> None:
    key = "x3JJHMbDL1EzLkh9GBhXDw=="
    digest = hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    assert accept_key(key) == base64.b64encode(digest).decode()
    assert accept_key(key) == "HSmrc0sMlYUkAGmm5OPpG2HaGWk="


# ---------------------------------------------------------------- hostile input (issue 9)


def test_too_many_fragments_close_1008() -> None:
    p = FrameParser(65536)
    data = client_frame(b"{", OP_TEXT, fin=False)
    data += client_frame(b"", OP_CONT, fin=False) * MAX_FRAGMENTS
    with pytest.raises(FrameError) as exc:
        for _ in range(100):
            p.feed(data)
            data = b""
            if not p.backlog:
                break
    assert exc.value.code == 1008


def test_fragment_total_is_bounded_by_the_message_limit() -> None:
    p = FrameParser(100)
    data = client_frame(b"x" * 60, OP_TEXT, fin=False) + client_frame(b"y" * 60, OP_CONT)
    with pytest.raises(FrameError) as exc:
        p.feed(data)
    assert exc.value.code == 1009


def test_a_feed_parses_a_bounded_number_of_frames() -> None:
    p = FrameParser(65536)
    n = MAX_FRAMES_PER_FEED * 2 + 10
    out = p.feed(client_frame(b"{}", OP_TEXT) * n)
    assert len(out) == MAX_FRAMES_PER_FEED and p.backlog
    out += p.feed(b"")
    assert p.backlog
    out += p.feed(b"")
    assert len(out) == n and not p.backlog
    assert all(m == (OP_TEXT, b"{}") for m in out)


def test_a_frame_arriving_byte_by_byte() -> None:
    p = FrameParser(65536)
    data = client_frame(b"z" * 5000, OP_TEXT) + client_frame(b"tail", OP_TEXT)
    out: list[tuple[int, bytes]] = []
    for i in range(len(data)):
        out += p.feed(data[i : i + 1])
    assert out == [(OP_TEXT, b"z" * 5000), (OP_TEXT, b"tail")]
