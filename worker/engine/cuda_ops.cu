// Kernels of worker/engine/cuda_ops.h. Math in float32; values are rounded to
// the compute dtype exactly where the eager libtorch code materialises a
// tensor (round-to-nearest-even, as libtorch's bf16 conversion).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "worker/engine/cuda_ops.h"

namespace sweepd::engine::cuda_ops {
namespace {

constexpr int kMaxRowDim = 12288;  // RowNorm stages a row in shared memory
constexpr int kMaxHeadDim = 512;
constexpr int kHeadWarps = 4;

template <typename T>
struct Io;

template <>
struct Io<float> {
  __device__ static float Load(const float* p) { return *p; }
  __device__ static void Store(float* p, float v) { *p = v; }
  __device__ static float Round(float v) { return v; }
};

template <>
struct Io<__nv_bfloat16> {
  __device__ static float Load(const __nv_bfloat16* p) {
    return __bfloat162float(*p);
  }
  __device__ static void Store(__nv_bfloat16* p, float v) {
    *p = __float2bfloat16_rn(v);
  }
  __device__ static float Round(float v) {
    return __bfloat162float(__float2bfloat16_rn(v));
  }
};

__device__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block; every thread gets the total. `red` holds 32 floats.
__device__ float BlockSum(float v, float* red) {
  v = WarpSum(v);
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  __syncthreads();  // earlier readers of `red` are done
  if (lane == 0) red[warp] = v;
  __syncthreads();
  const int warps = blockDim.x >> 5;
  return WarpSum(lane < warps ? red[lane] : 0.0f);
}

template <typename T>
struct RowNormParams {
  const T* x;
  int64_t x_stride;
  int dim;
  const T* weight;
  float eps;
  const T* residual;
  const T* scalar;
  T* out;
  const T* weight2;
  T* out2;
};

template <typename T>
__global__ void RowNormKernel(RowNormParams<T> p) {
  extern __shared__ float row[];
  __shared__ float red[32];
  const int64_t r = blockIdx.x;
  const T* x = p.x + r * p.x_stride;
  const int dim = p.dim;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    const float v = Io<T>::Load(x + i);
    row[i] = v;
    ss += v * v;
  }
  const float rstd = rsqrtf(BlockSum(ss, red) / dim + p.eps);
  const float s = p.scalar != nullptr ? Io<T>::Load(p.scalar) : 1.0f;
  const T* res = p.residual != nullptr ? p.residual + r * dim : nullptr;
  T* out = p.out + r * dim;
  float ss2 = 0.0f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    float n = row[i] * rstd;
    if (p.weight != nullptr) n = n * Io<T>::Load(p.weight + i);
    float o = Io<T>::Round(n);
    if (res != nullptr) {
      o = Io<T>::Round(Io<T>::Load(res + i) + o);
      if (p.scalar != nullptr) o = Io<T>::Round(o * s);
    }
    Io<T>::Store(out + i, o);
    if (p.out2 != nullptr) {
      row[i] = o;
      ss2 += o * o;
    }
  }
  if (p.out2 == nullptr) return;
  const float rstd2 = rsqrtf(BlockSum(ss2, red) / dim + p.eps);
  T* out2 = p.out2 + r * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    float n = row[i] * rstd2;
    if (p.weight2 != nullptr) n = n * Io<T>::Load(p.weight2 + i);
    Io<T>::Store(out2 + i, n);
  }
}

template <typename T>
struct HeadParams {
  const T* x;
  int64_t x_stride;
  int64_t rows;  // tokens * heads
  int64_t seq;
  int heads;
  int head_dim;
  const T* weight;
  float eps;
  const T* cos;
  const T* sin;
  T* out;
};

// One warp per (token, head) row.
template <typename T>
__global__ void HeadNormRopeKernel(HeadParams<T> p) {
  __shared__ float buf[kHeadWarps][kMaxHeadDim];
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kHeadWarps + warp;
  if (row >= p.rows) return;  // warp-uniform; no block barrier below
  const int64_t t = row / p.heads;
  const int h = static_cast<int>(row % p.heads);
  const int hd = p.head_dim;
  const T* x = p.x + t * p.x_stride + static_cast<int64_t>(h) * hd;
  float* b = buf[warp];
  float ss = 0.0f;
  for (int i = lane; i < hd; i += 32) {
    const float v = Io<T>::Load(x + i);
    b[i] = v;
    ss += v * v;
  }
  const float rstd = rsqrtf(WarpSum(ss) / hd + p.eps);
  T* out = p.out + row * hd;
  for (int i = lane; i < hd; i += 32) {
    float n = b[i] * rstd;
    if (p.weight != nullptr) n = n * Io<T>::Load(p.weight + i);
    n = Io<T>::Round(n);
    if (p.cos == nullptr) {
      Io<T>::Store(out + i, n);
    } else {
      b[i] = n;
    }
  }
  if (p.cos == nullptr) return;
  __syncwarp();
  const int half = hd / 2;
  const int64_t pos = t % p.seq;
  const T* c = p.cos + pos * hd;
  const T* s = p.sin + pos * hd;
  for (int i = lane; i < hd; i += 32) {
    const float rot = i < half ? -b[i + half] : b[i - half];
    const float a1 = Io<T>::Round(b[i] * Io<T>::Load(c + i));
    const float a2 = Io<T>::Round(rot * Io<T>::Load(s + i));
    Io<T>::Store(out + i, a1 + a2);
  }
}

template <typename T>
__global__ void GegluKernel(const T* gate_up, int64_t rows, int64_t inter,
                            bool tanh_approx, T* out) {
  const int64_t total = rows * inter;
  for (int64_t idx =
           static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       idx < total; idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = idx / inter;
    const int64_t i = idx - t * inter;
    const T* g_row = gate_up + t * 2 * inter;
    const float g = Io<T>::Load(g_row + i);
    const float u = Io<T>::Load(g_row + inter + i);
    float a;
    if (tanh_approx) {
      const float kBeta = static_cast<float>(M_SQRT2 * M_2_SQRTPI * 0.5);
      const float kKappa = 0.044715f;
      const float inner = kBeta * (g + kKappa * (g * g * g));
      a = 0.5f * g * (1.0f + tanhf(inner));
    } else {
      a = g * 0.5f * (1.0f + erff(g * static_cast<float>(M_SQRT1_2)));
    }
    Io<T>::Store(out + idx, Io<T>::Round(a) * u);
  }
}

template <typename T>
__global__ void RowCosNormKernel(const T* a, const T* b, int dim, float* bi,
                                 float* norm_b) {
  __shared__ float red[32];
  const int64_t r = blockIdx.x;
  const T* ar = a + r * dim;
  const T* br = b + r * dim;
  float dot = 0.0f, aa = 0.0f, bb = 0.0f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    const float x = Io<T>::Load(ar + i);
    const float y = Io<T>::Load(br + i);
    dot += x * y;
    aa += x * x;
    bb += y * y;
  }
  dot = BlockSum(dot, red);
  aa = BlockSum(aa, red);
  bb = BlockSum(bb, red);
  if (threadIdx.x == 0) {
    const float nb = sqrtf(bb);
    bi[r] = 1.0f - dot / fmaxf(sqrtf(aa) * nb, 1e-30f);
    norm_b[r] = nb;
  }
}

// ---- bf16 kernels with 16-byte accesses (8 elements), used when every
// pointer is 16-byte aligned and the row lengths are multiples of 8. Same
// arithmetic and rounding as the scalar kernels above.

constexpr int kVecPerThread = 6;  // RowNormVec: dim <= 256 * 8 * 6 (kMaxRowDim)

__device__ void Load8(const __nv_bfloat16* p, float (&f)[8]) {
  const uint4 u = *reinterpret_cast<const uint4*>(p);
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float2 t = __bfloat1622float2(h[j]);
    f[2 * j] = t.x;
    f[2 * j + 1] = t.y;
  }
}

__device__ void Store8(__nv_bfloat16* p, const float (&f)[8]) {
  uint4 u;
  __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&u);
#pragma unroll
  for (int j = 0; j < 4; ++j)
    h[j] = __floats2bfloat162_rn(f[2 * j], f[2 * j + 1]);
  *reinterpret_cast<uint4*>(p) = u;
}

using Bf = __nv_bfloat16;

__device__ uint4 LoadRaw8(const __nv_bfloat16* p) {
  return *reinterpret_cast<const uint4*>(p);
}

__device__ void Unpack8(const uint4& u, float (&f)[8]) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float2 t = __bfloat1622float2(h[j]);
    f[2 * j] = t.x;
    f[2 * j + 1] = t.y;
  }
}

__device__ uint4 Pack8(const float (&f)[8]) {
  uint4 u;
  __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&u);
#pragma unroll
  for (int j = 0; j < 4; ++j)
    h[j] = __floats2bfloat162_rn(f[2 * j], f[2 * j + 1]);
  return u;
}

// One block per row, K 8-element vectors per thread. Every load of the row
// (x, the residual, the weight) is issued before the first reduction, and
// values stay as packed bf16 (x and the rounded output are exact in it), so
// the registers left allow several blocks per SM and the reduction's latency
// overlaps the loads.
template <int K>
__global__ void __launch_bounds__(256) RowNormVecKernel(RowNormParams<Bf> p) {
  __shared__ float red[32];
  const int64_t r = blockIdx.x;
  const Bf* x = p.x + r * p.x_stride;
  const int dim = p.dim, nvec = dim / 8;
  const Bf* res = p.residual != nullptr ? p.residual + r * dim : nullptr;
  uint4 xv[K], rv[K], wv[K];
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int c = threadIdx.x + k * blockDim.x;
    if (c < nvec) {
      xv[k] = LoadRaw8(x + 8 * c);
      if (res != nullptr) rv[k] = LoadRaw8(res + 8 * c);
      if (p.weight != nullptr) wv[k] = LoadRaw8(p.weight + 8 * c);
    }
  }
  float ss = 0.0f;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    if (threadIdx.x + k * blockDim.x < nvec) {
      float f[8];
      Unpack8(xv[k], f);
#pragma unroll
      for (int j = 0; j < 8; ++j) ss += f[j] * f[j];
    }
  }
  const float rstd = rsqrtf(BlockSum(ss, red) / dim + p.eps);
  const float s = p.scalar != nullptr ? __bfloat162float(*p.scalar) : 1.0f;
  Bf* out = p.out + r * dim;
  float ss2 = 0.0f;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int c = threadIdx.x + k * blockDim.x;
    if (c < nvec) {
      float v[8], w[8], rr[8];
      Unpack8(xv[k], v);
      if (p.weight != nullptr) Unpack8(wv[k], w);
      if (res != nullptr) Unpack8(rv[k], rr);
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        float n = v[j] * rstd;
        if (p.weight != nullptr) n = n * w[j];
        float o = Io<Bf>::Round(n);
        if (res != nullptr) {
          o = Io<Bf>::Round(rr[j] + o);
          if (p.scalar != nullptr) o = Io<Bf>::Round(o * s);
        }
        v[j] = o;
        ss2 += o * o;
      }
      xv[k] = Pack8(v);  // exact: every v[j] is a rounded bf16 value
      *reinterpret_cast<uint4*>(out + 8 * c) = xv[k];
    }
  }
  if (p.out2 == nullptr) return;
  const float rstd2 = rsqrtf(BlockSum(ss2, red) / dim + p.eps);
  Bf* out2 = p.out2 + r * dim;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int c = threadIdx.x + k * blockDim.x;
    if (c < nvec) {
      float v[8], w[8];
      Unpack8(xv[k], v);
      if (p.weight2 != nullptr) Load8(p.weight2 + 8 * c, w);
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        float n = v[j] * rstd2;
        if (p.weight2 != nullptr) n = n * w[j];
        v[j] = n;
      }
      Store8(out2 + 8 * c, v);
    }
  }
}

// R consecutive (token, head) rows per warp (heads % R == 0, so they share the
// token, hence the weight and the cos/sin row); head_dim % 16 == 0 (so
// rotate-half partners are whole 8-element vectors), K · 256 >= head_dim,
// R · head_dim <= 512. Every load (the R rows, the weight, cos/sin) is issued
// before the first reduction, so a warp waits for memory once and keeps
// R + 3 16-byte loads per lane in flight.
template <int K, int R>
__global__ void HeadNormRopeVecKernel(HeadParams<Bf> p) {
  __shared__ __align__(16) float buf[kHeadWarps][kMaxHeadDim];
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int64_t row0 =
      (static_cast<int64_t>(blockIdx.x) * kHeadWarps + warp) * R;
  if (row0 >= p.rows) return;  // warp-uniform; no block barrier below
  const int64_t t = row0 / p.heads;
  const int h0 = static_cast<int>(row0 % p.heads);
  const int hd = p.head_dim, nvec = hd / 8;
  const int64_t pos = t % p.seq;
  const bool rope = p.cos != nullptr;
  const Bf* x = p.x + t * p.x_stride + static_cast<int64_t>(h0) * hd;
  uint4 xv[R][K], wv[K], cv[K], sv[K];
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int c = lane + 32 * k;
    if (c < nvec) {
#pragma unroll
      for (int r = 0; r < R; ++r) xv[r][k] = LoadRaw8(x + r * hd + 8 * c);
      if (p.weight != nullptr) wv[k] = LoadRaw8(p.weight + 8 * c);
      if (rope) {
        cv[k] = LoadRaw8(p.cos + pos * hd + 8 * c);
        sv[k] = LoadRaw8(p.sin + pos * hd + 8 * c);
      }
    }
  }
  float* b = buf[warp];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    float v[K][8];
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      if (lane + 32 * k < nvec) {
        Unpack8(xv[r][k], v[k]);
#pragma unroll
        for (int j = 0; j < 8; ++j) ss += v[k][j] * v[k][j];
      }
    }
    const float rstd = rsqrtf(WarpSum(ss) / hd + p.eps);
    Bf* out = p.out + (row0 + r) * hd;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int c = lane + 32 * k;
      if (c < nvec) {
        float w[8];
        if (p.weight != nullptr) Unpack8(wv[k], w);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          float n = v[k][j] * rstd;
          if (p.weight != nullptr) n = n * w[j];
          v[k][j] = Io<Bf>::Round(n);
        }
        if (!rope) {
          Store8(out + 8 * c, v[k]);
        } else {
          float4* d = reinterpret_cast<float4*>(b + r * hd + 8 * c);
          d[0] = make_float4(v[k][0], v[k][1], v[k][2], v[k][3]);
          d[1] = make_float4(v[k][4], v[k][5], v[k][6], v[k][7]);
        }
      }
    }
  }
  if (!rope) return;
  __syncwarp();
  const int half = hd / 2;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const float* br = b + r * hd;
    Bf* out = p.out + (row0 + r) * hd;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int c = lane + 32 * k;
      if (c < nvec) {
        const int i = 8 * c;
        const bool first = i < half;
        const float4* own = reinterpret_cast<const float4*>(br + i);
        const float4* src =
            reinterpret_cast<const float4*>(br + (first ? i + half : i - half));
        const float4 a0 = own[0], a1 = own[1], r0 = src[0], r1 = src[1];
        const float val[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
        const float rot[8] = {r0.x, r0.y, r0.z, r0.w, r1.x, r1.y, r1.z, r1.w};
        float cf[8], sf[8], o[8];
        Unpack8(cv[k], cf);
        Unpack8(sv[k], sf);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const float rj = first ? -rot[j] : rot[j];
          o[j] = Io<Bf>::Round(val[j] * cf[j]) + Io<Bf>::Round(rj * sf[j]);
        }
        Store8(out + i, o);
      }
    }
  }
}

__global__ void GegluVecKernel(const Bf* gate_up, int64_t rows, int64_t inter,
                               bool tanh_approx, Bf* out) {
  const int64_t total = rows * inter / 8;
  for (int64_t vi = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       vi < total; vi += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t e = vi * 8;
    const int64_t t = e / inter;
    const int64_t i = e - t * inter;
    const Bf* g_row = gate_up + t * 2 * inter;
    float g[8], u[8], o[8];
    Load8(g_row + i, g);
    Load8(g_row + inter + i, u);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      float a;
      if (tanh_approx) {
        const float kBeta = static_cast<float>(M_SQRT2 * M_2_SQRTPI * 0.5);
        const float kKappa = 0.044715f;
        const float inner = kBeta * (g[j] + kKappa * (g[j] * g[j] * g[j]));
        a = 0.5f * g[j] * (1.0f + tanhf(inner));
      } else {
        a = g[j] * 0.5f * (1.0f + erff(g[j] * static_cast<float>(M_SQRT1_2)));
      }
      o[j] = Io<Bf>::Round(a) * u[j];
    }
    Store8(out + e, o);
  }
}

// ---- LseMerge: one warp per (batch, row, head); lanes stride over head_dim
// (8 elements per access on the vector path).

template <typename T, bool kVec>
__global__ void LseMergeKernel(LseMergeArgs a, int64_t items) {
  const int64_t item =
      static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (item >= items) return;
  const int lane = threadIdx.x & 31;
  const int64_t h = item % a.heads;
  const int64_t r = (item / a.heads) % a.rows;
  const int64_t b = item / (a.heads * a.rows);
  const float l1 = a.out_lse[b * a.out_lse_stride[0] + h * a.out_lse_stride[1] +
                             r * a.out_lse_stride[2]];
  const float l2 =
      a.other_lse[b * a.other_lse_stride[0] + h * a.other_lse_stride[1] +
                  r * a.other_lse_stride[2]];
  const float m = fmaxf(l1, l2);
  const float e1 = expf(l1 - m), e2 = expf(l2 - m);
  const float w1 = e1 / (e1 + e2), w2 = e2 / (e1 + e2);
  T* out = static_cast<T*>(a.out) + b * a.out_stride[0] + r * a.out_stride[1] +
           h * a.out_stride[2];
  const T* other = static_cast<const T*>(a.other) + b * a.other_stride[0] +
                   r * a.other_stride[1] + h * a.other_stride[2];
  if constexpr (kVec) {
    for (int64_t i = 8 * lane; i < a.head_dim; i += 8 * 32) {
      float x[8], y[8];
      Load8(out + i, x);
      Load8(other + i, y);
#pragma unroll
      for (int j = 0; j < 8; ++j) x[j] = x[j] * w1 + y[j] * w2;
      Store8(out + i, x);
    }
  } else {
    for (int64_t i = lane; i < a.head_dim; i += 32) {
      Io<T>::Store(out + i,
                   Io<T>::Load(out + i) * w1 + Io<T>::Load(other + i) * w2);
    }
  }
}

bool Aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

int RowThreads(int64_t dim) {
  int64_t t = (dim + 31) / 32 * 32;
  if (t > 256) t = 256;
  return static_cast<int>(t);
}

int LastError() { return static_cast<int>(cudaGetLastError()); }

constexpr int kInvalid = static_cast<int>(cudaErrorInvalidValue);

template <typename T>
int LaunchRowNorm(const RowNormArgs& a, cudaStream_t stream) {
  RowNormParams<T> p;
  p.x = static_cast<const T*>(a.x);
  p.x_stride = a.x_stride;
  p.dim = static_cast<int>(a.dim);
  p.weight = static_cast<const T*>(a.weight);
  p.eps = a.eps;
  p.residual = static_cast<const T*>(a.residual);
  p.scalar = static_cast<const T*>(a.scalar);
  p.out = static_cast<T*>(a.out);
  p.weight2 = static_cast<const T*>(a.weight2);
  p.out2 = static_cast<T*>(a.out2);
  if constexpr (std::is_same_v<T, Bf>) {
    const int64_t nvec = a.dim / 8;
    if (a.dim % 8 == 0 && a.x_stride % 8 == 0 && nvec <= 256 * kVecPerThread &&
        Aligned16(a.x) && Aligned16(a.out) && Aligned16(a.weight) &&
        Aligned16(a.residual) && Aligned16(a.weight2) && Aligned16(a.out2)) {
      // K vectors per thread, as few threads as cover the row with K each
      // (5376 = 224 threads x 3 vectors of 8).
      const int k = static_cast<int>((nvec + 255) / 256);
      const int threads = static_cast<int>(((nvec + k - 1) / k + 31) / 32 * 32);
      const auto grid = static_cast<unsigned>(a.rows);
      switch (k) {
        case 1:
          RowNormVecKernel<1><<<grid, threads, 0, stream>>>(p);
          break;
        case 2:
          RowNormVecKernel<2><<<grid, threads, 0, stream>>>(p);
          break;
        case 3:
          RowNormVecKernel<3><<<grid, threads, 0, stream>>>(p);
          break;
        case 4:
          RowNormVecKernel<4><<<grid, threads, 0, stream>>>(p);
          break;
        case 5:
          RowNormVecKernel<5><<<grid, threads, 0, stream>>>(p);
          break;
        default:
          RowNormVecKernel<6><<<grid, threads, 0, stream>>>(p);
          break;
      }
      return LastError();
    }
  }
  RowNormKernel<T><<<static_cast<unsigned>(a.rows), RowThreads(a.dim),
                     a.dim * sizeof(float), stream>>>(p);
  return LastError();
}

template <typename T>
int LaunchHeadNormRope(const HeadNormRopeArgs& a, cudaStream_t stream) {
  HeadParams<T> p;
  p.x = static_cast<const T*>(a.x);
  p.x_stride = a.x_stride;
  p.rows = a.tokens * a.heads;
  p.seq = a.seq;
  p.heads = a.heads;
  p.head_dim = a.head_dim;
  p.weight = static_cast<const T*>(a.weight);
  p.eps = a.eps;
  p.cos = static_cast<const T*>(a.cos);
  p.sin = static_cast<const T*>(a.sin);
  p.out = static_cast<T*>(a.out);
  const int64_t blocks = (p.rows + kHeadWarps - 1) / kHeadWarps;
  if constexpr (std::is_same_v<T, Bf>) {
    if (a.head_dim % 16 == 0 && a.x_stride % 8 == 0 && Aligned16(a.x) &&
        Aligned16(a.out) && Aligned16(a.weight) && Aligned16(a.cos) &&
        Aligned16(a.sin)) {
      // Two rows per warp where they fit the warp's shared row buffer.
      if (a.head_dim <= 256 && a.heads % 2 == 0) {
        const int64_t pair_blocks = (p.rows / 2 + kHeadWarps - 1) / kHeadWarps;
        HeadNormRopeVecKernel<1, 2><<<static_cast<unsigned>(pair_blocks),
                                      kHeadWarps * 32, 0, stream>>>(p);
      } else if (a.head_dim <= 256) {
        HeadNormRopeVecKernel<1, 1>
            <<<static_cast<unsigned>(blocks), kHeadWarps * 32, 0, stream>>>(p);
      } else {
        HeadNormRopeVecKernel<2, 1>
            <<<static_cast<unsigned>(blocks), kHeadWarps * 32, 0, stream>>>(p);
      }
      return LastError();
    }
  }
  HeadNormRopeKernel<T>
      <<<static_cast<unsigned>(blocks), kHeadWarps * 32, 0, stream>>>(p);
  return LastError();
}

// ---- Causal softmax of the chunked GEMM attention (CausalSoftmax).

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

// Elements per 16-byte vector and its loads/stores for T.
template <typename T>
struct Vec16 {
  static constexpr int kN = 16 / sizeof(T);
  __device__ static void Load(const T* p, float* out) {
    const uint4 raw = *reinterpret_cast<const uint4*>(p);
    const T* v = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int i = 0; i < kN; ++i) out[i] = Io<T>::Load(v + i);
  }
  __device__ static void Store(T* p, const float* in) {
    uint4 raw;
    T* v = reinterpret_cast<T*>(&raw);
#pragma unroll
    for (int i = 0; i < kN; ++i) Io<T>::Store(v + i, in[i]);
    *reinterpret_cast<uint4*>(p) = raw;
  }
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

// ---- SwapMiddleDims: one block per destination row (a, y, x), copying
// `words` Word-sized pieces of it from source row (a, x, y).
template <typename Word>
__global__ void SwapMiddleDimsKernel(const Word* __restrict__ src, int64_t dim1,
                                     int64_t dim2, int64_t words,
                                     Word* __restrict__ dst) {
  const int64_t r = blockIdx.x;  // over outer · dim2 · dim1, dst order
  const int64_t x = r % dim1;
  const int64_t ay = r / dim1;
  const int64_t y = ay % dim2;
  const int64_t a = ay / dim2;
  const Word* in = src + ((a * dim1 + x) * dim2 + y) * words;
  Word* out = dst + r * words;
  for (int64_t i = threadIdx.x; i < words; i += blockDim.x) out[i] = in[i];
}

template <typename Word>
int LaunchSwapMiddleDims(const void* src, int64_t rows, int64_t dim1,
                         int64_t dim2, int64_t inner_bytes, void* dst,
                         cudaStream_t stream) {
  const int64_t words = inner_bytes / static_cast<int64_t>(sizeof(Word));
  SwapMiddleDimsKernel<Word>
      <<<static_cast<unsigned>(rows), RowThreads(words), 0, stream>>>(
          static_cast<const Word*>(src), dim1, dim2, words,
          static_cast<Word*>(dst));
  return LastError();
}

template <typename Word>
__global__ void ReverseRowsKernel(const char* __restrict__ src, int64_t n1,
                                  int64_t rows, int64_t words, int64_t s0,
                                  int64_t s1, int64_t s_row,
                                  Word* __restrict__ dst) {
  const int64_t r = blockIdx.x;  // destination row, over n0 · n1 · rows
  const int64_t i = r % rows;
  const int64_t j = (r / rows) % n1;
  const int64_t k = r / (rows * n1);
  const Word* in = reinterpret_cast<const Word*>(src + k * s0 + j * s1 +
                                                 (rows - 1 - i) * s_row);
  Word* out = dst + r * words;
  for (int64_t w = threadIdx.x; w < words; w += blockDim.x) out[w] = in[w];
}

template <typename Word>
int LaunchReverseRows(const void* src, int64_t n0, int64_t n1, int64_t rows,
                      int64_t row_bytes, int64_t s0, int64_t s1, int64_t s_row,
                      void* dst, cudaStream_t stream) {
  const int64_t words = row_bytes / static_cast<int64_t>(sizeof(Word));
  ReverseRowsKernel<Word>
      <<<static_cast<unsigned>(n0 * n1 * rows), RowThreads(words), 0, stream>>>(
          static_cast<const char*>(src), n1, rows, words, s0, s1, s_row,
          static_cast<Word*>(dst));
  return LastError();
}

// Calls launch(Word{}) with the widest copy word (uint4, uint32_t, uint16_t,
// uint8_t) that divides `bits`: the addresses, sizes and strides of a row copy
// OR-ed together.
template <typename Launch>
int ByCopyWord(uint64_t bits, Launch launch) {
  if (bits % 16 == 0) return launch(uint4{});
  if (bits % 4 == 0) return launch(uint32_t{});
  if (bits % 2 == 0) return launch(uint16_t{});
  return launch(uint8_t{});
}

}  // namespace

int RowNorm(const RowNormArgs& a, void* stream) {
  if (a.rows < 0 || a.rows > 0x7fffffff || a.dim < 1 || a.dim > kMaxRowDim ||
      a.x == nullptr || a.out == nullptr || a.x_stride < a.dim) {
    return kInvalid;
  }
  if (a.rows == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  return a.dtype == Dtype::kBFloat16 ? LaunchRowNorm<__nv_bfloat16>(a, s)
                                     : LaunchRowNorm<float>(a, s);
}

int HeadNormRope(const HeadNormRopeArgs& a, void* stream) {
  if (a.tokens < 0 || a.heads < 1 || a.head_dim < 2 || a.head_dim % 2 != 0 ||
      a.head_dim > kMaxHeadDim || a.seq < 1 || a.x == nullptr ||
      a.out == nullptr || (a.cos == nullptr) != (a.sin == nullptr) ||
      (a.tokens * a.heads + kHeadWarps - 1) / kHeadWarps > 0x7fffffff) {
    return kInvalid;
  }
  if (a.tokens == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  return a.dtype == Dtype::kBFloat16 ? LaunchHeadNormRope<__nv_bfloat16>(a, s)
                                     : LaunchHeadNormRope<float>(a, s);
}

int Geglu(Dtype dtype, const void* gate_up, int64_t rows, int64_t inter,
          bool tanh_approx, void* out, void* stream) {
  if (rows < 0 || inter < 1 || gate_up == nullptr || out == nullptr) {
    return kInvalid;
  }
  const int64_t total = rows * inter;
  if (total == 0) return 0;
  const int threads = 256;
  int64_t blocks = (total + threads - 1) / threads;
  if (blocks > 132 * 64) blocks = 132 * 64;  // grid-stride beyond a few waves
  auto s = static_cast<cudaStream_t>(stream);
  if (dtype == Dtype::kBFloat16 && inter % 8 == 0 && Aligned16(gate_up) &&
      Aligned16(out)) {
    GegluVecKernel<<<static_cast<unsigned>(std::min<int64_t>(
                         blocks, (total / 8 + threads - 1) / threads)),
                     threads, 0, s>>>(static_cast<const Bf*>(gate_up), rows,
                                      inter, tanh_approx,
                                      static_cast<Bf*>(out));
  } else if (dtype == Dtype::kBFloat16) {
    GegluKernel<__nv_bfloat16>
        <<<static_cast<unsigned>(blocks), threads, 0, s>>>(
            static_cast<const __nv_bfloat16*>(gate_up), rows, inter,
            tanh_approx, static_cast<__nv_bfloat16*>(out));
  } else {
    GegluKernel<float><<<static_cast<unsigned>(blocks), threads, 0, s>>>(
        static_cast<const float*>(gate_up), rows, inter, tanh_approx,
        static_cast<float*>(out));
  }
  return LastError();
}

int RowCosNorm(Dtype dtype, const void* a, const void* b, int64_t rows,
               int64_t dim, float* block_influence, float* norm_b,
               void* stream) {
  if (rows < 0 || rows > 0x7fffffff || dim < 1 || dim > 0x7fffffff ||
      a == nullptr || b == nullptr || block_influence == nullptr ||
      norm_b == nullptr) {
    return kInvalid;
  }
  if (rows == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  const unsigned grid = static_cast<unsigned>(rows);
  if (dtype == Dtype::kBFloat16) {
    RowCosNormKernel<__nv_bfloat16><<<grid, RowThreads(dim), 0, s>>>(
        static_cast<const __nv_bfloat16*>(a),
        static_cast<const __nv_bfloat16*>(b), static_cast<int>(dim),
        block_influence, norm_b);
  } else {
    RowCosNormKernel<float><<<grid, RowThreads(dim), 0, s>>>(
        static_cast<const float*>(a), static_cast<const float*>(b),
        static_cast<int>(dim), block_influence, norm_b);
  }
  return LastError();
}

int CausalSoftmax(const CausalSoftmaxArgs& a, void* stream) {
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

int SwapMiddleDims(const void* src, int64_t outer, int64_t dim1, int64_t dim2,
                   int64_t inner_bytes, void* dst, void* stream) {
  if (src == nullptr || dst == nullptr || outer < 0 || dim1 < 0 || dim2 < 0 ||
      inner_bytes < 1) {
    return kInvalid;
  }
  const int64_t rows = outer * dim1 * dim2;
  if (rows > 0x7fffffff) return kInvalid;
  if (rows == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  const auto bits = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(src) |
                                          reinterpret_cast<uintptr_t>(dst)) |
                    static_cast<uint64_t>(inner_bytes);
  return ByCopyWord(bits, [&](auto word) {
    return LaunchSwapMiddleDims<decltype(word)>(src, rows, dim1, dim2,
                                                inner_bytes, dst, s);
  });
}

int LseMerge(const LseMergeArgs& a, void* stream) {
  if (a.out == nullptr || a.other == nullptr || a.out_lse == nullptr ||
      a.other_lse == nullptr || a.batch < 0 || a.rows < 0 || a.heads < 1 ||
      a.head_dim < 1) {
    return kInvalid;
  }
  const int64_t items = a.batch * a.rows * a.heads;
  if (items == 0) return 0;
  constexpr int kWarps = 8;
  const int64_t blocks = (items + kWarps - 1) / kWarps;
  if (blocks > 0x7fffffff) return kInvalid;
  auto s = static_cast<cudaStream_t>(stream);
  const unsigned grid = static_cast<unsigned>(blocks);
  if (a.dtype == Dtype::kBFloat16) {
    bool vec = a.head_dim % 8 == 0 && Aligned16(a.out) && Aligned16(a.other);
    for (int d = 0; d < 3; ++d) {
      vec = vec && a.out_stride[d] % 8 == 0 && a.other_stride[d] % 8 == 0;
    }
    if (vec) {
      LseMergeKernel<Bf, true><<<grid, kWarps * 32, 0, s>>>(a, items);
    } else {
      LseMergeKernel<Bf, false><<<grid, kWarps * 32, 0, s>>>(a, items);
    }
  } else {
    LseMergeKernel<float, false><<<grid, kWarps * 32, 0, s>>>(a, items);
  }
  return LastError();
}

int ReverseRows(const void* src, int64_t n0, int64_t n1, int64_t rows,
                int64_t row_bytes, int64_t s0, int64_t s1, int64_t s_row,
                void* dst, void* stream) {
  if (src == nullptr || dst == nullptr || n0 < 0 || n1 < 0 || rows < 0 ||
      row_bytes < 1) {
    return kInvalid;
  }
  const int64_t total = n0 * n1 * rows;
  if (total > 0x7fffffff) return kInvalid;
  if (total == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  const auto bits = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(src) |
                                          reinterpret_cast<uintptr_t>(dst)) |
                    static_cast<uint64_t>(row_bytes | s0 | s1 | s_row);
  return ByCopyWord(bits, [&](auto word) {
    return LaunchReverseRows<decltype(word)>(src, n0, n1, rows, row_bytes, s0,
                                             s1, s_row, dst, s);
  });
}

int SetDevice(int device) { return static_cast<int>(cudaSetDevice(device)); }

int EventCreate(void** event) {
  cudaEvent_t e = nullptr;
  const cudaError_t err = cudaEventCreate(&e);
  *event = e;
  return static_cast<int>(err);
}

int EventRecord(void* event, void* stream) {
  return static_cast<int>(cudaEventRecord(static_cast<cudaEvent_t>(event),
                                          static_cast<cudaStream_t>(stream)));
}

int EventElapsedMs(void* start, void* end, float* ms) {
  cudaError_t err = cudaEventSynchronize(static_cast<cudaEvent_t>(end));
  if (err != cudaSuccess) return static_cast<int>(err);
  return static_cast<int>(cudaEventElapsedTime(
      ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(end)));
}

void EventDestroy(void* event) {
  if (event != nullptr) cudaEventDestroy(static_cast<cudaEvent_t>(event));
}

const char* ErrorString(int code) {
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}

}  // namespace sweepd::engine::cuda_ops
