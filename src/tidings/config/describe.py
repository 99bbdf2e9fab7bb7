"""Every config key with its default and, where the schema says, what it means
(``tidings defaultconfig``). Read from the schema itself, so it cannot drift: the keys and
defaults from the structs, the meanings from each field's ``#`` comment and each section's
docstring."""

from __future__ import annotations

import inspect
import json
import re
from dataclasses import dataclass
from typing import Any

import msgspec

from tidings.config.schema import Config

__all__ = ["KeyDoc", "describe", "render"]

_FIELD_COMMENT = re.compile(r"^\s+(\w+)\s*:[^#]*#\s*(.+)$")


@dataclass(frozen=True, slots=True)
class KeyDoc:
    key: str  # dotted path; "[]" marks the items of a list
    default: Any  # JSON-ready
    meaning: str  # "" when the schema says nothing
    section: bool = False  # a section heading (its struct's docstring), not a key


def _comments(struct: type[msgspec.Struct]) -> dict[str, str]:
    """``field: type = default  # meaning`` lines of the struct (and its bases)."""
    found: dict[str, str] = {}
    for cls in reversed(struct.__mro__):
        if not (isinstance(cls, type) and issubclass(cls, msgspec.Struct)):
            continue
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):
            continue
        for line in source.splitlines():
            m = _FIELD_COMMENT.match(line)
            if m:
                found[m.group(1)] = m.group(2).strip()
    return found


def _struct_of(tp: Any) -> tuple[type[msgspec.Struct] | None, bool]:
    """The struct a field holds, and whether it is a list of them."""
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return tp, False
    args = getattr(tp, "__args__", None)
    if getattr(tp, "__origin__", None) is list and args:
        item = args[0]
        if isinstance(item, type) and issubclass(item, msgspec.Struct):
            return item, True
    return None, False


def _default(field: msgspec.structs.FieldInfo) -> Any:
    if field.default is not msgspec.NODEFAULT:
        return msgspec.to_builtins(field.default)
    if field.default_factory is not msgspec.NODEFAULT:
        return msgspec.to_builtins(field.default_factory())
    return None  # required (a namespace's or a proxy's name)


def describe(struct: type[msgspec.Struct] = Config, prefix: str = "",
             seen: set[type[msgspec.Struct]] | None = None) -> list[KeyDoc]:
    """Every leaf key under ``struct``, depth first in schema order; a section's meaning the
    first time its kind of struct appears (``seen``)."""
    seen = set() if seen is None else seen
    docs: list[KeyDoc] = []
    comments = _comments(struct)
    for field in msgspec.structs.fields(struct):
        key = f"{prefix}{field.encode_name}"
        sub, is_list = _struct_of(field.type)
        if sub is None:
            docs.append(KeyDoc(key, _default(field), comments.get(field.name, "")))
            continue
        meaning = "" if sub in seen or (sub.__doc__ or "").startswith(sub.__name__ + "(") else (
            _first_line(sub.__doc__))
        seen.add(sub)
        if is_list:
            docs.append(KeyDoc(key, [], meaning))
        elif meaning:
            docs.append(KeyDoc(key, None, meaning, section=True))
        docs += describe(sub, f"{key}[]." if is_list else f"{key}.", seen)
    return docs


def _first_line(doc: str | None) -> str:
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def render(docs: list[KeyDoc]) -> str:
    """One line per key: ``key = default`` (JSON values), then ``# meaning`` when known."""
    lines = ["# every config key = its default (JSON); durations in seconds (files may write",
             '# "25s", "1m30s"); "[]." marks the keys of each item of a list']
    for d in docs:
        if d.section:
            lines.append(f"# {d.key}: {d.meaning}")
            continue
        line = f"{d.key} = {json.dumps(d.default)}"
        lines.append(f"{line}  # {d.meaning}" if d.meaning else line)
    return "\n".join(lines) + "\n"
