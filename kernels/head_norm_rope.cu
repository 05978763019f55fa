// Kernels of kernels/head_norm_rope.h (moved from worker/engine/cuda_ops.cu).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <type_traits>

#include "kernels/device_util.cuh"
#include "kernels/head_norm_rope.h"

namespace sweepd::kernels {
namespace {

constexpr int kMaxHeadDim = 512;
constexpr int kHeadWarps = 4;

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

}  // namespace

int HeadNormRopeCuda(const HeadNormRopeArgs& a, void* stream) {
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

}  // namespace sweepd::kernels
