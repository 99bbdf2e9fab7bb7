"""docs/errors.md lists every code the server can send (errors.py is their one home)."""

from __future__ import annotations

import re
from pathlib import Path

from tidings import errors

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


def test_every_code_is_documented() -> None:
    listed = {int(c) for c in re.findall(r"^\| (\d{3,4}) \|", DOC.read_text(), re.M)}
    codes = set()
    for cls in (errors.ErrorCode, errors.Disconnect):
        for name in dir(cls):
            value = getattr(cls, name)
            if isinstance(value, errors.ReplyError | errors.Disconnect):
                codes.add(value.code)
    for name in dir(errors.Unsubscribe):
        value = getattr(errors.Unsubscribe, name)
        if isinstance(value, errors.Unsubscribe):
            codes.add(value.code)
    assert codes, "found no codes: errors.py changed shape"
    assert codes - listed == set(), f"codes missing from docs/errors.md: {codes - listed}"
