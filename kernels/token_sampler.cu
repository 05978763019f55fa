// Kernels of kernels/token_sampler.h, three launches per step:
//  1. ZKernel (block of 512 per row): z = softcap(logits) into the workspace
//     (zb before edits) and the row's log-sum-exp of z (double).
//  2. EditKernel (thread per edit slot, grid sized by edit_capacity): reads
//     *edit_count on the device, bans by atomicExch(-inf), biases by
//     atomicAdd.
//  3. SampleKernel (block per row, 512 threads): greedy argmax, or the
//     sampled path: max of zt; top-k and top-p by a 4-pass 8-bit radix select
//     on the order-preserving key of zt with warp-aggregated shared histograms
//     (counts, or fixed-point masses for top-p: integer sums, deterministic);
//     then the inverse CDF: each thread owns a contiguous span, double span
//     sums, a block exclusive scan, the owning thread walks its span. top-k /
//     top-p passes run only for rows that use them (decided on the device).
// Every reduction has a fixed order, so a replay gives the same bits. Each
// pass keeps kUnroll independent loads in flight per thread (one block per
// row would otherwise wait on memory latency).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "kernels/device_util.cuh"
#include "kernels/softcap_math.h"
#include "kernels/token_sampler.h"

namespace sweepd::kernels {
namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr unsigned kFull = 0xffffffffu;
constexpr int kUnroll = 8;

// Calls f(v, a[v]) for this thread's v = threadIdx.x + i · kThreads in
// increasing order, kUnroll loads at a time; v >= n is passed too (with 0) so
// that every thread runs the same iterations (f may use warp collectives).
template <typename F>
__device__ __forceinline__ void ForStrided(const float* a, int n, F&& f) {
  for (int base = 0; base < n; base += kThreads * kUnroll) {
    float x[kUnroll];
#pragma unroll
    for (int j = 0; j < kUnroll; ++j) {
      const int v = base + j * kThreads + static_cast<int>(threadIdx.x);
      x[j] = v < n ? a[v] : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < kUnroll; ++j) {
      f(base + j * kThreads + static_cast<int>(threadIdx.x), x[j]);
    }
  }
}

// Calls f(v, a[v]) for v in [lo, hi) in increasing order, kUnroll loads at a
// time, until f returns true.
template <typename F>
__device__ __forceinline__ void ForSpan(const float* a, int lo, int hi, F&& f) {
  for (int base = lo; base < hi; base += kUnroll) {
    float x[kUnroll];
#pragma unroll
    for (int j = 0; j < kUnroll; ++j) x[j] = base + j < hi ? a[base + j] : 0.0f;
#pragma unroll
    for (int j = 0; j < kUnroll; ++j) {
      if (base + j < hi && f(base + j, x[j])) return;
    }
  }
}

__device__ __forceinline__ float NegInf() { return __int_as_float(0xff800000); }

template <typename T>
__device__ float SoftcapZ(float x, float cap, bool reciprocal) {
  if (!(cap > 0.0f)) return x;
  const float a =
      Io<T>::Round(reciprocal ? __fmul_rn(x, 1.0f / cap) : __fdiv_rn(x, cap));
  const float b = Io<T>::Round(tanhf(a));
  return Io<T>::Round(__fmul_rn(b, cap));
}

// -0 counts as +0 (f + 0 is +0 for both zeros).
__device__ __forceinline__ uint32_t Key(float f) {
  return internal::OrderedKey(__float_as_uint(__fadd_rn(f, 0.0f)), 32);
}

__device__ __forceinline__ unsigned long long Mass(float e) {
  return __float2ull_rn(e * 4294967296.0f);
}

// (max, sum of exp(x - max)) pairs.
__device__ void MergeLse(float& m, double& s, float m2, double s2) {
  const float mm = fmaxf(m, m2);
  if (mm == NegInf()) return;
  s = s * static_cast<double>(expf(m - mm)) +
      s2 * static_cast<double>(expf(m2 - mm));
  m = mm;
}

// Block reductions: every thread gets the result; the order is fixed (lane 0
// of each warp's butterfly, then warps 0..31 in order).
__device__ float BlockMax(float v, float* red) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
  __syncthreads();
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  v = red[0];
  for (int w = 1; w < kWarps; ++w) v = fmaxf(v, red[w]);
  return v;
}

__device__ int BlockMaxInt(int v, int* red) {
  for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(kFull, v, o));
  __syncthreads();
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  v = red[0];
  for (int w = 1; w < kWarps; ++w) v = max(v, red[w]);
  return v;
}

__device__ int BlockMinInt(int v, int* red) {
  for (int o = 16; o > 0; o >>= 1) v = min(v, __shfl_xor_sync(kFull, v, o));
  __syncthreads();
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  v = red[0];
  for (int w = 1; w < kWarps; ++w) v = min(v, red[w]);
  return v;
}

// Larger value wins; equal values: the smaller id.
__device__ void ArgMaxStep(float& v, int& id, float v2, int id2) {
  if (v2 > v || (v2 == v && id2 < id)) {
    v = v2;
    id = id2;
  }
}

__device__ int BlockArgMax(float v, int id, float* red, int* red_id) {
  for (int o = 16; o > 0; o >>= 1) {
    ArgMaxStep(v, id, __shfl_xor_sync(kFull, v, o),
               __shfl_xor_sync(kFull, id, o));
  }
  __syncthreads();
  if ((threadIdx.x & 31) == 0) {
    red[threadIdx.x >> 5] = v;
    red_id[threadIdx.x >> 5] = id;
  }
  __syncthreads();
  v = red[0];
  id = red_id[0];
  for (int w = 1; w < kWarps; ++w) ArgMaxStep(v, id, red[w], red_id[w]);
  return v == NegInf() ? -1 : id;
}

// Exclusive prefix of v over the threads in order; *total gets the sum.
__device__ double BlockExclusiveScan(double v, double* red, double* total) {
  const int lane = threadIdx.x & 31;
  double x = v;
  for (int o = 1; o < 32; o <<= 1) {
    const double y = __shfl_up_sync(kFull, x, o);
    if (lane >= o) x += y;
  }
  double excl = __shfl_up_sync(kFull, x, 1);
  if (lane == 0) excl = 0;
  __syncthreads();
  if (lane == 31) red[threadIdx.x >> 5] = x;
  __syncthreads();
  double before = 0, all = 0;
  const int warp = threadIdx.x >> 5;
  for (int w = 0; w < kWarps; ++w) {
    if (w == warp) before = all;
    all += red[w];
  }
  *total = all;
  return before + excl;
}

// ----------------------------------------------------------------------------

template <typename T>
struct ZParams {
  const T* logits;
  int64_t row_stride;
  int vocab;
  float softcap;
  bool reciprocal;
  float* zb;    // [rows, vocab]
  double* lse;  // [rows]
};

template <typename T>
__global__ void __launch_bounds__(kThreads) ZKernel(ZParams<T> p) {
  __shared__ float red_m[kWarps];
  __shared__ double red_s[kWarps];
  const int64_t r = blockIdx.x;
  const T* x = p.logits + r * p.row_stride;
  float* zb = p.zb + r * p.vocab;
  float m = NegInf();
  double s = 0.0;
  const int n = p.vocab;
  for (int base = 0; base < n; base += kThreads * kUnroll) {
    float xs[kUnroll];
#pragma unroll
    for (int j = 0; j < kUnroll; ++j) {
      const int v = base + j * kThreads + static_cast<int>(threadIdx.x);
      xs[j] = v < n ? Io<T>::Load(x + v) : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < kUnroll; ++j) {
      const int v = base + j * kThreads + static_cast<int>(threadIdx.x);
      if (v >= n) continue;
      const float z = SoftcapZ<T>(xs[j], p.softcap, p.reciprocal);
      zb[v] = z;
      if (z > NegInf()) {
        if (z > m) {
          s = s * static_cast<double>(expf(m - z)) + 1.0;
          m = z;
        } else {
          s += static_cast<double>(expf(z - m));
        }
      }
    }
  }
  for (int o = 16; o > 0; o >>= 1) {
    MergeLse(m, s, __shfl_xor_sync(kFull, m, o), __shfl_xor_sync(kFull, s, o));
  }
  if ((threadIdx.x & 31) == 0) {
    red_m[threadIdx.x >> 5] = m;
    red_s[threadIdx.x >> 5] = s;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    m = red_m[0];
    s = red_s[0];
    for (int w = 1; w < kWarps; ++w) MergeLse(m, s, red_m[w], red_s[w]);
    p.lse[r] = m == NegInf() ? static_cast<double>(m)
                             : static_cast<double>(m) + log(s);
  }
}

struct EditParams {
  const int32_t* row;
  const int32_t* token;
  const float* value;
  const int32_t* count;
  int64_t capacity;
  int rows;
  int vocab;
  float* zb;
};

__global__ void EditKernel(EditParams p) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.capacity || i >= *p.count) return;
  const int r = p.row[i];
  const int t = p.token[i];
  if (r < 0 || r >= p.rows || t < 0 || t >= p.vocab) return;
  float* z = p.zb + static_cast<int64_t>(r) * p.vocab + t;
  const float v = p.value[i];
  if (v == NegInf()) {
    atomicExch(z, v);
  } else {
    atomicAdd(z, v);
  }
}

// ----------------------------------------------------------------------------

template <typename T>
struct SampleParams {
  const T* logits;
  int64_t row_stride;
  int vocab;
  float softcap;
  bool reciprocal;
  const float* zb;
  const double* lse;
  const float* temperature;
  const int32_t* top_k;
  const float* top_p;
  const float* min_p;
  const double* uniform;
  int64_t* token;
  float* logprob;
};

struct Shared {
  unsigned long long hist[256];
  double red_d[kWarps];
  float red_f[kWarps];
  int red_i[kWarps];
  int sel_bin;
  unsigned long long sel_above;
};

// The kept weight of one element: e = exp(zt - m) when key(zt) >= floor and
// e >= min_p, else 0.
__device__ __forceinline__ float KeptE(float zb, float t, float m,
                                       uint32_t floor, float min_p) {
  const float zt = zb / t;
  if (Key(zt) < floor) return 0.0f;
  const float e = expf(zt - m);
  return e < min_p ? 0.0f : e;
}

// The largest key s (among keys >= floor) whose upper weight {key >= s}
// reaches `need`; weight 1 per element (by_mass false: need = k) or Mass(e)
// (by_mass: need = fraction · the total mass, which the first pass's
// histogram gives). Four passes of 8 bits, most significant first.
__device__ uint32_t RadixSelect(const float* zb, int vocab, float t, float m,
                                uint32_t floor, bool by_mass,
                                double k_or_fraction, Shared& sh) {
  double need = k_or_fraction;  // thread 0's
  const int lane = threadIdx.x & 31;
  uint32_t prefix = 0, mask = 0;
  unsigned long long above = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = threadIdx.x; i < 256; i += kThreads) sh.hist[i] = 0;
    __syncthreads();
    ForStrided(zb, vocab, [&](int v, float zbv) {
      int bin = -1;
      unsigned long long w = 0;
      if (v < vocab) {
        const float zt = zbv / t;
        const uint32_t key = Key(zt);
        if (key >= floor && (key & mask) == prefix) {
          w = by_mass ? Mass(expf(zt - m)) : 1ull;
          if (w > 0) bin = static_cast<int>((key >> shift) & 255u);
        }
      }
      // Warp-aggregated: one shared atomic per distinct bin of the warp.
      unsigned pending = __ballot_sync(kFull, bin >= 0);
      while (pending != 0) {
        const int leader = __ffs(pending) - 1;
        const int b = __shfl_sync(kFull, bin, leader);
        unsigned long long sum = bin == b ? w : 0ull;
        for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(kFull, sum, o);
        if (lane == leader) atomicAdd(&sh.hist[b], sum);
        pending &= ~__ballot_sync(kFull, bin == b);
      }
    });
    __syncthreads();
    if (threadIdx.x == 0) {
      if (by_mass && shift == 24) {
        unsigned long long total = 0;
        for (int b = 0; b < 256; ++b) total += sh.hist[b];
        need = k_or_fraction * static_cast<double>(total);
      }
      unsigned long long cum = above;
      int b = 255;
      for (; b > 0; --b) {
        if (sh.hist[b] > 0 && static_cast<double>(cum + sh.hist[b]) >= need) {
          break;
        }
        cum += sh.hist[b];
      }
      sh.sel_bin = b;
      sh.sel_above = cum;
    }
    __syncthreads();
    prefix |= static_cast<uint32_t>(sh.sel_bin) << shift;
    mask |= 255u << shift;
    above = sh.sel_above;
    __syncthreads();
  }
  return prefix;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) SampleKernel(SampleParams<T> p) {
  __shared__ Shared sh;
  const int64_t r = blockIdx.x;
  const int V = p.vocab;
  const float* zb = p.zb + r * V;
  const float t = p.temperature[r];
  int token = -1;
  if (!(t > 0.0f)) {
    float best = NegInf();
    int id = INT_MAX;
    ForStrided(zb, V, [&](int v, float x) {
      if (v < V && x > best) {
        best = x;
        id = v;
      }
    });
    token = BlockArgMax(best, id, sh.red_f, sh.red_i);
  } else {
    float m = NegInf();
    ForStrided(zb, V, [&](int v, float x) {
      if (v < V) m = fmaxf(m, x / t);
    });
    m = BlockMax(m, sh.red_f);
    if (m > NegInf()) {
      uint32_t floor = 0;
      const int k = p.top_k[r];
      if (k > 0 && k < V) {
        floor = RadixSelect(zb, V, t, m, 0u, false, static_cast<double>(k), sh);
      }
      const float top_p = p.top_p[r];
      if (top_p < 1.0f) {
        floor = RadixSelect(zb, V, t, m, floor, true, top_p, sh);
      }
      // Inverse CDF over contiguous spans.
      const float min_p = p.min_p[r];
      const int span = (V + kThreads - 1) / kThreads;
      const int lo = min(V, static_cast<int>(threadIdx.x) * span);
      const int hi = min(V, lo + span);
      double sum = 0.0;
      int first = -1, last = -1;
      ForSpan(zb, lo, hi, [&](int v, float x) {
        const float e = KeptE(x, t, m, floor, min_p);
        if (e > 0.0f) {
          sum += e;
          if (first < 0) first = v;
          last = v;
        }
        return false;
      });
      const int last_all = BlockMaxInt(last, sh.red_i);
      if (last_all >= 0) {
        double total = 0.0;
        const double before = BlockExclusiveScan(sum, sh.red_d, &total);
        const double target = p.uniform[r] * total;
        int cand = INT_MAX;
        if (first >= 0) {
          if (before > target) {
            cand = first;
          } else if (before + sum > target) {
            double acc = before;
            ForSpan(zb, first, last + 1, [&](int v, float x) {
              const float e = KeptE(x, t, m, floor, min_p);
              if (e <= 0.0f) return false;
              acc += e;
              if (acc > target) cand = v;
              return acc > target;
            });
          }
        }
        cand = BlockMinInt(cand, sh.red_i);
        token = cand == INT_MAX ? last_all : cand;
      }
    }
  }
  if (threadIdx.x == 0) {
    p.token[r] = token;
    if (token >= 0) {
      const float z =
          SoftcapZ<T>(Io<T>::Load(p.logits + r * p.row_stride + token),
                      p.softcap, p.reciprocal);
      p.logprob[r] = static_cast<float>(static_cast<double>(z) - p.lse[r]);
    } else {
      p.logprob[r] = NegInf();
    }
  }
}

template <typename T>
int Launch(const TokenSamplerArgs& a, cudaStream_t s) {
  const int rows = static_cast<int>(a.rows);
  const int V = static_cast<int>(a.vocab);
  float* zb = static_cast<float*>(a.workspace);
  double* lse = reinterpret_cast<double*>(
      static_cast<char*>(a.workspace) +
      (TokenSamplerWorkspaceBytes(a.rows, a.vocab) - a.rows * 8));
  const T* logits = static_cast<const T*>(a.logits);
  ZKernel<T><<<rows, kThreads, 0, s>>>(ZParams<T>{
      logits, a.row_stride, V, a.softcap, a.softcap_reciprocal, zb, lse});
  if (a.edit_capacity > 0) {
    const int threads = 256;
    const int64_t blocks = (a.edit_capacity + threads - 1) / threads;
    EditKernel<<<static_cast<unsigned>(blocks), threads, 0, s>>>(
        EditParams{a.edit_row, a.edit_token, a.edit_value, a.edit_count,
                   a.edit_capacity, rows, V, zb});
  }
  SampleKernel<T><<<rows, kThreads, 0, s>>>(SampleParams<T>{
      logits, a.row_stride, V, a.softcap, a.softcap_reciprocal, zb, lse,
      a.temperature, a.top_k, a.top_p, a.min_p, a.uniform, a.token, a.logprob});
  return LastError();
}

}  // namespace

int TokenSamplerCuda(const TokenSamplerArgs& a, void* stream) {
  if (a.rows < 1 || a.rows > INT_MAX || a.vocab < 1 ||
      a.vocab > kTokenSamplerMaxVocab || a.row_stride < a.vocab ||
      a.edit_capacity < 0 || a.logits == nullptr || a.temperature == nullptr ||
      a.top_k == nullptr || a.top_p == nullptr || a.min_p == nullptr ||
      a.uniform == nullptr || a.workspace == nullptr || a.token == nullptr ||
      a.logprob == nullptr ||
      (a.edit_capacity > 0 &&
       (a.edit_row == nullptr || a.edit_token == nullptr ||
        a.edit_value == nullptr || a.edit_count == nullptr))) {
    return kInvalid;
  }
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (a.dtype == Dtype::kBFloat16) return Launch<__nv_bfloat16>(a, s);
  return Launch<float>(a, s);
}

}  // namespace sweepd::kernels
