"""Matrix products and the embedding gather with GGUF weights on the device
(kernels/linear.hip), each beside its CPU op (rocmforge.model.weights.Linear).

    y = linear(w_buf, "Q5_0", n_out, n_in, x_buf)        # (n, n_out) = x (n, n_in) @ W.T
    e = embed(w_buf, "Q8_0", n_in, tokens_buf, scale)    # (n, n_in) = W[tokens] * scale
Weights stay in their GGUF block type (uint8 rows on the device, uploaded once) and are
dequantized in registers; accumulation is float32, so results agree with the CPU op to
accumulation-order rounding (tests: relative 1e-5 of the output's scale), not bit for bit.
"""
from __future__ import annotations

import numpy as np

from ..gguf.constants import TYPE_SIZES, GgufTensorType
from .kernels import LINEAR_TYPE_NAMES, THREADS, get_kernel

ROWS_PER_GROUP = 8     # RF_LIN_ROWS
TOKENS_PER_GROUP = 8   # RF_LIN_TOK


def type_suffix(ttype) -> str:
    """GGUF type (member or name) -> kernel suffix; NotImplementedError if no kernel."""
    t = GgufTensorType[ttype.upper()] if isinstance(ttype, str) else GgufTensorType(ttype)
    s = t.name.lower()
    if s not in LINEAR_TYPE_NAMES:
        raise NotImplementedError(f"no GPU matrix kernel for GGUF type {t.name} "
                                  f"(supported: {', '.join(n.upper() for n in LINEAR_TYPE_NAMES)})")
    return s


def _row_bytes(ttype, n_in: int) -> int:
    t = GgufTensorType[ttype.upper()] if isinstance(ttype, str) else GgufTensorType(ttype)
    block, bb = TYPE_SIZES[t]
    if n_in % block:
        raise ValueError(f"{t.name}: n_in={n_in} is not a multiple of its block of {block}")
    return n_in // block * bb


# ---------------------------------------------------------------- CPU ops (reference)
def linear_cpu(raw: np.ndarray, ttype, n_out: int, n_in: int, x: np.ndarray) -> np.ndarray:
    """uint8 W rows (n_out * row_bytes,), float32 x (n, n_in) -> float32 (n, n_out)."""
    from ..model.weights import Linear
    t = GgufTensorType[ttype.upper()] if isinstance(ttype, str) else GgufTensorType(ttype)
    return Linear("linear", np.ascontiguousarray(raw, np.uint8).reshape(-1), t, n_out, n_in)(
        np.ascontiguousarray(x, np.float32))


def embed_cpu(raw: np.ndarray, ttype, n_in: int, tokens, scale: float = 1.0) -> np.ndarray:
    from ..model.weights import Linear
    t = GgufTensorType[ttype.upper()] if isinstance(ttype, str) else GgufTensorType(ttype)
    raw = np.ascontiguousarray(raw, np.uint8).reshape(-1)
    lin = Linear("embed", raw, t, raw.size // _row_bytes(t, n_in), n_in)
    out = lin.take(np.asarray(tokens, np.int64))
    return out * np.float32(scale) if scale != 1.0 else out


# ---------------------------------------------------------------- device ops
def linear(w, ttype, n_out: int, n_in: int, x, n_tok: int | None = None, *, out=None,
           stream=None):
    """Device: W uint8 (n_out * row_bytes,), x float32 (n_tok, n_in) -> y float32 (n_tok, n_out)."""
    suffix = type_suffix(ttype)
    need = n_out * _row_bytes(ttype, n_in)
    if w.nbytes < need:
        raise ValueError(f"linear {suffix}: weight buffer has {w.nbytes} bytes, a ({n_out}, "
                         f"{n_in}) matrix needs {need}")
    if n_tok is None:
        n_tok = x.nbytes // (4 * n_in)
    if x.nbytes < n_tok * n_in * 4:
        raise ValueError(f"linear {suffix}: x has {x.nbytes} bytes, needs ({n_tok}, {n_in}) float32")
    dev = x.device
    if out is None:
        out = dev.empty((n_tok, n_out), np.float32)
    elif out.nbytes < n_tok * n_out * 4:
        raise ValueError(f"linear {suffix}: out has {out.nbytes} bytes, needs ({n_tok}, {n_out}) float32")
    if dev.kind == "cpu":
        xs = x.copy_to_host().view(np.float32).reshape(-1)[:n_tok * n_in].reshape(n_tok, n_in)
        y = linear_cpu(w.copy_to_host().view(np.uint8).reshape(-1)[:need], ttype, n_out, n_in, xs)
        out.view(0, y.nbytes).copy_from_host(np.ascontiguousarray(y, np.float32))
        return out
    if n_tok:
        tile = 1 if n_tok == 1 else TOKENS_PER_GROUP
        grid = -(-n_out // ROWS_PER_GROUP) * -(-n_tok // tile)
        name = f"linear1_{suffix}" if tile == 1 else f"linear_{suffix}"
        get_kernel(dev, name).launch((grid,), (THREADS,), out, w, x, n_tok, n_out, n_in,
                                     stream=stream)
    return out


def embed(w, ttype, n_in: int, tokens, n_tok: int, scale: float = 1.0, *, out=None, stream=None):
    """Device: W rows (n_rows * row_bytes,), tokens int32 (n_tok,) (ids checked by the
    caller) -> float32 (n_tok, n_in) = W[tokens] * scale.  n_in % 8 == 0."""
    suffix = type_suffix(ttype)
    _row_bytes(ttype, n_in)
    if n_in % 8:
        raise ValueError(f"embed {suffix}: n_in={n_in} must be a multiple of 8")
    dev = tokens.device
    if out is None:
        out = dev.empty((n_tok, n_in), np.float32)
    if dev.kind == "cpu":
        ids = tokens.copy_to_host().view(np.int32)[:n_tok]
        e = embed_cpu(w.copy_to_host(), ttype, n_in, ids, scale)
        out.view(0, e.nbytes).copy_from_host(np.ascontiguousarray(e, np.float32))
        return out
    total = n_tok * n_in // 8
    if total:
        get_kernel(dev, f"embed_{suffix}").launch((-(-total // THREADS),), (THREADS,), out, w,
                                                  tokens, n_tok, n_in, float(scale), stream=stream)
    return out
