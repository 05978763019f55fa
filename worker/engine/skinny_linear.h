// Internal to sweepd::engine: y = x · wᵀ for a decode step's few rows through
// the skinny GEMM kernel (kernels/skinny_gemm.h; EngineOptions::skinny_gemm),
// for the CUDA backend's layer GEMMs and the fused sampler's LM head. Owns the
// kernel's K-split counters: allocated (zeros) at the first split call, which
// must be an eager one (a decode graph's warm-up run comes before its
// capture), and never reallocated, since captured graphs hold the pointer;
// every call leaves them zero.
//
// Ownership: one per rank-side user, used on the rank's thread.
#ifndef SWEEPD_WORKER_ENGINE_SKINNY_LINEAR_H_
#define SWEEPD_WORKER_ENGINE_SKINNY_LINEAR_H_

#include <ATen/ATen.h>

#include <cstdint>

namespace sweepd::engine::internal {

class SkinnyLinear {
 public:
  // Whether this build's kernel takes x [M, K] · w [N, K]ᵀ: CUDA tensors,
  // bf16, M <= 32, K a multiple of 64, rows contiguous and 16-byte aligned.
  static bool Takes(const at::Tensor& x, const at::Tensor& w);

  // The product [M, N] (bf16), queued on `stream` (a cudaStream_t).
  at::Tensor Run(const at::Tensor& x, const at::Tensor& w, void* stream);

 private:
  // Shapes with more 128-row tiles than this run unsplit.
  static constexpr int64_t kCounterSlots = 4096;
  at::Tensor counters_;  // int32 [kCounterSlots], zeros
};

}  // namespace sweepd::engine::internal

#endif  // SWEEPD_WORKER_ENGINE_SKINNY_LINEAR_H_
