"""History limits and the stream recovery decision (PROTOCOL.md §2.6, §6.3). Pure."""

from __future__ import annotations

from tidings.errors import ErrorCode
from tidings.protocol.messages import Publication, StreamPosition

__all__ = ["effective_limit", "is_recovered", "validate_since"]


def effective_limit(limit: int, max_limit: int) -> int:
    """0 -> none, -1 (or any negative) -> all up to ``max_limit``, n -> min(n, max_limit)."""
    if limit == 0:
        return 0
    if limit < 0:
        return max_limit
    return min(limit, max_limit)


def validate_since(since: StreamPosition | None, reverse: bool, top: StreamPosition) -> None:
    """History ``since`` checks that need the stream position. Raises ReplyError."""
    if since is None:
        return
    if since.epoch and since.epoch != top.epoch:
        raise ErrorCode.UNRECOVERABLE_POSITION


def is_recovered(
    req_offset: int, req_epoch: str, pubs: list[Publication], top: StreamPosition
) -> bool:
    """Did recovery from ``req_offset``/``req_epoch`` deliver a gapless continuation?

    ``pubs`` are the publications after ``req_offset`` in ascending order (possibly capped)."""
    if req_epoch and req_epoch != top.epoch:
        return False
    if not pubs:
        return req_offset == top.offset
    return pubs[0].offset == req_offset + 1 and pubs[-1].offset == top.offset
