// Internal to sweepd::kernels: device helpers shared by the engine's fused
// kernels (row_norm.cu, head_norm_rope.cu, geglu.cu, block_influence.cu,
// causal_softmax.cu, lse_merge.cu, layout_copy.cu): float32 loads/stores and
// rounding per element type, warp/block sums, 16-byte bf16 vector accesses,
// and the host-side launch helpers. Included by .cu files only; everything sits
// in an anonymous namespace, so each translation unit has its own copy, as
// when the kernels shared one file. Math in float32; values are rounded to the
// compute dtype exactly where the eager libtorch code materialises a tensor
// (round-to-nearest-even, as libtorch's bf16 conversion).
#ifndef SWEEPD_KERNELS_DEVICE_UTIL_CUH_
#define SWEEPD_KERNELS_DEVICE_UTIL_CUH_

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace sweepd::kernels {
namespace {

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

}  // namespace
}  // namespace sweepd::kernels

#endif  // SWEEPD_KERNELS_DEVICE_UTIL_CUH_
