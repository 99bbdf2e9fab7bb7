"""One message encoded once and shared by every recipient (the fan-out's unit of work).

A publication is encoded once per channel; each transport kind frames it once
(``Shared.frames``); a Protobuf connection takes its Protobuf encoding, made once; delta
subscriptions take one of two more encodings, each made once (PROTOCOL.md §6.6).
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from tidings.protocol import codec, pbcodec
from tidings.protocol.fossil import create_delta
from tidings.protocol.grants import as_full_string
from tidings.protocol.kinds import KINDS, PROTOBUF_KINDS
from tidings.protocol.messages import Publication, Push, Raw

__all__ = ["Shared"]

_string = msgspec.json.Encoder()


class Shared:
    """One encoded message shared by every recipient; framed lazily per transport kind.

    A publication also knows its two encodings for delta subscriptions (PROTOCOL.md §6.6),
    made on first use: in full with ``data`` as a JSON string, and as a fossil delta against
    the channel's previous publication (``prev``) when the publish asked for delta."""

    __slots__ = ("_delta", "_delta_pb", "_full", "_patch_bytes", "_pb", "channel", "frames",
                 "payload", "prev", "pub", "push", "wants_delta")

    def __init__(
        self, payload: bytes, channel: str = "", pub: Publication | None = None,
        wants_delta: bool = False, push: Push | None = None,
    ) -> None:
        self.payload = payload
        self.push = push  # for the Protobuf encoding of a non-publication (join, leave)
        self._pb: bytes | None = None
        self.frames: list[bytes | None] = [None] * len(KINDS)  # one per transport kind
        self.channel = channel
        self.pub = pub
        self.wants_delta = wants_delta
        self.prev: bytes | None = None
        self._full: bytes | None = None
        self._delta: bytes | None = None
        self._delta_pb: bytes | None = None
        self._patch_bytes: bytes | None = None

    def framed(self, kind: int, frame: Callable[[bytes], bytes]) -> bytes:
        data = self.frames[kind]
        if data is None:
            payload = self.pb_payload() if kind in PROTOBUF_KINDS else self.payload
            data = self.frames[kind] = frame(payload)
        return data

    def pb_payload(self) -> bytes:
        """The Protobuf encoding, made on first use."""
        if self._pb is None:
            push = self.push
            if push is None:
                push = Push(channel=self.channel, pub=self.pub)
            self._pb = pbcodec.encode_push(push)
        return self._pb

    def full_string(self) -> bytes:
        if self._full is None:
            pub = self.pub
            if pub is None:
                return self.payload
            self._full = codec.encode_push(Push(channel=self.channel,
                                                pub=as_full_string(pub)))
        return self._full

    def full_for(self, protobuf: bool) -> bytes:
        """The full publication as a delta subscription of a client gets it."""
        return self.pb_payload() if protobuf else self.full_string()

    def delta_for(self, protobuf: bool) -> bytes | None:
        return self.delta_pb() if protobuf else self.delta_string()

    def _patch(self) -> bytes | None:
        """The fossil delta of this publication against ``prev`` (computed once for both
        protocols), or None when the publisher did not ask for delta or it is not smaller."""
        pub, prev = self.pub, self.prev
        if pub is None or prev is None or not self.wants_delta:
            return None
        if self._patch_bytes is None:
            data = bytes(pub.data)
            patch = create_delta(prev, data)
            self._patch_bytes = patch if len(patch) < len(data) else b""
        return self._patch_bytes or None

    def _delta_pub(self, data: bytes) -> Push:
        pub = self.pub
        assert pub is not None
        return Push(channel=self.channel, pub=Publication(
            data=Raw(data), info=pub.info, offset=pub.offset, tags=pub.tags, delta=True,
        ))

    def delta_pb(self) -> bytes | None:
        """Protobuf: the raw delta bytes as data (PROTOCOL.md §6.6)."""
        if self._delta_pb is None:
            patch = self._patch()
            self._delta_pb = pbcodec.encode_push(self._delta_pub(patch)) if patch else b""
        return self._delta_pb or None

    def delta_string(self) -> bytes | None:
        """JSON: the delta as a JSON string (PROTOCOL.md §6.6), or None when there is none
        worth sending (also when the patch is not valid UTF-8 text)."""
        if self._delta is None:
            patch = self._patch()
            try:
                text = patch.decode("utf-8") if patch else ""
            except UnicodeDecodeError:
                text = ""
            self._delta = (
                codec.encode_push(self._delta_pub(_string.encode(text))) if text else b""
            )
        return self._delta or None
