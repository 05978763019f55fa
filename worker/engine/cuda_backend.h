// Internal to sweepd::engine, CUDA builds only (SWEEPD_ENABLE_CUDA): the CUDA
// fast path as a RankBackend (docs/ENGINE.md, "GPU path"): q/k/v and gate/up
// as one GEMM each (optionally autotuned cuBLASLt, gemm_tuner.h), the fused
// norm / RoPE / GeGLU / block-influence kernels of kernels/, mask-free
// attention (cuda_attention.h), the fused LM-head pass of
// kernels/lm_head_pass.h, and CUDA events for the phase profile. Same
// semantics as the reference backend. Only backend_registry.cc includes this
// header. Ownership and threading as RankBackend.
#ifndef SWEEPD_WORKER_ENGINE_CUDA_BACKEND_H_
#define SWEEPD_WORKER_ENGINE_CUDA_BACKEND_H_

#include <memory>

#include "common/model_config.h"
#include "worker/engine/diagnostics.h"
#include "worker/engine/engine.h"
#include "worker/engine/rank_backend.h"
#include "worker/engine/weights.h"

namespace sweepd::engine::internal {

// For a rank whose shard lives on a CUDA device. All arguments are borrowed
// for the backend's lifetime.
std::unique_ptr<RankBackend> CreateCudaBackend(const ModelConfig& cfg,
                                               const EngineOptions& opts,
                                               RankShard* shard,
                                               EngineDiagnostics* diagnostics);

}  // namespace sweepd::engine::internal

#endif  // SWEEPD_WORKER_ENGINE_CUDA_BACKEND_H_
