// bench/copy_floor_kv.cu: copy-only kernels for bench/copy_floor_kv.py (not part of the
// package).  Each reads the K and V pages of a paged cache laid out as rocmforge's
// (page, 16 positions, row_bytes = 800: 8 KV heads x 128 MXFP6 values), pages in the order of
// a page table, into shared memory or registers, and does nothing with the bytes but fold
// one word a thread into `out` (so that no copy can be dropped).  They answer one question:
// how fast can the staged attention kernel's page traffic go at all, for a given copy
// structure?  A workgroup takes `pps` consecutive table entries (its "split").
#include <stdint.h>
typedef unsigned int u32;
#define PAGE_BYTES 12800   // 16 positions x 800 bytes
#define ROW 800

__device__ __forceinline__ u32 smem_addr(const void* p) { return (u32)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void cp16(u32 d, const void* s) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(s) : "memory");
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}
extern __shared__ __align__(128) uint8_t fl_smem[];

// 16-byte cp.async into NST stage buffers, NST - 1 tiles in flight; a workgroup of 32 HW
// threads covers HW heads (HW x 100 contiguous bytes of each position; HW = 4: the shipped
// staged kernel's pattern, HW = 8: whole 12.8 KB pages), one tile = one page.
template <int HW, int NST>
__device__ void cpasync_body(u32* out, const uint8_t* kp, const uint8_t* vp, const int* table, int n_pages,
                             int pps) {
  constexpr int SL = HW * 100, NT = 32 * HW, TB = 16 * SL, NCH = TB / 16, CPK = (NCH + NT - 1) / NT;
  const int ngr = 8 / HW, hg = blockIdx.x % ngr, split = blockIdx.x / ngr, tid = threadIdx.x;
  const int p0 = split * pps, p1 = min(n_pages, p0 + pps);
  int goff[CPK];
#pragma unroll
  for (int i = 0; i < CPK; ++i) {
    const int c = tid + NT * i, p = c / (SL / 16);
    goff[i] = c < NCH ? p * ROW + hg * SL + 16 * (c - p * (SL / 16)) : -1;
  }
  auto issue = [&](int P, int st) {
    if (P < p1) {
      const long base = (long)table[P] * PAGE_BYTES;
#pragma unroll
      for (int i = 0; i < CPK; ++i)
        if (goff[i] >= 0) {
          cp16(smem_addr(fl_smem + st * 2 * TB + 16 * (tid + NT * i)), kp + base + goff[i]);
          cp16(smem_addr(fl_smem + st * 2 * TB + TB + 16 * (tid + NT * i)), vp + base + goff[i]);
        }
    }
    cp_commit();
  };
  for (int s = 0; s < NST - 1; ++s) issue(p0 + s, s);
  u32 acc = 0;
  int st = 0;
  for (int P = p0; P < p1; ++P) {
    cp_wait<NST - 2>();
    __syncthreads();
    issue(P + NST - 1, (st + NST - 1) % NST);
    acc ^= ((const u32*)(fl_smem + st * 2 * TB))[tid] + ((const u32*)(fl_smem + st * 2 * TB + TB))[tid];
    st = st + 1 == NST ? 0 : st + 1;
  }
  out[blockIdx.x * NT + tid] = acc;
}

// One cp.async.bulk (TMA) of a whole K page and V page per stage, completing on the stage's
// mbarrier; thread 0 issues, NST stages in flight (sm_90).
template <int NST>
__device__ void bulk_body(u32* out, const uint8_t* kp, const uint8_t* vp, const int* table, int n_pages, int pps) {
#if __CUDA_ARCH__ >= 900
  __shared__ __align__(8) uint64_t bar[NST];
  const int p0 = blockIdx.x * pps, p1 = min(n_pages, p0 + pps), tid = threadIdx.x;
  if (tid == 0) {
    for (int s = 0; s < NST; ++s) asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(&bar[s])));
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  auto issue = [&](int P, int st) {
    if (tid == 0 && P < p1) {
      const long base = (long)table[P] * PAGE_BYTES;
      const u32 b = smem_addr(&bar[st]);
      asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(b), "r"(2 * PAGE_BYTES) : "memory");
      asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                   ::"r"(smem_addr(fl_smem + st * 2 * PAGE_BYTES)), "l"(kp + base), "r"(PAGE_BYTES), "r"(b) : "memory");
      asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                   ::"r"(smem_addr(fl_smem + st * 2 * PAGE_BYTES + PAGE_BYTES)), "l"(vp + base), "r"(PAGE_BYTES),
                   "r"(b) : "memory");
    }
  };
  for (int s = 0; s < NST; ++s) issue(p0 + s, s);
  u32 acc = 0, phase = 0;
  int st = 0;
  for (int P = p0; P < p1; ++P) {
    asm volatile("{\n .reg .pred p;\n W: mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n @!p bra W;\n}"
                 ::"r"(smem_addr(&bar[st])), "r"(phase) : "memory");
    acc ^= ((const u32*)(fl_smem + st * 2 * PAGE_BYTES))[tid] + ((const u32*)(fl_smem + st * 2 * PAGE_BYTES + PAGE_BYTES))[tid];
    __syncthreads();
    issue(P + NST, st);
    if (++st == NST) {
      st = 0;
      phase ^= 1;
    }
  }
  out[blockIdx.x * blockDim.x + tid] = acc;
#endif
}

// Plain 16-byte loads into registers, a whole page a step, two pages' loads in flight.
__device__ void ldg_body(u32* out, const uint8_t* kp, const uint8_t* vp, const int* table, int n_pages, int pps) {
  const int p0 = blockIdx.x * pps, p1 = min(n_pages, p0 + pps), tid = threadIdx.x;
  u32 acc = 0;
  for (int P = p0; P < p1; P += 2) {
    uint4 x[2][2][4];
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const long base = (long)table[min(P + u, p1 - 1)] * PAGE_BYTES;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int c = min(tid + 256 * i, PAGE_BYTES / 16 - 1);
        x[u][0][i] = __ldcg((const uint4*)(kp + base) + c);
        x[u][1][i] = __ldcg((const uint4*)(vp + base) + c);
      }
    }
#pragma unroll
    for (int u = 0; u < 2; ++u)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc ^= x[u][0][i].x + x[u][1][i].w;
  }
  out[blockIdx.x * 256 + tid] = acc;
}

#define ARGS u32 *out, const uint8_t *kp, const uint8_t *vp, const int *table, int n_pages, int pps
extern "C" __global__ void __launch_bounds__(128) floor_cpasync_h4_s3(ARGS) { cpasync_body<4, 3>(out, kp, vp, table, n_pages, pps); }
extern "C" __global__ void __launch_bounds__(128) floor_cpasync_h4_s4(ARGS) { cpasync_body<4, 4>(out, kp, vp, table, n_pages, pps); }
extern "C" __global__ void __launch_bounds__(256) floor_cpasync_h8_s3(ARGS) { cpasync_body<8, 3>(out, kp, vp, table, n_pages, pps); }
extern "C" __global__ void __launch_bounds__(256) floor_cpasync_h8_s4(ARGS) { cpasync_body<8, 4>(out, kp, vp, table, n_pages, pps); }
extern "C" __global__ void __launch_bounds__(256) floor_bulk_s3(ARGS) { bulk_body<3>(out, kp, vp, table, n_pages, pps); }
extern "C" __global__ void __launch_bounds__(256) floor_bulk_s4(ARGS) { bulk_body<4>(out, kp, vp, table, n_pages, pps); }
extern "C" __global__ void __launch_bounds__(256) floor_ldg(ARGS) { ldg_body(out, kp, vp, table, n_pages, pps); }
