"""GGUF dequantization kernels (to float16) against the CPU op, bit for bit.

Reference: rocmforge.gguf.quants.dequantize (float32) rounded to float16; where gguf-py is
installed, also its gguf.quants.dequantize (the oracle), on blocks whose MXFP4 scale is
not 0xFF (gguf-py reads 0xFF as 2**127, rocmforge as NaN)."""
from __future__ import annotations

import numpy as np
import pytest

from rocmforge.ops import gguf as gguf_ops

pytestmark = pytest.mark.gpu

TYPES = list(gguf_ops.BLOCKS)
N_BLOCKS = [1, 37, 1031]      # odd counts: partial workgroups


def random_blocks(qtype: str, n: int, seed: int) -> np.ndarray:
    """(n * block_bytes,) uint8: random codes and scales, finite float16 super-scales."""
    qk, nbytes = gguf_ops.BLOCKS[qtype]
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8)
    d = (rng.standard_normal((n, 2)) * np.exp2(rng.integers(-20, 4, size=(n, 1)))).astype(np.float16)
    d[: min(n, 4), 0] = np.array([0.0, -0.0, 6e-8, 65504.0], np.float16)[: min(n, 4)]
    if qtype in ("Q4_0", "Q8_0", "Q5_0"):
        raw[:, 0:2] = d[:, :1].view(np.uint8)
    elif qtype == "Q4_K":
        raw[:, 0:4] = d.view(np.uint8)
    elif qtype == "Q6_K":
        raw[:, 208:210] = d[:, :1].view(np.uint8)
    else:  # MXFP4: every scale byte, 0xFF included
        raw[: min(n, 256), 0] = np.arange(min(n, 256), dtype=np.uint8)
    return raw.reshape(-1)


@pytest.mark.parametrize("qtype", TYPES)
def test_gguf_dequant_f16_matches_cpu(gpu, same_bits, qtype):
    qk = gguf_ops.BLOCKS[qtype][0]
    for i, n in enumerate(N_BLOCKS):
        raw = random_blocks(qtype, n, seed=100 + i)
        want = gguf_ops.dequantize_f16_cpu(raw, qtype)
        with gpu.to_device(raw) as rb, gguf_ops.dequantize_f16(rb, qtype) as yb:
            got = yb.copy_to_host()
        same_bits(got, want, f"{qtype} x{n}", block=qk)


@pytest.mark.parametrize("qtype", TYPES)
def test_gguf_dequant_f16_matches_gguf_py(gpu, same_bits, qtype):
    gguf = pytest.importorskip("gguf")
    qk, nbytes = gguf_ops.BLOCKS[qtype]
    raw = random_blocks(qtype, 517, seed=5)
    if qtype == "MXFP4":
        raw.reshape(-1, nbytes)[:, 0] %= 0xFF      # no 0xFF scales: gguf-py reads 2**127
    with np.errstate(over="ignore"):
        want = np.asarray(gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[qtype]),
                          np.float32).reshape(-1).astype(np.float16)
    with gpu.to_device(raw) as rb, gguf_ops.dequantize_f16(rb, qtype) as yb:
        got = yb.copy_to_host()
    same_bits(got, want, f"{qtype} vs gguf-py", block=qk)


def test_unsupported_type_and_bad_sizes(gpu):
    with pytest.raises(NotImplementedError, match="Q2_K"):
        gguf_ops.dequantize_f16(gpu.alloc(84, dtype=np.uint8, shape=(84,)), "Q2_K")
    with gpu.alloc(35, dtype=np.uint8, shape=(35,)) as b:
        with pytest.raises(ValueError, match="whole uint8 blocks of 34"):
            gguf_ops.dequantize_f16(b, "Q8_0")
