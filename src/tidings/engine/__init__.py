"""Engines: where channel state lives (memory: this process; redis: shared by many nodes)."""

from __future__ import annotations

from tidings.config import Config
from tidings.engine.base import Engine

__all__ = ["make_engine"]


def make_engine(config: Config) -> Engine:
    """The engine ``config.engine.type`` names (Redis is imported only when used)."""
    if config.engine.type == "redis":
        from tidings.engine.redis import RedisEngine

        presence = config.presence_manager.redis if config.presence_manager.enabled else None
        return RedisEngine(config.engine.redis, presence=presence)
    from tidings.engine.memory import MemoryEngine

    return MemoryEngine()
