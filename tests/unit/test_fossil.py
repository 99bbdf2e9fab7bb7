"""Unit tests for tidings.protocol.fossil (Fossil delta encoder).

Every delta is checked by applying it with centrifuge-python's independent applier
(``centrifuge.fossil.apply_delta(source: bytes, delta: bytes) -> bytes``), which also verifies
the declared length and the checksum.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

import pytest
from centrifuge.fossil import apply_delta
from centrifuge.fossil import checksum as reference_checksum

from tidings.protocol.fossil import NHASH, checksum, create_delta

_COMMAND = re.compile(rb"([0-9A-Za-z_~]+)([@:;])")


def roundtrip(source: bytes, target: bytes) -> bytes:
    delta = create_delta(source, target)
    assert isinstance(delta, bytes)
    result = apply_delta(source, delta)
    assert isinstance(result, bytes)
    assert result == target
    return delta


def copy_count(delta: bytes) -> int:
    """Number of copy commands in a delta (parsed, so literal payloads are skipped)."""
    pos = delta.index(b"\n") + 1
    copies = 0
    while True:
        m = _COMMAND.match(delta, pos)
        assert m is not None, delta[pos:]
        op = m.group(2)
        if op == b";":
            return copies
        if op == b"@":
            copies += 1
            pos = delta.index(b",", m.end()) + 1
        else:
            pos = m.end() + _decode(m.group(1))


def _decode(digits: bytes) -> int:
    alphabet = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~"
    value = 0
    for d in digits:
        value = value * 64 + alphabet.index(d)
    return value


def doc(n_items: int = 20, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "channel": "news:sports",
        "counter": 41,
        "items": [
            {"id": k, "title": f"Item number {k}", "tags": ["a", "b", str(k % 7)], "score": k * 3}
            for k in range(n_items)
        ],
    }
    data.update(extra)
    return data


def dumps(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


# --- format details --------------------------------------------------------------------------


def test_checksum_matches_reference() -> None:
    rng = random.Random(99)
    for n in [*range(0, 40), 255, 1000, 4097]:
        data = bytes(rng.randrange(256) for _ in range(n))
        assert checksum(data) == reference_checksum(data)
    assert checksum(b"\xff" * 4096) == reference_checksum(b"\xff" * 4096)


def test_empty_target_literal_form() -> None:
    assert create_delta(b"", b"") == b"0\n0;"
    assert roundtrip(b"whatever source text", b"") == b"0\n0;"


def test_short_inputs_are_one_literal() -> None:
    delta = roundtrip(b"abc", b"hello")
    assert delta == b"5\n5:hello" + create_delta(b"", b"hello").split(b"hello", 1)[1]
    # Source shorter than NHASH: literal even if the target is long.
    target = b"x" * 100
    delta = roundtrip(b"x" * (NHASH - 1), target)
    assert delta.startswith(b"1_\n1_:" + target)  # 100 == 1*64 + 36 -> "1_"
    # Target shorter than NHASH: literal even if it occurs in the source.
    roundtrip(b"0123456789" * 10, b"23456789")


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (b"", b"a"),
        (b"a", b""),
        (b"", b"exactly16bytes!!"),
        (b"exactly16bytes!!", b"exactly16bytes!!"),
        (b"exactly16bytes!!", b"exactly16bytes!!x"),
        (b"exactly16bytes!!x", b"xexactly16bytes!!"),
        (b"0123456789abcdefghij", b"0123456789abcdefghij"),
    ],
)
def test_boundary_sizes(source: bytes, target: bytes) -> None:
    roundtrip(source, target)


def test_identical_is_single_copy() -> None:
    data = dumps(doc())
    delta = roundtrip(data, data)
    assert copy_count(delta) == 1
    assert len(delta) < 20


# --- JSON payloads ---------------------------------------------------------------------------


def test_counter_change() -> None:
    old = doc()
    new = doc()
    new["counter"] = 42
    new["items"][10]["score"] = 9999
    delta = roundtrip(dumps(old), dumps(new))
    assert len(delta) < 60


def test_added_field() -> None:
    old = doc()
    new = doc(extra_field={"nested": [1, 2, 3], "flag": True})
    delta = roundtrip(dumps(old), dumps(new))
    assert len(delta) < 100


def test_removed_field() -> None:
    old = doc()
    new = doc()
    del new["items"][5]
    del new["channel"]
    delta = roundtrip(dumps(old), dumps(new))
    assert len(delta) < 60


def test_completely_different() -> None:
    rng = random.Random(7)
    source = bytes(rng.randrange(256) for _ in range(2000))
    target = bytes(rng.randrange(256) for _ in range(1500))
    delta = roundtrip(source, target)
    assert copy_count(delta) == 0
    assert len(delta) < len(target) + 20


def test_binary_bytes() -> None:
    # Bytes that look like delta syntax, NULs, high bytes and the digit alphabet.
    chunk = bytes(range(256)) + b"10@0,5:abc;\n\x00\xff~_" * 8
    source = chunk * 4
    target = chunk[:300] + b"\x00\x01\x02@@::;;" + chunk * 3 + b"\n\n"
    delta = roundtrip(source, target)
    assert len(delta) < len(target) // 4


def test_large_similar_json() -> None:
    old = doc(n_items=300)
    source = dumps(old)
    assert len(source) > 20_000
    new = json.loads(source)
    new["counter"] = 1000
    new["items"][3]["title"] = "Changed title"
    new["items"][120]["tags"].append("new")
    del new["items"][200]
    new["items"].append({"id": 999, "title": "Appended", "tags": [], "score": 0})
    target = dumps(new)
    delta = roundtrip(source, target)
    assert len(delta) < len(target) // 10


def test_repetitive_data() -> None:
    source = b"a" * 1000
    roundtrip(source, b"a" * 3000)
    roundtrip(source, b"a" * 500 + b"b" + b"a" * 500)
    roundtrip(b"ab" * 500, b"ba" * 700)


def test_accepts_bytes_like() -> None:
    source = bytearray(b"The quick brown fox jumps over the lazy dog" * 3)
    target = memoryview(b"The quick brown fox jumps over the lazy cat" * 3)
    delta = create_delta(source, target)  # type: ignore[arg-type]
    assert apply_delta(bytes(source), delta) == bytes(target)


# --- randomized ------------------------------------------------------------------------------


def _mutate(rng: random.Random, data: bytes, alphabet: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randrange(0, 6)):
        op = rng.randrange(4)
        pos = rng.randrange(len(out) + 1)
        if op == 0:  # insert
            out[pos:pos] = bytes(rng.choice(alphabet) for _ in range(rng.randrange(1, 40)))
        elif op == 1:  # delete
            del out[pos : pos + rng.randrange(1, 60)]
        elif op == 2:  # overwrite
            n = rng.randrange(1, 20)
            out[pos : pos + n] = bytes(rng.choice(alphabet) for _ in range(n))
        else:  # move a block
            n = rng.randrange(1, 200)
            block = bytes(out[pos : pos + n])
            del out[pos : pos + n]
            dest = rng.randrange(len(out) + 1)
            out[dest:dest] = block
    return bytes(out)


def test_randomized_edits() -> None:
    rng = random.Random(1234)
    copies = 0
    for _ in range(300):
        alphabet = bytes(range(256)) if rng.random() < 0.5 else b'abc{}:,"0123'
        size = rng.choice([0, 5, 15, 16, 17, 40, 200, 1000, 3000])
        source = bytes(rng.choice(alphabet) for _ in range(size))
        target = _mutate(rng, source, alphabet)
        delta = roundtrip(source, target)
        copies += copy_count(delta) > 0
    assert copies > 100  # the encoder actually finds matches, not just literals
