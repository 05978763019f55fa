// CUDA kernels of the fused LM-head logits pass (contracts: lm_head_pass.h;
// design and numbers: docs/KERNELS.md).
//
// RowPassKernel: one 256-thread block per token row; each thread streams
// 16-byte vectors (8 bf16 or 4 fp32) of the row, kUnroll of them in flight,
// converts to fp32 in registers, applies a fast softcap (ex2.approx +
// rcp.approx, ~1e-6 absolute error on z, used for the statistics only), keeps
// an online (max, sum of exp) pair and counts entries at or above the row's
// rank threshold (an exact compare on the input value: see SoftcapThreshold).
// Then a warp-shuffle + shared-memory reduction; thread 0 writes the row's
// outputs. RowThresholdKernel: one thread per row; reads the target logit once
// (local mode) and computes the exact softcapped target logit and the rank
// threshold with the float64 functions of softcap_math.h, bit-identical to the
// CPU reference. The threshold is parked in count[row] (as float bits) and
// consumed by RowPassKernel, which overwrites it with the count.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/lm_head_pass_launch.h"
#include "kernels/softcap_math.h"

namespace sweepd::kernels::internal {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kUnroll = 4;
constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ float NegInf() { return __int_as_float(0xff800000); }
__device__ __forceinline__ float QuietNaN() {
  return __int_as_float(0x7fc00000);
}

__device__ __forceinline__ float Ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// 1/d for d in [1, 2] on the FMA pipe (the MUFU pipe is the bottleneck: it
// already does the two exponentials per element): linear estimate 24/17 - 8/17
// d (relative error <= 1/17), then three Newton steps (1/17 -> 3.5e-3 -> 1.2e-5
// -> 1.5e-10, below fp32 rounding).
__device__ __forceinline__ float RcpOneToTwo(float d) {
  float r = fmaf(d, -8.0f / 17.0f, 24.0f / 17.0f);
#pragma unroll
  for (int i = 0; i < 3; ++i) r = fmaf(r, fmaf(-d, r, 1.0f), r);
  return r;
}

// c * tanh(x / c) = sign(x) * (2c / (1 + e) - c), e = 2^(-|x| * 2 log2(e) / c).
template <bool kSoftcap>
__device__ __forceinline__ float FastSoftcap(float x, float c, float k2) {
  if constexpr (!kSoftcap) {
    return x;
  } else {
    const float e = Ex2(-fabsf(x) * k2);
    const float r = RcpOneToTwo(1.0f + e);
    return copysignf(fmaf(2.0f * c, r, -c), x);
  }
}

struct ThreadState {
  float m;    // running max of z (log2 domain is not used: z itself)
  float s;    // sum of exp(z - m)
  int count;  // entries with x >= threshold
};

template <int N, bool kStats, bool kCount, bool kSoftcap>
__device__ __forceinline__ void Consume(const float (&x)[N], ThreadState& st,
                                        float threshold, float c, float k2) {
  if constexpr (kCount) {
#pragma unroll
    for (int i = 0; i < N; ++i) st.count += x[i] >= threshold ? 1 : 0;
  }
  if constexpr (kStats) {
    float z[N];
    float bm = st.m;
#pragma unroll
    for (int i = 0; i < N; ++i) {
      z[i] = FastSoftcap<kSoftcap>(x[i], c, k2);
      bm = fmaxf(bm, z[i]);
    }
    if (bm > st.m) {
      st.s *= Ex2((st.m - bm) * kLog2e);  // st.m = -inf gives 0 * 0
      st.m = bm;
    }
    // With st.m = -inf every z is -inf: ex2(-inf) = 0 keeps s at 0.
    const float mb = st.m == NegInf() ? 0.0f : st.m * kLog2e;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int i = 0; i < N; ++i) acc[i & 3] += Ex2(fmaf(z[i], kLog2e, -mb));
    st.s += (acc[0] + acc[1]) + (acc[2] + acc[3]);
  }
}

__device__ __forceinline__ void MergeStats(float& m, float& s, float om,
                                           float os) {
  const float M = fmaxf(m, om);
  if (M == NegInf()) return;  // both empty
  const float a = m == NegInf() ? 0.0f : s * Ex2((m - M) * kLog2e);
  const float b = om == NegInf() ? 0.0f : os * Ex2((om - M) * kLog2e);
  m = M;
  s = a + b;
}

template <typename T>
struct Elem;
template <>
struct Elem<uint16_t> {  // bf16 bits
  static constexpr int kVec = 8;
  __device__ __forceinline__ static float Load(const uint16_t* p) {
    return __uint_as_float(static_cast<uint32_t>(*p) << 16);
  }
  __device__ __forceinline__ static void Unpack(const uint4& v, float* x) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      x[2 * j] = __uint_as_float(w[j] << 16);
      x[2 * j + 1] = __uint_as_float(w[j] & 0xffff0000u);
    }
  }
};
template <>
struct Elem<float> {
  static constexpr int kVec = 4;
  __device__ __forceinline__ static float Load(const float* p) { return *p; }
  __device__ __forceinline__ static void Unpack(const uint4& v, float* x) {
    x[0] = __uint_as_float(v.x);
    x[1] = __uint_as_float(v.y);
    x[2] = __uint_as_float(v.z);
    x[3] = __uint_as_float(v.w);
  }
};

__device__ __forceinline__ int64_t LoadTarget(const void* targets, bool int64,
                                              int64_t row) {
  return int64
             ? static_cast<const int64_t*>(targets)[row]
             : static_cast<int64_t>(static_cast<const int32_t*>(targets)[row]);
}

// Mode of RowPassKernel.
enum : int { kModeStats = 1, kModeCount = 2, kModeBoth = 3 };

template <typename T, int kMode, bool kSoftcap>
__global__ void __launch_bounds__(kThreads)
    RowPassKernel(RowPassParams p, float* row_max, float* row_sumexp,
                  float* target_logit, int32_t* count, float* lse) {
  constexpr bool kStats = (kMode & kModeStats) != 0;
  constexpr bool kCount = (kMode & kModeCount) != 0;
  constexpr int kVec = Elem<T>::kVec;
  const int64_t row = blockIdx.x;
  const int vocab = static_cast<int>(p.vocab_shard);
  const T* rp = static_cast<const T*>(p.logits) + row * p.row_stride;
  const float c = p.softcap;
  const float k2 = kSoftcap ? 2.0f * kLog2e / c : 0.0f;
  float threshold = QuietNaN();
  if constexpr (kCount) threshold = __int_as_float(count[row]);
  if constexpr (kMode == kModeCount) {
    if (threshold != threshold) {  // no target on this row: nothing to count
      if (threadIdx.x == 0) count[row] = 0;
      return;
    }
  }

  ThreadState st{NegInf(), 0.0f, 0};
  // Scalar head up to the first 16-byte boundary, vector body, scalar tail.
  const uintptr_t addr = reinterpret_cast<uintptr_t>(rp);
  int head = static_cast<int>(((16u - (addr & 15u)) & 15u) / sizeof(T));
  if (head > vocab) head = vocab;
  const int nvec = (vocab - head) / kVec;
  const int tail = head + nvec * kVec;
  for (int i = threadIdx.x; i < head; i += kThreads) {
    const float x[1] = {Elem<T>::Load(rp + i)};
    Consume<1, kStats, kCount, kSoftcap>(x, st, threshold, c, k2);
  }
  for (int i = tail + threadIdx.x; i < vocab; i += kThreads) {
    const float x[1] = {Elem<T>::Load(rp + i)};
    Consume<1, kStats, kCount, kSoftcap>(x, st, threshold, c, k2);
  }
  const uint4* vp = reinterpret_cast<const uint4*>(rp + head);
  int i = threadIdx.x;
  for (; i + (kUnroll - 1) * kThreads < nvec; i += kUnroll * kThreads) {
    uint4 raw[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) raw[u] = __ldcs(vp + i + u * kThreads);
    float x[kUnroll * kVec];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) Elem<T>::Unpack(raw[u], x + u * kVec);
    Consume<kUnroll * kVec, kStats, kCount, kSoftcap>(x, st, threshold, c, k2);
  }
  for (; i < nvec; i += kThreads) {
    const uint4 raw = __ldcs(vp + i);
    float x[kVec];
    Elem<T>::Unpack(raw, x);
    Consume<kVec, kStats, kCount, kSoftcap>(x, st, threshold, c, k2);
  }

  // Block reduction.
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    if constexpr (kStats) {
      const float om = __shfl_xor_sync(0xffffffffu, st.m, off);
      const float os = __shfl_xor_sync(0xffffffffu, st.s, off);
      MergeStats(st.m, st.s, om, os);
    }
    if constexpr (kCount)
      st.count += __shfl_xor_sync(0xffffffffu, st.count, off);
  }
  __shared__ float sm_m[kWarps];
  __shared__ float sm_s[kWarps];
  __shared__ int sm_c[kWarps];
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (lane == 0) {
    sm_m[warp] = st.m;
    sm_s[warp] = st.s;
    sm_c[warp] = st.count;
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  float m = sm_m[0];
  float s = sm_s[0];
  int n = sm_c[0];
#pragma unroll
  for (int w = 1; w < kWarps; ++w) {
    if constexpr (kStats) MergeStats(m, s, sm_m[w], sm_s[w]);
    n += sm_c[w];
  }
  if constexpr (kStats) {
    row_max[row] = m;
    row_sumexp[row] = s;
    if (lse != nullptr) lse[row] = m + logf(s);
  }
  if constexpr (kCount) count[row] = n;
  // Pass 1 (stats only): the exact target logit, read once.
  if constexpr (kMode == kModeStats) {
    if (target_logit != nullptr) {
      const int64_t id = LoadTarget(p.targets, p.targets_int64, row);
      const int64_t local = id - p.vocab_offset;
      float zt = NegInf();
      if (id >= 0 && local >= 0 && local < p.vocab_shard) {
        zt = SoftcapExact(Elem<T>::Load(rp + local), c);
      }
      target_logit[row] = zt;
    }
  }
}

// global_target_logit != nullptr: pass-2 mode (threshold of the given logit,
// rows with a negative target id get NaN = count 0). Otherwise local mode:
// exact target logit from this shard (or -inf) into target_logit, and its
// threshold.
template <typename T>
__global__ void RowThresholdKernel(RowPassParams p,
                                   const float* global_target_logit,
                                   float* target_logit, int32_t* count) {
  const int64_t row =
      static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (row >= p.num_rows) return;
  constexpr int kWidth = sizeof(T) == 2 ? 16 : 32;
  const int64_t id = LoadTarget(p.targets, p.targets_int64, row);
  float threshold = QuietNaN();
  if (global_target_logit != nullptr) {
    if (id >= 0)
      threshold =
          SoftcapThresholdImpl(global_target_logit[row], p.softcap, kWidth);
  } else {
    const int64_t local = id - p.vocab_offset;
    float zt = NegInf();
    if (id >= 0 && local >= 0 && local < p.vocab_shard) {
      const T* rp = static_cast<const T*>(p.logits) + row * p.row_stride;
      zt = SoftcapExact(Elem<T>::Load(rp + local), p.softcap);
      threshold = SoftcapThresholdImpl(zt, p.softcap, kWidth);
    }
    target_logit[row] = zt;
  }
  count[row] = __float_as_int(threshold);
}

template <typename T, int kMode>
int LaunchRowPassTyped(const RowPassParams& p, float* row_max,
                       float* row_sumexp, float* target_logit, int32_t* count,
                       float* lse, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(p.num_rows));
  if (p.softcap > 0.0f) {
    RowPassKernel<T, kMode, true><<<grid, kThreads, 0, stream>>>(
        p, row_max, row_sumexp, target_logit, count, lse);
  } else {
    RowPassKernel<T, kMode, false><<<grid, kThreads, 0, stream>>>(
        p, row_max, row_sumexp, target_logit, count, lse);
  }
  return static_cast<int>(cudaGetLastError());
}

template <int kMode>
int LaunchRowPass(const RowPassParams& p, float* row_max, float* row_sumexp,
                  float* target_logit, int32_t* count, float* lse,
                  cudaStream_t stream) {
  if (p.num_rows == 0) return static_cast<int>(cudaSuccess);
  return p.bf16 ? LaunchRowPassTyped<uint16_t, kMode>(
                      p, row_max, row_sumexp, target_logit, count, lse, stream)
                : LaunchRowPassTyped<float, kMode>(
                      p, row_max, row_sumexp, target_logit, count, lse, stream);
}

int LaunchThreshold(const RowPassParams& p, const float* global_target_logit,
                    float* target_logit, int32_t* count, cudaStream_t stream) {
  if (p.num_rows == 0) return static_cast<int>(cudaSuccess);
  constexpr int kBlock =
      64;  // many small blocks: the per-thread work is a serial search
  const dim3 grid(static_cast<unsigned>((p.num_rows + kBlock - 1) / kBlock));
  if (p.bf16) {
    RowThresholdKernel<uint16_t><<<grid, kBlock, 0, stream>>>(
        p, global_target_logit, target_logit, count);
  } else {
    RowThresholdKernel<float><<<grid, kBlock, 0, stream>>>(
        p, global_target_logit, target_logit, count);
  }
  return static_cast<int>(cudaGetLastError());
}

__global__ void RescaleSumExpKernel(const float* local_max,
                                    const float* local_sumexp,
                                    const float* global_max, int64_t n,
                                    float* out) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n) return;
  const float m = local_max[t];
  out[t] = m == NegInf() ? 0.0f : local_sumexp[t] * expf(m - global_max[t]);
}

__global__ void LseFromMaxSumKernel(const float* global_max,
                                    const float* global_sumexp, int64_t n,
                                    float* lse) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n) return;
  lse[t] = global_max[t] + logf(global_sumexp[t]);
}

__global__ void CombineShardStatsKernel(const float* shard_max,
                                        const float* shard_sumexp,
                                        int num_shards, int64_t n, float* lse) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n) return;
  float m = NegInf();
  for (int s = 0; s < num_shards; ++s) m = fmaxf(m, shard_max[s * n + t]);
  float sum = 0.0f;
  for (int s = 0; s < num_shards; ++s) {
    const float ms = shard_max[s * n + t];
    if (ms != NegInf()) sum += shard_sumexp[s * n + t] * expf(ms - m);
  }
  lse[t] = m + logf(sum);
}

unsigned Blocks(int64_t n, int block) {
  return static_cast<unsigned>((n + block - 1) / block);
}

}  // namespace

int LaunchShardStats(const RowPassParams& p, float* row_max, float* row_sumexp,
                     float* target_logit, CUstream_st* stream) {
  return LaunchRowPass<kModeStats>(p, row_max, row_sumexp, target_logit,
                                   nullptr, nullptr, stream);
}

int LaunchShardCountAbove(const RowPassParams& p, const float* target_logit,
                          int32_t* count, CUstream_st* stream) {
  const int err = LaunchThreshold(p, target_logit, nullptr, count, stream);
  if (err != 0) return err;
  return LaunchRowPass<kModeCount>(p, nullptr, nullptr, nullptr, count, nullptr,
                                   stream);
}

int LaunchShardStatsAndRank(const RowPassParams& p, float* row_max,
                            float* row_sumexp, float* target_logit,
                            int32_t* count, float* lse, CUstream_st* stream) {
  const int err = LaunchThreshold(p, nullptr, target_logit, count, stream);
  if (err != 0) return err;
  return LaunchRowPass<kModeBoth>(p, row_max, row_sumexp, nullptr, count, lse,
                                  stream);
}

int LaunchRescaleSumExp(const float* local_max, const float* local_sumexp,
                        const float* global_max, int64_t num_rows, float* out,
                        CUstream_st* stream) {
  if (num_rows == 0) return 0;
  RescaleSumExpKernel<<<Blocks(num_rows, 256), 256, 0, stream>>>(
      local_max, local_sumexp, global_max, num_rows, out);
  return static_cast<int>(cudaGetLastError());
}

int LaunchLseFromMaxSum(const float* global_max, const float* global_sumexp,
                        int64_t num_rows, float* lse, CUstream_st* stream) {
  if (num_rows == 0) return 0;
  LseFromMaxSumKernel<<<Blocks(num_rows, 256), 256, 0, stream>>>(
      global_max, global_sumexp, num_rows, lse);
  return static_cast<int>(cudaGetLastError());
}

int LaunchCombineShardStats(const float* shard_max, const float* shard_sumexp,
                            int num_shards, int64_t num_rows, float* lse,
                            CUstream_st* stream) {
  if (num_rows == 0) return 0;
  CombineShardStatsKernel<<<Blocks(num_rows, 256), 256, 0, stream>>>(
      shard_max, shard_sumexp, num_shards, num_rows, lse);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace sweepd::kernels::internal
