"""Log set-up and context: Centrifugo v6's ``log.level`` names (trace ... none), ``log.file``,
and Tidings' ``log.format`` (``text`` or ``json``).

Rules of this module:

- stdlib ``logging`` only; loggers stay named ``tidings.<area>``;
- context rides on records through ``extra=`` under the fixed names in :data:`FIELDS` (never
  formatted into the message on a hot path; a debug line that builds its ``extra`` dict sits
  behind ``log.isEnabledFor``); both formatters print exactly these fields, and ``node``
  (set once, at :func:`setup`) on every line;
- nothing secret or bulky goes into a field or a message: no tokens, no publication data, no
  cookies or header values (an ``origin`` is the one header logged, when it is refused).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from logging.handlers import WatchedFileHandler
from typing import Protocol

__all__ = [
    "FIELDS",
    "FORMATS",
    "LEVELS",
    "NONE",
    "STARTUP_LOGGER",
    "TRACE",
    "JsonFormatter",
    "TextFormatter",
    "client_fields",
    "level_name",
    "level_number",
    "setup",
]

TRACE = 5  # below DEBUG: Centrifugo's "trace"
NONE = logging.CRITICAL + 10  # above everything: "none" prints nothing
logging.addLevelName(TRACE, "TRACE")

# The ``log.level`` values (Centrifugo v6), plus "warning", the name Python and older Tidings
# configs use.
LEVELS: dict[str, int] = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "none": NONE,
}
FORMATS = ("text", "json")

# The context names a record may carry (``extra=``), in the order they are printed. A name a
# LogRecord has already (``name``, ``msg``, ``module``...) cannot be one: logging refuses it.
FIELDS = (
    "client", "user", "transport", "client_name", "client_version", "channel", "method",
    "code", "reason", "hook", "proxy", "endpoint", "origin", "path", "shard", "error",
    "version", "engine", "config", "listeners", "node_id", "consumer", "partition",
    "workers", "pid",
)

# The start-up line ("tidings listening on http://HOST:PORT") is what scripts and the test
# harness wait for: its logger shows INFO at every level but "none".
STARTUP_LOGGER = "tidings.server.start"

_installed: list[logging.Handler] = []  # the handler setup() added (replaced by a new call)


def level_number(name: str) -> int:
    """The logging level of a ``log.level`` name; ValueError for an unknown one."""
    try:
        return LEVELS[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown log level {name!r}") from None


def level_name(levelno: int) -> str:
    """Centrifugo's name for a level: trace, debug, info, warn or error (CRITICAL too)."""
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warn"
    if levelno >= logging.INFO:
        return "info"
    if levelno >= logging.DEBUG:
        return "debug"
    return "trace"


class _Named(Protocol):
    @property
    def name(self) -> str: ...


class _Client(Protocol):
    @property
    def client_id(self) -> str: ...

    @property
    def user(self) -> str: ...

    @property
    def transport(self) -> _Named: ...


def client_fields(client: _Client, **more: object) -> dict[str, object]:
    """The ``extra=`` of a line about one connection: client, user, transport and ``more``."""
    return {"client": client.client_id, "user": client.user,
            "transport": client.transport.name, **more}


def _fields(record: logging.LogRecord) -> Iterator[tuple[str, object]]:
    values = record.__dict__
    for key in FIELDS:
        value = values.get(key)
        if value is not None:
            yield key, value


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (RFC 3339, UTC), level, logger, msg, node, the context
    fields, and ``traceback`` when the record has an exception."""

    def __init__(self, node: str = "") -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        out: dict[str, object] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": level_name(record.levelno),
            "logger": record.name,
            "msg": record.getMessage(),
            "node": self.node,
        }
        out.update(_fields(record))
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["traceback"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        # ASCII only: a lone surrogate a client put in a channel name cannot break the stream.
        return json.dumps(out, default=str, separators=(",", ":"))


def _text_value(value: object) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\\') or not text.isprintable():
        return json.dumps(text)
    return text


class TextFormatter(logging.Formatter):
    """The classic line (``TIME LEVEL logger: message``) followed by ``key=value`` context
    (``node`` first); values with spaces, quotes or control characters are JSON-quoted."""

    def __init__(self, node: str = "") -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.node = node

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        pairs = [f"node={_text_value(self.node)}"] if self.node else []
        pairs += [f"{key}={_text_value(value)}" for key, value in _fields(record)]
        return f"{line} {' '.join(pairs)}" if pairs else line


def setup(level: str = "info", *, fmt: str = "text", file: str = "",
          node: str = "") -> logging.Handler:
    """Send the ``tidings`` logs (and any library's) to stdout, or to ``file`` (appended,
    reopened when rotated away), at ``level`` in ``fmt``; returns the handler installed.
    Replaces a handler an earlier call installed."""
    number = level_number(level)
    formatter: logging.Formatter = (JsonFormatter(node) if fmt == "json"
                                    else TextFormatter(node))
    handler: logging.Handler = (WatchedFileHandler(file, encoding="utf-8") if file
                                else logging.StreamHandler(sys.stdout))
    handler.setFormatter(formatter)
    root = logging.getLogger()
    while _installed:
        old = _installed.pop()
        root.removeHandler(old)
        old.close()
    _installed.append(handler)
    root.addHandler(handler)
    logging.captureWarnings(True)  # Python warnings as records too: a JSON stream stays JSON
    root.setLevel(number)
    logging.getLogger(STARTUP_LOGGER).setLevel(number if number == NONE
                                               else min(number, logging.INFO))
    return handler
