"""The Cython fast path is bit-identical to the NumPy reference; round-trip error bounds."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from rocmforge import mx
from rocmforge.mx import MxFormat

pytestmark = pytest.mark.skipif(not mx.have_fast_path(), reason="rocmforge.mx._fast not built")

SHAPES = [(1, 32), (7, 4096), (3, 4128)]
ALL = list(MxFormat)


def first_bad_block(a, b, block_bytes):
    bad = np.flatnonzero((a.reshape(-1, block_bytes) != b.reshape(-1, block_bytes)).any(axis=1))
    return f"first differing block {bad[0]} of {bad.size}" if bad.size else ""


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
def test_quantize_fast_equals_reference(fmt, shape):
    rng = np.random.default_rng(hash((fmt.name, shape)) % 2**32)
    x = rng.standard_normal(shape).astype(np.float32)
    x *= np.exp2(rng.integers(-30, 30, (shape[0], shape[1] // 32, 1))).repeat(32, -1).reshape(shape)
    flat = x.reshape(-1)
    flat[rng.integers(0, flat.size, 5)] = [np.nan, np.inf, -np.inf, 0.0, 1e-42]
    a, b = mx.quantize(x, fmt, impl="fast"), mx.quantize(x, fmt, impl="reference")
    assert np.array_equal(a, b), first_bad_block(a, b, fmt.block_bytes)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
def test_dequantize_fast_equals_reference_on_random_bytes(fmt, shape):
    rng = np.random.default_rng(7)
    nb = shape[0] * shape[1] // 32
    q = rng.integers(0, 256, (nb, fmt.block_bytes), dtype=np.uint8)
    if fmt.spec.bits == 4:
        pass                                     # every byte is two valid nibbles
    a = mx.dequantize(q, fmt, impl="fast")
    b = mx.dequantize(q, fmt, impl="reference")
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32)) or \
        np.array_equal(a, b, equal_nan=True), first_bad_block(a, b, 32)


def step_bound(v, fmt):
    """Largest allowed |v - round(v)| for scaled values v: half a code step, or the
    distance to +-max where v saturates."""
    s = fmt.spec
    a = np.abs(v)
    if s.kind == "int":
        half = np.full_like(a, 0.5 / 64)
    else:
        e = np.maximum(np.floor(np.log2(np.where(a > 0, a, 1))), 1 - s.bias)
        half = 2.0 ** (e - s.mbits) / 2
    return np.maximum(half, a - s.max)


@settings(max_examples=300, deadline=None)
@given(fmt=st.sampled_from(ALL),
       x=hnp.arrays(np.float32, st.tuples(st.integers(1, 3), st.just(64)),
                    elements=st.floats(-3.4028234663852886e38, 3.4028234663852886e38, width=32, allow_nan=False,
                                      allow_infinity=False, allow_subnormal=True)))
def test_round_trip_within_half_a_step(fmt, x):
    q = mx.quantize(x, fmt)
    y = mx.dequantize(q, fmt).astype(np.float64)
    scale = mx.e8m0_decode(q.reshape(-1, fmt.block_bytes)[:, 0]).repeat(32).reshape(x.shape)
    v = x.astype(np.float64) / scale
    err = np.abs(x - y) / scale
    assert (err <= step_bound(v, fmt)).all()
    np.testing.assert_array_equal(q, mx.quantize(x, fmt, impl="reference"))
