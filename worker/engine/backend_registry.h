// Internal to sweepd::engine: picks the RankBackend of each rank — the CUDA
// fast path for ranks on CUDA devices in builds with SWEEPD_ENABLE_CUDA, the
// reference backend otherwise (CPU, or any libtorch device in other builds).
// backend_registry.cc is the one file that branches on the CUDA build option,
// as comm_factory.cc is for NCCL. Stateless; thread-safe.
#ifndef SWEEPD_WORKER_ENGINE_BACKEND_REGISTRY_H_
#define SWEEPD_WORKER_ENGINE_BACKEND_REGISTRY_H_

#include <memory>

#include "common/model_config.h"
#include "worker/engine/diagnostics.h"
#include "worker/engine/engine.h"
#include "worker/engine/rank_backend.h"
#include "worker/engine/weights.h"

namespace sweepd::engine::internal {

// The backend of `shard`'s rank. All arguments are borrowed for the backend's
// lifetime.
std::unique_ptr<RankBackend> CreateRankBackend(const ModelConfig& cfg,
                                               const EngineOptions& opts,
                                               RankShard* shard,
                                               EngineDiagnostics* diagnostics);

}  // namespace sweepd::engine::internal

#endif  // SWEEPD_WORKER_ENGINE_BACKEND_REGISTRY_H_
