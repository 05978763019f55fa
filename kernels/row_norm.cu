// Kernels of kernels/row_norm.h (moved from worker/engine/cuda_ops.cu).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <type_traits>

#include "kernels/device_util.cuh"
#include "kernels/row_norm.h"

namespace sweepd::kernels {
namespace {

constexpr int kMaxRowDim = 12288;  // RowNorm stages a row in shared memory

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

constexpr int kVecPerThread = 6;  // RowNormVec: dim <= 256 * 8 * 6 (kMaxRowDim)

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

}  // namespace

int RowNormCuda(const RowNormArgs& a, void* stream) {
  if (a.rows < 0 || a.rows > 0x7fffffff || a.dim < 1 || a.dim > kMaxRowDim ||
      a.x == nullptr || a.out == nullptr || a.x_stride < a.dim) {
    return kInvalid;
  }
  if (a.rows == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  return a.dtype == Dtype::kBFloat16 ? LaunchRowNorm<__nv_bfloat16>(a, s)
                                     : LaunchRowNorm<float>(a, s);
}

}  // namespace sweepd::kernels
