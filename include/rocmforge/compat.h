// rocmforge/compat.h: the one HIP dialect that every kernels/*.hip file is written in.
//
// A small vocabulary (thread/block ids, block dims, barrier, wave size, lane id, xor
// shuffle, bit casts, half/bfloat16 conversions, math) mapped to
//   - AMD clang in header-free mode (clang++-19 -x hip --cuda-device-only -nogpulib
//     -nogpuinc): no HIP runtime wrapper, so only __builtin_amdgcn_* and __builtin_* math;
//   - NVIDIA nvcc (__CUDACC__): CUDA's own built-ins and intrinsics.
// Kernels never assume a wave size: rf_wave_size() is 64 on CDNA (gfx9), 32 on RDNA
// (gfx10+) and on NVIDIA.  Xor shuffles stay inside aligned groups of at most 32 lanes.
// Kernel entry points are RF_KERNEL (extern "C"), outputs first, then inputs, then scalars.
#ifndef ROCMFORGE_COMPAT_H
#define ROCMFORGE_COMPAT_H

// ---------------------------------------------------------------- integer types
// No <stdint.h> in header-free mode: spell the fixed widths out (checked below).
typedef unsigned char rf_u8;
typedef signed char rf_i8;
typedef unsigned short rf_u16;
typedef short rf_i16;
typedef unsigned int rf_u32;
typedef int rf_i32;
typedef unsigned long long rf_u64;
typedef long long rf_i64;
static_assert(sizeof(rf_u16) == 2 && sizeof(rf_u32) == 4 && sizeof(rf_u64) == 8,
              "rocmforge assumes 16/32/64-bit short/int/long long");

#if defined(__CUDACC__)
// ================================================================ NVIDIA (nvcc)
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#define RF_DEVICE __device__ __forceinline__
#define RF_KERNEL extern "C" __global__ void
#define RF_LAUNCH_BOUNDS(n) __launch_bounds__(n)
#define RF_SHARED __shared__

typedef uint4 rf_u32x4;  // 16-byte vector: one 128-bit load/store

RF_DEVICE rf_u32 rf_thread_idx_x() { return threadIdx.x; }
RF_DEVICE rf_u32 rf_block_idx_x() { return blockIdx.x; }
RF_DEVICE rf_u32 rf_block_dim_x() { return blockDim.x; }
RF_DEVICE rf_u32 rf_grid_dim_x() { return gridDim.x; }
RF_DEVICE void rf_barrier() { __syncthreads(); }
RF_DEVICE rf_u32 rf_wave_size() { return warpSize; }
RF_DEVICE rf_u32 rf_lane_id() {
  rf_u32 lane;
  asm volatile("mov.u32 %0, %%laneid;" : "=r"(lane));
  return lane;
}
// Every lane of the warp must call it (no early return before a shuffle).
RF_DEVICE rf_u32 rf_shfl_xor_u32(rf_u32 v, int lane_mask) {
  return __shfl_xor_sync(0xffffffffu, v, lane_mask);
}

RF_DEVICE rf_u32 rf_float_as_uint(float f) { return __float_as_uint(f); }
RF_DEVICE float rf_uint_as_float(rf_u32 u) { return __uint_as_float(u); }
RF_DEVICE float rf_half_bits_to_float(rf_u16 h) { return __half2float(__ushort_as_half(h)); }
RF_DEVICE rf_u16 rf_float_to_half_bits(float f) { return __half_as_ushort(__float2half_rn(f)); }
// Two floats -> two float16 / bfloat16 (round to nearest even) packed low, high: one
// F2FP instruction on sm_80+.
RF_DEVICE rf_u32 rf_pack_half2_rn(float lo, float hi) {
  __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<rf_u32*>(&h);
}
RF_DEVICE rf_u32 rf_pack_bf16x2_rn(float lo, float hi) {
  __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<rf_u32*>(&h);
}

// Funnel shift right: the low 32 bits of ({hi, lo} >> (sh & 31)).
RF_DEVICE rf_u32 rf_funnel_r(rf_u32 lo, rf_u32 hi, rf_u32 sh) { return __funnelshift_r(lo, hi, sh); }
// Bytes [x.b0, x.b2, y.b0, y.b2]: the low bytes of four 16-bit lanes, in order.
RF_DEVICE rf_u32 rf_pack_lo_bytes(rf_u32 x, rf_u32 y) { return __byte_perm(x, y, 0x6420); }

// Packed float16 pairs held in a u32 (low lane = first element); IEEE, round to nearest.
RF_DEVICE __half2 rf_as_h2(rf_u32 u) { return *reinterpret_cast<__half2*>(&u); }
RF_DEVICE rf_u32 rf_h2_bits(__half2 h) { return *reinterpret_cast<rf_u32*>(&h); }
RF_DEVICE rf_u32 rf_h2_add(rf_u32 a, rf_u32 b) { return rf_h2_bits(__hadd2(rf_as_h2(a), rf_as_h2(b))); }
RF_DEVICE rf_u32 rf_h2_min(rf_u32 a, rf_u32 b) { return rf_h2_bits(__hmin2(rf_as_h2(a), rf_as_h2(b))); }
RF_DEVICE rf_u32 rf_h2_max(rf_u32 a, rf_u32 b) { return rf_h2_bits(__hmax2(rf_as_h2(a), rf_as_h2(b))); }
RF_DEVICE rf_u32 rf_h2_mul(rf_u32 a, rf_u32 b) { return rf_h2_bits(__hmul2(rf_as_h2(a), rf_as_h2(b))); }
// Per 16-bit lane unsigned max (one VIMNMX on sm_90).
RF_DEVICE rf_u32 rf_max_u16x2(rf_u32 a, rf_u32 b) { return __vmaxu2(a, b); }

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
// sm_89+ FP8 conversions (PTX cvt): two floats -> two FP8 codes (lo in the low byte),
// round to nearest even, saturating to the finite max; two FP8 codes -> two exact halves.
#define RF_HAVE_FP8_CVT 1
RF_DEVICE rf_u32 rf_cvt_e4m3x2_satfinite(float lo, float hi) {
  unsigned short r;
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(r) : "f"(hi), "f"(lo));
  return r;
}
RF_DEVICE rf_u32 rf_cvt_e5m2x2_satfinite(float lo, float hi) {
  unsigned short r;
  asm("cvt.rn.satfinite.e5m2x2.f32 %0, %1, %2;" : "=h"(r) : "f"(hi), "f"(lo));
  return r;
}
// Two E4M3 codes (bits 0-15) -> float16x2 bits (exact; NaN stays NaN).
RF_DEVICE rf_u32 rf_cvt_e4m3x2_h16(rf_u32 codes) {
  rf_u32 h2;
  asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(h2) : "h"((unsigned short)codes));
  return h2;
}
RF_DEVICE void rf_cvt_e4m3x2_to_float2(rf_u32 codes, float& lo, float& hi) {
  const rf_u32 h2 = rf_cvt_e4m3x2_h16(codes);
  lo = rf_half_bits_to_float((rf_u16)(h2 & 0xffffu));
  hi = rf_half_bits_to_float((rf_u16)(h2 >> 16));
}
#endif

RF_DEVICE float rf_rintf(float x) { return rintf(x); }
RF_DEVICE float rf_fabsf(float x) { return fabsf(x); }
RF_DEVICE float rf_fminf(float a, float b) { return fminf(a, b); }
RF_DEVICE float rf_fmaxf(float a, float b) { return fmaxf(a, b); }
RF_DEVICE float rf_fmaf(float a, float b, float c) { return fmaf(a, b, c); }
RF_DEVICE float rf_sqrtf(float x) { return sqrtf(x); }
RF_DEVICE float rf_exp2f(float x) { return exp2f(x); }
RF_DEVICE float rf_log2f(float x) { return log2f(x); }
RF_DEVICE float rf_expf(float x) { return expf(x); }

#elif defined(__HIP__)
// ================================================================ AMD (clang, header-free)
#define __global__ __attribute__((global))
#define __device__ __attribute__((device))
#define __host__ __attribute__((host))
#define __shared__ __attribute__((shared))

#define RF_DEVICE __device__ inline __attribute__((always_inline))
#define RF_KERNEL extern "C" __global__ void
#define RF_LAUNCH_BOUNDS(n) __attribute__((amdgpu_flat_work_group_size(1, n)))
#define RF_SHARED __shared__

typedef rf_u32 rf_u32x4 __attribute__((ext_vector_type(4)));

RF_DEVICE rf_u32 rf_thread_idx_x() { return __builtin_amdgcn_workitem_id_x(); }
RF_DEVICE rf_u32 rf_block_idx_x() { return __builtin_amdgcn_workgroup_id_x(); }
RF_DEVICE rf_u32 rf_block_dim_x() { return __builtin_amdgcn_workgroup_size_x(); }
RF_DEVICE rf_u32 rf_grid_dim_x() {
  // hsa_kernel_dispatch_packet_t: grid_size_x (work-items) is the u32 at byte 12.
  const rf_u32* packet = (const rf_u32*)__builtin_amdgcn_dispatch_ptr();
  return packet[3] / __builtin_amdgcn_workgroup_size_x();
}
RF_DEVICE void rf_barrier() {
  __builtin_amdgcn_fence(__ATOMIC_RELEASE, "workgroup");
  __builtin_amdgcn_s_barrier();
  __builtin_amdgcn_fence(__ATOMIC_ACQUIRE, "workgroup");
}
RF_DEVICE rf_u32 rf_wave_size() { return __builtin_amdgcn_wavefrontsize(); }
RF_DEVICE rf_u32 rf_lane_id() {
  return __builtin_amdgcn_mbcnt_hi(~0u, __builtin_amdgcn_mbcnt_lo(~0u, 0u));
}
RF_DEVICE rf_u32 rf_shfl_xor_u32(rf_u32 v, int lane_mask) {
  int src = (int)(rf_lane_id() ^ (rf_u32)lane_mask);
  return (rf_u32)__builtin_amdgcn_ds_bpermute(src << 2, (int)v);
}

RF_DEVICE rf_u32 rf_float_as_uint(float f) { return __builtin_bit_cast(rf_u32, f); }
RF_DEVICE float rf_uint_as_float(rf_u32 u) { return __builtin_bit_cast(float, u); }
RF_DEVICE float rf_half_bits_to_float(rf_u16 h) { return (float)__builtin_bit_cast(_Float16, h); }
RF_DEVICE rf_u16 rf_float_to_half_bits(float f) { return __builtin_bit_cast(rf_u16, (_Float16)f); }

RF_DEVICE rf_u32 rf_funnel_r(rf_u32 lo, rf_u32 hi, rf_u32 sh) {
  return __builtin_amdgcn_alignbit(hi, lo, sh);  // v_alignbit_b32
}
RF_DEVICE rf_u32 rf_pack_lo_bytes(rf_u32 x, rf_u32 y) {
  return (x & 0xffu) | ((x >> 8) & 0xff00u) | ((y & 0xffu) << 16) | ((y << 8) & 0xff000000u);
}
typedef _Float16 rf_h2v __attribute__((ext_vector_type(2)));
RF_DEVICE rf_u32 rf_h2_add(rf_u32 a, rf_u32 b) {
  return __builtin_bit_cast(rf_u32, __builtin_bit_cast(rf_h2v, a) + __builtin_bit_cast(rf_h2v, b));
}
RF_DEVICE rf_u32 rf_h2_min(rf_u32 a, rf_u32 b) {
  return __builtin_bit_cast(rf_u32, __builtin_elementwise_min(__builtin_bit_cast(rf_h2v, a), __builtin_bit_cast(rf_h2v, b)));
}
RF_DEVICE rf_u32 rf_h2_max(rf_u32 a, rf_u32 b) {
  return __builtin_bit_cast(rf_u32, __builtin_elementwise_max(__builtin_bit_cast(rf_h2v, a), __builtin_bit_cast(rf_h2v, b)));
}
RF_DEVICE rf_u32 rf_h2_mul(rf_u32 a, rf_u32 b) {
  return __builtin_bit_cast(rf_u32, __builtin_bit_cast(rf_h2v, a) * __builtin_bit_cast(rf_h2v, b));
}
typedef rf_u16 rf_u16x2v __attribute__((ext_vector_type(2)));
RF_DEVICE rf_u32 rf_max_u16x2(rf_u32 a, rf_u32 b) {
  return __builtin_bit_cast(rf_u32, __builtin_elementwise_max(__builtin_bit_cast(rf_u16x2v, a), __builtin_bit_cast(rf_u16x2v, b)));
}
RF_DEVICE float rf_rintf(float x) { return __builtin_rintf(x); }
#define RF_NEED_SOFT_PACK 1
RF_DEVICE float rf_fabsf(float x) { return __builtin_fabsf(x); }
RF_DEVICE float rf_fminf(float a, float b) { return __builtin_fminf(a, b); }
RF_DEVICE float rf_fmaxf(float a, float b) { return __builtin_fmaxf(a, b); }
RF_DEVICE float rf_fmaf(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
RF_DEVICE float rf_sqrtf(float x) { return __builtin_sqrtf(x); }
RF_DEVICE float rf_exp2f(float x) { return __builtin_exp2f(x); }
RF_DEVICE float rf_log2f(float x) { return __builtin_log2f(x); }
RF_DEVICE float rf_expf(float x) { return __builtin_expf(x); }

#else
#error "rocmforge/compat.h: compile with nvcc (CUDA) or clang -x hip (AMD)"
#endif

// ---------------------------------------------------------------- shared helpers
// Global thread index, 64-bit so that grids over > 2^32 elements index correctly.
RF_DEVICE rf_u64 rf_global_thread_idx() {
  return (rf_u64)rf_block_idx_x() * rf_block_dim_x() + rf_thread_idx_x();
}
RF_DEVICE rf_u32 rf_max_u32(rf_u32 a, rf_u32 b) { return a > b ? a : b; }
RF_DEVICE rf_i32 rf_min_i32(rf_i32 a, rf_i32 b) { return a < b ? a : b; }
RF_DEVICE rf_i32 rf_max_i32(rf_i32 a, rf_i32 b) { return a > b ? a : b; }

// 2**n as a float for n in [-149, 127] (n == -127 .. -149: subnormal), built from bits.
RF_DEVICE float rf_exp2i(rf_i32 n) {
  return n >= -126 ? rf_uint_as_float((rf_u32)(n + 127) << 23)
                   : rf_uint_as_float(0x00400000u >> (-127 - n));
}

// bfloat16 <-> float32.  float -> bf16 rounds to nearest, ties to even (NaN stays a quiet NaN).
RF_DEVICE float rf_bf16_bits_to_float(rf_u16 h) { return rf_uint_as_float((rf_u32)h << 16); }
RF_DEVICE rf_u16 rf_float_to_bf16_bits(float f) {
  rf_u32 u = rf_float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (rf_u16)((u >> 16) | 0x0040u);
  return (rf_u16)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

#if defined(RF_NEED_SOFT_PACK)
RF_DEVICE rf_u32 rf_pack_half2_rn(float lo, float hi) {
  return (rf_u32)rf_float_to_half_bits(lo) | ((rf_u32)rf_float_to_half_bits(hi) << 16);
}
RF_DEVICE rf_u32 rf_pack_bf16x2_rn(float lo, float hi) {
  return (rf_u32)rf_float_to_bf16_bits(lo) | ((rf_u32)rf_float_to_bf16_bits(hi) << 16);
}
#endif

#endif  // ROCMFORGE_COMPAT_H
