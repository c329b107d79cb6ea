"""The TensorFlow checkpoint reader: table format, V2 bundles, V1 slices, damaged files."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from crosspose.convert.protowire import encode_field
from crosspose.convert.sstable import (
    TABLE_MAGIC,
    build_table,
    crc32c,
    masked_crc32c,
    parse_table,
    read_varint,
    snappy_decompress,
)
from crosspose.convert.tf_checkpoint import open_tf_checkpoint, write_tf_checkpoint_v2
from crosspose.core.errors import DataFormatError
from crosspose.testing import requires_fixture

FIXTURE = "deeplabcut_tf/narrow_resnet_v1_50_17joints"


def test_varint_and_crc32c_known_values() -> None:
    assert read_varint(b"\xac\x02", 0) == (300, 2)
    assert read_varint(b"\x01", 0) == (1, 1)
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert crc32c(b"") == 0


def _hand_built_block(entries: list[tuple[bytes, int, bytes]], restarts: list[int]) -> bytes:
    """entries: (unshared key bytes, shared count, value)."""
    out = b""
    for key, shared, value in entries:
        out += bytes([shared, len(key), len(value)]) + key + value
    return out + b"".join(struct.pack("<I", r) for r in restarts) + struct.pack("<I", len(restarts))


def test_reads_a_table_assembled_byte_by_byte() -> None:
    # one data block with prefix-shared keys "", "ab", "abc" (shares 2), "b"; restart points at 0
    data = _hand_built_block([(b"", 0, b"h"), (b"ab", 0, b"1"), (b"c", 2, b"22"), (b"b", 0, b"x")], [0])
    index = _hand_built_block([(b"b", 0, bytes([0, len(data)]))], [0])
    meta = _hand_built_block([], [0])
    f = bytearray()
    for block in (data, meta, index):
        f += block + b"\x00" + struct.pack("<I", masked_crc32c(block + b"\x00"))
    meta_off, index_off = len(data) + 5, len(data) + 5 + len(meta) + 5
    footer = bytes([meta_off, len(meta), index_off, len(index)]).ljust(40, b"\x00")
    f += footer + struct.pack("<Q", TABLE_MAGIC)
    assert parse_table(bytes(f)) == [(b"", b"h"), (b"ab", b"1"), (b"abc", b"22"), (b"b", b"x")]
    f[3] ^= 0xFF  # a flipped byte inside the data block
    with pytest.raises(Exception, match="checksum"):
        parse_table(bytes(f))


def test_table_round_trip_over_many_blocks_and_restarts() -> None:
    rng = np.random.default_rng(0)
    entries = {f"scope/block{i % 7}/unit_{i}/w".encode(): rng.bytes(int(rng.integers(0, 300))) for i in range(100)}
    table = build_table(entries.items(), block_entries=9, restart_interval=3)
    assert parse_table(table) == sorted(entries.items())


def test_snappy_literal_and_overlapping_copy() -> None:
    # length 12; literal "abcd" (tag (4-1)<<2); copy-1: length 8 ((8-4)<<2 | 1), offset 4
    assert snappy_decompress(bytes([12, 0x0C]) + b"abcd" + bytes([0x11, 4])) == b"abcdabcdabcd"


def test_v2_checkpoint_round_trip(tmp_path: Path) -> None:
    tensors = {"a/weights": np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7,
               "a/step": np.array(123456789012, dtype=np.int64), "b": np.ones((0, 3), np.float32)}
    prefix = write_tf_checkpoint_v2(tmp_path / "snapshot-5", tensors)
    for name in (prefix, prefix.with_name("snapshot-5.index"), prefix.with_name("snapshot-5.data-00000-of-00001")):
        ckpt = open_tf_checkpoint(name)
        assert set(ckpt.variables) == set(tensors)
        for k, v in tensors.items():
            got = ckpt.tensor(k)
            assert got.dtype == v.dtype and got.shape == v.shape and np.array_equal(got, v)


def test_damaged_checkpoints_name_the_file(tmp_path: Path) -> None:
    prefix = write_tf_checkpoint_v2(tmp_path / "s", {"w": np.ones((64, 64), np.float32)})
    data = tmp_path / "s.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:1000])
    with pytest.raises(DataFormatError, match="truncated") as exc:
        open_tf_checkpoint(prefix).tensor("w")
    assert str(data) in str(exc.value)
    data.unlink()
    with pytest.raises(DataFormatError, match="data shard not found") as exc:
        open_tf_checkpoint(prefix)
    assert str(data) in str(exc.value)
    (tmp_path / "s.index").unlink()
    with pytest.raises(DataFormatError, match="index not found") as exc:
        open_tf_checkpoint(prefix)
    assert "s.index" in str(exc.value)
    junk = tmp_path / "junk.index"
    junk.write_bytes(b"this is not a table at all, just text" * 3)
    with pytest.raises(DataFormatError, match="not a readable") as exc:
        open_tf_checkpoint(junk)
    assert str(junk) in str(exc.value)


def _shape(*dims: int) -> bytes:
    return b"".join(encode_field(2, encode_field(1, d)) for d in dims)


def _extent(start: int, length: int | None = None) -> bytes:
    return encode_field(1, encode_field(1, start) + (b"" if length is None else encode_field(2, length)))


def test_v1_checkpoint_with_sliced_and_packed_tensors(tmp_path: Path) -> None:
    """The TF-slim ImageNet layout: metadata under the empty key, values as SavedSlice entries."""
    w = np.arange(12, dtype=np.float32).reshape(4, 3) - 5.5
    b = np.array([0.25, -1.5], np.float32)
    meta = (encode_field(1, encode_field(1, b"net/w") + encode_field(2, _shape(4, 3)) + encode_field(3, 1))
            + encode_field(1, encode_field(1, b"net/b") + encode_field(2, _shape(2)) + encode_field(3, 1))
            + encode_field(1, encode_field(1, b"net/s") + encode_field(2, _shape(2)) + encode_field(3, 1)))
    unpacked = b"".join(encode_field(5, struct.unpack("<I", struct.pack("<f", v))[0], wire=5) for v in (3.5, -2.0))

    def saved(name: bytes, extents: bytes, proto: bytes) -> bytes:
        return encode_field(2, encode_field(1, name) + encode_field(2, extents) + encode_field(3, proto))

    def floats(a: np.ndarray) -> bytes:  # TensorProto.float_val, packed
        return encode_field(1, 1) + encode_field(5, a.astype("<f4").tobytes())

    entries = [
        (b"", encode_field(1, meta)),
        (b"\x00w0", saved(b"net/w", _extent(0, 1), floats(w[:1]))),  # rows 0..1 (2nd dim whole)
        (b"\x00w1", saved(b"net/w", _extent(1), floats(w[1:]))),  # rows 1.. (length absent: to the end)
        (b"\x00x", saved(b"net/b", b"", encode_field(1, 1) + encode_field(4, b.astype("<f4").tobytes()))),
        (b"\x00y", saved(b"net/s", b"", encode_field(1, 1) + unpacked)),  # float_val, one fixed32 each
    ]
    path = tmp_path / "resnet_v1_50.ckpt"
    path.write_bytes(build_table(entries, block_entries=2))
    ckpt = open_tf_checkpoint(path)
    assert ckpt.version == "v1"
    assert np.array_equal(ckpt.tensor("net/w"), w) and np.array_equal(ckpt.tensor("net/b"), b)
    assert ckpt.tensor("net/s").tolist() == [3.5, -2.0]
    path.write_bytes(build_table(entries[:2]))  # the second slice of w lost
    with pytest.raises(DataFormatError, match="incomplete"):
        open_tf_checkpoint(path)


@requires_fixture(FIXTURE)
def test_reads_a_real_deeplabcut_snapshot(shared_fixtures: Path) -> None:
    folder = shared_fixtures / FIXTURE
    listed = {line.strip().removesuffix(":0") for line in (folder / "variables.txt").read_text().splitlines()
              if line.strip()}
    ckpt = open_tf_checkpoint(folder / "snapshot-1000")
    assert set(ckpt.variables) == listed
    total = sum(ckpt.tensor(n).nbytes for n in ckpt.variables)
    assert total == (folder / "snapshot-1000.data-00000-of-00001").stat().st_size  # every byte accounted for
    assert ckpt.tensor("resnet_v1_50/conv1/weights").shape == (7, 7, 3, 64)
    gamma = ckpt.tensor("resnet_v1_50/conv1/BatchNorm/gamma")
    assert gamma.min() >= 0.8 - 1e-6 and gamma.max() <= 1.2 + 1e-6  # the fixture's U(0.8, 1.2)
