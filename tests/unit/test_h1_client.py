"""The hook calls' HTTP/1.1 client (``tidings.proxy.h1``) against real sockets on loopback: a
tiny scripted server answers each request the way a test needs (chunked, closing, broken,
slow), so every path of the client is exercised over TCP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from tidings.proxy import h1

Answer = Callable[[bytes], bytes | None]  # the request's bytes -> raw answer (None: hang up)


@asynccontextmanager
async def scripted(answer: Answer) -> AsyncIterator[tuple[str, list[bytes], list[int]]]:
    """A server answering every request with ``answer(request)``; yields its URL, the
    requests it read and the number of connections it accepted."""
    requests: list[bytes] = []
    accepted = [0]
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted[0] += 1
        writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                request = head + await reader.readexactly(length)
                requests.append(request)
                out = answer(request)
                if out is None:
                    break
                writer.write(out)
                await writer.drain()
                if b"connection: close" in out.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/hook", requests, accepted
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


def ok(body: bytes = b'{"result":{}}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def test_keep_alive_reuses_one_connection_and_sends_the_request_as_built() -> None:
    async with scripted(lambda req: ok()) as (url, requests, accepted):
        pool = h1.Pool()
        endpoint = h1.Endpoint(url)
        for _ in range(3):
            assert await pool.post(endpoint, {"cookie": "a=b"}, b'{"x":1}') == (
                200, b'{"result":{}}')
        assert accepted == [1] and pool.open_connections == 1
        head, body = requests[0].split(b"\r\n\r\n")
        assert head.startswith(b"POST /hook HTTP/1.1\r\nHost: 127.0.0.1:")
        assert b"cookie: a=b" in head and b"Content-Type: application/json" in head
        assert body == b'{"x":1}'
        pool.close()


async def test_chunked_close_and_http10_answers() -> None:
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n")
    answers = iter([chunked, ok(extra=b"Connection: close\r\n"),
                    b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}"])
    async with scripted(lambda req: next(answers)) as (url, _, accepted):
        pool = h1.Pool()
        endpoint = h1.Endpoint(url)
        assert await pool.post(endpoint, {}, b"{}") == (200, b'{"a":1}')
        assert await pool.post(endpoint, {}, b"{}") == (200, b'{"result":{}}')
        assert await pool.post(endpoint, {}, b"{}") == (200, b"{}")  # a new connection
        assert accepted == [2]
        pool.close()


async def test_a_connection_the_server_closed_while_idle_is_retried_once() -> None:
    calls = [0]

    def answer(req: bytes) -> bytes | None:
        calls[0] += 1
        return ok() if calls[0] != 2 else None  # hangs up on the second request

    async with scripted(answer) as (url, _, accepted):
        pool = h1.Pool()
        endpoint = h1.Endpoint(url)
        await pool.post(endpoint, {}, b"{}")
        assert await pool.post(endpoint, {}, b"{}", replay=True) == (200, b'{"result":{}}')
        assert accepted == [2] and calls == [3]
        pool.close()


async def test_a_post_that_may_not_be_replayed_is_not_sent_twice() -> None:
    calls = [0]

    def answer(req: bytes) -> bytes | None:
        calls[0] += 1
        return ok() if calls[0] != 2 else None  # reads the second request, never answers

    async with scripted(answer) as (url, _, _accepted):
        pool = h1.Pool()
        endpoint = h1.Endpoint(url)
        await pool.post(endpoint, {}, b"{}")
        with pytest.raises(h1.HttpError):
            await asyncio.wait_for(pool.post(endpoint, {}, b"{}"), 5)  # e.g. a publish hook
        assert calls == [2]
        pool.close()


async def test_an_answer_ended_by_the_close_and_interim_answers() -> None:
    answers = iter([b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
                    b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\n{\"a\":1}"])
    async with scripted(lambda req: next(answers)) as (url, _, _accepted):
        pool = h1.Pool()
        endpoint = h1.Endpoint(url)
        assert await asyncio.wait_for(pool.post(endpoint, {}, b"{}"), 5) == (200, b"{}")
        assert await asyncio.wait_for(pool.post(endpoint, {}, b"{}"), 5) == (200, b'{"a":1}')
        pool.close()


@pytest.mark.parametrize(("answer", "message"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100, "100 bytes is over 64"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n" + b"x" * 100
     + b"\r\n0\r\n\r\n", "over 64 bytes"),
    (b"SMTP ready\r\n\r\n", "unreadable answer"),
])
async def test_broken_answers_fail_and_free_the_slot(answer: bytes, message: str) -> None:
    def reply(req: bytes) -> bytes | None:
        return answer

    async with scripted(reply) as (url, _, _accepted):
        pool = h1.Pool(max_body=64)
        with pytest.raises(h1.HttpError, match=message):
            await asyncio.wait_for(pool.post(h1.Endpoint(url), {}, b"{}"), 5)
        assert pool.open_connections == 0
        pool.close()


async def test_cut_short_answer_then_hang_up() -> None:
    cut = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 10\r\n\r\n{}"
    async with scripted(lambda req: cut) as (url, _, _accepted):
        pool = h1.Pool()
        with pytest.raises(h1.HttpError, match="connection"):
            await asyncio.wait_for(pool.post(h1.Endpoint(url), {}, b"{}"), 5)
        assert pool.open_connections == 0


async def test_a_timed_out_call_frees_its_connection_slot() -> None:
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.read()  # reads, never answers, until the client hangs up

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    endpoint = h1.Endpoint(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/")
    pool = h1.Pool(limit=1)
    for _ in range(2):  # the second call gets the one slot again
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await pool.post(endpoint, {}, b"{}")
        assert pool.open_connections == 0
    server.close()
    for writer in writers:
        writer.close()
        await writer.wait_closed()


async def test_the_limit_queues_calls() -> None:
    gate = asyncio.Event()
    served: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)
        served.append(1)
        await gate.wait()
        writer.write(ok(extra=b"Connection: close\r\n"))
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    pool = h1.Pool(limit=2)
    calls = [asyncio.create_task(pool.post(h1.Endpoint(url), {}, b"{}")) for _ in range(3)]
    for _ in range(50):
        await asyncio.sleep(0.01)
        if len(served) == 2:
            break
    assert len(served) == 2 and pool.open_connections == 2  # the third waits for a slot
    gate.set()
    assert [await c for c in calls] == [(200, b'{"result":{}}')] * 3
    server.close()
    pool.close()


def test_header_injection_and_bad_urls_are_refused() -> None:
    with pytest.raises(h1.BadHeader):
        h1._header_block({"x-a": "1\r\nX-Injected: 2"})
    with pytest.raises(ValueError):
        h1.Endpoint("ftp://example.com/")
    assert h1.Endpoint("http://[::1]:8080/a?b=1").head.startswith(
        b"POST /a?b=1 HTTP/1.1\r\nHost: [::1]:8080\r\n")
