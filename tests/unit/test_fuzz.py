"""Property tests (hypothesis) of everything that parses client input, bounded for CI.

Properties: the frame parser and the decoders either return messages or raise their own
error type, never anything else; the HTTP server and the client's command handling, run in
process, never log an internal error and answer only well-formed HTTP. ``benchmarks/
fuzz_live.py`` runs a long campaign against a live server (a million inputs)."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.inprocess import InProcessServer, in_process_server
from tests.support.raw import client_frame, upgrade_request
from tests.support.server import API_KEY, make_token
from tidings.errors import ProtocolError
from tidings.protocol import codec, pbcodec, wsframe

EXAMPLES = int(os.environ.get("TIDINGS_FUZZ_EXAMPLES", "300"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` split at ``cuts`` (positions modulo its length)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


# ---------------------------------------------------------------- sans-I/O parsers

frames = st.builds(
    client_frame,
    st.binary(max_size=300),
    st.sampled_from([0, 1, 2, 3, 8, 9, 10, 11, 15]),
    fin=st.booleans(),
)


@fuzz
@given(st.lists(st.one_of(frames, st.binary(max_size=40)), max_size=20),
       st.lists(st.integers(min_value=0), max_size=8))
def test_frame_parser_returns_messages_or_a_frame_error(parts: list[bytes],
                                                         cuts: list[int]) -> None:
    parser = wsframe.FrameParser(1000)
    try:
        for piece in chunks(b"".join(parts), cuts):
            messages = parser.feed(piece)
            while parser.backlog:
                messages += parser.feed(b"")
            for opcode, payload in messages:
                assert opcode in (wsframe.OP_TEXT, wsframe.OP_BINARY, wsframe.OP_CLOSE,
                                  wsframe.OP_PING, wsframe.OP_PONG)
                assert len(payload) <= 1000
    except wsframe.FrameError as exc:
        assert exc.code in (1002, 1008, 1009)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
METHODS = ["connect", "subscribe", "unsubscribe", "publish", "presence", "presence_stats",
           "history", "ping", "send", "rpc", "refresh", "sub_refresh", "bogus"]
FIELDS = ["channel", "token", "data", "offset", "epoch", "recover", "limit", "since",
          "reverse", "method", "name", "version", "subs", "flag", "delta", "positioned"]
commands = st.builds(
    lambda cmd_id, method, body: {"id": cmd_id, method: body},
    st.one_of(st.integers(min_value=0, max_value=5), st.integers(), st.text(max_size=3)),
    st.sampled_from(METHODS),
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4) | json_values,
)


def mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for pos, byte in edits:
        if out:
            out[pos % len(out)] = byte % 256
    return bytes(out)


command_bytes = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda cmds: "\n".join(json.dumps(c) for c in cmds).encode(),
              st.lists(commands, min_size=1, max_size=4)),
    st.builds(mutate, st.builds(lambda c: json.dumps(c).encode(), commands),
              st.lists(st.tuples(st.integers(min_value=0), st.integers()), max_size=3)),
)


@fuzz
@given(command_bytes)
def test_json_decoders_return_commands_or_a_protocol_error(data: bytes) -> None:
    try:
        codec.decode_commands(data)
    except ProtocolError:
        pass
    try:
        codec.decode_connect_request(data)
    except ProtocolError:
        pass
    assert isinstance(codec.json_error(data), str)


@pytest.mark.skipif(not pbcodec.available(), reason="the protobuf extra is a dev dependency")
@fuzz
@given(st.binary(max_size=300))
def test_protobuf_decoders_return_commands_or_a_protocol_error(data: bytes) -> None:
    for decode in (pbcodec.decode_commands, pbcodec.decode_connect_request,
                   pbcodec.decode_emulation_request):
        try:
            decode(data)
        except ProtocolError:
            pass


# ---------------------------------------------------------------- the server, in process


class Errors(logging.Handler):
    """Records log records of level ERROR and above (internal errors, tracebacks)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class Harness:
    """One in-process server on a private loop, for a whole hypothesis test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._cm = in_process_server({"http_stream": {"enabled": True},
                                      "sse": {"enabled": True},
                                      "uni_http_stream": {"enabled": True},
                                      "sockjs": {"enabled": True}})
        self.server: InProcessServer = self.loop.run_until_complete(self._cm.__aenter__())
        self.errors = Errors()
        logging.getLogger("tidings").addHandler(self.errors)

    def settle(self) -> None:
        for _ in range(5):
            self.loop.run_until_complete(asyncio.sleep(0))

    def close(self) -> None:
        logging.getLogger("tidings").removeHandler(self.errors)
        self.loop.run_until_complete(self._cm.__aexit__(None, None, None))
        self.loop.close()


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.close()


PATHS = ["/health", "/api", "/api/publish", "/api/info", "/api/batch", "/emulation",
         "/connection/websocket", "/connection/http_stream", "/connection/sse",
         "/connection/uni_http_stream", "/connection/sockjs/info",
         "/connection/sockjs/1/s1/xhr", "/connection/sockjs/1/s1/xhr_send", "/nope", "/%zz",
         "//x?y=%", "http://h/x"]
HEADERS = st.sampled_from([
    "Content-Length: 5", "Content-Length: -1", "Content-Length: 99999999999",
    "Transfer-Encoding: chunked", f"X-API-Key: {API_KEY}", "X-API-Key: nope",
    "Origin: https://evil.example", "Upgrade: websocket", "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Key: \xe9\xe9",
    "Content-Type: application/octet-stream", "Expect: 100-continue", "Host: x",
    "Connection: close", "Access-Control-Request-Headers: a",
])
requests = st.builds(
    lambda method, path, headers, body: (
        f"{method} {path} HTTP/1.1\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n"
    ).encode() + body,
    st.sampled_from(["GET", "POST", "OPTIONS", "PUT", "HEAD", "G\x00T", ""]),
    st.sampled_from(PATHS) | st.text(max_size=20),
    st.lists(HEADERS, max_size=6),
    st.binary(max_size=80) | st.builds(lambda c: json.dumps(c).encode(), commands),
)


@fuzz
@given(st.lists(st.one_of(requests, st.binary(max_size=60)), min_size=1, max_size=4),
       st.lists(st.integers(min_value=0), max_size=6))
def test_http_server_answers_well_formed_http(harness: Harness, parts: list[bytes],
                                              cuts: list[int]) -> None:
    protocol, transport = harness.server.connect()
    for piece in chunks(b"".join(parts), cuts):
        if protocol.transport is not None and not transport.closed:
            protocol.data_received(piece)
        harness.settle()
    out = transport.data()
    protocol.connection_lost(None)
    harness.settle()
    assert not harness.errors.records, harness.errors.records[0].getMessage()
    assert not out or out.startswith(b"HTTP/1.1 "), out[:200]


@fuzz
@given(st.lists(command_bytes, min_size=1, max_size=6), st.booleans())
def test_command_handling_never_fails_internally(harness: Harness, frames: list[bytes],
                                                 connect_first: bool) -> None:
    protocol, transport = harness.server.connect()
    protocol.data_received(upgrade_request("x"))
    assert transport.data().startswith(b"HTTP/1.1 101 ")
    if connect_first:
        connect = json.dumps({"id": 1, "connect": {"token": make_token("7")}}).encode()
        frames = [connect, *frames]
    for frame in frames:
        if transport.closed:
            break
        protocol.data_received(client_frame(frame))
        harness.settle()
    protocol.connection_lost(None)
    harness.settle()
    assert not harness.errors.records, harness.errors.records[0].getMessage()
    assert b"internal server error" not in transport.data()
