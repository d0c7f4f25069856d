"""Unsigned LEB128 numbers: 7 bits a byte, low bits first, the top bit set on every byte but the last.

Used where a few bytes a frame matter: the packed frame's header (protocol.md §2) and the alpha
corrections' tile runs (§7.7). Each caller turns a `VarintError` into its own error naming its field.
"""

from __future__ import annotations


class VarintError(ValueError):
    """The bytes end inside a number, or a number is longer than its caller allows."""


def encode_uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_uvarint(data: bytes, offset: int, max_bytes: int) -> tuple[int, int]:
    """The number at `offset` and the offset after it; at most `max_bytes` bytes long."""
    value = 0
    for i in range(max_bytes):
        if offset + i >= len(data):
            raise VarintError("ends inside a number")
        byte = data[offset + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, offset + i + 1
    raise VarintError(f"a number too long (more than {max_bytes} bytes)")
