"""What a node tells about its connections: the answer to the ``connections`` survey, which
every node gives (``Cluster.survey("connections", {...})``), so the admin's connections
inspector sees a user's connections wherever they are.

Each connection is described by its node, client ID, user, transport, protocol (``json`` or
``protobuf``), when it connected (unix seconds), its channels and its connection info. At
most ``limit`` (capped at ``MAX_LIMIT``) are described per node; ``total`` says how many
matched.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import msgspec

from tidings.core.peer import Peer
from tidings.core.registry import Registry

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "describe", "survey_handler"]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

SurveyHandler = Callable[[dict[str, Any]], Coroutine[Any, Any, dict[str, Any]]]


def limit_of(params: dict[str, Any]) -> int:
    """The ``limit`` asked for, within 1..MAX_LIMIT (DEFAULT_LIMIT when not a number)."""
    limit = params.get("limit")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
        return DEFAULT_LIMIT
    return min(limit, MAX_LIMIT)


def describe(client: Peer, connected_at: float, node: tuple[str, str]) -> dict[str, Any]:
    """One connection as the inspector shows it; ``node`` is (node ID, node name)."""
    session = client.session
    entry: dict[str, Any] = {
        "node": node[0],
        "node_name": node[1],
        "client": client.client_id,
        "user": client.user,
        "transport": client.transport.name.removesuffix("_protobuf"),
        "protocol": "protobuf" if client.protobuf else "json",
        "connected_at": round(connected_at, 3),
        "channels": sorted(session.subs),
    }
    if session.info:
        entry["info"] = msgspec.Raw(session.info)
    return entry


def _matching(registry: Registry, user: str, client_id: str) -> Iterable[Peer]:
    if user or client_id:
        return registry.find(user, client_id)
    return registry.clients.values()


def survey_handler(registry: Registry, node_id: str, node_name: str) -> SurveyHandler:
    """The node's answer to the ``connections`` survey: params ``user`` (exact; "" for
    every user), ``client`` (one client ID) and ``limit``."""

    async def answer(params: dict[str, Any]) -> dict[str, Any]:
        user = params.get("user")
        client_id = params.get("client")
        matching = list(_matching(registry, user if isinstance(user, str) else "",
                                  client_id if isinstance(client_id, str) else ""))
        # The newest first: the one just opened is usually the one looked for.
        matching.reverse()
        node = (node_id, node_name)
        since = registry.connected_at
        return {
            "connections": [describe(c, since.get(c.client_id, 0.0), node)
                            for c in matching[:limit_of(params)]],
            "total": len(matching),
        }

    return answer
