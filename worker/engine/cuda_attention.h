// Internal to sweepd::engine, CUDA builds only (SWEEPD_ENABLE_CUDA): the CUDA
// path's attention of one rank (docs/ENGINE.md, "GPU path", Attention) — the
// choice among EngineOptions::attention_path's kernels per layer, cuDNN's
// fused attention banded by window blocks, FlashAttention-2 with the sliding
// window, chunked GEMM attention (cuBLAS Q·Kᵀ per query block, fused causal
// softmax, cuBLAS P·V) and the SDPA fallback, and the once-per-device check of
// each fused kernel against a float32 banded-mask reference (verdicts in the
// engine's EngineDiagnostics).
//
// Ownership: borrows the engine's config, options, the rank's shard and the
// diagnostics; per forward, the rank's RankForward (Bind). Used only from the
// rank's thread.
#ifndef SWEEPD_WORKER_ENGINE_CUDA_ATTENTION_H_
#define SWEEPD_WORKER_ENGINE_CUDA_ATTENTION_H_

#include <ATen/ATen.h>

#include "common/model_config.h"
#include "kernels/dtype.h"
#include "worker/engine/diagnostics.h"
#include "worker/engine/engine.h"
#include "worker/engine/profile.h"
#include "worker/engine/rank_forward.h"
#include "worker/engine/weights.h"

namespace sweepd::engine::internal {

class CudaAttention {
 public:
  CudaAttention(const ModelConfig& cfg, const EngineOptions& opts,
                RankShard* shard, EngineDiagnostics* diagnostics)
      : cfg_(cfg), opts_(opts), s_(*shard), diagnostics_(diagnostics) {}

  // The forward in progress (nullptr after it) and the rank's compute stream.
  void Bind(RankForward* f, void* stream) {
    f_ = f;
    stream_ = stream;
  }

  // Causal attention of layer L on q [B, S, Hl, hd], k/v [B, S, KVl, hd]
  // (AttentionPath): cuDNN (kAuto) or FlashAttention-2 with the sliding window
  // and grouped KV heads where they apply (bf16, head_dim <= 256); chunked GEMM
  // attention for head_dim > 256 (kAuto, kFlash) or every layer
  // (kChunkedGemm); else SDPA with is_causal and no mask (K/V heads expanded),
  // or, for a sliding layer longer than its window, SDPA with the band mask.
  // Returns [B, S, Hl, hd] contiguous.
  at::Tensor Forward(int L, const at::Tensor& q, at::Tensor k, at::Tensor v);

 private:
  bool FlashWindowUsable();
  bool CudnnAttentionUsable();
  at::Tensor CudnnAttention(const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v, int64_t window);
  at::Tensor ChunkedAttention(const at::Tensor& q, const at::Tensor& k,
                              const at::Tensor& v, int64_t window);
  kernels::Dtype OpDtype() const;
  PhaseClock* clock() { return f_->clock(); }

  const ModelConfig& cfg_;
  const EngineOptions& opts_;
  RankShard& s_;
  EngineDiagnostics* const diagnostics_;
  RankForward* f_ = nullptr;
  void* stream_ = nullptr;  // cudaStream_t of the rank's compute stream
};

}  // namespace sweepd::engine::internal

#endif  // SWEEPD_WORKER_ENGINE_CUDA_ATTENTION_H_
