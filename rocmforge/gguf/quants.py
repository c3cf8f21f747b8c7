"""Dequantize (and quantize) GGUF tensor data: every ggml type real models use.

    from rocmforge.gguf.quants import dequantize, dequantize_rows, dot_rows, matmul, quantize
    w = dequantize(t.data, t.type, shape=t.shape)              # float32, numpy order
    rows = dequantize_rows(t.data, t.type, 10, 4, row_elems)   # (4, row_elems) float32
    y = dot_rows(t.data, t.type, n_rows, row_elems, x)         # W @ x, (n_rows,)
    Y = matmul(t.data, t.type, n_rows, row_elems, X)           # X @ W.T, (n_tok, n_rows)
    raw = quantize(x, GgufTensorType.Q8_0)                     # uint8 (..., K // 32 * 34)

``raw`` is any contiguous buffer (numpy array of any dtype, bytes, memoryview, mmap)
holding whole blocks.  The Cython kernels in ``_quants.pyx`` do the work; the NumPy
reference ``quants_ref.py`` is used when the extension is not built, and for tests.
Results are bit-identical to gguf-py's ``gguf.quants.dequantize`` (same float32
operation order), with one deliberate difference: an MXFP4 scale byte 0xFF is NaN (OCP
MX v1.0, DESIGN.md), where ggml reads it as 2**127.  rocmforge's own MX types (ids
1000-1004) go through ``rocmforge.mx``.  Sizes come from ``constants.TYPE_SIZES`` only.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import quants_ref
from .constants import MX_TYPES, TYPE_SIZES, GgufTensorType

try:
    from . import _quants
except ImportError:          # not built: fall back to the NumPy reference
    _quants = None

__all__ = ["dequantize", "dequantize_rows", "dot_rows", "matmul", "quantize",
           "DEQUANT_TYPES", "QUANT_TYPES", "HAVE_CYTHON"]

T = GgufTensorType
HAVE_CYTHON = _quants is not None
_CYTHON_TYPES = frozenset(set(quants_ref.BLOCK_DEQUANT) | set(quants_ref.PLAIN_DTYPES) | {T.BF16})
DEQUANT_TYPES = frozenset(_CYTHON_TYPES | set(MX_TYPES))
QUANT_TYPES = frozenset({T.F32, T.F16, T.Q8_0, T.Q4_0} | set(MX_TYPES))
_ROWS_PER_CHUNK_ELEMS = 1 << 20      # fallback paths dequantize at most this many floats at once
MATMUL_BLAS_MIN_TOKENS = 16          # matmul: from this many tokens on, dequantize a chunk of
_BLAS_CHUNK_ELEMS = 1 << 17          # rows (512 KiB float32) at a time and let BLAS multiply

if HAVE_CYTHON:                      # the kernels hard-code layouts: they must agree with the table
    for _t in _CYTHON_TYPES:
        if _quants.block_layout(int(_t)) != TYPE_SIZES[_t]:
            raise ImportError(f"rocmforge.gguf._quants: {_t.name} kernel layout "
                              f"{_quants.block_layout(int(_t))} != TYPE_SIZES {TYPE_SIZES[_t]}")


def _ttype(ttype: Any) -> GgufTensorType:
    try:
        return GgufTensorType(ttype)
    except ValueError:
        raise ValueError(f"unknown GGUF tensor type {ttype!r}") from None


def _as_bytes(raw: Any) -> np.ndarray:
    """Any contiguous buffer -> 1-D uint8 view (no copy for contiguous input)."""
    if isinstance(raw, np.ndarray):
        return np.ascontiguousarray(raw).reshape(-1).view(np.uint8)
    return np.frombuffer(memoryview(raw).cast("B"), dtype=np.uint8)


def _out_dtype(dtype: Any) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float16)):
        raise ValueError(f"dtype must be float32 or float16, got {dt}")
    return dt


def _n_elements(ttype: GgufTensorType, nbytes: int) -> int:
    """Elements held by ``nbytes`` of ``ttype``; ValueError unless whole blocks."""
    elems, bb = TYPE_SIZES[ttype]
    if nbytes % bb:
        lo, hi = nbytes // bb * bb, (nbytes // bb + 1) * bb
        raise ValueError(f"{ttype.name}: {nbytes} bytes is not a whole number of {bb}-byte "
                         f"blocks (expected {lo} or {hi} bytes)")
    return nbytes // bb * elems


def _dequant_flat(data: np.ndarray, ttype: GgufTensorType) -> np.ndarray:
    """uint8 (nbytes,) whole blocks -> float32 (n_elements,)."""
    if ttype in MX_TYPES:
        from .. import mx
        bb = TYPE_SIZES[ttype][1]
        return np.asarray(mx.dequantize(data.reshape(-1, bb), MX_TYPES[ttype]),
                          dtype=np.float32).reshape(-1)
    if _quants is None:
        return quants_ref.dequantize_ref(data, ttype)
    out = np.empty(_n_elements(ttype, data.size), dtype=np.float32)
    _quants.dequantize_into(data, int(ttype), out)
    return out


def dequantize(raw: Any, ttype: Any, shape: Any = None, dtype: Any = np.float32) -> np.ndarray:
    """Whole blocks of ``ttype`` -> float32 (or float16, rounded from float32) array.

    raw: contiguous buffer of n_blocks * bytes_per_block bytes.
    shape: numpy-order shape to return (its product must be the element count); default 1-D.
    """
    ttype = _ttype(ttype)
    dt = _out_dtype(dtype)
    if ttype not in DEQUANT_TYPES:
        raise NotImplementedError(ttype.name)
    data = _as_bytes(raw)
    n = _n_elements(ttype, data.size)
    if shape is not None:
        shape = tuple(int(s) for s in np.atleast_1d(np.asarray(shape, dtype=np.int64)))
        want = math.prod(shape)
        if want != n or any(s < 0 for s in shape):
            elems, bb = TYPE_SIZES[ttype]
            exp = f"{want // elems * bb} bytes" if want % elems == 0 and want >= 0 else \
                f"a multiple of {elems} elements"
            raise ValueError(f"{ttype.name}: shape {shape} has {want} elements, but {data.size} "
                             f"bytes hold {n} (expected {exp} for that shape)")
    out = _dequant_flat(data, ttype)
    if dt == np.float16:
        with np.errstate(over="ignore"):      # beyond float16 range -> +-inf, as astype does
            out = out.astype(np.float16)
    return out.reshape(shape) if shape is not None else out


def _row_bytes(ttype: GgufTensorType, row_elems: int) -> int:
    elems, bb = TYPE_SIZES[ttype]
    if row_elems <= 0 or row_elems % elems:
        raise ValueError(f"{ttype.name}: row_elems {row_elems} is not a positive multiple of "
                         f"the block size {elems}")
    return row_elems // elems * bb


def _out_array(out: np.ndarray | None, shape: tuple, what: str) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype=np.float32)
    if not (isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == shape
            and out.flags.c_contiguous and out.flags.writeable):
        raise ValueError(f"{what}: out must be a writable C-contiguous float32 array of shape "
                         f"{shape}, got {getattr(out, 'dtype', type(out).__name__)} "
                         f"{getattr(out, 'shape', '')}")
    return out


def _matrix(raw: Any, ttype: Any, n_rows: int, row_elems: int) -> tuple:
    """Validate a (n_rows, row_elems) matrix of ``ttype``; -> (ttype, uint8 data, row_bytes)."""
    ttype = _ttype(ttype)
    if ttype not in DEQUANT_TYPES:
        raise NotImplementedError(ttype.name)
    data = _as_bytes(raw)
    rb = _row_bytes(ttype, int(row_elems))
    if n_rows < 0 or data.size != n_rows * rb:
        raise ValueError(f"{ttype.name}: {data.size} bytes given, but {n_rows} rows of "
                         f"{row_elems} elements take {n_rows * rb} bytes")
    return ttype, data, rb


def dequantize_rows(raw: Any, ttype: Any, row_start: int, row_count: int, row_elems: int,
                    dtype: Any = np.float32) -> np.ndarray:
    """Rows [row_start, row_start + row_count) of a matrix whose rows hold ``row_elems``.

    raw: the whole matrix (any number of whole rows).  Returns (row_count, row_elems).
    """
    ttype = _ttype(ttype)
    data = _as_bytes(raw)
    rb = _row_bytes(ttype, int(row_elems))
    if data.size % rb:
        raise ValueError(f"{ttype.name}: {data.size} bytes is not a whole number of "
                         f"{rb}-byte rows of {row_elems} elements")
    n_rows = data.size // rb
    if row_start < 0 or row_count < 0 or row_start + row_count > n_rows:
        raise ValueError(f"{ttype.name}: rows [{row_start}, {row_start + row_count}) out of "
                         f"range for a matrix of {n_rows} rows")
    part = data[row_start * rb:(row_start + row_count) * rb]
    return dequantize(part, ttype, shape=(row_count, row_elems), dtype=dtype)


def dot_rows(raw: Any, ttype: Any, n_rows: int, row_elems: int, x: Any,
             out: np.ndarray | None = None) -> np.ndarray:
    """W @ x for W (n_rows, row_elems) stored as ``ttype``; x (row_elems,) -> float32 (n_rows,).

    W is dequantized one row at a time inside the loop, never expanded whole.  The sum
    order differs from ``dequantize(...) @ x``: agreement is to float32 rounding,
    |err| <= ~1e-5 * sum(|w * x|) per row.  ``out``: optional float32 (n_rows,) to fill.
    """
    ttype, data, rb = _matrix(raw, ttype, n_rows, row_elems)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.shape != (row_elems,):
        raise ValueError(f"dot_rows: x has shape {x.shape}, expected ({row_elems},)")
    out = _out_array(out, (n_rows,), "dot_rows")
    if _quants is not None and ttype in _CYTHON_TYPES:
        _quants.dot_rows(data, int(ttype), n_rows, row_elems, x, out)
        return out
    step = max(1, _ROWS_PER_CHUNK_ELEMS // row_elems)
    for r in range(0, n_rows, step):
        k = min(step, n_rows - r)
        out[r:r + k] = _dequant_flat(data[r * rb:(r + k) * rb], ttype).reshape(k, row_elems) @ x
    return out


def matmul(raw: Any, ttype: Any, n_rows: int, row_elems: int, X: Any) -> np.ndarray:
    """X @ W.T for W (n_rows, row_elems) stored as ``ttype``; X (n_tok, row_elems) float32.

    Returns float32 (n_tok, n_rows).  Each weight row is dequantized once for all tokens:
    below MATMUL_BLAS_MIN_TOKENS by the Cython loop (4 tokens per pass over a row), from
    there on a chunk of rows at a time into a 512 KiB buffer multiplied by NumPy's BLAS.
    Tolerance against ``X @ dequantize(W).T`` as for ``dot_rows``.
    """
    ttype, data, rb = _matrix(raw, ttype, n_rows, row_elems)
    X = np.ascontiguousarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != row_elems:
        raise ValueError(f"matmul: X has shape {X.shape}, expected (n_tok, {row_elems})")
    n_tok = X.shape[0]
    if _quants is not None and ttype in _CYTHON_TYPES and n_tok < MATMUL_BLAS_MIN_TOKENS:
        out = np.empty((n_tok, n_rows), dtype=np.float32)
        _quants.matmul(data, int(ttype), n_rows, row_elems, X, out)
        return out
    if _quants is not None and ttype in _CYTHON_TYPES:
        step = max(1, _BLAS_CHUNK_ELEMS // row_elems)
        buf = np.empty(min(step, n_rows) * row_elems, dtype=np.float32)
        out_t = np.empty((n_rows, n_tok), dtype=np.float32)        # (n_rows, n_tok)
        for r in range(0, n_rows, step):
            k = min(step, n_rows - r)
            w = buf[:k * row_elems]
            _quants.dequantize_into(data[r * rb:(r + k) * rb], int(ttype), w)
            np.matmul(w.reshape(k, row_elems), X.T, out=out_t[r:r + k])
        return np.ascontiguousarray(out_t.T)
    out = np.empty((n_tok, n_rows), dtype=np.float32)
    step = max(1, _ROWS_PER_CHUNK_ELEMS // row_elems)
    for r in range(0, n_rows, step):
        k = min(step, n_rows - r)
        w = _dequant_flat(data[r * rb:(r + k) * rb], ttype).reshape(k, row_elems)
        out[:, r:r + k] = X @ w.T
    return out


def quantize(x: Any, ttype: Any) -> np.ndarray:
    """float array (..., K) -> uint8 (..., K // block * bytes_per_block), blocks along K.

    Q8_0 and Q4_0 are bit-identical to ggml's reference quantizers (and gguf-py's);
    MXFP4 and the MX types use ``rocmforge.mx.quantize`` (OCP rounding: nearest-even,
    saturating); F32 / F16 store the values (float16 rounds to nearest-even).
    """
    ttype = _ttype(ttype)
    if ttype not in QUANT_TYPES:
        raise NotImplementedError(f"quantization to {ttype.name}")
    x = np.asarray(x)
    if x.ndim == 0 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"quantize: x must be a float array of at least 1 dimension, "
                         f"got {x.dtype} with shape {x.shape}")
    elems, bb = TYPE_SIZES[ttype]
    k = x.shape[-1]
    if k % elems:
        raise ValueError(f"{ttype.name}: last dimension {k} is not a multiple of the block "
                         f"size {elems}")
    out_shape = x.shape[:-1] + (k // elems * bb,)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if ttype == T.F32:
        return x.astype("<f4").view(np.uint8).reshape(out_shape)
    if ttype == T.F16:
        return x.astype("<f2").view(np.uint8).reshape(out_shape)
    if ttype == T.Q8_0:
        return quants_ref.quantize_q8_0_ref(x).reshape(out_shape)
    if ttype == T.Q4_0:
        return quants_ref.quantize_q4_0_ref(x).reshape(out_shape)
    from .. import mx
    q = mx.quantize(x.reshape(-1, k), MX_TYPES[ttype])
    return np.ascontiguousarray(q, dtype=np.uint8).reshape(out_shape)
