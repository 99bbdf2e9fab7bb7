"""Transport kinds: the one list of every way a client connects, with what the core needs to
know about each (its name in ``info``, whether it speaks Protobuf, whether the client sends
commands, whether they arrive through ``POST /emulation``).

A kind indexes the per-kind caches (``Shared.frames``: a publication framed once per kind) and
counters (messages and bytes per kind in ``info``); the framing itself belongs to the transport
(``tidings.transports``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["KINDS", "PROTOBUF_KINDS", "Kind", "KindInfo"]


class Kind(enum.IntEnum):
    WEBSOCKET = 0
    HTTP_STREAM = 1
    SSE = 2
    UNI_WEBSOCKET = 3
    UNI_HTTP_STREAM = 4
    UNI_SSE = 5
    SOCKJS = 6
    WEBSOCKET_PROTOBUF = 7
    HTTP_STREAM_PROTOBUF = 8


@dataclass(frozen=True, slots=True)
class KindInfo:
    name: str
    protobuf: bool = False
    bidirectional: bool = True  # the client sends commands (uni: only a ConnectRequest)
    emulation: bool = False  # its commands come through POST /emulation

    @property
    def transport(self) -> str:
        """Centrifugo's name for it (metrics labels, hook requests): Protobuf is the client's
        protocol there, not a transport of its own."""
        return self.name.removesuffix("_protobuf")


KINDS: dict[Kind, KindInfo] = {
    Kind.WEBSOCKET: KindInfo("websocket"),
    Kind.HTTP_STREAM: KindInfo("http_stream", emulation=True),
    Kind.SSE: KindInfo("sse", emulation=True),
    Kind.UNI_WEBSOCKET: KindInfo("uni_websocket", bidirectional=False),
    Kind.UNI_HTTP_STREAM: KindInfo("uni_http_stream", bidirectional=False),
    Kind.UNI_SSE: KindInfo("uni_sse", bidirectional=False),
    Kind.SOCKJS: KindInfo("sockjs"),
    Kind.WEBSOCKET_PROTOBUF: KindInfo("websocket_protobuf", protobuf=True),
    Kind.HTTP_STREAM_PROTOBUF: KindInfo("http_stream_protobuf", protobuf=True, emulation=True),
}
assert list(KINDS) == list(Kind), "one entry per kind, in order"

PROTOBUF_KINDS = frozenset(kind for kind, info in KINDS.items() if info.protobuf)
