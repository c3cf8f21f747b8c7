"""The kernel table: name -> (module, signature), and the launch helper for it.

A signature is a tuple of (argument name, ctypes type) in the kernel's ABI order:
outputs first, then inputs, then scalars (pointers are ctypes.c_void_p).  The CPU tests
check it against every AMD code object's metadata (offsets and sizes of the explicit
arguments) and every cubin's kernel list.
"""
from __future__ import annotations

import ctypes

THREADS = 256  # work-items per workgroup of every kernel here (RF_LAUNCH_BOUNDS(256))
UNROLL = {"mx_quant": 4, "mx_dequant": 4, "gguf_dequant": 1}  # chunks per thread (RF_UNROLL)

MX_FORMAT_NAMES = ("mxfp4", "mxfp6_e2m3", "mxfp6_e3m2", "mxfp8_e4m3", "mxfp8_e5m2", "mxint8")
FLOAT_SUFFIXES = ("f32", "f16", "bf16")
GGUF_TYPE_NAMES = ("q4_0", "q8_0", "q5_0", "q4_k", "q6_k", "mxfp4")

# mx_quant_<fmt>_<in>(rf_u8* out, const void* in, rf_u64 n_blocks)
# mx_dequant_<fmt>_<out>(void* out, const rf_u8* in, rf_u64 n_blocks)
# gguf_dequant_<type>_f16(rf_u16* out, const rf_u8* in, rf_u64 n_blocks)
BLOCKS_SIGNATURE = (("out", ctypes.c_void_p), ("in", ctypes.c_void_p), ("n_blocks", ctypes.c_uint64))

KERNELS = {}
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
