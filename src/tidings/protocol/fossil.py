"""Fossil SCM delta encoder (the CREATE side), as used by Centrifugo's ``delta: "fossil"``.

A delta turns ``source`` into ``target``.  Its wire form is ASCII framing around raw bytes::

    <len(target)>\\n
    <count>@<offset>,        copy ``count`` bytes of source starting at ``offset``
    <count>:<bytes>          insert ``count`` literal bytes
    ...
    <checksum>;              Fossil checksum of the target

Integers are unsigned, written most significant digit first in a 64-digit alphabet
(``0-9A-Z_a-z~``).

Encoder: the source is cut into aligned blocks of :data:`NHASH` bytes, each indexed by a rolling
hash.  A window of ``NHASH`` bytes slides over the target one byte at a time; when its hash names
a source block, the candidate is verified and extended forwards and backwards, and the longest
candidate is emitted (pending literal + copy) if the copy command is no longer than the bytes it
replaces.  Whatever is left over at the end becomes one final literal.  The rolling hash makes the
scan O(len(target)) plus the (bounded) verification work at hash hits.

This module was written from the format description; it is independent of any other encoder.
"""

from __future__ import annotations

import struct

__all__ = ["NHASH", "checksum", "create_delta"]

NHASH = 16
"""Block / window size of the rolling hash."""

_DIGITS = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~"
_MAX_CANDIDATES = 250  # hash-chain entries examined per target position
_CHUNK = 64  # forward-match comparison granularity (slice compares run in C)


def _int(value: int) -> bytes:
    """Encode a non-negative integer in Fossil's base-64 digit alphabet."""
    if value == 0:
        return b"0"
    out = bytearray()
    while value:
        out.append(_DIGITS[value & 63])
        value >>= 6
    out.reverse()
    return bytes(out)


def _int_len(value: int) -> int:
    """Number of digits :func:`_int` produces for ``value``."""
    return 1 if value == 0 else (value.bit_length() + 5) // 6


def checksum(data: bytes) -> int:
    """Fossil's 32-bit checksum: sum of big-endian 32-bit words, zero-padded at the end."""
    pad = -len(data) % 4
    if pad:
        data = bytes(data) + b"\0" * pad
    words: tuple[int, ...] = struct.unpack(f">{len(data) // 4}I", data)
    return sum(words) & 0xFFFFFFFF


def _hash_block(data: bytes, start: int) -> tuple[int, int]:
    """Adler-style hash parts (a, b) of ``data[start:start + NHASH]``, each kept to 16 bits."""
    a = b = 0
    for k in range(NHASH):
        c = data[start + k]
        a += c
        b += (NHASH - k) * c
    return a & 0xFFFF, b & 0xFFFF


def _match_forward(source: bytes, s: int, target: bytes, t: int) -> int:
    """Length of the common run of ``source[s:]`` and ``target[t:]``."""
    limit = min(len(source) - s, len(target) - t)
    n = 0
    while n + _CHUNK <= limit and source[s + n : s + n + _CHUNK] == target[t + n : t + n + _CHUNK]:
        n += _CHUNK
    while n < limit and source[s + n] == target[t + n]:
        n += 1
    return n


def _literal(out: bytearray, data: bytes) -> None:
    out += _int(len(data))
    out += b":"
    out += data


def create_delta(source: bytes, target: bytes) -> bytes:
    """Return a Fossil delta that rebuilds ``target`` from ``source``.

    The result is always a valid delta (``apply_delta(source, delta) == target``); when either
    input is shorter than :data:`NHASH` bytes it is simply the whole target as one literal.

    Complexity 19 (radon): the format's matching loop (rolling hash, candidate chain, extend
    both ways, copy-or-literal) kept whole, as the format describes it, so it can be checked
    against the description step by step; it is covered by 300 random round trips.
    """
    source = bytes(source)
    target = bytes(target)
    len_src = len(source)
    len_tgt = len(target)

    out = bytearray(_int(len_tgt))
    out += b"\n"

    if len_src < NHASH or len_tgt < NHASH:
        if len_tgt:
            _literal(out, target)
        out += _int(checksum(target))
        out += b";"
        return bytes(out)

    # Index the aligned source blocks: hash -> block numbers in source order.
    index: dict[int, list[int]] = {}
    for block in range(len_src // NHASH):
        a, b = _hash_block(source, block * NHASH)
        index.setdefault(a | (b << 16), []).append(block)

    base = 0  # everything in target[:base] has been emitted
    while base + NHASH < len_tgt:
        a, b = _hash_block(target, base)
        i = 0  # window is target[base + i : base + i + NHASH]
        while True:
            best_cnt = 0
            best_ofst = 0
            best_lit = 0
            chain = index.get(a | (b << 16))
            if chain is not None:
                pos = base + i
                # Earliest blocks first: they leave the most source to extend into.
                for block in chain[:_MAX_CANDIDATES]:
                    src = block * NHASH
                    fwd = _match_forward(source, src, target, pos)
                    if fwd == 0:
                        continue  # hash collision
                    back = 0  # extend backwards, but not past the emitted region
                    max_back = min(src, i)
                    while back < max_back and source[src - back - 1] == target[pos - back - 1]:
                        back += 1
                    cnt = fwd + back
                    ofst = src - back
                    lit = i - back
                    cost = _int_len(lit) + _int_len(cnt) + _int_len(ofst) + 3
                    if cnt >= cost and cnt > best_cnt:
                        best_cnt, best_ofst, best_lit = cnt, ofst, lit
                        if cnt == len_tgt - base:
                            break  # covers the whole rest of the target: cannot do better
            if best_cnt:
                if best_lit:
                    _literal(out, target[base : base + best_lit])
                out += _int(best_cnt)
                out += b"@"
                out += _int(best_ofst)
                out += b","
                base += best_lit + best_cnt
                break
            if base + i + NHASH >= len_tgt:
                # No match anywhere in the rest of the target: emit it all as a literal.
                _literal(out, target[base:])
                base = len_tgt
                break
            # Slide the window one byte.
            old = target[base + i]
            new = target[base + i + NHASH]
            a = (a - old + new) & 0xFFFF
            b = (b - NHASH * old + a) & 0xFFFF
            i += 1

    if base < len_tgt:
        _literal(out, target[base:])
    out += _int(checksum(target))
    out += b";"
    return bytes(out)
