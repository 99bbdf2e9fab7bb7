"""Micro-benchmark behind the framing and JSON choices in docs/design.md.

Compares parsing a masked client frame and building a server frame with Tidings' wsframe
module against the sans-I/O protocol of the `websockets` library, plus per-connection
parser memory. Run: python benchmarks/micro_framing.py
"""

from __future__ import annotations

import os
import time
import tracemalloc

from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from tidings.protocol import wsframe

N = 100_000
PAYLOAD = b'{"id":7,"publish":{"channel":"chat:room","data":{"text":"hello there"}}}'


def masked(payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x81, 0x80 | len(payload))) + mask + body


def per_op(fn: object, n: int = N) -> float:
    assert callable(fn)
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def mem_per(factory: object, n: int = 10_000) -> float:
    assert callable(factory)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    keep = [factory() for _ in range(n)]
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del keep
    return (after - before) / n


def main() -> None:
    frame = masked(PAYLOAD)
    ours = wsframe.FrameParser(65536)
    theirs = ServerProtocol(state=State.OPEN, max_size=65536)

    def parse_ours() -> None:
        ours.feed(frame)

    def parse_theirs() -> None:
        theirs.receive_data(frame)
        theirs.events_received()

    rows = [
        ("parse 1 client frame (us)", per_op(parse_ours), per_op(parse_theirs)),
        ("build 1 server frame (us)", per_op(lambda: wsframe.build_frame(PAYLOAD)),
         per_op(lambda: Frame(Opcode.TEXT, PAYLOAD).serialize(mask=False))),
        ("parser state per connection (bytes)",
         mem_per(lambda: wsframe.FrameParser(65536)),
         mem_per(lambda: ServerProtocol(state=State.OPEN, max_size=65536))),
    ]
    try:
        import orjson
    except ImportError:  # optional: only for the JSON row
        orjson = None
    from tidings.protocol.codec import decode_commands

    def msgspec_decode() -> None:
        decode_commands(PAYLOAD)

    if orjson is not None:
        loads = orjson.loads

        def orjson_decode() -> None:
            loads(PAYLOAD)

        rows.append(("decode 1 command (us), msgspec typed vs orjson dict",
                     per_op(msgspec_decode), per_op(orjson_decode)))
    print("| measure | tidings | websockets (or orjson) | ratio |")
    print("|---|---:|---:|---:|")
    for name, a, b in rows:
        print(f"| {name} | {a:.2f} | {b:.2f} | {b / a:.1f}x |")


if __name__ == "__main__":
    main()
