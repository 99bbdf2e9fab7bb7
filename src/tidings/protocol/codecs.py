"""What a protocol codec offers: ``protocol.codec`` (JSON) and ``protocol.pbcodec`` (Protobuf)
are modules that implement :class:`Codec`, so mypy checks every call made through a
transport's ``codec`` (a misspelt method or a wrong argument is a type error)."""

from __future__ import annotations

from typing import Protocol

from tidings.protocol.messages import Command, ConnectRequest, Push, Reply

__all__ = ["Codec"]


class Codec(Protocol):
    PING: bytes  # a server ping as this protocol writes it
    PROTOBUF: bool

    def decode_commands(self, frame: bytes) -> list[Command]:
        """Raises ProtocolError."""
        ...

    def decode_connect_request(self, data: bytes) -> ConnectRequest:
        """A unidirectional transport's opening message; raises ProtocolError."""
        ...

    def encode_reply(self, reply: Reply) -> bytes: ...

    def encode_push(self, push: Push) -> bytes: ...
