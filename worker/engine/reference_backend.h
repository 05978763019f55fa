// Internal to sweepd::engine: the reference RankBackend — the eager libtorch
// ops of docs/ENGINE.md ("The model"), on CPU and on any libtorch device:
// RMSNorm in float32, rotate-half RoPE, attention with an explicit mask
// (scores in the compute dtype, softmax in float32; SDPA on CUDA where
// EngineOptions::use_sdpa allows), GeGLU, the eager LM head and probe
// statistics. Ownership and threading as RankBackend.
#ifndef SWEEPD_WORKER_ENGINE_REFERENCE_BACKEND_H_
#define SWEEPD_WORKER_ENGINE_REFERENCE_BACKEND_H_

#include <memory>

#include "common/model_config.h"
#include "worker/engine/engine.h"
#include "worker/engine/rank_backend.h"
#include "worker/engine/weights.h"

namespace sweepd::engine::internal {

// `cfg`, `opts` and `shard` are borrowed for the backend's lifetime.
std::unique_ptr<RankBackend> CreateReferenceBackend(const ModelConfig& cfg,
                                                    const EngineOptions& opts,
                                                    RankShard* shard);

// x · (mean(x²) + eps)^-0.5 · weight in float32, cast back to x's dtype
// (weight undefined: no scale).
at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps);

}  // namespace sweepd::engine::internal

#endif  // SWEEPD_WORKER_ENGINE_REFERENCE_BACKEND_H_
