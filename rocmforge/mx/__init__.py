"""OCP Microscaling (MX v1.0) formats on the CPU.

    >>> import numpy as np
    >>> from rocmforge import mx
    >>> q = mx.quantize(np.ones((2, 64), np.float32), "mxfp6_e2m3")   # (2, 2 * 25) uint8
    >>> mx.dequantize(q, "mxfp6_e2m3").shape
    (2, 64)

``quantize`` / ``dequantize`` use the Cython fast path when it is built and the
NumPy reference (``rocmforge.mx.reference``) otherwise, or when ``impl="reference"``;
the two are bit-identical.  ``encode`` / ``decode`` / ``pack`` / ``unpack`` work on
single element codes and are the reference's.
"""
from __future__ import annotations

import numpy as np

from . import reference
from .formats import (BLOCK_SIZE, E8M0_BIAS, E8M0_NAN, FORMATS, GGUF_MX_LAYOUT_KEY,
                      GGUF_MX_LAYOUT_VERSION, FormatSpec, MxFormat)
from .reference import decode, e8m0_decode, encode, pack, unpack

try:
    from . import _fast
except ImportError:          # not built (e.g. running from a source tree without build_ext)
    _fast = None

__all__ = [
    "BLOCK_SIZE", "E8M0_BIAS", "E8M0_NAN", "FORMATS", "GGUF_MX_LAYOUT_KEY",
    "GGUF_MX_LAYOUT_VERSION", "FormatSpec", "MxFormat", "quantize", "dequantize", "encode",
    "decode", "pack", "unpack", "e8m0_decode", "e8m0_encode", "have_fast_path",
]

_TABLES: dict = {}


def have_fast_path() -> bool:
    return _fast is not None


def _table(fmt: MxFormat) -> list:
    if fmt not in _TABLES:
        # + 0.0: -0 codes dequantize to +0 (see reference.dequantize)
        _TABLES[fmt] = [float(v) for v in (reference.decode_table(fmt) + 0.0).astype(np.float32)]
    return _TABLES[fmt]


def e8m0_encode(exponent) -> np.ndarray:
    """Power-of-two exponent(s) in [-127, 127] -> E8M0 bytes."""
    e = np.asarray(exponent)
    if e.size and (e.min() < -127 or e.max() > 127):
        raise ValueError(f"E8M0 exponents must lie in [-127, 127], got {e.min()}..{e.max()}")
    return (e.astype(np.int64) + E8M0_BIAS).astype(np.uint8)


def _use_fast(impl: str) -> bool:
    if impl not in ("auto", "fast", "reference"):
        raise ValueError(f"impl must be 'auto', 'fast' or 'reference', got {impl!r}")
    if impl == "fast" and _fast is None:
        raise RuntimeError("the Cython fast path rocmforge.mx._fast is not built; run "
                           "`pip install -e .` or `python setup.py build_ext --inplace`")
    return impl == "fast" or (impl == "auto" and _fast is not None)


def quantize(x, fmt, impl: str = "auto") -> np.ndarray:
    """Quantize float32/float16 ``x`` of shape (..., K), K a multiple of 32, to MX blocks.

    Returns uint8 of shape (..., K // 32 * block_bytes): per block the E8M0 scale byte,
    then the packed element codes (layouts in ``rocmforge.mx.formats``).
    """
    fmt = MxFormat.parse(fmt)
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.dtype not in (np.float32, np.float16):
        raise ValueError(f"quantize expects a float32 or float16 array, got {x.dtype}")
    if x.ndim == 0 or x.shape[-1] % BLOCK_SIZE:
        raise ValueError(f"quantize: the last dimension must be a multiple of {BLOCK_SIZE}, "
                         f"got shape {x.shape}")
    if not _use_fast(impl):
        return reference.quantize(x, fmt)
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    out = np.empty(flat.size // BLOCK_SIZE * fmt.block_bytes, np.uint8)
    _fast.quantize_blocks(fmt.spec, _table(fmt), flat, out)
    return out.reshape(*x.shape[:-1], x.shape[-1] // BLOCK_SIZE * fmt.block_bytes)


def dequantize(data, fmt, dtype=np.float32, impl: str = "auto", out=None) -> np.ndarray:
    """Dequantize uint8 MX blocks (..., nb * block_bytes) to (..., nb * 32) of ``dtype``.

    ``dtype`` is float32 or float16 (the float16 result is the float32 one rounded to
    nearest even, which is exact except where float16 overflows or underflows).
    ``out``: an optional C-contiguous array of that shape and dtype to write into
    (saves the allocation, and its page faults, in a loop).
    """
    fmt = MxFormat.parse(fmt)
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float16):
        raise ValueError(f"dequantize produces float32 or float16, not {dtype}")
    if not isinstance(data, np.ndarray):
        data = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray,
                                                                   memoryview)) else np.asarray(data)
    if data.dtype != np.uint8:
        raise ValueError(f"dequantize expects uint8 blocks, got {data.dtype}")
    if data.ndim == 0 or data.shape[-1] % fmt.block_bytes:
        raise ValueError(f"dequantize: {fmt.name} blocks are {fmt.block_bytes} bytes; the last "
                         f"dimension {data.shape[-1] if data.ndim else 0} (shape {data.shape}) "
                         f"is not a multiple of it")
    shape = (*data.shape[:-1], data.shape[-1] // fmt.block_bytes * BLOCK_SIZE)
    if out is not None and (not isinstance(out, np.ndarray) or out.shape != shape
                            or out.dtype != dtype or not out.flags.c_contiguous):
        raise ValueError(f"dequantize: out must be a C-contiguous {dtype} array of shape "
                         f"{shape}, got {getattr(out, 'dtype', type(out))} "
                         f"{getattr(out, 'shape', '')}")
    if not _use_fast(impl):
        res = reference.dequantize(data, fmt, dtype)
        if out is None:
            return res
        out[...] = res
        return out
    flat = np.ascontiguousarray(data).reshape(-1)
    if dtype == np.float32:
        res = out.reshape(-1) if out is not None else np.empty(flat.size // fmt.block_bytes
                                                               * BLOCK_SIZE, np.float32)
        _fast.dequantize_blocks(fmt.spec, _table(fmt), flat, res)
        return out if out is not None else res.reshape(shape)
    res = np.empty(flat.size // fmt.block_bytes * BLOCK_SIZE, np.float32)
    _fast.dequantize_blocks(fmt.spec, _table(fmt), flat, res)
    with np.errstate(over="ignore"):        # beyond the float16 range -> inf, as a cast does
        if out is None:
            return res.reshape(shape).astype(dtype)
        out[...] = res.reshape(shape)
    return out
