"""The kernel table: name -> (module, signature), and the launch helper for it.

A signature is a tuple of (argument name, ctypes type) in the kernel's ABI order:
outputs first, then inputs, then scalars (pointers are ctypes.c_void_p).  The CPU tests
check it against every AMD code object's metadata (offsets and sizes of the explicit
arguments) and every cubin's kernel list.
"""
from __future__ import annotations

import ctypes

THREADS = 256  # work-items per workgroup of every kernel here (RF_LAUNCH_BOUNDS(256)),
               # except attn_staged_* (32 per KV head)
UNROLL = {"mx_quant": 4, "mx_dequant": 4, "gguf_dequant": 1}  # chunks per thread (RF_UNROLL)

MX_FORMAT_NAMES = ("mxfp4", "mxfp6_e2m3", "mxfp6_e3m2", "mxfp8_e4m3", "mxfp8_e5m2", "mxint8")
FLOAT_SUFFIXES = ("f32", "f16", "bf16")
GGUF_TYPE_NAMES = ("q4_0", "q8_0", "q5_0", "q4_k", "q6_k", "mxfp4")

# mx_quant_<fmt>_<in>(rf_u8* out, const void* in, rf_u64 n_blocks)
# mx_dequant_<fmt>_<out>(void* out, const rf_u8* in, rf_u64 n_blocks)
# gguf_dequant_<type>_f16(rf_u16* out, const rf_u8* in, rf_u64 n_blocks)
BLOCKS_SIGNATURE = (("out", ctypes.c_void_p), ("in", ctypes.c_void_p), ("n_blocks", ctypes.c_uint64))

KERNELS = {}
# Kernels that exist only in one vendor's code objects (name -> "nvidia" / "amd"); every
# other kernel is in its module's object for every target.
VENDOR_ONLY = {}
for _f in MX_FORMAT_NAMES:
    for _s in FLOAT_SUFFIXES:
        KERNELS[f"mx_quant_{_f}_{_s}"] = ("mx_quant", BLOCKS_SIGNATURE)
        KERNELS[f"mx_dequant_{_f}_{_s}"] = ("mx_dequant", BLOCKS_SIGNATURE)
for _t in GGUF_TYPE_NAMES:
    KERNELS[f"gguf_dequant_{_t}_f16"] = ("gguf_dequant", BLOCKS_SIGNATURE)


def kernel_signature(name: str):
    try:
        return KERNELS[name][1]
    except KeyError:
        raise KeyError(f"unknown kernel {name!r}; known: {len(KERNELS)} in rocmforge.ops.KERNELS") from None


def get_kernel(device, name: str):
    """The loaded Kernel ``name`` on ``device`` (module loaded from the manifest, cached)."""
    module, sig = KERNELS[name]
    return device.load_module(module).kernel(name, sig)


def launch_blocks(device, name: str, out, inp, n_blocks: int, threads_per_block: int, stream=None):
    """Launch a (out, in, n_blocks) kernel whose every block takes ``threads_per_block``
    16-byte chunks; a workgroup covers THREADS * UNROLL chunks."""
    if n_blocks <= 0:
        return
    per_group = THREADS * UNROLL[KERNELS[name][0]]   # chunks one workgroup handles
    total = n_blocks * threads_per_block
    grid = (total + per_group - 1) // per_group
    if grid > 0x7FFFFFFF:
        raise ValueError(f"{name}: {n_blocks} blocks need a grid of {grid} > 2**31 - 1")
    get_kernel(device, name).launch((grid,), (THREADS,), out, inp, n_blocks, stream=stream)

# ---------------------------------------------------------------- model forward pass
# kernels/linear.hip (rocmforge.ops.linear) and kernels/model_ops.hip (rocmforge.ops.model_ops)
_P, _U64, _U32, _I32, _F = (ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_int32,
                            ctypes.c_float)
LINEAR_TYPE_NAMES = ("f32", "f16", "q8_0", "q4_0", "q5_0", "q4_k", "q6_k", "mxfp4", "mxfp6_e2m3",
                     "mxfp6_e3m2", "mxfp8_e4m3", "mxfp8_e5m2", "mxint8")
for _t in LINEAR_TYPE_NAMES:
    # linear_<t>(float* y, const u8* w, const float* x, u64 n_tok, u32 n_out, u32 n_in)
    KERNELS[f"linear_{_t}"] = ("linear", (("y", _P), ("w", _P), ("x", _P), ("n_tok", _U64),
                                          ("n_out", _U32), ("n_in", _U32)))
    # linear1_<t>: the same with a tile of one token (decode)
    KERNELS[f"linear1_{_t}"] = ("linear", KERNELS[f"linear_{_t}"][1])
    # embed_<t>(float* out, const u8* w, const i32* tokens, u64 n_tok, u32 n_in, float scale)
    KERNELS[f"embed_{_t}"] = ("linear", (("out", _P), ("w", _P), ("tokens", _P), ("n_tok", _U64),
                                         ("n_in", _U32), ("scale", _F)))
KERNELS.update({
    "rms_norm_f32": ("model_ops", (("out", _P), ("x", _P), ("w", _P), ("n_rows", _U64),
                                   ("width", _U32), ("eps", _F))),
    "rms_norm_add_f32": ("model_ops", (("x", _P), ("o", _P), ("w", _P), ("n_rows", _U64),
                                       ("width", _U32), ("eps", _F))),
    "add_f32": ("model_ops", (("x", _P), ("o", _P), ("n", _U64))),
    "act_mul_f32": ("model_ops", (("out", _P), ("g", _P), ("u", _P), ("n", _U64), ("kind", _U32))),
    "rope_f32": ("model_ops", (("x", _P), ("pos", _P), ("tab", _P), ("n_tok", _U64),
                               ("heads", _U32), ("d", _U32), ("d_rot", _U32), ("neox", _U32))),
    "kv_store_f32": ("model_ops", (("kc", _P), ("vc", _P), ("k", _P), ("v", _P), ("slot", _P),
                                   ("pos", _P), ("n_tok", _U64), ("row", _U32),
                                   ("slot_stride", _U64), ("layer_off", _U64))),
    "attention_f32": ("model_ops", (("out", _P), ("part", _P), ("q", _P), ("kc", _P), ("vc", _P),
                                    ("fk", _P), ("fv", _P), ("slot", _P), ("pos", _P),
                                    ("n_tok", _U64), ("H", _U32), ("KV", _U32), ("d", _U32),
                                    ("slot_stride", _U64), ("layer_off", _U64),
                                    ("fresh_start", _I32), ("window", _I32), ("scale", _F),
                                    ("n_split", _U32))),
    "attention_combine_f32": ("model_ops", (("out", _P), ("part", _P), ("n_rows", _U64),
                                            ("d", _U32), ("n_split", _U32))),
    "qk_rope_f32": ("model_ops", (("q", _P), ("k", _P), ("qw", _P), ("kw", _P), ("pos", _P),
                                  ("tab", _P), ("n_tok", _U64), ("H", _U32), ("KV", _U32),
                                  ("d", _U32), ("d_rot", _U32), ("neox", _U32),
                                  ("use_norm", _U32), ("eps", _F))),
    "residual_norm_f32": ("model_ops", (("x", _P), ("h", _P), ("o", _P), ("w_post", _P),
                                        ("w_next", _P), ("n_rows", _U64), ("width", _U32),
                                        ("eps", _F), ("post", _U32), ("next", _U32))),
})

# KV cache (kernels/kv_cache.hip, kernels/attention.hip; wrappers in rocmforge/ops/attention.py)
KV_DTYPE_NAMES = ("f32", "f16", "bf16", "mxfp8_e4m3", "mxfp6_e2m3", "mxfp6_e3m2", "mxfp4")
ATTN_HEAD_DIMS = (64, 128, 256)
ATTN_GROUPS = (1, 2, 4)        # query heads per workgroup (a KV head's group is split into these)
_P, _I, _F = ctypes.c_void_p, ctypes.c_int32, ctypes.c_float
# kv_write_<dtype>(k_pages, v_pages, k, v, pages, slots, n_tokens, row_values, row_bytes, page_size)
KV_WRITE_SIGNATURE = (("k_pages", _P), ("v_pages", _P), ("k", _P), ("v", _P), ("pages", _P),
                      ("slots", _P), ("n_tokens", _I), ("row_values", _I), ("row_bytes", _I),
                      ("page_size", _I))
ATTN_DECODE_SIGNATURE = (
    ("part_o", _P), ("part_ml", _P), ("q", _P), ("k_pages", _P), ("v_pages", _P),
    ("page_table", _P), ("seq_lens", _P), ("n_q_heads", _I), ("n_kv_heads", _I), ("q_sub", _I),
    ("page_size", _I), ("page_shift", _I), ("row_bytes", _I), ("table_stride", _I),
    ("n_splits", _I), ("split_len", _I), ("window", _I), ("scale", _F), ("softcap", _F))
ATTN_COMBINE_SIGNATURE = (("out", _P), ("part_o", _P), ("part_ml", _P), ("n_splits", _I),
                          ("head_dim", _I))
for _t in KV_DTYPE_NAMES:
    KERNELS[f"kv_write_{_t}"] = ("kv_cache", KV_WRITE_SIGNATURE)
    for _d in ATTN_HEAD_DIMS:
        for _g in ATTN_GROUPS:
            KERNELS[f"attn_decode_{_t}_d{_d}_g{_g}"] = ("attention", ATTN_DECODE_SIGNATURE)
KERNELS["attn_combine"] = ("attention", ATTN_COMBINE_SIGNATURE)
# attn_staged_<dtype>_d<64|128|256><suffix>: NVIDIA sm_80+ (cp.async + float16 / bfloat16 mma;
# MXFP8_E4M3 sm_89+), one warp per KV head of a workgroup: 4 heads (no suffix), 2 (_h2) or 1
# (_h1); _h2s / _h1s: 1 or 2 MX heads that are a slice of wider rows and not whole 16-byte
# pieces (4 or 8 MX blocks); _h1u: one MX head of head_dim 64 (2 blocks, not whole 4-byte
# words) in any row; dynamic shared memory (rocmforge.ops.attention.staged_shared_bytes)
STAGED_DTYPE_NAMES = ("mxfp6_e2m3", "mxfp6_e3m2", "mxfp4", "mxfp8_e4m3", "f16", "bf16")
STAGED_SUFFIX = {4: "", 2: "_h2", 1: "_h1"}     # KV heads per workgroup -> kernel name suffix
ATTN_STAGED_SIGNATURE = (
    ("part_o", _P), ("part_ml", _P), ("q", _P), ("k_pages", _P), ("v_pages", _P),
    ("page_table", _P), ("seq_lens", _P), ("n_q_heads", _I), ("n_kv_heads", _I),
    ("page_size", _I), ("row_bytes", _I), ("table_stride", _I), ("n_splits", _I),
    ("split_tiles", _I), ("window", _I), ("scale", _F), ("softcap", _F))
STAGED_HEAD_DIMS = (64, 128, 256)   # every page type of STAGED_DTYPE_NAMES has a body at each


def staged_unaligned_head(dtype_name: str, heads: int, head_dim: int) -> bool:
    """A staged workgroup of one MX head of head_dim 64: its 2 blocks (MXFP6 50 bytes) are not
    whole 4-byte words, so the _h1u kernel copies the words that hold them."""
    return dtype_name.startswith("mx") and heads * head_dim == 64


def staged_kernel_name(dtype_name: str, head_dim: int, heads: int, whole_rows: bool = True):
    """The staged kernel of a page type, head_dim and KV heads per workgroup, or None where
    there is none.  ``whole_rows``: the workgroup's heads are all the KV heads; otherwise 1 or
    2 MX heads of 4 or 8 blocks (not whole 16-byte pieces) take the _h1s / _h2s kernel, which
    copies them per position.  One MX head of head_dim 64 (2 blocks, e.g. 50 bytes of MXFP6:
    not whole 4-byte words) takes the _h1u kernel, whole rows or not, which copies the words
    that hold it."""
    if dtype_name not in STAGED_DTYPE_NAMES or head_dim not in STAGED_HEAD_DIMS or heads not in STAGED_SUFFIX:
        return None
    if staged_unaligned_head(dtype_name, heads, head_dim):
        return f"attn_staged_{dtype_name}_d{head_dim}_h1u"
    mx_blocks = heads * head_dim // 32 if dtype_name.startswith("mx") else 0
    sliced = not whole_rows and heads < 4 and mx_blocks in (4, 8)
    return f"attn_staged_{dtype_name}_d{head_dim}{STAGED_SUFFIX[heads]}{'s' if sliced else ''}"


for _d in STAGED_HEAD_DIMS:
    for _t in STAGED_DTYPE_NAMES:
        for _h in STAGED_SUFFIX:
            for _whole in (True, False):
                _name = staged_kernel_name(_t, _d, _h, _whole)
                if _name is not None:
                    KERNELS[_name] = ("attention", ATTN_STAGED_SIGNATURE)
                    VENDOR_ONLY[_name] = "nvidia"
