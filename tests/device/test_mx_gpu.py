"""MX quantize / dequantize kernels against the CPU reference (rocmforge.mx), bit for bit:
every format, every input/output dtype, special blocks (NaN, Inf, zeros, -0, subnormal
inputs, ties, saturation, E8M0 clamps) and odd sizes (not multiples of a workgroup)."""
from __future__ import annotations

import numpy as np
import pytest

from rocmforge import mx
from rocmforge.mx import MxFormat
from rocmforge.ops import mx as mx_ops
from rocmforge.ops._common import BFLOAT16

pytestmark = pytest.mark.gpu

FORMATS = list(MxFormat)
DTYPES = [np.dtype(np.float32), np.dtype(np.float16), BFLOAT16]
SHAPES = [(1, 32), (3, 4128), (257, 96)]     # 1, 387, 771 blocks: none a multiple of 256


def special_blocks(fmt: MxFormat) -> np.ndarray:
    """(n, 32) float32 blocks exercising every rule of the quantizer."""
    s = fmt.spec
    rows = []
    z = np.zeros(32, np.float32)
    rows.append(z.copy())                                            # zero block -> scale 0
    rows.append(-z)                                                   # -0 block -> zero codes
    r = z.copy(); r[::2] = -0.0; r[5] = 1.5; rows.append(r)          # -0 inside a live block
    for bad in (np.nan, np.inf, -np.inf):
        r = np.linspace(-1, 1, 32, dtype=np.float32); r[7] = bad; rows.append(r)
    rows.append(np.full(32, 1e-40, np.float32))                       # subnormal float32
    r = np.full(32, -3e-39, np.float32); r[3] = 1e-45; rows.append(r)  # subnormals, min
    rows.append(np.full(32, 3.4e38, np.float32))                      # E8M0 upper clamp region
    r = np.full(32, 1.0, np.float32); r[0] = 3.3e38; rows.append(r)   # tiny next to huge
    rows.append(np.full(32, 2.0**-127, np.float32))                   # E8M0 lower clamp
    rows.append(np.full(32, 1.0, np.float32))                         # exact round trip
    # ties: midpoints between neighbouring codes at scale 1 (amax pinned to 2**emax)
    grid = np.abs(mx.decode(np.arange(s.max_code + 1, dtype=np.uint8), fmt).astype(np.float64))
    mids = ((grid[:-1] + grid[1:]) / 2)
    for k in range(0, len(mids), 31):
        r = np.zeros(32, np.float32); r[0] = 2.0**s.emax
        chunk = mids[k:k + 31]
        r[1:1 + len(chunk)] = chunk * np.where(np.arange(len(chunk)) % 2, -1, 1)
        rows.append(r)
    # saturation: amax just below 2**(emax+1) rounds past max
    r = np.linspace(0, 1, 32, dtype=np.float32) * np.float32(2.0**(s.emax + 1) * 0.999)
    rows.append(r)
    rows.append(-r)
    return np.stack(rows)


def random_blocks(n: int, rng, lo: int = -140, hi: int = 120) -> np.ndarray:
    """(n, 32) float32: normal values with per-block scales 2**lo .. 2**hi."""
    x = rng.standard_normal((n, 32))
    x *= np.exp2(rng.integers(lo, hi + 1, size=(n, 1)).astype(np.float64))
    x[rng.random((n, 32)) < 0.05] = 0.0
    return x.astype(np.float32)


def make_input(shape, dtype, fmt, seed):
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape)) // 32
    blocks = random_blocks(n, rng, *((-22, 13) if dtype == np.float16 else (-140, 120)))
    sp = special_blocks(fmt)
    k = min(len(sp), n)
    blocks[:k] = sp[:k]
    x = blocks.reshape(shape)
    if dtype == np.float16:
        with np.errstate(over="ignore"):
            x = x.astype(np.float16)
        x[..., :1] = np.float16(6e-8)          # float16 subnormals too
    elif dtype == BFLOAT16:
        x = x.astype(BFLOAT16)
    return x


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d))
@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_quantize_matches_cpu(gpu, same_bits, fmt, dtype):
    for i, shape in enumerate(SHAPES + [(1, 32 * len(special_blocks(fmt)))]):
        x = make_input(shape, dtype, fmt, seed=i)
        want = mx_ops.quantize_cpu(x, fmt)
        with gpu.to_device(x) as xb:
            q = mx_ops.quantize(xb, fmt)
            got = q.copy_to_host()
            q.free()
        same_bits(got, want, f"quantize {fmt.name} {dtype} {shape}", block=fmt.block_bytes)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d))
@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_dequantize_matches_cpu(gpu, same_bits, fmt, dtype):
    rng = np.random.default_rng(7)
    bb = fmt.block_bytes
    # random bytes: every code and every scale byte (0 .. 255, 0xFF = NaN) appear
    raw = rng.integers(0, 256, size=(771, bb), dtype=np.uint8)
    raw[:256, 0] = np.arange(256, dtype=np.uint8)
    real = mx.quantize(make_input((5, 32 * 40), np.float32, fmt, 3), fmt).reshape(-1, bb)
    for q in (raw.reshape(3, 257 * bb), real, raw[:1].copy()):
        want = mx_ops.dequantize_cpu(q, fmt, dtype)
        with gpu.to_device(q) as qb, mx_ops.dequantize(qb, fmt, dtype) as yb:
            got = yb.copy_to_host()
        same_bits(got, want, f"dequantize {fmt.name} -> {dtype} {q.shape}")


def test_round_trip_into_views_and_on_a_stream(gpu, same_bits):
    """Outputs written into a view of a larger buffer, work queued on a created stream."""
    fmt = MxFormat.MXFP6_E2M3
    x = make_input((4, 256), np.float32, fmt, 11)
    s = gpu.stream()
    with gpu.to_device(x) as xb, gpu.alloc(4096) as arena:
        arena.memset(0xAB)
        q = mx_ops.quantize(xb, fmt, out=arena.view(0, 4 * 8 * 25), stream=s)
        y = mx_ops.dequantize(q, fmt, np.float16, out=arena.view(1024, 2048), stream=s)
        s.synchronize()
        same_bits(q.copy_to_host(), mx.quantize(x, fmt), "quantize into view", block=25)
        same_bits(y.copy_to_host(), mx.dequantize(mx.quantize(x, fmt), fmt, np.float16), "dequantize into view")
        tail = arena.view(4 * 8 * 25, 1024 - 4 * 8 * 25).copy_to_host()
        assert (tail == 0xAB).all(), "quantize wrote past its output"


def test_misaligned_or_host_inputs_rejected(gpu):
    from rocmforge.device import HostArrayError
    with gpu.alloc(1024) as buf:
        bad = buf.view(4, 512, dtype=np.float32, shape=(4, 32))
        with pytest.raises(ValueError, match="16-byte aligned"):
            mx_ops.quantize(bad, "mxfp4")
    with pytest.raises(HostArrayError):
        mx_ops.quantize(np.zeros((1, 32), np.float32), "mxfp4")
