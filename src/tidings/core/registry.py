"""Every connection of this node: open ones (authenticated or not), authenticated ones by client
ID and by user, and the emulation sessions (HTTP-streaming/SSE clients reached through
``POST /emulation``)."""

from __future__ import annotations

import time
import uuid

from tidings.core.peer import Peer

__all__ = ["Registry"]


class Registry:
    def __init__(self) -> None:
        self.opened: dict[Peer, None] = {}  # every open client, authenticated or not
        self.clients: dict[str, Peer] = {}  # authenticated clients by client ID
        self.users: dict[str, dict[Peer, None]] = {}
        self.emulation_sessions: dict[str, Peer] = {}  # session -> HTTP-stream/SSE client
        # When each authenticated client connected (unix seconds; the admin's inspector).
        self.connected_at: dict[str, float] = {}

    def opened_client(self, client: Peer) -> None:
        self.opened[client] = None

    def connected(self, client: Peer) -> None:
        self.clients[client.client_id] = client
        self.connected_at[client.client_id] = time.time()
        self.users.setdefault(client.user, {})[client] = None

    def closed(self, client: Peer) -> None:
        """Forget the client everywhere (called once, when it is gone)."""
        self.opened.pop(client, None)
        if client.emulation_session:
            self.emulation_sessions.pop(client.emulation_session, None)
        if self.clients.pop(client.client_id, None) is not None:
            self.connected_at.pop(client.client_id, None)
            users = self.users.get(client.user)
            if users is not None:
                users.pop(client, None)
                if not users:
                    del self.users[client.user]

    def open_emulation_session(self, client: Peer) -> str:
        """A secret id /emulation names this client by (not its client ID, which presence
        shows to others)."""
        session = uuid.uuid4().hex
        self.emulation_sessions[session] = client
        return session

    def emulation(self, session: str, data: bytes) -> int:
        """Commands posted to /emulation for a session of this node: the HTTP status to
        answer (404 unknown session, 429 too much input waiting already)."""
        client = self.emulation_sessions.get(session)
        if client is None:
            return 404
        return 204 if client.feed(data) else 429

    def find(self, user: str = "", client_id: str = "") -> list[Peer]:
        """This node's clients of ``user``, or the one with ``client_id`` (of ``user`` if
        given)."""
        if client_id:
            client = self.clients.get(client_id)
            if client is None or (user and client.user != user):
                return []
            return [client]
        return list(self.users.get(user, ()))
