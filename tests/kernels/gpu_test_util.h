// Internal to the kernels' GPU tests (fused_kernels_gpu_test,
// head_norm_rope_gpu_test): device buffers of host bytes or bf16 values,
// random inputs, and the tolerance counts they compare with.
#ifndef SWEEPD_TESTS_KERNELS_GPU_TEST_UTIL_H_
#define SWEEPD_TESTS_KERNELS_GPU_TEST_UTIL_H_

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/dtype.h"

namespace sweepd::kernels::gpu_test {

// Device copy of bf16 values; frees on destruction.
struct DevBf16 {
  explicit DevBf16(const std::vector<uint16_t>& h) : n(h.size()) {
    EXPECT_EQ(cudaMalloc(&p, n * 2), cudaSuccess);
    cudaMemcpy(p, h.data(), n * 2, cudaMemcpyHostToDevice);
  }
  explicit DevBf16(size_t count) : n(count) {
    EXPECT_EQ(cudaMalloc(&p, n * 2), cudaSuccess);
    cudaMemset(p, 0, n * 2);
  }
  ~DevBf16() { cudaFree(p); }
  std::vector<float> Read() const {
    std::vector<uint16_t> h(n);
    cudaMemcpy(h.data(), p, n * 2, cudaMemcpyDeviceToHost);
    std::vector<float> f(n);
    for (size_t i = 0; i < n; ++i) f[i] = FloatFromBf16(h[i]);
    return f;
  }
  void* p = nullptr;
  size_t n;
};

inline float RoundBf16(double v) {
  return FloatFromBf16(Bf16FromFloat(static_cast<float>(v)));
}

// Random bf16 values (host copy as float in `f`, raw in the return value).
inline std::vector<uint16_t> RandomBf16(size_t n, float scale, uint32_t seed,
                                        std::vector<float>* f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<uint16_t> h(n);
  f->resize(n);
  for (size_t i = 0; i < n; ++i) {
    h[i] = Bf16FromFloat(dist(rng));
    (*f)[i] = FloatFromBf16(h[i]);
  }
  return h;
}

// Elements of got that differ from want by more than one bf16 step of want.
inline int BeyondOneBf16Step(const std::vector<float>& got,
                             const std::vector<float>& want) {
  int bad = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double step = std::max(std::abs(want[i]) / 128.0, 1e-30);
    if (std::abs(got[i] - want[i]) > step * 1.01) ++bad;
  }
  return bad;
}

// Raw device buffer initialised from (and read back into) host bytes.
struct DevBytes {
  explicit DevBytes(const std::vector<uint8_t>& h) : n(h.size()) {
    EXPECT_EQ(cudaMalloc(&p, n), cudaSuccess);
    cudaMemcpy(p, h.data(), n, cudaMemcpyHostToDevice);
  }
  ~DevBytes() { cudaFree(p); }
  std::vector<uint8_t> Read() const {
    std::vector<uint8_t> h(n);
    cudaMemcpy(h.data(), p, n, cudaMemcpyDeviceToHost);
    return h;
  }
  void* p = nullptr;
  size_t n;
};

// n random values of `dtype` as raw bytes.
inline std::vector<uint8_t> RandomBytes(Dtype dtype, int64_t n, float scale,
                                        uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<uint8_t> h(n * DtypeSize(dtype));
  for (int64_t i = 0; i < n; ++i) StoreAs(dtype, h.data(), i, dist(rng));
  return h;
}

// Elements (as `dtype`) where got and want differ by more than `rel` of
// |want| plus `abs`.
inline int64_t Mismatches(Dtype dtype, const std::vector<uint8_t>& got,
                          const std::vector<uint8_t>& want, double rel,
                          double abs) {
  const int64_t n = static_cast<int64_t>(want.size()) / DtypeSize(dtype);
  int64_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double g = LoadAs(dtype, got.data(), i);
    const double w = LoadAs(dtype, want.data(), i);
    if (std::abs(g - w) > rel * std::abs(w) + abs) ++bad;
  }
  return bad;
}

inline double RelTol(Dtype dtype) {
  return dtype == Dtype::kBFloat16 ? 1.01 / 128 : 2e-5;
}

}  // namespace sweepd::kernels::gpu_test

#endif  // SWEEPD_TESTS_KERNELS_GPU_TEST_UTIL_H_
