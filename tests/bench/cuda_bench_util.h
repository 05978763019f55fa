// Internal to the CUDA benches (cuda_ops_bench, skinny_gemm_bench): error
// checks, bf16 device buffers and event timing over the raw CUDA runtime.
#ifndef SWEEPD_TESTS_BENCH_CUDA_BENCH_UTIL_H_
#define SWEEPD_TESTS_BENCH_CUDA_BENCH_UTIL_H_

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

#include "kernels/cuda_util.h"

namespace sweepd::bench {

inline void Check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(err));
    std::exit(1);
  }
}

inline void CheckOp(int code, const char* what) {
  if (code != 0) {
    std::fprintf(stderr, "%s: %s\n", what, kernels::CudaErrorString(code));
    std::exit(1);
  }
}

// Device buffer of `elems` bf16 values in [-1, 1).
inline void* Bf16Buffer(int64_t elems) {
  void* p = nullptr;
  Check(cudaMalloc(&p, static_cast<size_t>(elems) * 2), "cudaMalloc");
  std::vector<uint16_t> host(
      static_cast<size_t>(std::min<int64_t>(elems, 1 << 20)));
  uint32_t s = 12345;
  for (auto& h : host) {
    s = s * 1664525u + 1013904223u;
    const float f = static_cast<float>(s >> 8) / (1 << 24) * 2.0f - 1.0f;
    uint32_t u;
    std::memcpy(&u, &f, 4);
    h = static_cast<uint16_t>(u >> 16);
  }
  for (int64_t off = 0; off < elems; off += static_cast<int64_t>(host.size())) {
    const int64_t n = std::min<int64_t>(host.size(), elems - off);
    Check(cudaMemcpy(static_cast<uint16_t*>(p) + off, host.data(), n * 2,
                     cudaMemcpyHostToDevice),
          "cudaMemcpy");
  }
  return p;
}

// Median milliseconds of `iters` runs of fn after two warm-ups.
inline double TimeMs(const std::function<void()>& fn, int iters) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  fn();
  fn();
  std::vector<float> ms;
  for (int i = 0; i < iters; ++i) {
    cudaEventRecord(a);
    fn();
    cudaEventRecord(b);
    Check(cudaEventSynchronize(b), "kernel");
    float t = 0;
    cudaEventElapsedTime(&t, a, b);
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace sweepd::bench

#endif  // SWEEPD_TESTS_BENCH_CUDA_BENCH_UTIL_H_
