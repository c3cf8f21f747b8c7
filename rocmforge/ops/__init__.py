"""rocmforge.ops: one typed Python wrapper per GPU kernel, each beside its CPU op.

    from rocmforge.ops import mx as mx_ops, gguf as gguf_ops
    q = mx_ops.quantize(x_buf, "mxfp4")                  # DeviceBuffer (..., K/32*17) uint8
    y = mx_ops.dequantize(q, "mxfp4", np.float16)        # DeviceBuffer (..., K) float16
    w = gguf_ops.dequantize_f16(raw_buf, "Q4_K", n)      # DeviceBuffer (n,) float16
    mx_ops.quantize_cpu(x, "mxfp4")                      # the same op on the CPU (numpy)

``KERNELS`` maps every kernel name to (module, signature): the one table that the
launchers, tools/build_kernels.py's consumers and the code-object metadata tests share;
``VENDOR_ONLY`` names the few that one vendor's code objects lack.
"""
from .kernels import KERNELS, VENDOR_ONLY, kernel_signature

__all__ = ["KERNELS", "VENDOR_ONLY", "kernel_signature"]
