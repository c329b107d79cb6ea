"""Reading TensorFlow checkpoints without TensorFlow.

Two layouts exist and both occur with DeepLabCut:

- **V2** (every DeepLabCut 2 snapshot, ``snapshot-N.index`` + ``snapshot-N.data-0000s-of-0000n``):
  the index is a sorted table (:mod:`crosspose.convert.sstable`) whose empty key holds a
  ``BundleHeaderProto`` (1 num_shards, 2 endianness: 0 little) and every other key, a variable's
  name, a ``BundleEntryProto`` (1 dtype, 2 shape, 3 shard_id, 4 offset, 5 size, 6 crc32c,
  7 slices). The tensor is ``size`` raw bytes at ``offset`` of its shard, C order, little-endian.
- **V1** (TF-slim's 2016 ImageNet files such as ``resnet_v1_50.ckpt``): one table whose empty key
  holds the metadata (``SavedTensorSlices.meta``: per tensor 1 name, 2 shape, 3 dtype, 4 slices)
  and whose other entries hold ``SavedTensorSlices.data`` = ``SavedSlice`` (1 name, 2 slice extents,
  3 ``TensorProto`` with the values in ``float_val`` or ``tensor_content``).

Index-block checksums are verified; tensor bytes are checked by size (a truncated ``.data`` is
reported), not by their CRC (pure-Python CRC-32C over hundreds of megabytes would take minutes).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crosspose.convert.protowire import Fields, decode_message, first, packed_floats, signed64
from crosspose.convert.sstable import _Corrupt, build_table, read_table, read_varint
from crosspose.core.errors import DataFormatError

__all__ = ["TFCheckpoint", "TensorInfo", "open_tf_checkpoint", "resolve_prefix", "write_tf_checkpoint_v2"]

_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"), 2: np.dtype("<f8"), 3: np.dtype("<i4"), 4: np.dtype("u1"), 5: np.dtype("<i2"),
    6: np.dtype("i1"), 9: np.dtype("<i8"), 10: np.dtype("?"), 14: np.dtype("<u2"),  # bfloat16 bits
    17: np.dtype("<u2"), 19: np.dtype("<f2"), 22: np.dtype("<u4"), 23: np.dtype("<u8"),
}
_DT_BFLOAT16 = 14
_DTYPE_CODES = {np.dtype("float32"): 1, np.dtype("float64"): 2, np.dtype("int32"): 3, np.dtype("int64"): 9}


@dataclass(frozen=True)
class TensorInfo:
    """Where one variable lives: dtype code, shape, and (V2) shard, offset and byte size."""

    dtype: int
    shape: tuple[int, ...]
    shard: int = 0
    offset: int = 0
    size: int = 0


def _shape(buf: bytes | int) -> tuple[int, ...]:
    """TensorShapeProto: repeated 2 Dim {1 size}."""
    if not isinstance(buf, bytes):
        return ()
    dims = decode_message(buf).get(2, [])
    return tuple(signed64(int(first(decode_message(d), 1))) for d in dims if isinstance(d, bytes))


def resolve_prefix(path: str | Path) -> tuple[Path, str]:
    """(checkpoint path or prefix, "v2" | "v1") for ``snapshot-N``, ``snapshot-N.index``,
    ``snapshot-N.data-...``, ``snapshot-N.meta`` or a V1 ``model.ckpt`` file.
    """
    path = Path(path)
    name = path.name
    for suffix in (".index", ".meta"):
        if name.endswith(suffix):
            path = path.with_name(name[: -len(suffix)])
    if ".data-" in path.name:
        path = path.with_name(path.name.split(".data-")[0])
    index = path.with_name(path.name + ".index")
    if index.is_file():
        return path, "v2"
    if path.is_file():
        return path, "v1"
    raise DataFormatError(index, "TensorFlow checkpoint index not found (a V2 checkpoint is "
                                 "snapshot-N.index + snapshot-N.data-00000-of-00001; give the prefix snapshot-N)")


class TFCheckpoint:
    """The variables of a TensorFlow checkpoint (V1 or V2), read lazily for V2.

    Example:
        >>> ckpt = open_tf_checkpoint("models/snapshot-1030000")   # doctest: +SKIP
        >>> ckpt.tensor("resnet_v1_101/conv1/weights").shape         # doctest: +SKIP
        (7, 7, 3, 64)
    """

    def __init__(self, prefix: Path, version: str) -> None:
        self.prefix = prefix
        self.version = version
        self.variables: dict[str, TensorInfo] = {}
        self._v1_values: dict[str, np.ndarray] = {}
        self.num_shards = 1
        if version == "v2":
            self._read_v2_index()
        else:
            self._read_v1()

    @property
    def index_path(self) -> Path:
        return self.prefix.with_name(self.prefix.name + ".index") if self.version == "v2" else self.prefix

    def data_path(self, shard: int) -> Path:
        return self.prefix.with_name(f"{self.prefix.name}.data-{shard:05d}-of-{self.num_shards:05d}")

    # ------------------------------------------------------------------ V2
    def _read_v2_index(self) -> None:
        path = self.index_path
        entries = read_table(path, "TensorFlow checkpoint index")
        try:
            if not entries or entries[0][0] != b"":
                raise _Corrupt("no bundle header (empty key)")
            header = decode_message(entries[0][1])
            self.num_shards = int(first(header, 1, 1))
            if int(first(header, 2, 0)) != 0:
                raise _Corrupt("big-endian checkpoints are not supported")
            for key, value in entries[1:]:
                entry = decode_message(value)
                if entry.get(7):
                    raise _Corrupt(f"variable {key.decode(errors='replace')} is partitioned (slices); "
                                   "not supported")
                self.variables[key.decode("utf-8")] = TensorInfo(
                    dtype=int(first(entry, 1)), shape=_shape(first(entry, 2, b"")),
                    shard=int(first(entry, 3)), offset=signed64(int(first(entry, 4))),
                    size=signed64(int(first(entry, 5))))
        except (_Corrupt, UnicodeDecodeError) as exc:
            raise DataFormatError(path, f"not a TensorFlow checkpoint index: {exc}") from None
        sizes = []
        for shard in range(self.num_shards):
            if not self.data_path(shard).is_file():
                raise DataFormatError(self.data_path(shard), "checkpoint data shard not found "
                                      f"(the index {path.name} lists {self.num_shards})")
            sizes.append(os.path.getsize(self.data_path(shard)))
        for name, info in self.variables.items():  # a truncated shard is damaged, even where nothing reads
            if not 0 <= info.shard < self.num_shards:
                raise DataFormatError(path, f"variable {name} lies in shard {info.shard} of {self.num_shards}")
            if info.offset + info.size > sizes[info.shard]:
                raise DataFormatError(self.data_path(info.shard), f"truncated: variable {name} needs bytes "
                                      f"{info.offset}...{info.offset + info.size}, the file has {sizes[info.shard]}")

    def tensor(self, name: str) -> np.ndarray:
        """One variable as a native-endian numpy array (bfloat16 widened to float32)."""
        info = self.variables.get(name)
        if info is None:
            raise KeyError(name)
        if self.version == "v1":
            return self._v1_values[name]
        dtype = _DTYPES.get(info.dtype)
        data = self.data_path(info.shard)
        if dtype is None:
            raise DataFormatError(self.index_path, f"unsupported dtype code {info.dtype}", f"variable {name}")
        count = int(np.prod(info.shape, dtype=np.int64))
        if count * dtype.itemsize != info.size:
            raise DataFormatError(self.index_path, f"size {info.size} bytes does not fit shape {info.shape}",
                                  f"variable {name}")
        file_size = os.path.getsize(data)
        if info.offset + info.size > file_size:
            raise DataFormatError(data, f"truncated: variable {name} needs bytes {info.offset}..."
                                        f"{info.offset + info.size}, the file has {file_size}")
        with open(data, "rb") as fh:
            fh.seek(info.offset)
            raw = fh.read(info.size)
        array = np.frombuffer(raw, dtype=dtype).reshape(info.shape)
        return _widen(array, info.dtype)

    # ------------------------------------------------------------------ V1
    def _read_v1(self) -> None:
        path = self.prefix
        entries = read_table(path, "TensorFlow V1 checkpoint")
        try:
            if not entries or entries[0][0] != b"":
                raise _Corrupt("no metadata entry (empty key)")
            meta = decode_message(bytes(first(decode_message(entries[0][1]), 1, b"")))
            for raw in meta.get(1, []):
                m = decode_message(bytes(raw))
                name = bytes(first(m, 1, b"")).decode("utf-8")
                self.variables[name] = TensorInfo(dtype=int(first(m, 3)), shape=_shape(first(m, 2, b"")))
            filled: dict[str, int] = {}
            for _, value in entries[1:]:
                saved = decode_message(bytes(first(decode_message(value), 2, b"")))
                name = bytes(first(saved, 1, b"")).decode("utf-8")
                info = self.variables.get(name)
                if info is None:
                    raise _Corrupt(f"slice of {name!r}, which the metadata does not list")
                array = self._v1_values.setdefault(name, np.zeros(info.shape, _DTYPES.get(info.dtype, "<f4")))
                region = _slice_region(bytes(first(saved, 2, b"")), info.shape)
                values = _tensor_proto_values(decode_message(bytes(first(saved, 3, b""))), info.dtype)
                target = array[region]
                if values.size != target.size:
                    raise _Corrupt(f"slice of {name!r} holds {values.size} values for {target.size} places")
                array[region] = values.reshape(target.shape)
                filled[name] = filled.get(name, 0) + values.size
            for name, info in self.variables.items():
                if filled.get(name, 0) < int(np.prod(info.shape, dtype=np.int64)):
                    raise _Corrupt(f"variable {name!r} is incomplete (truncated file?)")
            self._v1_values = {k: _widen(v, self.variables[k].dtype) for k, v in self._v1_values.items()}
        except (_Corrupt, UnicodeDecodeError, ValueError) as exc:
            raise DataFormatError(path, f"not a readable TensorFlow V1 checkpoint: {exc}") from None


def _widen(array: np.ndarray, dtype_code: int) -> np.ndarray:
    if dtype_code == _DT_BFLOAT16:
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array.astype(array.dtype.newbyteorder("="), copy=True)


def _slice_region(buf: bytes, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """TensorSliceProto: repeated 1 Extent {1 start, 2 length (absent: the whole dimension)}."""
    extents = decode_message(buf).get(1, []) if buf else []
    region = []
    for d, size in enumerate(shape):
        if d < len(extents):
            ext = decode_message(bytes(extents[d]))
            start = signed64(int(first(ext, 1)))
            length = signed64(int(first(ext, 2))) if ext.get(2) else size - start
            region.append(slice(start, start + length))
        else:
            region.append(slice(0, size))
    return tuple(region)


def _varints(values: list[int | bytes]) -> list[int]:
    out: list[int] = []
    for v in values:
        if isinstance(v, bytes):
            pos = 0
            while pos < len(v):
                x, pos = read_varint(v, pos)
                out.append(signed64(x))
        else:
            out.append(signed64(v))
    return out


def _tensor_proto_values(proto: Fields, dtype_code: int) -> np.ndarray:
    """TensorProto values: 4 tensor_content, 5 float_val, 6 double_val, 7 int_val, 10 int64_val."""
    dtype = _DTYPES.get(dtype_code)
    if dtype is None:
        raise _Corrupt(f"unsupported dtype code {dtype_code}")
    content = first(proto, 4, b"")
    if isinstance(content, bytes) and content:
        return np.frombuffer(content, dtype=dtype)
    if proto.get(5):
        if all(isinstance(v, bytes) for v in proto[5]):  # packed: read the bytes directly (large tensors)
            return np.frombuffer(b"".join(v for v in proto[5] if isinstance(v, bytes)), dtype="<f4")
        return np.asarray(packed_floats(proto[5]), dtype=np.float32)
    if proto.get(6):
        doubles = b"".join(v if isinstance(v, bytes) else struct.pack("<Q", v) for v in proto[6])
        return np.frombuffer(doubles, dtype="<f8")
    for field in (7, 10, 11):
        if proto.get(field):
            return np.asarray(_varints(proto[field]), dtype=dtype)
    return np.zeros(0, dtype=dtype)


def open_tf_checkpoint(path: str | Path) -> TFCheckpoint:
    """Open a checkpoint by prefix (``snapshot-N``), one of its files, or a V1 ``.ckpt`` file."""
    prefix, version = resolve_prefix(path)
    return TFCheckpoint(prefix, version)


def write_tf_checkpoint_v2(prefix: str | Path, tensors: dict[str, np.ndarray]) -> Path:
    """Write ``tensors`` as a V2 checkpoint (index + one data shard): for tests and tools.

    Not through the atomic writer on purpose: tests damage these files to check the reader.
    """
    from crosspose.convert.protowire import encode_field

    prefix = Path(prefix)
    data = bytearray()
    entries = [(b"", encode_field(1, 1) + encode_field(3, encode_field(1, 1)))]
    for name, value in tensors.items():
        array = np.array(value, order="C")  # (ascontiguousarray would make a scalar 1-d)
        code = _DTYPE_CODES[array.dtype]
        shape = b"".join(encode_field(2, encode_field(1, d)) for d in array.shape)
        raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
        entry = encode_field(1, code) + encode_field(2, shape)
        if data:
            entry += encode_field(4, len(data))
        entry += encode_field(5, len(raw)) + encode_field(6, 0, wire=5)
        entries.append((name.encode("utf-8"), entry))
        data += raw
    prefix.parent.mkdir(parents=True, exist_ok=True)
    prefix.with_name(prefix.name + ".data-00000-of-00001").write_bytes(bytes(data))
    prefix.with_name(prefix.name + ".index").write_bytes(build_table(entries))
    return prefix
