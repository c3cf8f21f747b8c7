"""GGUF v3 writer: metadata of every value type, tensors of every type in TYPE_SIZES.

    w = GGUFWriter("out.gguf")                       # alignment=32 unless given
    w.add("general.architecture", "llama")            # str -> STRING
    w.add("llama.context_length", 2048, GgufValueType.UINT32)   # explicit type
    w.add("tokenizer.ggml.scores", np.zeros(8, np.float32))     # ndarray -> ARRAY of FLOAT32
    w.add_tensor("tok.weight", x)                     # float32 (512, 64) -> F32, dims (64, 512)
    w.add_tensor("w.q4k", raw, GgufTensorType.Q4_K, shape=(512, 256))  # raw block bytes
    w.write()                                         # temp file + rename: all or nothing

Type inference (as gguf-py): bool -> BOOL, int -> INT32 (INT64 / UINT64 when it does not
fit), float -> FLOAT32, str -> STRING, numpy scalars and 1-D arrays -> their dtype, lists /
tuples -> ARRAY of the inferred element type (nested lists -> ARRAY of ARRAY).  llama.cpp
checks key types strictly, so pass ``vtype`` for its UINT32 keys.  For a list or array
value a non-ARRAY ``vtype`` is taken as the element type.

Shapes given to ``add_tensor`` are numpy order (..., ne1, ne0); the file stores the
reverse (GGUF dims, ne0 first).  Tensors of rocmforge's MX types (ids >= 1000) add
``rocmforge.mx.layout_version = 1`` automatically.
"""
from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .constants import (GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_MX_LAYOUT_KEY,
                        GGUF_MX_LAYOUT_VERSION, TYPE_SIZES, GgufTensorType, GgufValueType,
                        tensor_nbytes)

__all__ = ["GGUFWriter", "float32_to_bf16_bits"]

V = GgufValueType
_SCALAR_FMT = {V.UINT8: "<B", V.INT8: "<b", V.UINT16: "<H", V.INT16: "<h", V.UINT32: "<I",
               V.INT32: "<i", V.FLOAT32: "<f", V.BOOL: "<?", V.UINT64: "<Q", V.INT64: "<q",
               V.FLOAT64: "<d"}
_NP_DTYPE = {V.UINT8: "<u1", V.INT8: "<i1", V.UINT16: "<u2", V.INT16: "<i2", V.UINT32: "<u4",
             V.INT32: "<i4", V.FLOAT32: "<f4", V.BOOL: "?", V.UINT64: "<u8", V.INT64: "<i8",
             V.FLOAT64: "<f8"}
_DTYPE_TO_VT = {np.dtype(v).newbyteorder("="): k for k, v in _NP_DTYPE.items()}
_INT_VTS = {V.UINT8, V.INT8, V.UINT16, V.INT16, V.UINT32, V.INT32, V.UINT64, V.INT64}
# tensor types written from numpy values (others take raw uint8 block bytes)
_TENSOR_DTYPES = {GgufTensorType.F32: "<f4", GgufTensorType.F16: "<f2",
                  GgufTensorType.F64: "<f8", GgufTensorType.I8: "i1",
                  GgufTensorType.I16: "<i2", GgufTensorType.I32: "<i4",
                  GgufTensorType.I64: "<i8", GgufTensorType.BF16: "<u2"}
_DTYPE_TO_TT = {np.dtype("float32"): GgufTensorType.F32, np.dtype("float16"): GgufTensorType.F16,
                np.dtype("float64"): GgufTensorType.F64, np.dtype("int8"): GgufTensorType.I8,
                np.dtype("int16"): GgufTensorType.I16, np.dtype("int32"): GgufTensorType.I32,
                np.dtype("int64"): GgufTensorType.I64}
MAX_NAME_BYTES = 63   # GGML_MAX_NAME (64) including the NUL


def float32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), round to nearest even; NaN stays NaN."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (bits + (0x7FFF + ((bits >> 16) & 1))) >> 16
    nan = np.isnan(x)
    return np.where(nan, (bits >> 16) | 0x40, rounded).astype(np.uint16)


def _u32(v: int) -> bytes:
    return struct.pack("<I", v)


def _u64(v: int) -> bytes:
    return struct.pack("<Q", v)


def _gguf_string(s: str, what: str) -> bytes:
    if not isinstance(s, str):
        raise TypeError(f"{what}: expected str, got {type(s).__name__}")
    b = s.encode("utf-8")
    return _u64(len(b)) + b


def _infer_int(values: list[int], what: str) -> GgufValueType:
    lo, hi = min(values), max(values)
    if -2**31 <= lo and hi < 2**31:
        return V.INT32
    if -2**63 <= lo and hi < 2**63:
        return V.INT64
    if 0 <= lo and hi < 2**64:
        return V.UINT64
    raise ValueError(f"{what}: integer out of the 64-bit range")


def _is_seq(value: Any) -> bool:
    return isinstance(value, (list, tuple, np.ndarray)) or (
        hasattr(value, "tolist") and hasattr(value, "__len__") and not isinstance(value, (str, bytes, np.generic)))


def _infer(value: Any, what: str) -> tuple[GgufValueType, GgufValueType | None]:
    """-> (value type, element type or None) for a Python / numpy value."""
    if isinstance(value, (bool, np.bool_)):
        return V.BOOL, None
    if isinstance(value, np.generic):
        vt = _DTYPE_TO_VT.get(value.dtype.newbyteorder("="))
        if vt is None:
            raise TypeError(f"{what}: numpy {value.dtype} has no GGUF value type")
        return vt, None
    if isinstance(value, int):
        return _infer_int([value], what), None
    if isinstance(value, float):
        return V.FLOAT32, None
    if isinstance(value, str):
        return V.STRING, None
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise ValueError(f"{what}: metadata arrays are 1-D, got shape {value.shape}")
        et = _DTYPE_TO_VT.get(value.dtype.newbyteorder("="))
        if et is None:
            raise TypeError(f"{what}: numpy {value.dtype} has no GGUF value type")
        return V.ARRAY, et
    if _is_seq(value):
        items = list(value)
        if not items:
            raise ValueError(f"{what}: cannot infer the element type of an empty array; "
                             f"pass element_type")
        if all(isinstance(v, str) for v in items):
            return V.ARRAY, V.STRING
        if all(isinstance(v, (bool, np.bool_)) for v in items):
            return V.ARRAY, V.BOOL
        if all(_is_seq(v) for v in items):
            return V.ARRAY, V.ARRAY
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in items):
            return V.ARRAY, _infer_int([int(v) for v in items], what)
        if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
               for v in items):
            return V.ARRAY, V.FLOAT32
        raise TypeError(f"{what}: cannot infer one GGUF element type for a mix of "
                        f"{sorted({type(v).__name__ for v in items})}")
    raise TypeError(f"{what}: {type(value).__name__} has no GGUF value type")


def _encode_scalar(vt: GgufValueType, value: Any, what: str) -> bytes:
    if vt == V.STRING:
        return _gguf_string(value, what)
    if vt == V.BOOL:
        if not isinstance(value, (bool, np.bool_)) and value not in (0, 1):
            raise ValueError(f"{what}: BOOL value must be True/False, got {value!r}")
        return b"\x01" if value else b"\x00"
    if vt in _INT_VTS:
        if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{what}: {vt.name} needs an integer, got {value!r}")
    elif not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what}: {vt.name} needs a number, got {value!r}")
    try:
        return struct.pack(_SCALAR_FMT[vt], value)
    except (struct.error, OverflowError) as e:
        raise ValueError(f"{what}: {value!r} does not fit {vt.name} ({e})") from None


def _encode_array_body(et: GgufValueType, value: Any, what: str) -> bytes:
    """u32 element type + u64 count + elements."""
    if et == V.ARRAY:
        parts = [_u32(et), _u64(len(value))]
        for j, item in enumerate(value):
            sub = f"{what}[{j}]"
            vt, inner = _infer(item, sub)
            if vt != V.ARRAY:
                raise TypeError(f"{sub}: an ARRAY of ARRAY needs arrays as items")
            parts.append(_encode_array_body(inner, item, sub))
        return b"".join(parts)
    if et == V.STRING:
        items = value.tolist() if hasattr(value, "tolist") else list(value)
        parts = [_u32(et), _u64(len(items))]
        parts += [_gguf_string(s, f"{what}[{j}]") for j, s in enumerate(items)]
        return b"".join(parts)
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise ValueError(f"{what}: metadata arrays are 1-D, got shape {arr.shape}")
    dtype = np.dtype(_NP_DTYPE[et])
    if arr.size and et in _INT_VTS:
        if arr.dtype.kind not in "iub":
            raise TypeError(f"{what}: {et.name} array needs integers, got {arr.dtype}")
        info = np.iinfo(dtype)
        if int(arr.min()) < info.min or int(arr.max()) > info.max:
            raise ValueError(f"{what}: values outside the {et.name} range")
    if arr.size and et == V.BOOL and arr.dtype != np.bool_ and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{what}: BOOL array values must be 0/1")
    if arr.size and et in (V.FLOAT32, V.FLOAT64) and arr.dtype.kind not in "iuf":
        raise TypeError(f"{what}: {et.name} array needs numbers, got {arr.dtype}")
    data = np.ascontiguousarray(arr.astype(dtype, copy=False)).tobytes()
    return _u32(et) + _u64(arr.shape[0]) + data


class GGUFWriter:
    """Collects metadata and tensors, then ``write()`` s a GGUF v3 file atomically."""

    def __init__(self, path: str | os.PathLike, *, alignment: int | None = None):
        self.path = Path(path)
        self._kv: dict[str, tuple[GgufValueType, Any, bytes]] = {}   # key -> (type, value, encoded)
        self._tensors: dict[str, tuple[tuple[int, ...], GgufTensorType, np.ndarray]] = {}
        self._written = False
        if alignment is not None:
            self.add("general.alignment", alignment, V.UINT32)

    # ------------------------------------------------------------------ metadata
    @property
    def alignment(self) -> int:
        kv = self._kv.get("general.alignment")
        return GGUF_DEFAULT_ALIGNMENT if kv is None else int(kv[1])

    def add(self, key: str, value: Any, vtype: GgufValueType | int | None = None,
            element_type: GgufValueType | int | None = None) -> None:
        """Add one metadata entry; types are inferred unless given (see module doc)."""
        self._check_open()
        if not isinstance(key, str) or not key:
            raise TypeError(f"metadata key must be a non-empty str, got {key!r}")
        what = f"metadata '{key}'"
        if key in self._kv:
            raise ValueError(f"{what}: duplicate key")
        vt = None if vtype is None else GgufValueType(vtype)
        et = None if element_type is None else GgufValueType(element_type)
        if vt is None and et is not None:
            vt = V.ARRAY
        if vt is not None and vt != V.ARRAY and not isinstance(value, str) and _is_seq(value):
            vt, et = V.ARRAY, vt if et is None else et
        if vt is None or (vt == V.ARRAY and et is None):
            ivt, iet = _infer(value, what)
            vt = ivt if vt is None else vt
            if vt == V.ARRAY and et is None:
                if ivt != V.ARRAY:
                    raise TypeError(f"{what}: ARRAY needs a sequence, got {type(value).__name__}")
                et = iet
        if key == "general.alignment":
            from .reader import check_alignment
            if vt not in _INT_VTS:
                raise TypeError(f"{what}: must be an integer (UINT32)")
            why = check_alignment(value)
            if why:
                raise ValueError(f"{what}: {why}")
        if vt == V.ARRAY:
            encoded = _encode_array_body(et, value, what)
        else:
            encoded = _encode_scalar(vt, value, what)
        self._kv[key] = (vt, value, _u32(vt) + encoded)

    def add_metadata(self, metadata: Mapping[str, Any]) -> None:
        """Add every entry of a mapping; a reader's ``GGUFMetadata`` keeps its stored types."""
        typed = hasattr(metadata, "value_type") and hasattr(metadata, "element_type")
        for key, value in metadata.items():
            if typed:
                self.add(key, value, metadata.value_type(key), metadata.element_type(key))
            else:
                self.add(key, value)

    # ------------------------------------------------------------------ tensors
    def add_tensor(self, name: str, data: np.ndarray, ttype: GgufTensorType | int | None = None,
                   *, shape: tuple[int, ...] | None = None) -> None:
        """Add a tensor from values (F32/F16/BF16/F64/I* types) or raw uint8 block bytes.

        Raw bytes (a uint8 array with an explicit ``ttype``) need ``shape`` (numpy order,
        last dim a whole number of blocks) and exactly ``tensor_nbytes(ttype, prod(shape))``
        bytes.  Values are converted to ``ttype`` (default: from the dtype)."""
        self._check_open()
        what = f"tensor '{name}'"
        if not isinstance(name, str) or not name:
            raise TypeError(f"tensor name must be a non-empty str, got {name!r}")
        if len(name.encode("utf-8")) > MAX_NAME_BYTES:
            raise ValueError(f"{what}: name longer than {MAX_NAME_BYTES} bytes (GGML_MAX_NAME)")
        if name in self._tensors:
            raise ValueError(f"{what}: duplicate tensor name")
        data = np.asarray(data)
        if ttype is None:
            if data.dtype.name == "bfloat16":
                ttype = GgufTensorType.BF16
            elif data.dtype.newbyteorder("=") in _DTYPE_TO_TT:
                ttype = _DTYPE_TO_TT[data.dtype.newbyteorder("=")]
            else:
                raise TypeError(f"{what}: cannot infer a tensor type from {data.dtype}; "
                                f"raw block bytes need an explicit ttype and shape")
        ttype = GgufTensorType(ttype)
        block, _ = TYPE_SIZES[ttype]
        if data.dtype == np.uint8:  # raw bytes of `ttype`
            if shape is None:
                raise ValueError(f"{what}: raw {ttype.name} bytes need shape= (numpy order)")
            shape = tuple(int(s) for s in shape)
            self._check_shape(what, shape, block, ttype)
            want = tensor_nbytes(ttype, int(np.prod(shape, dtype=object)))
            if data.size != want:
                raise ValueError(f"{what}: {ttype.name} of shape {shape} takes {want} bytes, "
                                 f"got {data.size}")
            raw = np.ascontiguousarray(data).reshape(-1)
        else:
            if ttype not in _TENSOR_DTYPES:
                raise TypeError(f"{what}: {ttype.name} is a block type: pass its raw uint8 "
                                f"block bytes (quantize first), not {data.dtype} values")
            if shape is not None and tuple(shape) != data.shape:
                data = data.reshape(shape)
            shape = data.shape
            self._check_shape(what, shape, block, ttype)
            raw = self._convert(what, data, ttype).reshape(-1).view(np.uint8)
        self._tensors[name] = (tuple(reversed(shape)), ttype, raw)

    @staticmethod
    def _check_shape(what: str, shape: tuple[int, ...], block: int, ttype: GgufTensorType) -> None:
        if not 1 <= len(shape) <= 4:
            raise ValueError(f"{what}: GGUF tensors have 1 to 4 dims, got shape {shape}")
        if any(s < 0 for s in shape):
            raise ValueError(f"{what}: negative dimension in shape {shape}")
        if shape[-1] % block:
            raise ValueError(f"{what}: last dim {shape[-1]} is not a whole number of "
                             f"{ttype.name} blocks of {block}")

    @staticmethod
    def _convert(what: str, data: np.ndarray, ttype: GgufTensorType) -> np.ndarray:
        if ttype == GgufTensorType.BF16:
            if data.dtype.name == "bfloat16":
                return np.ascontiguousarray(data).view(np.uint16)
            if data.dtype.kind != "f":
                raise TypeError(f"{what}: BF16 needs float values, got {data.dtype}")
            return float32_to_bf16_bits(data.astype(np.float32))
        dtype = np.dtype(_TENSOR_DTYPES[ttype])
        if dtype.kind == "i":
            if data.dtype.kind not in "iub":
                raise TypeError(f"{what}: {ttype.name} needs integer values, got {data.dtype}")
            info = np.iinfo(dtype)
            if data.size and (int(data.min()) < info.min or int(data.max()) > info.max):
                raise ValueError(f"{what}: values outside the {ttype.name} range")
        elif data.dtype.kind not in "iuf" and data.dtype.name != "bfloat16":
            raise TypeError(f"{what}: {ttype.name} needs numbers, got {data.dtype}")
        return np.ascontiguousarray(data.astype(dtype, copy=False))

    # ------------------------------------------------------------------ output
    def _check_open(self) -> None:
        if self._written:
            raise ValueError(f"{self.path}: this GGUFWriter has already written its file")

    def _header(self) -> tuple[bytes, list[int]]:
        if any(t.value >= 1000 for _, t, _ in self._tensors.values()):
            kv = self._kv.get(GGUF_MX_LAYOUT_KEY)
            if kv is None:
                self.add(GGUF_MX_LAYOUT_KEY, GGUF_MX_LAYOUT_VERSION, V.UINT32)
            elif kv[1] != GGUF_MX_LAYOUT_VERSION:
                raise ValueError(f"metadata '{GGUF_MX_LAYOUT_KEY}' is {kv[1]!r}, but this "
                                 f"writer produces MX layout version {GGUF_MX_LAYOUT_VERSION}")
        align = self.alignment
        parts = [GGUF_MAGIC, _u32(3), _u64(len(self._tensors)), _u64(len(self._kv))]
        for key, (_, _, encoded) in self._kv.items():
            parts += [_gguf_string(key, "key"), encoded]
        offsets, off = [], 0
        for name, (dims, ttype, raw) in self._tensors.items():
            offsets.append(off)
            parts += [_gguf_string(name, "name"), _u32(len(dims))]
            parts += [_u64(d) for d in dims]
            parts += [_u32(ttype), _u64(off)]
            off += -(-raw.size // align) * align
        header = b"".join(parts)
        return header + bytes(-len(header) % align), offsets

    def write(self) -> Path:
        """Write the file (temp file in the same directory, then rename); returns the path."""
        self._check_open()
        header, _ = self._header()
        align = self.alignment
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(header)
                for _, _, raw in self._tensors.values():
                    f.write(memoryview(raw))
                    f.write(bytes(-raw.size % align))
                f.flush()
                os.fsync(f.fileno())
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        self._written = True
        return self.path

    def __enter__(self) -> GGUFWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and not self._written:
            self.write()
