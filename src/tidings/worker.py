"""One worker of ``tidings serve --workers N``: what the supervisor tells it, and what it does
differently from a lone server.

The supervisor (``tidings.workers``) starts each worker as ``python -m tidings serve <the same
arguments> --worker-of SPEC``, SPEC being a :class:`WorkerSpec` as JSON. A worker is an ordinary
node with its own event loop and engine connections, except that it

- binds the port(s) the supervisor reserved, with ``SO_REUSEPORT`` (the kernel spreads new
  connections over the workers' listening sockets);
- is a node named ``<node.name or host>-w<index>`` (``info`` lists every worker);
- prints ``tidings worker I ... serving http://...`` instead of the start-up line (the
  supervisor prints that one once, when every worker is up) and writes ``ready`` down the pipe
  ``ready_fd`` once it listens;
- ends with a SIGTERM of its own when the supervisor dies (``PR_SET_PDEATHSIG``), so no worker
  outlives it, even after a SIGKILL;
- hands SockJS requests over to the worker that owns their session
  (:mod:`tidings.transports.handoff`, through ``handoff_dir``).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING

import msgspec

from tidings.config import Config, ConfigError

if TYPE_CHECKING:
    from tidings.server import Server
    from tidings.transports.handoff import Handoff

__all__ = ["WorkerSpec", "apply_spec", "join_workers", "parse_spec", "signal_ready",
           "tie_to_parent", "worker_node_name"]

log = logging.getLogger("tidings.worker")

_PR_SET_PDEATHSIG = 1


class WorkerSpec(msgspec.Struct, kw_only=True, frozen=True):
    """What the supervisor tells worker ``index`` of ``count`` (JSON on its command line)."""

    index: int
    count: int
    port: int  # the main listener's, reserved by the supervisor (never 0)
    internal_port: int = 0  # the internal listener's when there is one (never 0 then)
    name: str  # this worker's node name
    ready_fd: int = -1  # write end of the pipe the supervisor waits on for "ready"
    handoff_dir: str = ""  # where the workers' hand-off sockets live (transports/handoff.py)
    parent: int = 0  # the supervisor's PID


def parse_spec(text: str) -> WorkerSpec:
    try:
        spec = msgspec.json.decode(text, type=WorkerSpec)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ConfigError(f"invalid --worker-of: {exc}") from None
    if not 0 <= spec.index < spec.count or not 0 < spec.port < 65536:
        raise ConfigError("invalid --worker-of: index or port out of range")
    return spec


def worker_node_name(base: str, index: int) -> str:
    """The node name of worker ``index``: ``<node.name or host name>-w<index>``."""
    return f"{base or socket.gethostname()}-w{index}"


def apply_spec(config: Config, spec: WorkerSpec) -> None:
    """The worker's own settings: its node name and the ports the supervisor reserved."""
    config.node.name = spec.name
    config.http_server.port = spec.port
    if spec.internal_port:
        config.http_server.internal_port = str(spec.internal_port)


def tie_to_parent(spec: WorkerSpec) -> None:
    """Get a SIGTERM (a graceful drain) when the supervisor dies, however it dies (Linux); a
    supervisor already gone by now means exit at once."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if spec.parent and os.getppid() != spec.parent:
        raise SystemExit("tidings: the supervisor is gone")


def signal_ready(spec: WorkerSpec) -> None:
    """Tell the supervisor this worker listens (once; the pipe is closed after)."""
    if spec.ready_fd < 0:
        return
    try:
        os.write(spec.ready_fd, b"ready\n")
    except OSError:
        pass  # the supervisor is gone: PR_SET_PDEATHSIG ends this worker
    finally:
        with contextlib.suppress(OSError):
            os.close(spec.ready_fd)


def join_workers(server: Server, spec: WorkerSpec) -> Handoff | None:
    """Once ``server`` listens: take SockJS connections handed over by the other workers,
    say so, and tell the supervisor this worker is ready. Returns the hand-off to close at
    the end."""
    from tidings.transports.handoff import Handoff

    handoff = None
    if spec.handoff_dir:
        handoff = Handoff(spec.handoff_dir, spec.index, spec.count, server.state,
                          server.node.spawn)
        handoff.start()
        server.state.sockjs.handoff = handoff
        server.node.info_sources.append(handoff.info)
    cfg = server.config.http_server
    log.info("tidings worker %d of %d (pid %d) serving http://%s:%d", spec.index, spec.count,
             os.getpid(), cfg.address or "0.0.0.0", server.port, extra={"pid": os.getpid()})
    signal_ready(spec)
    return handoff
