// Kernels of kernels/head_norm_rope.h (moved from worker/engine/cuda_ops.cu).
// Both entry points launch the same segmented kernels: HeadNormRopeCuda is a
// call of one contiguous segment, so a row's device code is one function
// whichever entry point runs it.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <type_traits>

#include "kernels/device_util.cuh"
#include "kernels/head_norm_rope.h"

namespace sweepd::kernels {
namespace {

constexpr int kMaxHeadDim = 512;
constexpr int kHeadWarps = 4;
constexpr int kMaxSegments = HeadNormRopeMultiArgs::kMaxSegments;

// A segment with its strides resolved; its warps are [previous segment's
// warp_end, warp_end) of the launch.
template <typename T>
struct HeadSegment {
  const T* x;  // x + col
  const T* weight;
  T* out;
  const int64_t* rows;
  int64_t head_stride;
  int64_t row_stride;
  int64_t warp_end;
  int heads;
  bool rope;
};

template <typename T>
struct HeadParams {
  int64_t x_stride;
  int64_t seq;
  int head_dim;
  float eps;
  const T* cos;
  const T* sin;
  // Unused entries: no heads, warp_end = the launch's warps.
  HeadSegment<T> seg[kMaxSegments];
};

// The segment of warp w (one past the last warp_end: false) and w's index
// within it. Selected field by field from constant indices, so the parameters
// stay in the constant bank.
template <typename T>
__device__ bool WarpSegment(const HeadParams<T>& p, int64_t w,
                            HeadSegment<T>* s, int64_t* local) {
  static_assert(kMaxSegments == 3, "WarpSegment selects among 3 segments");
  if (w >= p.seg[2].warp_end) return false;
  if (w < p.seg[0].warp_end) {
    *s = p.seg[0];
    *local = w;
  } else if (w < p.seg[1].warp_end) {
    *s = p.seg[1];
    *local = w - p.seg[0].warp_end;
  } else {
    *s = p.seg[2];
    *local = w - p.seg[1].warp_end;
  }
  return true;
}

// Where head h of token t goes.
template <typename T>
__device__ T* OutRow(const HeadSegment<T>& s, int64_t t, int h) {
  const int64_t row = s.rows != nullptr ? s.rows[t] : t;
  return s.out + h * s.head_stride + row * s.row_stride;
}

// One warp per (token, head) row; b: the warp's row buffer.
template <typename T>
__device__ void NormRopeRow(const HeadParams<T>& p, const HeadSegment<T>& s,
                            int64_t t, int h, float* b, int lane) {
  const int hd = p.head_dim;
  const T* x = s.x + t * p.x_stride + static_cast<int64_t>(h) * hd;
  float ss = 0.0f;
  for (int i = lane; i < hd; i += 32) {
    const float v = Io<T>::Load(x + i);
    b[i] = v;
    ss += v * v;
  }
  const float rstd = rsqrtf(WarpSum(ss) / hd + p.eps);
  T* out = OutRow(s, t, h);
  for (int i = lane; i < hd; i += 32) {
    float n = b[i] * rstd;
    if (s.weight != nullptr) n = n * Io<T>::Load(s.weight + i);
    n = Io<T>::Round(n);
    if (!s.rope) {
      Io<T>::Store(out + i, n);
    } else {
      b[i] = n;
    }
  }
  if (!s.rope) return;
  __syncwarp();
  const int half = hd / 2;
  const int64_t pos = t % p.seq;
  const T* c = p.cos + pos * hd;
  const T* sn = p.sin + pos * hd;
  for (int i = lane; i < hd; i += 32) {
    const float rot = i < half ? -b[i + half] : b[i - half];
    const float a1 = Io<T>::Round(b[i] * Io<T>::Load(c + i));
    const float a2 = Io<T>::Round(rot * Io<T>::Load(sn + i));
    Io<T>::Store(out + i, a1 + a2);
  }
}

template <typename T>
__global__ void HeadNormRopeKernel(HeadParams<T> p) {
  __shared__ float buf[kHeadWarps][kMaxHeadDim];
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  HeadSegment<T> s;
  int64_t row;
  // Warp-uniform; no block barrier below.
  if (!WarpSegment(p, static_cast<int64_t>(blockIdx.x) * kHeadWarps + warp, &s,
                   &row)) {
    return;
  }
  NormRopeRow(p, s, row / s.heads, static_cast<int>(row % s.heads), buf[warp],
              lane);
}

// R consecutive (token, head) rows per warp (every segment's heads % R == 0,
// so they share the token, hence the weight and the cos/sin row); head_dim %
// 16 == 0 (so rotate-half partners are whole 8-element vectors), K · 256 >=
// head_dim, R · head_dim <= 512. Every load (the R rows, the weight, cos/sin)
// is issued before the first reduction, so a warp waits for memory once and
// keeps R + 3 16-byte loads per lane in flight.
template <int K, int R>
__device__ void NormRopeRowsVec(const HeadParams<Bf>& p,
                                const HeadSegment<Bf>& s, int64_t row0,
                                float* b, int lane) {
  const int64_t t = row0 / s.heads;
  const int h0 = static_cast<int>(row0 % s.heads);
  const int hd = p.head_dim, nvec = hd / 8;
  const int64_t pos = t % p.seq;
  const bool rope = s.rope;
  const Bf* x = s.x + t * p.x_stride + static_cast<int64_t>(h0) * hd;
  uint4 xv[R][K], wv[K], cv[K], sv[K];
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int c = lane + 32 * k;
    if (c < nvec) {
#pragma unroll
      for (int r = 0; r < R; ++r) xv[r][k] = LoadRaw8(x + r * hd + 8 * c);
      if (s.weight != nullptr) wv[k] = LoadRaw8(s.weight + 8 * c);
      if (rope) {
        cv[k] = LoadRaw8(p.cos + pos * hd + 8 * c);
        sv[k] = LoadRaw8(p.sin + pos * hd + 8 * c);
      }
    }
  }
  Bf* out0 = OutRow(s, t, h0);
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
    Bf* out = out0 + r * s.head_stride;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int c = lane + 32 * k;
      if (c < nvec) {
        float w[8];
        if (s.weight != nullptr) Unpack8(wv[k], w);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          float n = v[k][j] * rstd;
          if (s.weight != nullptr) n = n * w[j];
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
    Bf* out = out0 + r * s.head_stride;
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

template <int K, int R>
__global__ void HeadNormRopeVecKernel(HeadParams<Bf> p) {
  __shared__ __align__(16) float buf[kHeadWarps][kMaxHeadDim];
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  HeadSegment<Bf> s;
  int64_t w;
  // Warp-uniform; no block barrier below.
  if (!WarpSegment(p, static_cast<int64_t>(blockIdx.x) * kHeadWarps + warp, &s,
                   &w)) {
    return;
  }
  NormRopeRowsVec<K, R>(p, s, w * R, buf[warp], lane);
}

bool Mult8(int64_t n) { return n % 8 == 0; }

// a was checked by Valid.
template <typename T>
int LaunchHeadNormRope(const HeadNormRopeMultiArgs& a, cudaStream_t stream) {
  const int hd = a.head_dim;
  HeadParams<T> p;
  p.x_stride = a.x_stride;
  p.seq = a.seq;
  p.head_dim = hd;
  p.eps = a.eps;
  p.cos = static_cast<const T*>(a.cos);
  p.sin = static_cast<const T*>(a.sin);
  // The bf16 vector path when every access is whole aligned 8-element
  // vectors; two rows per warp where they fit the warp's shared row buffer
  // and every segment's head count is even.
  bool vec = std::is_same_v<T, Bf> && hd % 16 == 0 && Mult8(a.x_stride) &&
             Aligned16(a.x) && Aligned16(a.cos) && Aligned16(a.sin);
  bool even = true;
  for (int i = 0; i < a.segments; ++i) {
    const HeadNormRopeSegment& g = a.seg[i];
    HeadSegment<T>& s = p.seg[i];
    s.x = static_cast<const T*>(a.x) + g.col;
    s.weight = static_cast<const T*>(g.weight);
    s.out = static_cast<T*>(g.out);
    s.rows = g.rows;
    s.head_stride = g.head_stride > 0 ? g.head_stride : hd;
    s.row_stride =
        g.row_stride > 0 ? g.row_stride : static_cast<int64_t>(g.heads) * hd;
    s.heads = g.heads;
    s.rope = g.rope;
    vec = vec && Mult8(g.col) && Aligned16(g.out) && Aligned16(g.weight) &&
          Mult8(s.head_stride) && Mult8(s.row_stride);
    even = even && g.heads % 2 == 0;
  }
  const int R = vec && hd <= 256 && even ? 2 : 1;
  int64_t warps = 0;
  for (int i = 0; i < kMaxSegments; ++i) {
    if (i < a.segments) {
      warps += a.tokens * a.seg[i].heads / R;
    } else {
      p.seg[i] = p.seg[0];  // never selected: no warps
    }
    p.seg[i].warp_end = warps;
  }
  const auto blocks =
      static_cast<unsigned>((warps + kHeadWarps - 1) / kHeadWarps);
  if constexpr (std::is_same_v<T, Bf>) {
    if (vec) {
      if (R == 2) {
        HeadNormRopeVecKernel<1, 2><<<blocks, kHeadWarps * 32, 0, stream>>>(p);
      } else if (hd <= 256) {
        HeadNormRopeVecKernel<1, 1><<<blocks, kHeadWarps * 32, 0, stream>>>(p);
      } else {
        HeadNormRopeVecKernel<2, 1><<<blocks, kHeadWarps * 32, 0, stream>>>(p);
      }
      return LastError();
    }
  }
  HeadNormRopeKernel<T><<<blocks, kHeadWarps * 32, 0, stream>>>(p);
  return LastError();
}

bool Valid(const HeadNormRopeMultiArgs& a) {
  if (a.segments < 1 || a.segments > kMaxSegments || a.tokens < 0 ||
      a.head_dim < 2 || a.head_dim % 2 != 0 || a.head_dim > kMaxHeadDim ||
      a.seq < 1 || a.x == nullptr || (a.cos == nullptr) != (a.sin == nullptr)) {
    return false;
  }
  int64_t rows = 0;
  for (int i = 0; i < a.segments; ++i) {
    const HeadNormRopeSegment& g = a.seg[i];
    if (g.heads < 1 || g.out == nullptr || g.col < 0 || g.head_stride < 0 ||
        g.row_stride < 0 || (g.rope && a.cos == nullptr)) {
      return false;
    }
    rows += a.tokens * g.heads;
  }
  return (rows + kHeadWarps - 1) / kHeadWarps <= 0x7fffffff;
}

int Launch(const HeadNormRopeMultiArgs& a, void* stream) {
  if (!Valid(a)) return kInvalid;
  if (a.tokens == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  return a.dtype == Dtype::kBFloat16 ? LaunchHeadNormRope<Bf>(a, s)
                                     : LaunchHeadNormRope<float>(a, s);
}

}  // namespace

int HeadNormRopeCuda(const HeadNormRopeArgs& a, void* stream) {
  if (a.heads < 1 || a.out == nullptr) return kInvalid;
  HeadNormRopeMultiArgs m;
  m.dtype = a.dtype;
  m.x = a.x;
  m.x_stride = a.x_stride;
  m.tokens = a.tokens;
  m.seq = a.seq;
  m.head_dim = a.head_dim;
  m.eps = a.eps;
  m.cos = a.cos;
  m.sin = a.sin;
  m.segments = 1;
  m.seg[0].heads = a.heads;
  m.seg[0].weight = a.weight;
  m.seg[0].rope = a.cos != nullptr;
  m.seg[0].out = a.out;
  return Launch(m, stream);
}

int HeadNormRopeMultiCuda(const HeadNormRopeMultiArgs& a, void* stream) {
  return Launch(a, stream);
}

}  // namespace sweepd::kernels
