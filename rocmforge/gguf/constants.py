"""GGUF constants: tensor types, metadata value types, and the one size table.

``TYPE_SIZES`` maps each tensor type to (elements per block, bytes per block); the
reader, the writer, dequantization and the kernel wrappers all read it, nothing
else hard-codes a block size.  ggml's ids come from ggml.h; rocmforge's own MX
types (FP6 / FP8 / INT8 blocks, which ggml lacks) take ids from 1000 up and are
defined by ``rocmforge.mx.formats``.
"""
from __future__ import annotations

import enum

from ..mx.formats import GGUF_MX_LAYOUT_KEY, GGUF_MX_LAYOUT_VERSION, MxFormat

GGUF_MAGIC = b"GGUF"
GGUF_VERSIONS = (2, 3)
GGUF_DEFAULT_ALIGNMENT = 32

__all__ = [
    "GGUF_MAGIC", "GGUF_VERSIONS", "GGUF_DEFAULT_ALIGNMENT", "GGUF_MX_LAYOUT_KEY",
    "GGUF_MX_LAYOUT_VERSION", "GgufTensorType", "GgufValueType", "TYPE_SIZES",
    "MX_TYPES", "tensor_nbytes",
]


class GgufTensorType(enum.IntEnum):
    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q8_1 = 9
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    Q8_K = 15
    IQ2_XXS = 16
    IQ2_XS = 17
    IQ3_XXS = 18
    IQ1_S = 19
    IQ4_NL = 20
    IQ3_S = 21
    IQ2_S = 22
    IQ4_XS = 23
    I8 = 24
    I16 = 25
    I32 = 26
    I64 = 27
    F64 = 28
    IQ1_M = 29
    BF16 = 30
    TQ1_0 = 34
    TQ2_0 = 35
    MXFP4 = 39
    NVFP4 = 40
    Q1_0 = 41
    # rocmforge MX block types (layout: rocmforge.mx.formats; version key GGUF_MX_LAYOUT_KEY)
    MXFP6_E2M3 = 1000
    MXFP6_E3M2 = 1001
    MXFP8_E4M3 = 1002
    MXFP8_E5M2 = 1003
    MXINT8 = 1004


class GgufValueType(enum.IntEnum):
    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


T = GgufTensorType
# type -> (elements per block, bytes per block)
TYPE_SIZES: dict[GgufTensorType, tuple[int, int]] = {
    T.F32: (1, 4), T.F16: (1, 2), T.BF16: (1, 2), T.F64: (1, 8),
    T.I8: (1, 1), T.I16: (1, 2), T.I32: (1, 4), T.I64: (1, 8),
    T.Q4_0: (32, 18), T.Q4_1: (32, 20), T.Q5_0: (32, 22), T.Q5_1: (32, 24),
    T.Q8_0: (32, 34), T.Q8_1: (32, 40),
    T.Q2_K: (256, 84), T.Q3_K: (256, 110), T.Q4_K: (256, 144), T.Q5_K: (256, 176),
    T.Q6_K: (256, 210), T.Q8_K: (256, 292),
    T.IQ2_XXS: (256, 66), T.IQ2_XS: (256, 74), T.IQ3_XXS: (256, 98), T.IQ1_S: (256, 50),
    T.IQ4_NL: (32, 18), T.IQ3_S: (256, 110), T.IQ2_S: (256, 82), T.IQ4_XS: (256, 136),
    T.IQ1_M: (256, 56), T.TQ1_0: (256, 54), T.TQ2_0: (256, 66),
    T.MXFP4: (32, 17), T.NVFP4: (64, 36), T.Q1_0: (128, 18),
}
# The MX block types, tied to the format table (MXFP4 == ggml's block_mxfp4).
MX_TYPES: dict[GgufTensorType, MxFormat] = {}
for _fmt in MxFormat:
    _t = GgufTensorType(_fmt.spec.gguf_type)
    MX_TYPES[_t] = _fmt
    TYPE_SIZES[_t] = (32, _fmt.block_bytes)
del _fmt, _t, T


def tensor_nbytes(ttype: GgufTensorType, n_elements: int) -> int:
    """Bytes taken by ``n_elements`` of ``ttype``; raises ValueError if not whole blocks."""
    block, nbytes = TYPE_SIZES[GgufTensorType(ttype)]
    if n_elements % block:
        raise ValueError(f"{GgufTensorType(ttype).name}: {n_elements} elements is not a "
                         f"multiple of the block size {block}")
    return n_elements // block * nbytes
