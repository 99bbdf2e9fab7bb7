"""The two interfaces between a client connection and the rest of the node.

- :class:`Transport`: what a client needs from its connection (implemented by the
  transports: WebSocket, HTTP-streaming/SSE, SockJS);
- :class:`Peer`: what the node's parts (hub, registry, timers, writer, channels, actions) need
  from a client (implemented by :class:`tidings.core.client.Client`).

Both are structural (``typing.Protocol``): neither side imports the other, so ``core/`` has no
import cycle (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from tidings.core.shared import Shared
from tidings.errors import Disconnect, Unsubscribe
from tidings.protocol.codecs import Codec
from tidings.protocol.kinds import Kind
from tidings.protocol.session import Session, SubscribeDecision
from tidings.proxy import HookState

__all__ = ["Peer", "Transport"]


class Transport(Protocol):
    """What a client needs from its connection."""

    kind: Kind  # index into Shared.frames: one framing per kind
    name: str
    bidirectional: bool
    separator: bytes  # between messages in one frame: b"\n" (JSON) or b"" (Protobuf)
    emulation: bool  # commands arrive via POST /emulation (HTTP-streaming, SSE)

    @property
    def codec(self) -> Codec:
        """``protocol.codec`` (JSON) or ``protocol.pbcodec`` (Protobuf)."""
        ...

    def frame(self, payload: bytes) -> bytes:
        """Frame one payload (several messages already joined with ``\\n``)."""
        ...

    write: Callable[[bytes], None]

    def buffer_size(self) -> int: ...

    def pause_reading(self) -> None:
        """Stop reading from the peer (a no-op where commands do not come from a socket)."""
        ...

    def resume_reading(self) -> None: ...

    def close(self, disconnect: Disconnect) -> None:
        """Tell the peer why (close frame or disconnect push) and close."""
        ...


class Peer(Protocol):
    """A client connection as the node's parts see it."""

    session: Session
    transport: Transport
    protobuf: bool  # its messages are Protobuf (transport.codec.PROTOBUF)
    counted: bool  # in the engine's count of its user's connections
    emulation_session: str
    hook_state: HookState | None  # what backend hooks keep of it (None: nothing)

    @property
    def client_id(self) -> str: ...

    @property
    def user(self) -> str: ...

    @property
    def closed(self) -> bool: ...

    def enqueue(self, payload: bytes) -> None:
        """Queue one encoded message for the next flush round."""
        ...

    def enqueue_shared(self, shared: Shared) -> None:
        """Queue a message shared with other recipients (the fan-out hot path)."""
        ...

    def flush(self) -> None: ...

    def feed(self, frame: bytes) -> bool: ...

    def send_ping(self) -> None: ...

    def close(self, disconnect: Disconnect, *, flush: bool = True) -> None: ...

    def drop_subscription(self, channel: str, reason: Unsubscribe) -> None: ...

    async def unsubscribe(self, channel: str, push: Unsubscribe | None = None) -> None: ...

    async def server_subscribe(self, decision: SubscribeDecision) -> None: ...
