"""GGUF block dequantization to float16 on the device (kernels/gguf_dequant.hip), with
the CPU op (rocmforge.gguf.quants, else gguf-py) as its reference.

Types: Q4_0, Q8_0, Q5_0, Q4_K, Q6_K, MXFP4.  The float16 result is the reference's
float32 result rounded to nearest even (bit-identical); an MXFP4 scale byte 0xFF gives
NaN, as rocmforge.gguf.quants reads it (gguf-py reads 2**127).
"""
from __future__ import annotations

import numpy as np

from ._common import check_aligned, output, typed_input
from .kernels import launch_blocks

# type name -> (elements per block, bytes per block); ggml-common.h block structs
BLOCKS = {"Q4_0": (32, 18), "Q8_0": (32, 34), "Q5_0": (32, 22), "Q4_K": (256, 144),
          "Q6_K": (256, 210), "MXFP4": (32, 17)}


def _type_name(qtype) -> str:
    name = getattr(qtype, "name", qtype)
    key = str(name).upper()
    if key not in BLOCKS:
        raise NotImplementedError(f"GPU dequantization of GGUF type {name} (supported: "
                                  f"{', '.join(BLOCKS)})")
    return key


def dequantize_f16_cpu(raw: np.ndarray, qtype) -> np.ndarray:
    """uint8 blocks -> float16 (n_blocks * QK,): the reference's float32 result, rounded."""
    key = _type_name(qtype)
    raw = np.ascontiguousarray(raw).view(np.uint8).reshape(-1)
    try:
        from ..gguf import quants
        from ..gguf.constants import GgufTensorType
        vals = quants.dequantize(raw, GgufTensorType[key])
    except ImportError:  # rocmforge.gguf not importable (not built): gguf-py, same values
        import gguf
        with np.errstate(over="ignore", invalid="ignore"):
            vals = np.array(gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[key]), np.float32)
        if key == "MXFP4":  # except the scale byte 0xFF: NaN in rocmforge, 2**127 in gguf-py
            vals.reshape(-1, 32)[raw.reshape(-1, 17)[:, 0] == 0xFF] = np.nan
    with np.errstate(over="ignore"):
        return np.asarray(vals, dtype=np.float32).reshape(-1).astype(np.float16)


def dequantize_f16(raw, qtype, *, out=None, stream=None):
    """Device uint8 (n_blocks * block_bytes,) -> device float16 (n_blocks * QK,)."""
    key = _type_name(qtype)
    qk, nbytes = BLOCKS[key]
    raw = typed_input(raw, f"gguf dequantize {key}: raw")
    if raw.nbytes % nbytes or raw.dtype != np.uint8:
        raise ValueError(f"gguf dequantize {key}: {raw.nbytes} bytes of {raw.dtype} are not "
                         f"whole uint8 blocks of {nbytes} bytes")
    n_blocks = raw.nbytes // nbytes
    dev = raw.device
    out = output(dev, out, (n_blocks * qk,), np.float16, f"gguf dequantize {key}: out")
    if dev.kind == "cpu":
        out.copy_from_host(dequantize_f16_cpu(raw.copy_to_host(), key))
        return out
    check_aligned(out, f"gguf dequantize {key}: out")
    launch_blocks(dev, f"gguf_dequant_{key.lower()}_f16", out, raw, n_blocks, qk // 8, stream)
    return out
