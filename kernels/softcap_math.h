// Internal to sweepd::kernels (included by lm_head_pass.cc and lm_head_pass.cu
// only): the scalar functions whose results must be bit-identical on the host
// and on the device — the exact fp32 softcap (target logits) and its rank
// threshold — plus small bit helpers. Stateless, reentrant.
//
// Bit-identity: every floating-point operation is an explicit, correctly
// rounded IEEE operation (add, mul, div, fma, conversion). On the device they
// are the __d*_rn / __fma_rn intrinsics, which nvcc never contracts or
// reorders; on the host they are plain operators and std::fma, and the kernels
// target is compiled with -ffp-contract=off so that GCC cannot fuse them
// either.
#ifndef SWEEPD_KERNELS_SOFTCAP_MATH_H_
#define SWEEPD_KERNELS_SOFTCAP_MATH_H_

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define SWEEPD_HD __host__ __device__ __forceinline__
#else
#define SWEEPD_HD inline
#endif

namespace sweepd::kernels::internal {

SWEEPD_HD double DAdd(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
SWEEPD_HD double DMul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
SWEEPD_HD double DDiv(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}
SWEEPD_HD double DFma(double a, double b, double c) {
#if defined(__CUDA_ARCH__)
  return __fma_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
SWEEPD_HD float DToF(double a) {
#if defined(__CUDA_ARCH__)
  return __double2float_rn(a);
#else
  return static_cast<float>(
      a);  // round to nearest even (SSE2 cvtsd2ss, default mode)
#endif
}

SWEEPD_HD float BitsToFloat(uint32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof(f));
  return f;
}
SWEEPD_HD uint32_t FloatToBits(float f) {
  uint32_t bits;
  memcpy(&bits, &f, sizeof(bits));
  return bits;
}
SWEEPD_HD float Bf16BitsToFloat(uint16_t bits) {
  return BitsToFloat(static_cast<uint32_t>(bits) << 16);
}

// exp(u) for |u| <= 64: Cody-Waite reduction by ln2, degree-13 Taylor
// polynomial on |r| <= ln2/2 (truncation < 1e-18 relative), exact scaling by
// 2^k.
SWEEPD_HD double ExpD(double u) {
  const double kInvLn2 = 0x1.71547652b82fep+0;
  const double kLn2Hi = 0x1.62e42fee00000p-1;
  const double kLn2Lo = 0x1.a39ef35793c76p-33;
  const double k = rint(DMul(u, kInvLn2));
  double r = DFma(-k, kLn2Hi, u);
  r = DFma(-k, kLn2Lo, r);
  // 1/j! for j = 13..0, Horner.
  const double c[14] = {
      0x1.6124613a86d09p-33, 0x1.1eed8eff8d898p-29, 0x1.ae64567f544e4p-26,
      0x1.27e4fb7789f5cp-22, 0x1.71de3a556c734p-19, 0x1.a01a01a01a01ap-16,
      0x1.a01a01a01a01ap-13, 0x1.6c16c16c16c17p-10, 0x1.1111111111111p-7,
      0x1.5555555555555p-5,  0x1.5555555555555p-3,  0x1.0000000000000p-1,
      0x1.0000000000000p+0,  0x1.0000000000000p+0};
  double p = c[0];
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int j = 1; j < 14; ++j) p = DFma(p, r, c[j]);
  const int64_t biased =
      static_cast<int64_t>(k) + 1023;  // |k| <= 93: a normal power of two
  const uint64_t scale_bits = static_cast<uint64_t>(biased) << 52;
  double scale;
  memcpy(&scale, &scale_bits, sizeof(scale));
  return DMul(p, scale);
}

// tanh(a) for a >= 0 in float64 (relative error ~1e-16).
SWEEPD_HD double TanhNonNegD(double a) {
  if (a > 20.0) return 1.0;  // 1 - tanh(20) < 2^-56
  const double u = DAdd(a, a);
  double em1;  // exp(u) - 1
  if (u < 0.5) {
    // expm1 by its Taylor series: u * sum_{j=0}^{15} u^j / (j+1)!  (truncation
    // < 1e-19).
    const double c[16] = {
        0x1.ae7f3e733b81fp-45, 0x1.ae7f3e733b81fp-41, 0x1.93974a8c07c9dp-37,
        0x1.6124613a86d09p-33, 0x1.1eed8eff8d898p-29, 0x1.ae64567f544e4p-26,
        0x1.27e4fb7789f5cp-22, 0x1.71de3a556c734p-19, 0x1.a01a01a01a01ap-16,
        0x1.a01a01a01a01ap-13, 0x1.6c16c16c16c17p-10, 0x1.1111111111111p-7,
        0x1.5555555555555p-5,  0x1.5555555555555p-3,  0x1.0000000000000p-1,
        0x1.0000000000000p+0};
    double p = c[0];
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int j = 1; j < 16; ++j) p = DFma(p, u, c[j]);
    em1 = DMul(p, u);
  } else {
    em1 = DAdd(ExpD(u), -1.0);
  }
  return DDiv(em1, DAdd(em1, 2.0));
}

// The definition of the exact fp32 softcap (see lm_head_pass.h:
// SoftcapExactF32).
SWEEPD_HD float SoftcapExact(float x, float softcap) {
  if (!(softcap > 0.0f)) return x;
  if (x != x) return x;  // NaN
  const double c = static_cast<double>(softcap);
  const double y = DDiv(static_cast<double>(x), c);
  const double t = TanhNonNegD(y < 0.0 ? -y : y);
  const float mag = DToF(DMul(c, t));
  return y < 0.0 ? -mag : mag;
}

// Ordered keys: unsigned integers that sort like the floats they encode
// (sign-magnitude to offset binary), for bf16 (16 bits) and fp32 (32 bits).
SWEEPD_HD uint32_t OrderedKey(uint32_t bits, int width) {
  const uint32_t sign = 1u << (width - 1);
  const uint32_t mask = width == 32 ? 0xFFFFFFFFu : ((1u << width) - 1u);
  return (bits & sign) ? (~bits & mask) : (bits | sign);
}
SWEEPD_HD uint32_t KeyToBits(uint32_t key, int width) {
  const uint32_t sign = 1u << (width - 1);
  const uint32_t mask = width == 32 ? 0xFFFFFFFFu : ((1u << width) - 1u);
  return (key & sign) ? (key & ~sign) : (~key & mask);
}
SWEEPD_HD float KeyToFloat(uint32_t key, int width) {
  const uint32_t bits = KeyToBits(key, width);
  return width == 32 ? BitsToFloat(bits) : BitsToFloat(bits << 16);
}

// See lm_head_pass.h: SoftcapThreshold. width = 16 (bf16) or 32 (fp32).
SWEEPD_HD float SoftcapThresholdImpl(float z, float softcap, int width) {
  const float kInf = BitsToFloat(0x7F800000u);
  const float kNaN = BitsToFloat(0x7FC00000u);
  if (!(SoftcapExact(kInf, softcap) > z))
    return kNaN;  // nothing is larger (or z is NaN)
  if (SoftcapExact(-kInf, softcap) > z) return -kInf;
  const uint32_t neg_inf_bits = width == 32 ? 0xFF800000u : 0xFF80u;
  const uint32_t pos_inf_bits = width == 32 ? 0x7F800000u : 0x7F80u;
  uint32_t lo = OrderedKey(neg_inf_bits, width);  // S(lo) <= z
  uint32_t hi = OrderedKey(pos_inf_bits, width);  // S(hi) > z
  while (hi - lo > 1u) {
    const uint32_t mid = lo + (hi - lo) / 2u;
    if (SoftcapExact(KeyToFloat(mid, width), softcap) > z) {
      hi = mid;
    } else {
      lo = mid;
    }
  }
  return KeyToFloat(hi, width);
}

}  // namespace sweepd::kernels::internal

#endif  // SWEEPD_KERNELS_SOFTCAP_MATH_H_
