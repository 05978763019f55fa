// The element type of the engine's fused kernels (row_norm.h, head_norm_rope.h,
// geglu.h, block_influence.h, causal_softmax.h, lse_merge.h) and the host-side
// bfloat16 conversions their CPU references use: bf16 values are raw uint16_t
// bits on the host, converted round-to-nearest-even as libtorch and CUDA's
// __float2bfloat16_rn do. Header-only, stateless, thread-safe.
#ifndef SWEEPD_KERNELS_DTYPE_H_
#define SWEEPD_KERNELS_DTYPE_H_

#include <cstdint>
#include <cstring>

namespace sweepd::kernels {

enum class Dtype { kFloat32 = 0, kBFloat16 = 1 };

// float -> bf16 bits, round to nearest even (NaN stays NaN).
inline uint16_t Bf16FromFloat(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0) {
    return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet NaN
  }
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline float FloatFromBf16(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// v rounded to `dtype` (the identity for float32).
inline float RoundTo(Dtype dtype, float v) {
  return dtype == Dtype::kBFloat16 ? FloatFromBf16(Bf16FromFloat(v)) : v;
}

// Element i of a host array of `dtype` as float.
inline float LoadAs(Dtype dtype, const void* p, int64_t i) {
  if (dtype == Dtype::kBFloat16) {
    return FloatFromBf16(static_cast<const uint16_t*>(p)[i]);
  }
  return static_cast<const float*>(p)[i];
}

// Stores v (rounded to `dtype`) at element i of a host array of `dtype`.
inline void StoreAs(Dtype dtype, void* p, int64_t i, float v) {
  if (dtype == Dtype::kBFloat16) {
    static_cast<uint16_t*>(p)[i] = Bf16FromFloat(v);
  } else {
    static_cast<float*>(p)[i] = v;
  }
}

inline int64_t DtypeSize(Dtype dtype) {
  return dtype == Dtype::kBFloat16 ? 2 : 4;
}

}  // namespace sweepd::kernels

#endif  // SWEEPD_KERNELS_DTYPE_H_
