"""Weights kept in their GGUF block types, dequantized inside the matrix products.

A ``Linear`` holds one (n_out, n_in) matrix as raw GGUF bytes (a zero-copy view of the
memory-mapped file, or requantized bytes when ``weights_dtype`` asks for another
format).  Products never expand the whole matrix to float32:
  - one token: ``quants.dot_rows`` (Cython, each block dequantized in registers);
  - more tokens: ``quants.matmul`` (a few tokens: each weight row dequantized once for
    all of them; many tokens: chunks of rows dequantized into a scratch buffer and
    multiplied by BLAS, so at most one chunk is ever float32).
"""
from __future__ import annotations

import numpy as np

from ..gguf import quants
from ..gguf.constants import TYPE_SIZES, GgufTensorType

TILE_ROWS = 256          # rows per requantization step at load

WEIGHT_DTYPES = {
    "mxfp4": GgufTensorType.MXFP4,
    "mxfp6_e2m3": GgufTensorType.MXFP6_E2M3,
    "mxfp6_e3m2": GgufTensorType.MXFP6_E3M2,
    "mxfp8_e4m3": GgufTensorType.MXFP8_E4M3,
    "mxfp8_e5m2": GgufTensorType.MXFP8_E5M2,
    "mxint8": GgufTensorType.MXINT8,
    "q8_0": GgufTensorType.Q8_0,
    "f16": GgufTensorType.F16,
    "f32": GgufTensorType.F32,
}


def parse_weights_dtype(name):
    if name is None:
        return None
    key = str(name).strip().lower()
    if key not in WEIGHT_DTYPES:
        raise ValueError(f"unknown weights dtype {name!r}; expected one of: "
                         f"{', '.join(WEIGHT_DTYPES)}")
    return WEIGHT_DTYPES[key]


class Linear:
    """y = x @ W.T for W (n_out, n_in) stored as ``ttype`` bytes."""

    def __init__(self, name: str, raw: np.ndarray, ttype: GgufTensorType, n_out: int, n_in: int):
        self.name, self.ttype, self.n_out, self.n_in = name, GgufTensorType(ttype), n_out, n_in
        self.raw = raw                                     # uint8 (n_out * row_bytes,)
        if self.ttype not in quants.DEQUANT_TYPES:
            raise NotImplementedError(f"{name}: tensor type {self.ttype.name} is not supported "
                                      f"(rocmforge dequantizes: "
                                      f"{', '.join(t.name for t in sorted(quants.DEQUANT_TYPES))})")
        block, bb = TYPE_SIZES[self.ttype]
        self.row_bytes = n_in // block * bb
        if n_in % block or raw.size != n_out * self.row_bytes:
            raise ValueError(f"{name}: {raw.size} bytes of {self.ttype.name} do not hold a "
                             f"({n_out}, {n_in}) matrix")

    @property
    def nbytes(self) -> int:
        return int(self.raw.size)

    def requantized(self, ttype: GgufTensorType) -> "Linear":
        """This matrix in ``ttype`` (rows must be whole blocks of it, else unchanged)."""
        block = TYPE_SIZES[ttype][0]
        if ttype == self.ttype or self.n_in % block:
            return self
        out = np.empty(self.n_out * (self.n_in // block) * TYPE_SIZES[ttype][1], np.uint8)
        rb = out.size // self.n_out
        for r in range(0, self.n_out, TILE_ROWS):
            k = min(TILE_ROWS, self.n_out - r)
            out[r * rb:(r + k) * rb] = quants.quantize(self.rows(r, k), ttype).reshape(-1)
        return Linear(self.name, out, ttype, self.n_out, self.n_in)

    def rows(self, start: int, count: int) -> np.ndarray:
        """float32 (count, n_in): rows [start, start + count)."""
        return quants.dequantize_rows(self.raw, self.ttype, start, count, self.n_in)

    def take(self, ids: np.ndarray) -> np.ndarray:
        """float32 (len(ids), n_in): the rows named by ``ids`` (token embedding)."""
        picked = self.raw.reshape(self.n_out, self.row_bytes)[np.asarray(ids, np.int64)]
        return quants.dequantize(picked.reshape(-1), self.ttype, shape=(len(ids), self.n_in))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x: float32 (n, n_in) -> float32 (n, n_out)."""
        n = x.shape[0]
        if self.ttype == GgufTensorType.F32:
            return x @ self.raw.view(np.float32).reshape(self.n_out, self.n_in).T
        if n == 1:
            return quants.dot_rows(self.raw, self.ttype, self.n_out, self.n_in, x[0])[None]
        return quants.matmul(self.raw, self.ttype, self.n_out, self.n_in, x)
