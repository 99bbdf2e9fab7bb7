"""One consumed message -> one server API command, and whether it is done (CONSUMERS.md §1.1,
§1.2, §1.4).

Rules of this module:

- two shapes: the method out of band (a column, a field) and the body is the request; or no
  method and the body is an envelope ``{"method": ..., "payload": ...}`` whose ``payload`` may
  also be a JSON *string* holding the request (Debezium's encoding of ``jsonb``);
- only ``publish``, ``broadcast``, ``subscribe``, ``unsubscribe``, ``disconnect``,
  ``history_remove`` and ``refresh`` are run; any other method is skipped (done);
- the request bytes reach the API as they are (``ApiHandler.call_json``), so a publication's
  ``data`` is the exact bytes the queue held;
- the outcome: an internal error (code 100) is retried, for ``broadcast`` when any channel got
  one; everything else (success, malformed, unknown method, other API errors) is done, so a
  permanently bad message never blocks its queue.
"""

from __future__ import annotations

import enum
import logging
import random
from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol

import msgspec

__all__ = [
    "DISPATCHABLE",
    "Api",
    "Backoff",
    "Command",
    "ConsumerStartError",
    "Dispatcher",
    "Malformed",
    "Outcome",
    "unpack",
    "verdict",
]

log = logging.getLogger("tidings.consumers")

DISPATCHABLE = frozenset({"publish", "broadcast", "subscribe", "unsubscribe", "disconnect",
                          "history_remove", "refresh"})
INTERNAL = 100


class ConsumerStartError(RuntimeError):
    """A consumer cannot start (the CLI prints it as one line and exits 1)."""


class Outcome(enum.Enum):
    DONE = "done"  # acknowledge / delete
    RETRY = "retry"  # keep it, back off, try again


class Command(NamedTuple):
    method: str
    payload: bytes


class _Envelope(msgspec.Struct):
    method: str = ""
    payload: msgspec.Raw = msgspec.Raw(b"")


_envelope = msgspec.json.Decoder(_Envelope)
_string = msgspec.json.Decoder(str)


class Malformed(ValueError):
    """The message cannot be read as a command (dropped, logged at error)."""


def unpack(method: str, body: bytes) -> Command:
    """The command a message carries; raises ``Malformed``."""
    if method:
        payload = body
    else:
        try:
            envelope = _envelope.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            raise Malformed(f"envelope is not valid JSON: {exc}") from None
        method, payload = envelope.method, bytes(envelope.payload)
        if payload[:1] == b'"':
            try:
                payload = _string.decode(payload).encode()
            except (msgspec.DecodeError, UnicodeEncodeError) as exc:
                raise Malformed(f"payload string: {exc}") from None
    if not payload.strip():
        raise Malformed("empty payload")
    return Command(method, payload)


def verdict(method: str, reply: Mapping[str, Any]) -> Outcome:
    """Retry an internal error (for ``broadcast``, one in any channel's response)."""
    error = reply.get("error")
    if error is not None:
        return Outcome.RETRY if error.get("code") == INTERNAL else Outcome.DONE
    if method == "broadcast":
        for response in (reply.get("result") or {}).get("responses", ()):
            if (response.get("error") or {}).get("code") == INTERNAL:
                return Outcome.RETRY
    return Outcome.DONE


def _first_error(reply: Mapping[str, Any]) -> Mapping[str, Any] | None:
    error: Mapping[str, Any] | None = reply.get("error")
    if error is None:
        for response in (reply.get("result") or {}).get("responses", ()):
            error = response.get("error")
            if error is not None:
                break
    return error


class Api(Protocol):
    """What the dispatcher calls: ``ApiHandler.call_json``."""

    async def call_json(self, method: str, params: bytes, *,
                        protocol: str = "http") -> dict[str, Any]: ...


class Dispatcher:
    """Runs consumed commands through the server API (``protocol="consuming"`` in metrics)."""

    def __init__(self, api: Api, consumer: str) -> None:
        self.api = api
        self.consumer = consumer

    async def dispatch(self, method: str, body: bytes) -> Outcome:
        try:
            command = unpack(method, body)
        except Malformed as exc:
            log.error("skip malformed consumed message: %s", exc,
                      extra={"consumer": self.consumer, "error": str(exc)})
            return Outcome.DONE
        if command.method not in DISPATCHABLE:
            log.info("skip unsupported API command method %r", command.method,
                     extra={"consumer": self.consumer, "method": command.method})
            return Outcome.DONE
        reply = await self.api.call_json(command.method, command.payload,
                                         protocol="consuming")
        outcome = verdict(command.method, reply)
        error = _first_error(reply)
        if error is not None and outcome is Outcome.DONE:
            log.error("non retryable error during consuming, skip message: %s",
                      error.get("message"), extra={
                          "consumer": self.consumer, "method": command.method,
                          "code": error.get("code"), "error": error.get("message")})
        return outcome


class Backoff:
    """Centrifugo's consumer backoff: ``min((10 ms + rand[0, 10) ms) * 2^retries, 5 s)``,
    ``retries`` from 1, reset after a success."""

    CAP = 5.0

    def __init__(self) -> None:
        self.retries = 0

    def next(self) -> float:
        self.retries = min(self.retries + 1, 30)
        delay: float = (0.010 + random.random() * 0.010) * 2.0 ** self.retries
        return min(delay, self.CAP)

    def reset(self) -> None:
        self.retries = 0
