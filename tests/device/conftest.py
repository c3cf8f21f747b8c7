"""Fixtures of the device tests (the `gpu` fixture is in tests/conftest.py): the CPU device, and a
bit-exact, NaN-aware array comparison that names the first differing block."""
from __future__ import annotations

import numpy as np
import pytest

from rocmforge import device


@pytest.fixture(scope="session")
def cpu_dev():
    return device.get_device("cpu")


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view({1: np.uint8, 2: np.uint16, 4: np.uint32}[a.dtype.itemsize])


def assert_same_bits(got: np.ndarray, want: np.ndarray, what: str, block: int = 32):
    """Equal bit for bit, except that any NaN equals any NaN (sign and payload free)."""
    assert got.shape == want.shape and got.dtype == want.dtype, (
        f"{what}: got {got.dtype}{got.shape}, want {want.dtype}{want.shape}")
    g, w = got.reshape(-1), want.reshape(-1)
    if np.issubdtype(want.dtype, np.integer):
        bad = g != w
    else:
        gn, wn = np.isnan(g.astype(np.float32)), np.isnan(w.astype(np.float32))
        bad = (gn != wn) | (~wn & (_bits(g) != _bits(w)))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        b = i // block
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} values differ; first at flat index {i} "
            f"(block {b}): got {g[i]!r} want {w[i]!r}\n got block  {g[b * block:(b + 1) * block]}"
            f"\n want block {w[b * block:(b + 1) * block]}")


@pytest.fixture(scope="session")
def same_bits():
    return assert_same_bits
