"""MX quantize / dequantize on the device (kernels/mx_quant.hip, kernels/mx_dequant.hip),
each with the same op on the CPU (rocmforge.mx) as its reference.

GPU results are bit-identical to the CPU op for every format and dtype: bfloat16 input
is widened to float32 exactly; bfloat16 / float16 output is the float32 result rounded
to nearest even.
"""
from __future__ import annotations

import numpy as np

from ..mx import BLOCK_SIZE, MxFormat
from ._common import BFLOAT16, check_aligned, float_suffix, output, typed_input
from .kernels import launch_blocks


def _kernel_name(op: str, fmt: MxFormat, suffix: str) -> str:
    return f"mx_{op}_{fmt.name.lower()}_{suffix}"


# ---------------------------------------------------------------- CPU ops (reference)
def quantize_cpu(x: np.ndarray, fmt) -> np.ndarray:
    """float32 / float16 / bfloat16 (..., K) -> uint8 (..., K/32 * block_bytes)."""
    from .. import mx
    x = np.asarray(x)
    if BFLOAT16 is not None and x.dtype == BFLOAT16:
        x = x.astype(np.float32)  # exact
    return mx.quantize(x, fmt)


def dequantize_cpu(q: np.ndarray, fmt, dtype=np.float32) -> np.ndarray:
    """uint8 (..., nb * block_bytes) -> (..., nb * 32) float32 / float16 / bfloat16."""
    from .. import mx
    dtype = np.dtype(dtype) if not (isinstance(dtype, str) and dtype == "bfloat16") else BFLOAT16
    if BFLOAT16 is not None and dtype == BFLOAT16:
        return mx.dequantize(q, fmt, np.float32).astype(BFLOAT16)  # RNE of the float32 result
    return mx.dequantize(q, fmt, dtype)


# ---------------------------------------------------------------- device ops
def quantize(x, fmt, *, out=None, stream=None):
    """Device x: float32 / float16 / bfloat16 (..., K), K % 32 == 0 -> uint8 (..., K/32*bb)."""
    fmt = MxFormat.parse(fmt)
    x = typed_input(x, "mx quantize: x")
    suffix = float_suffix(x.dtype, "mx quantize: x")
    if not x.shape or x.shape[-1] % BLOCK_SIZE:
        raise ValueError(f"mx quantize: the last dimension must be a multiple of {BLOCK_SIZE}, "
                         f"got shape {x.shape}")
    n_blocks = int(np.prod(x.shape, dtype=np.int64)) // BLOCK_SIZE
    shape = (*x.shape[:-1], x.shape[-1] // BLOCK_SIZE * fmt.block_bytes)
    dev = x.device
    out = output(dev, out, shape, np.uint8, "mx quantize: out")
    if dev.kind == "cpu":
        out.copy_from_host(quantize_cpu(x.copy_to_host(), fmt))
        return out
    check_aligned(x, "mx quantize: x")
    check_aligned(out, "mx quantize: out")
    launch_blocks(dev, _kernel_name("quant", fmt, suffix), out, x, n_blocks,
                  BLOCK_SIZE * x.dtype.itemsize // 16, stream)
    return out


def dequantize(q, fmt, dtype=np.float32, *, out=None, stream=None):
    """Device q: uint8 (..., nb * block_bytes) -> (..., nb * 32) of ``dtype``."""
    fmt = MxFormat.parse(fmt)
    q = typed_input(q, "mx dequantize: q")
    suffix = float_suffix(dtype, "mx dequantize: dtype")
    dtype = BFLOAT16 if suffix == "bf16" else np.dtype(dtype)
    if q.dtype != np.uint8 or not q.shape or q.shape[-1] % fmt.block_bytes:
        raise ValueError(f"mx dequantize: expected uint8 (..., n * {fmt.block_bytes}) blocks of "
                         f"{fmt.name}, got {q.dtype} {q.shape}")
    n_blocks = int(np.prod(q.shape, dtype=np.int64)) // fmt.block_bytes
    shape = (*q.shape[:-1], q.shape[-1] // fmt.block_bytes * BLOCK_SIZE)
    dev = q.device
    out = output(dev, out, shape, dtype, "mx dequantize: out")
    if dev.kind == "cpu":
        out.copy_from_host(np.ascontiguousarray(dequantize_cpu(q.copy_to_host(), fmt, dtype)))
        return out
    check_aligned(out, "mx dequantize: out")
    check_aligned(q, "mx dequantize: q")
    launch_blocks(dev, _kernel_name("dequant", fmt, suffix), out, q, n_blocks,
                  BLOCK_SIZE * dtype.itemsize // 16, stream)
    return out
