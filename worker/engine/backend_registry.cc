#include "worker/engine/backend_registry.h"

#include "worker/engine/reference_backend.h"
#if SWEEPD_ENGINE_CUDA_OPS
#include "worker/engine/cuda_backend.h"
#endif

namespace sweepd::engine::internal {

std::unique_ptr<RankBackend> CreateRankBackend(const ModelConfig& cfg,
                                               const EngineOptions& opts,
                                               RankShard* shard,
                                               EngineDiagnostics* diagnostics) {
#if SWEEPD_ENGINE_CUDA_OPS
  if (shard->device.is_cuda()) {
    return CreateCudaBackend(cfg, opts, shard, diagnostics);
  }
#else
  (void)diagnostics;
#endif
  return CreateReferenceBackend(cfg, opts, shard);
}

}  // namespace sweepd::engine::internal
