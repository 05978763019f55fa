// Kernels of kernels/causal_softmax.h (moved from worker/engine/cuda_ops.cu).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/causal_softmax.h"
#include "kernels/device_util.cuh"

namespace sweepd::kernels {
namespace {

constexpr int kSoftmaxThreads = 128;

// Combines two online-softmax partial states (max m, Σ exp(x − m) s).
__device__ void MergeMaxSum(float& m, float& s, float m2, float s2) {
  if (m2 == -INFINITY) return;
  if (m == -INFINITY) {
    m = m2;
    s = s2;
    return;
  }
  if (m2 > m) {
    s = s * expf(m - m2) + s2;
    m = m2;
  } else {
    s = s + s2 * expf(m2 - m);
  }
}

template <typename T>
struct SoftmaxParams {
  T* scores;
  int64_t rows;
  int64_t keys;
  int group;
  int64_t q_start;
  int64_t key_start;
  int64_t window;
  float scale;
};

// One block per row; kVec: 16-byte accesses (keys a multiple of the vector
// width and a 16-byte aligned base), else scalar. Two reads of the row (the
// second from L2) and one write.
template <typename T, bool kVec>
__global__ void CausalSoftmaxKernel(SoftmaxParams<T> p) {
  __shared__ float red_m[32];
  __shared__ float red_s[32];
  const int64_t row = blockIdx.x;  // over batches * rows
  T* x = p.scores + row * p.keys;
  const int64_t pos = p.q_start + (row % p.rows) / p.group;
  // Allowed absolute key positions [lo, hi] -> row columns [c0, c1).
  int64_t lo = p.window > 0 ? pos - p.window + 1 : 0;
  if (lo < 0) lo = 0;
  int64_t c0 = lo - p.key_start;
  int64_t c1 = pos - p.key_start + 1;
  if (c0 < 0) c0 = 0;
  if (c1 > p.keys) c1 = p.keys;
  constexpr int kN = kVec ? Vec16<T>::kN : 1;
  const int64_t nvec = p.keys / kN;
  float m = -INFINITY, s = 0.0f;
  for (int64_t i = threadIdx.x; i < nvec; i += blockDim.x) {
    const int64_t base = i * kN;
    if (base + kN <= c0 || base >= c1) continue;
    float v[kN];
    if constexpr (kVec) {
      Vec16<T>::Load(x + base, v);
    } else {
      v[0] = Io<T>::Load(x + base);
    }
#pragma unroll
    for (int k = 0; k < kN; ++k) {
      const int64_t j = base + k;
      if (j < c0 || j >= c1) continue;
      const float f = v[k] * p.scale;
      if (f > m) {
        s = s * expf(m - f) + 1.0f;
        m = f;
      } else {
        s += expf(f - m);
      }
    }
  }
  // Block reduction of (m, s).
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
    const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
    MergeMaxSum(m, s, m2, s2);
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) {
    red_m[warp] = m;
    red_s[warp] = s;
  }
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x >> 5;
    m = lane < warps ? red_m[lane] : -INFINITY;
    s = lane < warps ? red_s[lane] : 0.0f;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
      const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
      MergeMaxSum(m, s, m2, s2);
    }
    if (lane == 0) {
      red_m[0] = m;
      red_s[0] = s;
    }
  }
  __syncthreads();
  const float row_max = red_m[0];
  const float inv = 1.0f / red_s[0];
  for (int64_t i = threadIdx.x; i < nvec; i += blockDim.x) {
    const int64_t base = i * kN;
    float v[kN];
    const bool any = !(base + kN <= c0 || base >= c1);
    if (any) {
      if constexpr (kVec) {
        Vec16<T>::Load(x + base, v);
      } else {
        v[0] = Io<T>::Load(x + base);
      }
    }
#pragma unroll
    for (int k = 0; k < kN; ++k) {
      const int64_t j = base + k;
      v[k] = (any && j >= c0 && j < c1) ? expf(v[k] * p.scale - row_max) * inv
                                        : 0.0f;
    }
    if constexpr (kVec) {
      Vec16<T>::Store(x + base, v);
    } else {
      Io<T>::Store(x + base, v[0]);
    }
  }
}

// Single-pass variant for rows that fit the block's registers (keys ≤
// kSoftmaxRegThreads · kVecs · Vec16<T>::kN, 16-byte aligned rows): each
// thread loads its kVecs vectors of the allowed range once, the block reduces
// the row max, then Σ exp(x − max) over the values held in registers, and
// writes p = exp(x − max) · (1 / Σ) (0 outside the allowed range). One read
// and one write of the row; one exp per allowed element.
constexpr int kSoftmaxRegThreads = 256;
constexpr int kSoftmaxRegVecs = 2;

__device__ float BlockReduceMax(float v, float* red) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) red[warp] = v;
  __syncthreads();
  const int warps = blockDim.x >> 5;
  v = lane < warps ? red[lane] : -INFINITY;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  }
  __syncthreads();  // red is reused by the next reduction
  return v;
}

__device__ float BlockReduceSum(float v, float* red) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) red[warp] = v;
  __syncthreads();
  const int warps = blockDim.x >> 5;
  v = lane < warps ? red[lane] : 0.0f;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <typename T>
__global__ void __launch_bounds__(kSoftmaxRegThreads)
    CausalSoftmaxRegKernel(SoftmaxParams<T> p) {
  __shared__ float red[32];
  constexpr int kN = Vec16<T>::kN;
  const int64_t row = blockIdx.x;  // over batches * rows
  T* x = p.scores + row * p.keys;
  const int64_t pos = p.q_start + (row % p.rows) / p.group;
  int64_t lo = p.window > 0 ? pos - p.window + 1 : 0;
  if (lo < 0) lo = 0;
  int64_t c0 = lo - p.key_start;
  int64_t c1 = pos - p.key_start + 1;
  if (c0 < 0) c0 = 0;
  if (c1 > p.keys) c1 = p.keys;
  const int64_t nvec = p.keys / kN;
  float v[kSoftmaxRegVecs][kN];
  float m = -INFINITY;
#pragma unroll
  for (int u = 0; u < kSoftmaxRegVecs; ++u) {
    const int64_t i = threadIdx.x + static_cast<int64_t>(u) * blockDim.x;
    const int64_t base = i * kN;
    const bool any = i < nvec && !(base + kN <= c0 || base >= c1);
    if (any) Vec16<T>::Load(x + base, v[u]);
#pragma unroll
    for (int k = 0; k < kN; ++k) {
      const int64_t j = base + k;
      const bool ok = any && j >= c0 && j < c1;
      v[u][k] = ok ? v[u][k] * p.scale : -INFINITY;
      m = fmaxf(m, v[u][k]);
    }
  }
  const float row_max = BlockReduceMax(m, red);
  float s = 0.0f;
#pragma unroll
  for (int u = 0; u < kSoftmaxRegVecs; ++u) {
#pragma unroll
    for (int k = 0; k < kN; ++k) {
      v[u][k] = v[u][k] == -INFINITY ? 0.0f : expf(v[u][k] - row_max);
      s += v[u][k];
    }
  }
  const float inv = 1.0f / BlockReduceSum(s, red);
#pragma unroll
  for (int u = 0; u < kSoftmaxRegVecs; ++u) {
    const int64_t i = threadIdx.x + static_cast<int64_t>(u) * blockDim.x;
    if (i >= nvec) continue;
#pragma unroll
    for (int k = 0; k < kN; ++k) v[u][k] *= inv;
    Vec16<T>::Store(x + i * kN, v[u]);
  }
}

// Warp-per-row variant for rows of up to kSoftmaxWarpMaxKeys keys: each warp
// owns one row, each lane holds kIters · kW values of it in registers (vector
// i = u · 32 + lane, so a warp's accesses are contiguous), the row max and
// Σ exp(x − max) are warp shuffles (no shared memory, no block barrier), and
// a block of kSoftmaxWarpThreads threads serves kSoftmaxWarpThreads / 32
// rows. The same math as CausalSoftmaxRegKernel: x = score · scale over the
// allowed keys, p = exp(x − max) · (1 / Σ), masked keys stored as 0 without
// being loaded or exp'd. kVec: 16-byte accesses (keys a multiple of the
// vector width, 16-byte aligned base), else one element per access.
constexpr int kSoftmaxWarpThreads = 256;
constexpr int kSoftmaxWarpRows = kSoftmaxWarpThreads / 32;
constexpr int kSoftmaxWarpMaxPerLane = 64;
constexpr int kSoftmaxWarpMaxKeys = 32 * kSoftmaxWarpMaxPerLane;

template <typename T, bool kVec, int kIters>
__global__ void __launch_bounds__(kSoftmaxWarpThreads)
    CausalSoftmaxWarpKernel(SoftmaxParams<T> p, int64_t total_rows) {
  constexpr int kW = kVec ? Vec16<T>::kN : 1;
  static_assert(kIters * kW <= kSoftmaxWarpMaxPerLane, "row too long");
  const int lane = threadIdx.x & 31;
  const int64_t row =
      static_cast<int64_t>(blockIdx.x) * kSoftmaxWarpRows + (threadIdx.x >> 5);
  if (row >= total_rows) return;  // uniform across the warp
  T* x = p.scores + row * p.keys;
  const int64_t pos = p.q_start + (row % p.rows) / p.group;
  int64_t lo = p.window > 0 ? pos - p.window + 1 : 0;
  if (lo < 0) lo = 0;
  int64_t c0l = lo - p.key_start;
  int64_t c1l = pos - p.key_start + 1;
  if (c0l < 0) c0l = 0;
  if (c1l > p.keys) c1l = p.keys;
  const int c0 = static_cast<int>(c0l), c1 = static_cast<int>(c1l);
  const int keys = static_cast<int>(p.keys);
  float v[kIters][kW];
  float m = -INFINITY;
#pragma unroll
  for (int u = 0; u < kIters; ++u) {
    const int base = (u * 32 + lane) * kW;
    const bool any = base < keys && base + kW > c0 && base < c1;
    if (any) {
      if constexpr (kVec) {
        Vec16<T>::Load(x + base, v[u]);
      } else {
        v[u][0] = Io<T>::Load(x + base);
      }
    }
#pragma unroll
    for (int k = 0; k < kW; ++k) {
      const int j = base + k;
      const bool ok = any && j >= c0 && j < c1;
      v[u][k] = ok ? v[u][k] * p.scale : -INFINITY;
      m = fmaxf(m, v[u][k]);
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  }
  float s = 0.0f;
#pragma unroll
  for (int u = 0; u < kIters; ++u) {
#pragma unroll
    for (int k = 0; k < kW; ++k) {
      v[u][k] = v[u][k] == -INFINITY ? 0.0f : expf(v[u][k] - m);
      s += v[u][k];
    }
  }
  const float inv = 1.0f / WarpSum(s);
#pragma unroll
  for (int u = 0; u < kIters; ++u) {
    const int base = (u * 32 + lane) * kW;
    if (base >= keys) continue;
#pragma unroll
    for (int k = 0; k < kW; ++k) v[u][k] *= inv;
    if constexpr (kVec) {
      Vec16<T>::Store(x + base, v[u]);
    } else {
      Io<T>::Store(x + base, v[u][0]);
    }
  }
}

// Launches the warp kernel with the fewest per-lane iterations that cover
// `iters` (a power of two from 1 up to kSoftmaxWarpMaxPerLane / kW).
template <typename T, bool kVec, int kIters>
void LaunchCausalSoftmaxWarp(const SoftmaxParams<T>& p, int64_t total_rows,
                             int iters, cudaStream_t stream) {
  constexpr int kW = kVec ? Vec16<T>::kN : 1;
  if constexpr (kIters * kW < kSoftmaxWarpMaxPerLane) {
    if (iters > kIters) {
      LaunchCausalSoftmaxWarp<T, kVec, kIters * 2>(p, total_rows, iters,
                                                   stream);
      return;
    }
  }
  const unsigned grid = static_cast<unsigned>(
      (total_rows + kSoftmaxWarpRows - 1) / kSoftmaxWarpRows);
  CausalSoftmaxWarpKernel<T, kVec, kIters>
      <<<grid, kSoftmaxWarpThreads, 0, stream>>>(p, total_rows);
}

template <typename T>
int LaunchCausalSoftmax(const CausalSoftmaxArgs& a, cudaStream_t stream) {
  SoftmaxParams<T> p;
  p.scores = static_cast<T*>(a.scores);
  p.rows = a.rows;
  p.keys = a.keys;
  p.group = a.group;
  p.q_start = a.q_start;
  p.key_start = a.key_start;
  p.window = a.window;
  p.scale = a.scale;
  const unsigned grid = static_cast<unsigned>(a.batches * a.rows);
  const bool vec = a.keys % Vec16<T>::kN == 0 && Aligned16(a.scores);
  if (a.keys <= kSoftmaxWarpMaxKeys) {
    const int64_t total = a.batches * a.rows;
    const int width = vec ? Vec16<T>::kN : 1;
    const int iters =
        static_cast<int>((a.keys + 32 * width - 1) / (32 * width));
    if (vec) {
      LaunchCausalSoftmaxWarp<T, true, 1>(p, total, iters, stream);
    } else {
      LaunchCausalSoftmaxWarp<T, false, 1>(p, total, iters, stream);
    }
  } else if (vec && a.keys <= int64_t{kSoftmaxRegThreads} * kSoftmaxRegVecs *
                                  Vec16<T>::kN) {
    CausalSoftmaxRegKernel<T><<<grid, kSoftmaxRegThreads, 0, stream>>>(p);
  } else if (vec) {
    CausalSoftmaxKernel<T, true><<<grid, kSoftmaxThreads, 0, stream>>>(p);
  } else {
    CausalSoftmaxKernel<T, false><<<grid, kSoftmaxThreads, 0, stream>>>(p);
  }
  return LastError();
}

}  // namespace

int CausalSoftmaxCuda(const CausalSoftmaxArgs& a, void* stream) {
  if (a.scores == nullptr || a.batches < 0 || a.rows < 0 || a.keys < 1 ||
      a.group < 1 || a.q_start < 0 || a.key_start < 0 || a.window < 0 ||
      a.batches * a.rows > 0x7fffffff) {
    return kInvalid;
  }
  // Every row's own key position lies in the chunk's key range, so every row
  // allows at least one key.
  if (a.q_start < a.key_start ||
      a.q_start + (a.rows - 1) / a.group >= a.key_start + a.keys) {
    return kInvalid;
  }
  if (a.batches * a.rows == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  return a.dtype == Dtype::kBFloat16 ? LaunchCausalSoftmax<__nv_bfloat16>(a, s)
                                     : LaunchCausalSoftmax<float>(a, s);
}

}  // namespace sweepd::kernels
