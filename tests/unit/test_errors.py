"""The error registries hand out a new exception object on every access: a shared instance
raised again and again keeps every raising frame alive through its traceback (issue 9)."""

from __future__ import annotations

import gc
import sys
import weakref

from tidings.errors import Disconnect, ErrorCode, ProtocolError, ReplyError


def test_each_access_is_a_new_equal_object() -> None:
    assert ErrorCode.PERMISSION_DENIED is not ErrorCode.PERMISSION_DENIED
    assert ErrorCode.PERMISSION_DENIED == ReplyError(103, "permission denied")
    assert Disconnect.BAD_REQUEST is not Disconnect.BAD_REQUEST
    assert Disconnect.BAD_REQUEST == Disconnect(3501, "bad request")
    assert ErrorCode.INTERNAL.temporary and ErrorCode.TOO_MANY_REQUESTS.temporary
    assert not Disconnect.TOO_MANY_ERRORS.reconnect and Disconnect.TOO_MANY_REQUESTS.reconnect
    assert ProtocolError("x").disconnect is not ProtocolError("y").disconnect


class Holder:
    """Stands for a client: what the raising frame references."""


def refuse(holder: Holder) -> None:
    assert holder is not None  # the frame's locals keep ``holder`` alive while it is referenced
    raise ErrorCode.PERMISSION_DENIED


def test_a_raised_error_keeps_nothing_alive() -> None:
    refs = []
    for _ in range(100):
        holder = Holder()
        refs.append(weakref.ref(holder))
        try:
            refuse(holder)
        except ReplyError:
            pass
        del holder
    gc.collect()
    assert sum(ref() is not None for ref in refs) == 0
    # And the registry entry itself carries no traceback.
    assert ErrorCode.PERMISSION_DENIED.__traceback__ is None
    assert sys.exc_info() == (None, None, None)
