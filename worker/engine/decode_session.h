// Internal to sweepd::engine: the DecodeSession of decode.h on top of an
// engine's ranks. A session owns the host page table (page_table.h), one
// RankKvCache per rank and the live sequences; AddPrompt and Step build one
// forward plan each and run it on every rank through RankForward with a
// ForwardHook that positions the tokens, attends through the cache and
// samples (sampler.h) instead of scoring.
//
// Ownership and threads: see decode.h. The DecodeHost (the engine) outlives
// the session.
#ifndef SWEEPD_WORKER_ENGINE_DECODE_SESSION_H_
#define SWEEPD_WORKER_ENGINE_DECODE_SESSION_H_

#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "worker/comm/communicator.h"
#include "worker/engine/decode.h"
#include "worker/engine/diagnostics.h"
#include "worker/engine/engine.h"
#include "worker/engine/rank_backend.h"
#include "worker/engine/weights.h"

namespace sweepd::engine::internal {

struct RankContext {
  int rank = 0;
  RankShard* shard = nullptr;
  RankBackend* backend = nullptr;
  comm::Communicator* comm = nullptr;
};

// What a session needs of its engine (EngineImpl).
class DecodeHost {
 public:
  virtual ~DecodeHost() = default;
  virtual const ModelConfig& cfg() const = 0;
  // Valid while RunRanks runs (Reconfigure waits for it).
  virtual const EngineOptions& opts() const = 0;
  virtual int tp() const = 0;
  virtual EngineDiagnostics* diagnostics() = 0;
  // Identifies the engine (forward plans carry it).
  virtual const void* owner() const = 0;
  // Runs fn on every rank's thread while holding the engine, as a forward
  // does; libtorch errors and failed collectives come back as the Status.
  virtual absl::Status RunRanks(
      const std::function<void(const RankContext&)>& fn, const char* what) = 0;
  virtual void AddLayerForwards(int64_t n) = 0;
};

absl::StatusOr<std::unique_ptr<DecodeSession>> CreateDecodeSession(
    DecodeHost* host, const DecodeOptions& options);

}  // namespace sweepd::engine::internal

#endif  // SWEEPD_WORKER_ENGINE_DECODE_SESSION_H_
