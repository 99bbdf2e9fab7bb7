"""Engines: where channel state lives (memory: this process; redis: shared by many nodes).

``ENGINES`` is the one list of engines: ``engine.type`` is checked against it, ``make_engine``
builds from it, and the contract tests (``tests/contract``) run against every entry. Adding an
engine is one ``EngineSpec`` here (its module imported only when used) plus its contract
fixture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tidings.config.schema import Config
    from tidings.engine.base import Engine

__all__ = ["ENGINES", "EngineSpec", "make_engine"]


@dataclass(frozen=True, slots=True)
class EngineSpec:
    make: Callable[[Config], Engine]


def _memory(config: Config) -> Engine:
    from tidings.engine.memory import MemoryEngine

    return MemoryEngine()


def _redis(config: Config) -> Engine:
    from tidings.engine.redis import RedisEngine

    presence = config.presence_manager.redis if config.presence_manager.enabled else None
    return RedisEngine(config.engine.redis, presence=presence)


ENGINES: dict[str, EngineSpec] = {
    "memory": EngineSpec(_memory),  # this process only (the default)
    "redis": EngineSpec(_redis),  # Redis or Valkey, shared by many nodes
}


def make_engine(config: Config) -> Engine:
    """The engine ``config.engine.type`` names."""
    return ENGINES[config.engine.type].make(config)
