// Kernel of kernels/skinny_gemm.h.
//
// A block of kWarps (8) warps owns 128 rows of w (16 per warp) and one K
// split; each warp streams its 16 rows through the tensor cores as the A
// operand of mma.m16n8k16 (bf16 in, float32 accumulate) against the x rows as
// B (kTiles n8 tiles: m <= 8 kTiles). What costs is the stream of w, so:
//   - w is read straight from global memory into registers, 16 bytes per
//     load, L1 bypassed (each byte is used once), kDepth chunks of 64 k ahead
//     of the tensor cores: a warp keeps kDepth x 2 KB in flight;
//   - the k order inside a 64-wide chunk is permuted identically for w and x
//     so that each lane's 16-byte loads are exactly its mma fragments: lane
//     (g, t) loads elements [16t, 16t + 16) of its rows g and g + 8 (w) and of
//     row g of each x tile, and k step s of the chunk takes its elements
//     [4s, 4s + 4) as the fragment's columns {2t, 2t + 1, 2t + 8, 2t + 9} —
//     a permutation of k within the chunk, the same on both operands, so the
//     dot products are unchanged up to summation order;
//   - x is small and shared by every block: it is read through L1 / L2,
//     where the block's eight warps hit the same lines at about the same time.
// With splits > 1 each block writes float32 partials, and the last block of a
// row tile to finish (atomic count; partials read through L2) sums the splits
// in order, writes y and resets the count.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <vector>

#include "kernels/skinny_gemm.h"

namespace sweepd::kernels {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kChunk = 64;  // k per chunk

struct Params {
  const __nv_bfloat16* x;
  const __nv_bfloat16* w;
  __nv_bfloat16* y;
  float* ws;
  int32_t* counters;
  int64_t m, n, ldx, ldw, ldy;
  int chunks, chunks_per_split, splits;
};

// 16 bytes of w: read-only, streamed (no L1 allocation).
__device__ __forceinline__ uint4 LoadStream(const __nv_bfloat16* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}

__device__ __forceinline__ uint32_t Word(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

__device__ __forceinline__ void Mma(float (&c)[4], uint32_t a0, uint32_t a1,
                                    uint32_t a2, uint32_t a3, uint32_t b0,
                                    uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // bf16 mma needs sm_80 or newer (SkinnyGemmCuda refuses those)
#else
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#endif
}

// One chunk: w rows g (wa[0..1]) and g + 8 (wa[2..3]), 16 elements each; x
// rows of the tiles (xb[tile][0..1]). Element e of a lane's 16 sits in word
// e / 2 of the pair of uint4: k step s takes words 2s (columns 2t, 2t + 1) and
// 2s + 1 (columns 2t + 8, 2t + 9).
template <int kTiles>
__device__ __forceinline__ void ChunkMma(const uint4 (&wa)[4],
                                         const uint4 (&xb)[kTiles][2],
                                         float (&acc)[kTiles][4]) {
#pragma unroll
  for (int s = 0; s < 4; ++s) {
    const int v = s / 2, o = (s % 2) * 2;  // uint4 and word of step s
    const uint32_t a0 = Word(wa[v], o), a2 = Word(wa[v], o + 1);
    const uint32_t a1 = Word(wa[2 + v], o), a3 = Word(wa[2 + v], o + 1);
#pragma unroll
    for (int t = 0; t < kTiles; ++t) {
      Mma(acc[t], a0, a1, a2, a3, Word(xb[t][v], o), Word(xb[t][v], o + 1));
    }
  }
}

// The lane's 16 elements of rows g (wa) and g + 8 (wb) in the chunk at `off`.
__device__ __forceinline__ void LoadChunk(uint4 (&q)[4],
                                          const __nv_bfloat16* wa,
                                          const __nv_bfloat16* wb,
                                          int64_t off) {
  q[0] = LoadStream(wa + off);
  q[1] = LoadStream(wa + off + 8);
  q[2] = LoadStream(wb + off);
  q[3] = LoadStream(wb + off + 8);
}

// Calls f(row, token, value) for each accumulator of the lane that lands in
// y (row < n, token < m): acc[i] holds (row0, token 8i + 2t), (row0, + 1),
// (row0 + 8, 8i + 2t), (row0 + 8, + 1).
template <int kTiles, typename F>
__device__ __forceinline__ void ForEachOutput(const float (&acc)[kTiles][4],
                                              int64_t row0, int t, int64_t m,
                                              int64_t n, F&& f) {
#pragma unroll
  for (int i = 0; i < kTiles; ++i) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int64_t r = row0 + (e >= 2 ? 8 : 0);
      const int64_t j = i * 8 + 2 * t + (e & 1);
      if (r < n && j < m) f(r, j, acc[i][e]);
    }
  }
}

template <int kTiles, int kDepth>
__global__ void __launch_bounds__(kThreads, 2) SkinnyGemmKernel(Params p) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int tile = blockIdx.x, split = blockIdx.y;
  const int64_t row0 = int64_t{tile} * 128 + warp * 16 + g;
  // Rows past n read row n - 1 (valid memory); their outputs are dropped.
  const int64_t ra = row0 < p.n ? row0 : p.n - 1;
  const int64_t rb = row0 + 8 < p.n ? row0 + 8 : p.n - 1;
  const __nv_bfloat16* wa = p.w + ra * p.ldw + 16 * t;
  const __nv_bfloat16* wb = p.w + rb * p.ldw + 16 * t;
  const __nv_bfloat16* xr[kTiles];
  bool xok[kTiles];
#pragma unroll
  for (int i = 0; i < kTiles; ++i) {
    const int64_t j = i * 8 + g;
    xok[i] = j < p.m;
    xr[i] = p.x + (xok[i] ? j : 0) * p.ldx + 16 * t;
  }
  const int c_begin = split * p.chunks_per_split;
  const int c_end = min(p.chunks, c_begin + p.chunks_per_split);

  float acc[kTiles][4];
#pragma unroll
  for (int i = 0; i < kTiles; ++i)
    acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;

  uint4 wq[kDepth][4];
#pragma unroll
  for (int d = 0; d < kDepth; ++d) {
    const int c = c_begin + d;
    if (c < c_end) LoadChunk(wq[d], wa, wb, int64_t{c} * kChunk);
  }
  for (int c0 = c_begin; c0 < c_end; c0 += kDepth) {
#pragma unroll
    for (int d = 0; d < kDepth; ++d) {
      const int c = c0 + d;
      if (c < c_end) {
        const int64_t off = int64_t{c} * kChunk;
        uint4 xb[kTiles][2];
#pragma unroll
        for (int i = 0; i < kTiles; ++i) {
          if (xok[i]) {
            xb[i][0] = __ldg(reinterpret_cast<const uint4*>(xr[i] + off));
            xb[i][1] = __ldg(reinterpret_cast<const uint4*>(xr[i] + off + 8));
          } else {
            xb[i][0] = xb[i][1] = make_uint4(0, 0, 0, 0);
          }
        }
        ChunkMma<kTiles>(wq[d], xb, acc);
        const int next = c + kDepth;
        if (next < c_end) LoadChunk(wq[d], wa, wb, int64_t{next} * kChunk);
      }
    }
  }

  if (p.splits == 1) {
    ForEachOutput<kTiles>(acc, row0, t, p.m, p.n,
                          [&](int64_t r, int64_t j, float v) {
                            p.y[j * p.ldy + r] = __float2bfloat16_rn(v);
                          });
    return;
  }
  float* part = p.ws + int64_t{split} * p.m * p.n;
  ForEachOutput<kTiles>(
      acc, row0, t, p.m, p.n,
      [&](int64_t r, int64_t j, float v) { part[j * p.n + r] = v; });
  __threadfence();  // partials visible device-wide before the count
  __syncthreads();
  __shared__ bool last;
  if (threadIdx.x == 0) {
    last = atomicAdd(&p.counters[tile], 1) == p.splits - 1;
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  const int64_t r_begin = int64_t{tile} * 128;
  const int64_t rows = min(int64_t{128}, p.n - r_begin);
  for (int64_t e = threadIdx.x; e < p.m * rows; e += kThreads) {
    const int64_t j = e / rows, r = r_begin + e % rows;
    float s = 0.0f;
    for (int q = 0; q < p.splits; ++q) {
      s += __ldcg(p.ws + (int64_t{q} * p.m + j) * p.n + r);
    }
    p.y[j * p.ldy + r] = __float2bfloat16_rn(s);
  }
  if (threadIdx.x == 0) p.counters[tile] = 0;
}

using KernelFn = void (*)(Params);

KernelFn KernelFor(int64_t m) {
  const int tiles = static_cast<int>((m + 7) / 8);
  switch (tiles) {
    case 1:
      return SkinnyGemmKernel<1, 4>;
    case 2:
      return SkinnyGemmKernel<2, 4>;
    case 3:
      return SkinnyGemmKernel<3, 3>;
    default:
      return SkinnyGemmKernel<4, 2>;
  }
}

bool Aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

}  // namespace

int SkinnyGemmResidentBlocks(int64_t m) {
  static std::mutex mu;
  static std::vector<std::vector<int>> cache;  // [device][tiles - 1]
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return 0;
  const int variant = static_cast<int>(std::min<int64_t>(4, (m + 7) / 8)) - 1;
  if (variant < 0) return 0;
  std::lock_guard<std::mutex> lock(mu);
  if (static_cast<int>(cache.size()) <= device) cache.resize(device + 1);
  std::vector<int>& c = cache[device];
  if (c.empty()) c.assign(4, 0);
  if (c[variant] == 0) {
    int sms = 0, per_sm = 0;
    if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) !=
            cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(
            &per_sm, KernelFor(m), kThreads, 0) != cudaSuccess) {
      return 0;
    }
    c[variant] = sms * per_sm;
  }
  return c[variant];
}

int SkinnyGemmCuda(const SkinnyGemmArgs& a, void* stream) {
  constexpr int kInvalid = static_cast<int>(cudaErrorInvalidValue);
  // bf16 tensor-core mma: compute capability 8.0 or newer.
  static const int major = [] {
    int device = 0, cc = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&cc, cudaDevAttrComputeCapabilityMajor,
                               device) != cudaSuccess) {
      return 0;
    }
    return cc;
  }();
  if (major < 8) return static_cast<int>(cudaErrorInvalidDevice);
  if (!SkinnyGemmSupported(a.m, a.n, a.k) || a.x == nullptr || a.w == nullptr ||
      a.y == nullptr || a.ldx < a.k || a.ldw < a.k || a.ldy < a.n ||
      a.ldx % 8 != 0 || a.ldw % 8 != 0 || !Aligned16(a.x) || !Aligned16(a.w) ||
      a.splits < 1 ||
      (a.splits > 1 && (a.workspace == nullptr || a.counters == nullptr))) {
    return kInvalid;
  }
  Params p;
  p.x = static_cast<const __nv_bfloat16*>(a.x);
  p.w = static_cast<const __nv_bfloat16*>(a.w);
  p.y = static_cast<__nv_bfloat16*>(a.y);
  p.ws = static_cast<float*>(a.workspace);
  p.counters = a.counters;
  p.m = a.m;
  p.n = a.n;
  p.ldx = a.ldx;
  p.ldw = a.ldw;
  p.ldy = a.ldy;
  p.chunks = static_cast<int>(a.k / kChunk);
  const int splits = std::min(a.splits, p.chunks);
  p.chunks_per_split = (p.chunks + splits - 1) / splits;
  // Splits that would start past the last chunk are dropped (their blocks
  // would count without summing anything).
  p.splits = (p.chunks + p.chunks_per_split - 1) / p.chunks_per_split;
  const dim3 grid(static_cast<unsigned>(SkinnyGemmCounters(a.n)),
                  static_cast<unsigned>(p.splits));
  KernelFor(a.m)<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(p);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace sweepd::kernels
