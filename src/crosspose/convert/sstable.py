"""LevelDB-style sorted tables, the container of TensorFlow's checkpoint index files.

TensorFlow writes ``*.index`` (checkpoint V2) and the single-file V1 ``*.ckpt`` with its copy of
LevelDB's table format (``tensorflow/core/lib/io/table*``):

- the file ends in a 48-byte footer: two block handles (meta-index, index; each two varint64:
  offset, size), zero padding to 40 bytes, then the magic number ``0xdb4775248b80fb57`` (little-endian);
- every block is followed by a 5-byte trailer: one compression byte (0 none, 1 snappy) and the
  masked CRC-32C of the block contents plus that byte;
- a block is a run of prefix-compressed entries (varint32 shared key bytes, varint32 unshared key
  bytes, varint32 value length, the unshared key bytes, the value), then the restart-point array
  (uint32 each) and its length (uint32); restart points only speed up seeking, a full scan ignores them;
- the index block maps a separator key to the handle of each data block.

Only reading is needed by crosspose; :func:`build_table` writes the same format for tests.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

from crosspose.core.errors import DataFormatError

__all__ = [
    "TABLE_MAGIC",
    "build_table",
    "crc32c",
    "encode_varint",
    "masked_crc32c",
    "parse_table",
    "read_table",
    "read_varint",
    "snappy_decompress",
]

TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48
_TRAILER_SIZE = 5
_CRC_LIMIT = 1 << 20
"""Blocks up to this size have their CRC checked: every index block and all of a V2 index. A V1
checkpoint's data blocks hold whole tensors (hundreds of MB in all) and pure-Python CRC-32C runs at a
few MB/s, so those are checked by structure and size only."""


class _Corrupt(Exception):
    """Internal: a structural problem; turned into DataFormatError with the file's name."""


def read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; returns (value, position after it)."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _Corrupt("a varint runs past the end of its block")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _Corrupt("a varint is longer than 10 bytes")


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _crc32c_table() -> list[int]:
    poly = 0x82F63B78  # Castagnoli, reflected
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes | memoryview, crc: int = 0) -> int:
    """CRC-32C (Castagnoli). Pure Python: meant for index blocks (kilobytes), not tensor data."""
    crc ^= 0xFFFFFFFF
    table = _CRC_TABLE
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes | memoryview) -> int:
    """LevelDB's masked CRC (stored CRCs are masked so that CRCs of CRCs stay well-distributed)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def snappy_decompress(data: bytes) -> bytes:
    """Raw snappy block decompression (TensorFlow tables may be snappy-compressed)."""
    length, pos = read_varint(data, 0)
    out = bytearray()
    while pos < len(data):
        tag = data[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:  # literal
            n = tag >> 2
            if n >= 60:
                extra = n - 59
                n = int.from_bytes(data[pos:pos + extra], "little")
                pos += extra
            n += 1
            if pos + n > len(data):
                raise _Corrupt("a snappy literal runs past the end of the block")
            out += data[pos:pos + n]
            pos += n
            continue
        if kind == 1:
            n = 4 + ((tag >> 2) & 7)
            offset = ((tag >> 5) << 8) | data[pos]
            pos += 1
        elif kind == 2:
            n = (tag >> 2) + 1
            offset = int.from_bytes(data[pos:pos + 2], "little")
            pos += 2
        else:
            n = (tag >> 2) + 1
            offset = int.from_bytes(data[pos:pos + 4], "little")
            pos += 4
        if offset == 0 or offset > len(out):
            raise _Corrupt("a snappy copy points before the start of the block")
        for _ in range(n):  # byte by byte: copies may overlap their own output
            out.append(out[-offset])
    if len(out) != length:
        raise _Corrupt(f"snappy block decompressed to {len(out)} bytes, header says {length}")
    return bytes(out)


def _block(data: bytes, offset: int, size: int, verify: bool) -> bytes:
    end = offset + size
    if offset < 0 or end + _TRAILER_SIZE > len(data):
        raise _Corrupt(f"a block at byte {offset} (+{size}) lies past the end of the file ({len(data)} bytes)")
    contents = data[offset:end]
    kind = data[end]
    if verify and size <= _CRC_LIMIT:
        stored = struct.unpack_from("<I", data, end + 1)[0]
        if masked_crc32c(data[offset:end + 1]) != stored:
            raise _Corrupt(f"checksum mismatch in the block at byte {offset}")
    if kind == 0:
        return contents
    if kind == 1:
        return snappy_decompress(contents)
    raise _Corrupt(f"block at byte {offset} has unknown compression type {kind}")


def _entries(block: bytes) -> list[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise _Corrupt("a block is shorter than its restart count")
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise _Corrupt(f"a block claims {num_restarts} restart points, more than it can hold")
    out = []
    key = b""
    pos = 0
    while pos < limit:
        shared, pos = read_varint(block, pos)
        unshared, pos = read_varint(block, pos)
        value_len, pos = read_varint(block, pos)
        if shared > len(key) or pos + unshared + value_len > limit:
            raise _Corrupt("an entry's key or value runs past the end of its block")
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        out.append((key, block[pos:pos + value_len]))
        pos += value_len
    return out


def parse_table(data: bytes, verify_checksums: bool = True) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of a table held in ``data``, in key order. Raises ``_Corrupt``."""
    if len(data) < _FOOTER_SIZE:
        raise _Corrupt(f"{len(data)} bytes is too short for a table footer ({_FOOTER_SIZE})")
    footer = data[-_FOOTER_SIZE:]
    if struct.unpack_from("<Q", footer, 40)[0] != TABLE_MAGIC:
        raise _Corrupt("no table magic number at the end (not a TensorFlow index/checkpoint table)")
    _, pos = read_varint(footer, 0)  # meta-index offset
    _, pos = read_varint(footer, pos)  # meta-index size
    index_offset, pos = read_varint(footer, pos)
    index_size, pos = read_varint(footer, pos)
    entries: list[tuple[bytes, bytes]] = []
    for _, handle in _entries(_block(data, index_offset, index_size, verify_checksums)):
        offset, p = read_varint(handle, 0)
        size, _ = read_varint(handle, p)
        entries.extend(_entries(_block(data, offset, size, verify_checksums)))
    keys = [k for k, _ in entries]
    if keys != sorted(keys):
        raise _Corrupt("keys are not in sorted order")
    return entries


def read_table(path: str | Path, what: str = "TensorFlow table") -> list[tuple[bytes, bytes]]:
    """Read a whole table file; a malformed one raises DataFormatError naming it."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataFormatError(path, f"cannot read the {what}: {exc.strerror or exc}") from None
    try:
        return parse_table(data)
    except _Corrupt as exc:
        raise DataFormatError(path, f"not a readable {what}: {exc}") from None


def _encode_block(entries: Iterable[tuple[bytes, bytes]], restart_interval: int = 16) -> bytes:
    out = bytearray()
    restarts = []
    previous = b""
    for i, (key, value) in enumerate(entries):
        if i % restart_interval == 0:
            restarts.append(len(out))
            shared = 0
        else:
            shared = 0
            while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
                shared += 1
        out += encode_varint(shared) + encode_varint(len(key) - shared) + encode_varint(len(value))
        out += key[shared:] + value
        previous = key
    for r in restarts or [0]:
        out += struct.pack("<I", r)
    out += struct.pack("<I", len(restarts) or 1)
    return bytes(out)


def build_table(entries: Iterable[tuple[bytes, bytes]], block_entries: int = 8,
                restart_interval: int = 4) -> bytes:
    """A table holding ``entries`` (sorted by key), several data blocks, uncompressed.

    Index keys are the last key of each block, which is a valid separator (>= every key in it and
    < every key of the next block).
    """
    entries = sorted(entries)
    out = bytearray()
    index = []

    def put(block: bytes) -> tuple[int, int]:
        offset = len(out)
        out.extend(block)
        out.append(0)
        out.extend(struct.pack("<I", masked_crc32c(block + b"\x00")))
        return offset, len(block)

    for start in range(0, len(entries), block_entries):
        chunk = entries[start:start + block_entries]
        offset, size = put(_encode_block(chunk, restart_interval))
        index.append((chunk[-1][0], encode_varint(offset) + encode_varint(size)))
    meta = put(_encode_block([]))
    idx = put(_encode_block(index, 1))
    footer = encode_varint(meta[0]) + encode_varint(meta[1]) + encode_varint(idx[0]) + encode_varint(idx[1])
    out += footer.ljust(40, b"\x00") + struct.pack("<Q", TABLE_MAGIC)
    return bytes(out)
