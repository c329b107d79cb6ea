"""The protocol-buffer wire format, just enough for TensorFlow's checkpoint messages.

A message is a run of (tag, value) pairs; tag = field number << 3 | wire type (0 varint,
1 fixed64, 2 length-delimited, 5 fixed32). Decoding needs no schema: each field is kept raw and
the caller interprets it (the few TensorFlow messages read here are described where they are used).
"""

from __future__ import annotations

import struct
from collections import defaultdict

from crosspose.convert.sstable import _Corrupt, encode_varint, read_varint

__all__ = ["decode_message", "encode_field", "first", "packed_floats", "signed64"]

Fields = dict[int, list[int | bytes]]


def decode_message(buf: bytes) -> Fields:
    """Field number -> list of raw values (ints for varint/fixed, bytes for length-delimited)."""
    fields: Fields = defaultdict(list)
    pos = 0
    while pos < len(buf):
        tag, pos = read_varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = read_varint(buf, pos)
            fields[number].append(value)
        elif wire == 1:
            if pos + 8 > len(buf):
                raise _Corrupt("a fixed64 field runs past the end of its message")
            fields[number].append(struct.unpack_from("<Q", buf, pos)[0])
            pos += 8
        elif wire == 2:
            length, pos = read_varint(buf, pos)
            if pos + length > len(buf):
                raise _Corrupt("a length-delimited field runs past the end of its message")
            fields[number].append(bytes(buf[pos:pos + length]))
            pos += length
        elif wire == 5:
            if pos + 4 > len(buf):
                raise _Corrupt("a fixed32 field runs past the end of its message")
            fields[number].append(struct.unpack_from("<I", buf, pos)[0])
            pos += 4
        else:
            raise _Corrupt(f"unsupported protobuf wire type {wire} (field {number})")
    return fields


def first(fields: Fields, number: int, default: int | bytes = 0) -> int | bytes:
    """The last occurrence of a singular field (protobuf's merge rule), or ``default``."""
    values = fields.get(number)
    return values[-1] if values else default


def signed64(value: int) -> int:
    """A varint-encoded int64 (two's complement in 64 bits)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def packed_floats(values: list[int | bytes]) -> list[float]:
    """A repeated float field: packed (bytes) or one fixed32 per element."""
    out: list[float] = []
    for v in values:
        if isinstance(v, bytes):
            out.extend(struct.unpack(f"<{len(v) // 4}f", v))
        else:
            out.append(struct.unpack("<f", struct.pack("<I", v))[0])
    return out


def encode_field(number: int, value: int | bytes, wire: int | None = None) -> bytes:
    """One field, for writing test messages: ints as varints (or fixed32 with wire=5), bytes delimited."""
    if isinstance(value, bytes):
        return encode_varint(number << 3 | 2) + encode_varint(len(value)) + value
    if wire == 5:
        return encode_varint(number << 3 | 5) + struct.pack("<I", value)
    return encode_varint(number << 3) + encode_varint(value & ((1 << 64) - 1))
