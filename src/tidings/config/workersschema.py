"""The ``workers`` key (a Tidings addition; Go's Centrifugo uses every core in one process):
how many processes ``tidings serve`` runs, sharing the port. A number >= 1, or ``"auto"``, one
per core this process may run on. More than one needs a distributed engine: with the memory
engine each process would have its own channels, history and presence, and a publication
through one worker would miss the subscribers of the others."""

from __future__ import annotations

import os

from tidings.config.schema import Config, ConfigError

__all__ = ["MAX_WORKERS", "available_cores", "check_workers", "worker_count"]

MAX_WORKERS = 512  # a typo guard, far above any machine's cores


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity: ``taskset`` counts)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _parse(value: object) -> int | None:
    """The number of workers ``value`` asks for; None for ``"auto"``."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return None
        if text.isdigit():
            return int(text)
    elif isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _error(f"{value!r} is not a number of processes or \"auto\"")


def _error(what: str) -> ConfigError:
    return ConfigError(f"invalid value for 'workers': {what}")


def worker_count(config: Config) -> int:
    """How many worker processes ``serve`` runs (1: no supervisor, the process serves)."""
    asked = _parse(config.workers)
    count = available_cores() if asked is None else asked
    if not 1 <= count <= MAX_WORKERS:
        raise _error(f"{count} is not within 1..{MAX_WORKERS}")
    return count


def check_workers(config: Config) -> None:
    """The value is valid, and more than one worker (``"auto"`` included, whatever this
    machine's core count) has a distributed engine to share state through."""
    count = worker_count(config)
    if (count > 1 or _parse(config.workers) is None) and config.engine.type == "memory":
        raise ConfigError(
            f"'workers' is {config.workers}: more than one worker process needs a distributed "
            "engine (engine.type redis); with the memory engine each would keep its own "
            "channels, history and presence, and publications would miss the other workers' "
            "subscribers"
        )
