"""Element codecs against ml_dtypes, exhaustively: every code, every value, every midpoint."""
import ml_dtypes
import numpy as np
import pytest

from rocmforge import mx
from rocmforge.mx import MxFormat, reference

ML = {
    MxFormat.MXFP4: ml_dtypes.float4_e2m1fn,
    MxFormat.MXFP6_E2M3: ml_dtypes.float6_e2m3fn,
    MxFormat.MXFP6_E3M2: ml_dtypes.float6_e3m2fn,
    MxFormat.MXFP8_E4M3: ml_dtypes.float8_e4m3fn,
    MxFormat.MXFP8_E5M2: ml_dtypes.float8_e5m2,
}
FP_FORMATS = list(ML)


def ml_codes(values, fmt):
    """ml_dtypes' round-to-nearest-even cast, as codes; values must be within +-max."""
    return np.asarray(values, np.float32).astype(ML[fmt]).view(np.uint8)


@pytest.mark.parametrize("fmt", FP_FORMATS, ids=lambda f: f.name)
def test_every_code_decodes_like_ml_dtypes(fmt):
    codes = np.arange(fmt.spec.n_codes, dtype=np.uint8)
    ours = mx.decode(codes, fmt)
    theirs = codes.view(ML[fmt]).astype(np.float32)
    np.testing.assert_array_equal(ours, theirs)                 # NaNs compare equal here
    np.testing.assert_array_equal(np.signbit(ours), np.signbit(theirs))  # both zeros


@pytest.mark.parametrize("fmt", FP_FORMATS, ids=lambda f: f.name)
def test_format_table_matches_ml_dtypes(fmt):
    info = ml_dtypes.finfo(ML[fmt])
    assert float(info.max) == fmt.spec.max
    assert fmt.spec.max_code == int(np.array(info.max, ML[fmt]).view(np.uint8))
    assert fmt.spec.bias == 1 - int(info.minexp)
    assert fmt.spec.mbits == int(info.nmant)


def _finite_grid(fmt):
    vals = reference.decode_table(fmt)
    vals = vals[np.isfinite(vals)]
    return np.unique(vals)                                      # sorted, -max .. +max


@pytest.mark.parametrize("fmt", FP_FORMATS, ids=lambda f: f.name)
def test_encode_values_and_midpoints_like_ml_dtypes(fmt):
    grid = _finite_grid(fmt)
    mids = (grid[:-1] + grid[1:]) / 2                           # exact ties
    quarter = grid[:-1] + (grid[1:] - grid[:-1]) / 4            # not ties
    three_q = grid[:-1] + 3 * (grid[1:] - grid[:-1]) / 4
    vals = np.concatenate([grid, mids, quarter, three_q, [0.0, -0.0]])
    np.testing.assert_array_equal(mx.encode(vals, fmt), ml_codes(vals, fmt))


@pytest.mark.parametrize("fmt", FP_FORMATS, ids=lambda f: f.name)
def test_encode_saturates_beyond_max(fmt):
    m = fmt.spec.max
    vals = np.array([m * 1.01, m * 1.5, m * 1000, np.inf, -m * 1.01, -np.inf])
    expect = ml_codes(np.clip(vals, -m, m), fmt)                # clamp first: the MX rule
    np.testing.assert_array_equal(mx.encode(vals, fmt), expect)
    np.testing.assert_array_equal(mx.decode(mx.encode(vals, fmt), fmt), np.clip(vals, -m, m))


def test_encode_subnormals_like_ml_dtypes():
    for fmt in FP_FORMATS:
        tiny = 2.0 ** (1 - fmt.spec.bias - fmt.spec.mbits)     # smallest subnormal
        vals = np.array([tiny, tiny / 2, tiny / 4, 3 * tiny / 4, 1.5 * tiny, -tiny / 2, -tiny / 4])
        np.testing.assert_array_equal(mx.encode(vals, fmt), ml_codes(vals, fmt), err_msg=fmt.name)


def test_mxint8_elements():
    codes = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(mx.decode(codes, MxFormat.MXINT8),
                                  codes.view(np.int8).astype(np.float32) / 64)
    assert MxFormat.MXINT8.spec.max == 127 / 64
    vals = np.array([0.5 / 64, 1.5 / 64, 2.5 / 64, -0.5 / 64, -1.5 / 64, 127 / 64, 3.0, -3.0])
    # ties to even: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2; saturation to +-127 (never -128)
    expect = np.array([0, 2, 2, 0, -2, 127, 127, -127], np.int8).view(np.uint8)
    np.testing.assert_array_equal(mx.encode(vals, MxFormat.MXINT8), expect)


def test_all_256_e8m0_values():
    b = np.arange(256, dtype=np.uint8)
    theirs = b.view(ml_dtypes.float8_e8m0fnu).astype(np.float64)
    np.testing.assert_array_equal(mx.e8m0_decode(b), theirs)
    assert np.isnan(mx.e8m0_decode(0xFF))
    assert mx.e8m0_decode(0) == 2.0**-127 and mx.e8m0_decode(254) == 2.0**127
    np.testing.assert_array_equal(mx.e8m0_encode(np.arange(-127, 128)), b[:255])
    with pytest.raises(ValueError, match=r"\[-127, 127\]"):
        mx.e8m0_encode(128)


def test_element_errors():
    with pytest.raises(ValueError, match="no NaN code"):
        mx.encode([np.nan], MxFormat.MXFP4)
    with pytest.raises(ValueError, match="4-bit"):
        mx.decode(np.array([16], np.uint8), MxFormat.MXFP4)
    with pytest.raises(ValueError, match="unknown MX format 'fp5'"):
        MxFormat.parse("fp5")
