"""GGUF reader: memory-mapped, header-only at open, zero-copy read-only tensor views.

    with GGUFReader("model.gguf") as r:
        r.version, r.alignment, r.data_offset
        r.metadata["general.architecture"]          # typed Python values
        t = r.tensors["token_embd.weight"]          # TensorInfo
        t.dims    # GGUF order (ne0, ne1, ...), ne0 fastest
        t.shape   # numpy order (..., ne1, ne0)
        t.data    # uint8 (nbytes,) read-only view into the mapping
        t.array   # F32/F16/BF16/F64/I8..I64 only: typed view of shape t.shape

The byte-level parsing (header, metadata, tensor infos) is the Cython module
``_parse``; this file adds the semantic checks on tensors (type ids, whole blocks,
alignment, bounds, overlaps) and the Python-facing objects.  Every malformed input
raises ``GGUFError`` naming the file, the field and its byte offset.

Metadata values: integers -> int, FLOAT32/FLOAT64 -> float, BOOL -> bool, STRING -> str,
numeric/bool arrays -> read-only 1-D numpy arrays (copies: metadata outlives close()),
string arrays -> ``StringArray`` (a lazily decoded read-only sequence of str; UTF-8 is
validated at open), arrays of arrays -> tuples of those.
"""
from __future__ import annotations

import mmap
import os
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Iterator

import numpy as np

from ._parse import StringArray, parse_header
from .constants import GGUF_DEFAULT_ALIGNMENT, TYPE_SIZES, GgufTensorType, GgufValueType
from .errors import GGUFError

__all__ = ["GGUFReader", "GGUFMetadata", "TensorInfo", "StringArray", "check_alignment"]

Sequence.register(StringArray)

_INT_VALUE_TYPES = frozenset({GgufValueType.UINT8, GgufValueType.INT8, GgufValueType.UINT16,
                              GgufValueType.INT16, GgufValueType.UINT32, GgufValueType.INT32,
                              GgufValueType.UINT64, GgufValueType.INT64})
# tensor types with a plain numpy element type (the typed view ``TensorInfo.array``)
_TYPED_DTYPES = {GgufTensorType.F32: "<f4", GgufTensorType.F16: "<f2",
                 GgufTensorType.F64: "<f8", GgufTensorType.I8: "i1",
                 GgufTensorType.I16: "<i2", GgufTensorType.I32: "<i4",
                 GgufTensorType.I64: "<i8", GgufTensorType.BF16: "bfloat16"}


def check_alignment(alignment: Any) -> str | None:
    """None if ``alignment`` is valid for GGUF (non-zero power of two, multiple of 8), else why."""
    if isinstance(alignment, bool) or not isinstance(alignment, (int, np.integer)):
        return f"alignment must be an integer, got {type(alignment).__name__}"
    a = int(alignment)
    if a <= 0 or a & (a - 1) or a % 8:
        return f"alignment {a} is not a non-zero power of two that is a multiple of 8"
    return None


class GGUFMetadata(Mapping):
    """Read-only mapping key -> typed value, in file order, with each entry's GGUF types."""

    __slots__ = ("_values", "_types")

    def __init__(self, values: dict[str, Any], types: dict[str, tuple[GgufValueType, GgufValueType | None, int]]):
        self._values = values
        self._types = types

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def value_type(self, key: str) -> GgufValueType:
        """The stored value type of ``key`` (ARRAY for arrays)."""
        return self._types[key][0]

    def element_type(self, key: str) -> GgufValueType | None:
        """The element type of an array entry, None for scalars."""
        return self._types[key][1]

    def offset(self, key: str) -> int:
        """Byte offset of the entry (its key-length field) in the file."""
        return self._types[key][2]

    def __repr__(self) -> str:
        return f"GGUFMetadata({len(self)} keys)"


class TensorInfo:
    """One tensor's header record; ``data``/``array`` are views into the reader's mapping."""

    __slots__ = ("name", "dims", "shape", "ttype", "offset", "nbytes", "n_elements",
                 "info_offset", "_reader")

    def __init__(self, reader, name, dims, ttype, offset, nbytes, n_elements, info_offset):
        self.name: str = name
        self.dims: tuple[int, ...] = dims           # GGUF order (ne0, ne1, ...)
        self.shape: tuple[int, ...] = dims[::-1]    # numpy order (..., ne1, ne0)
        self.ttype: GgufTensorType = ttype
        self.offset: int = offset                   # from the start of the data section
        self.nbytes: int = nbytes
        self.n_elements: int = n_elements
        self.info_offset: int = info_offset         # byte offset of this record in the header
        self._reader = reader

    @property
    def file_offset(self) -> int:
        """Absolute byte offset of the tensor's data in the file."""
        return self._reader.data_offset + self.offset

    @property
    def data(self) -> np.ndarray:
        """uint8 (nbytes,) read-only zero-copy view of the raw bytes (blocks for quant types)."""
        return self._reader._view(self.file_offset, self.nbytes)

    @property
    def array(self) -> np.ndarray:
        """Typed read-only view of shape ``self.shape`` for F32/F16/BF16/F64/I8..I64 tensors."""
        dtype = _TYPED_DTYPES.get(self.ttype)
        if dtype is None:
            raise TypeError(f"tensor '{self.name}' is {self.ttype.name}, a block type with "
                            f"no numpy element type; dequantize its .data instead")
        if dtype == "bfloat16":
            import ml_dtypes  # optional dependency, needed only for BF16 views
            dtype = ml_dtypes.bfloat16
        return self.data.view(dtype).reshape(self.shape)

    def __repr__(self) -> str:
        return (f"TensorInfo({self.name!r}, {self.ttype.name}, shape={self.shape}, "
                f"offset={self.offset}, nbytes={self.nbytes})")


class GGUFReader:
    """Open a GGUF v2/v3 file (path, or bytes/bytearray/memoryview) and parse its header.

    Only the header pages are read at open; tensor data stays in the page cache until a
    view is touched.  ``close()`` (or leaving the ``with`` block) unmaps the file; views
    handed out earlier keep the mapping alive until they are garbage collected.
    """

    def __init__(self, source: str | os.PathLike | bytes | bytearray | memoryview):
        self._mm: mmap.mmap | None = None
        if isinstance(source, (bytes, bytearray, memoryview)):
            buf = memoryview(source)
            if buf.ndim != 1 or buf.format != "B":
                buf = buf.cast("B")
            self.path = None
            self.source = "<bytes>"
        else:
            self.path = os.fspath(source)
            self.source = str(self.path)
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size == 0:
                    buf = b""
                else:
                    self._mm = buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._buf = buf
        self.file_size: int = len(buf) if not isinstance(buf, memoryview) else buf.nbytes
        try:
            self._load(parse_header(buf, self.source))
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ parsing
    def _err(self, field: str, offset: int | None, problem: str) -> GGUFError:
        return GGUFError(self.source, field, offset, problem)

    def _load(self, h: dict) -> None:
        self.version: int = h["version"]
        values: dict[str, Any] = {}
        types: dict[str, tuple] = {}
        for key, vt, et, value, at in h["kvs"]:
            if key in values:
                raise self._err(f"metadata '{key}'", at, f"duplicate key (first at byte "
                                f"{types[key][2]})")
            values[key] = value
            types[key] = (GgufValueType(vt), None if et < 0 else GgufValueType(et), at)
        self.metadata = GGUFMetadata(values, types)

        self.alignment: int = GGUF_DEFAULT_ALIGNMENT
        if "general.alignment" in values:
            at = types["general.alignment"][2]
            if types["general.alignment"][0] not in _INT_VALUE_TYPES:
                raise self._err("metadata 'general.alignment'", at, "must be an integer "
                                f"(UINT32), is {types['general.alignment'][0].name}")
            why = check_alignment(values["general.alignment"])
            if why:
                raise self._err("metadata 'general.alignment'", at, why)
            self.alignment = int(values["general.alignment"])
        align = self.alignment
        self.data_offset: int = -(-h["infos_end"] // align) * align

        tensors: dict[str, TensorInfo] = {}
        for i, (name, dims, tt, off, at, n_el) in enumerate(h["tensors"]):
            field = f"tensor[{i}] '{name}'"
            type_at = at + 8 + len(name.encode("utf-8")) + 4 + 8 * len(dims)
            if name in tensors:
                raise self._err(field + ".name", at, f"duplicate tensor name (first at byte "
                                f"{tensors[name].info_offset})")
            try:
                ttype = GgufTensorType(tt)
                block, block_bytes = TYPE_SIZES[ttype]
            except (ValueError, KeyError):
                raise self._err(field + ".type", type_at, f"unknown tensor type id {tt} "
                                f"for tensor '{name}'") from None
            ne0 = dims[0] if dims else 1
            if ne0 % block:
                raise self._err(field + ".dims", at + 8 + len(name.encode("utf-8")) + 4,
                                f"ne0 = {ne0} is not a whole number of {ttype.name} blocks "
                                f"of {block} elements (n_elements {n_el})")
            nbytes = n_el // block * block_bytes
            if off % align:
                raise self._err(field + ".offset", type_at + 4, f"offset {off} is not a "
                                f"multiple of the alignment {align}")
            if self.data_offset + off + nbytes > self.file_size:
                raise self._err(field + ".offset", type_at + 4, f"data [{off}, {off + nbytes}) "
                                f"of the data section at byte {self.data_offset} runs past the "
                                f"end of the file ({self.file_size} bytes)")
            tensors[name] = TensorInfo(self, name, dims, ttype, off, nbytes, n_el, at)
        prev = None
        for t in sorted(tensors.values(), key=lambda t: (t.offset, t.nbytes)):
            if prev is not None and t.nbytes and prev.offset + prev.nbytes > t.offset:
                type_at = t.info_offset + 8 + len(t.name.encode("utf-8")) + 4 + 8 * len(t.dims)
                i = list(tensors).index(t.name)
                raise self._err(f"tensor[{i}] '{t.name}'.offset", type_at + 4, f"data "
                                f"[{t.offset}, {t.offset + t.nbytes}) overlaps tensor "
                                f"'{prev.name}' [{prev.offset}, {prev.offset + prev.nbytes})")
            if t.nbytes:
                prev = t
        self.tensors: Mapping[str, TensorInfo] = MappingProxyType(tensors)

    # ------------------------------------------------------------------ views / lifetime
    def _view(self, offset: int, nbytes: int) -> np.ndarray:
        if self._buf is None:
            raise ValueError(f"{self.source}: the GGUFReader is closed")
        arr = np.frombuffer(self._buf, dtype=np.uint8, count=nbytes, offset=offset)
        arr.flags.writeable = False
        return arr

    @property
    def closed(self) -> bool:
        return self._buf is None

    def close(self) -> None:
        """Drop the mapping.  Views still alive keep it mapped until they are freed."""
        self._buf = None
        mm, self._mm = self._mm, None
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass  # exported views exist; the mapping goes when they do

    def __enter__(self) -> GGUFReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self.metadata)} keys, {len(self.tensors)} tensors"
        return f"GGUFReader({self.source!r}, v{getattr(self, 'version', '?')}, {state})"
