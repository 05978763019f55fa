// Internal to sweepd::engine: a validated forward request as every rank sees
// it (the plan is computed once, before the fan-out, so every rank issues the
// same collectives in the same order): per-layer interventions, capture points,
// targets, logit-lens positions and the prefix states to start from and to
// keep. Built by MakePlan on the caller's thread; read-only for the ranks
// (except keep_state's per-rank slots, docs/ENGINE.md).
#ifndef SWEEPD_WORKER_ENGINE_FORWARD_PLAN_H_
#define SWEEPD_WORKER_ENGINE_FORWARD_PLAN_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "worker/engine/engine.h"
#include "worker/engine/prefix_state.h"

namespace sweepd::engine::internal {

struct CapturePoint {
  enum Kind {
    kResidIn,
    kResidOut,
    kAttnHeads,
    kAttnOut,
    kMlpIn,
    kFinalNorm
  } kind;
  int layer;
  std::string name;
};

class GramAccumulatorImpl;  // gram.h

struct Plan {
  const ForwardRequest* req = nullptr;
  int start_layer = 0;
  std::vector<uint8_t> skip;                    // per layer
  std::vector<uint8_t> zero;                    // per layer
  std::vector<std::optional<uint64_t>> reinit;  // per layer
  std::vector<std::vector<int>> masked_heads;   // per layer, global indices
  // Per layer: empty (no row masks at that layer) or [batch] global heads
  // masked in that row only (ForwardRequest::row_head_masks).
  std::vector<std::vector<std::vector<int>>> row_masked_heads;
  std::vector<CapturePoint> captures;
  // ForwardRequest::grams (validated: this engine's, no duplicates) and the
  // rows they take (indices into batch*seq, ascending).
  std::vector<GramAccumulatorImpl*> grams;
  std::vector<int64_t> gram_rows;
  std::vector<int32_t> targets;  // [batch*seq], -1 ignored
  // [batch*seq]: 1 where layer_stats ranks the target (ForwardRequest::
  // lens_positions; all targeted positions when the request leaves it empty).
  std::vector<uint8_t> lens;
  const PrefixStateImpl* start_state = nullptr;
  // The request's batch is start_state's batch times this (rows repeated).
  int64_t start_repeat = 1;
  std::shared_ptr<PrefixStateImpl> keep_state;
  int first_touched = 0;
};

// Parses "resid_in[L]", "resid_out[L]", "attn_heads[L]", "attn_out[L]",
// "mlp_in[L]" and "hidden_states[K]" (transformers' indexing); INVALID_ARGUMENT
// naming the capture point otherwise.
absl::StatusOr<CapturePoint> ParseCapture(const std::string& name,
                                          int num_layers);

// Validates `req` against the model and fills `plan` (INVALID_ARGUMENT naming
// what is wrong). `owner` identifies the engine: start_from must carry it, and
// a kept state gets it. `req` must outlive the plan.
absl::Status MakePlan(const ModelConfig& cfg, int tp_size, const void* owner,
                      const ForwardRequest& req, Plan* plan);

}  // namespace sweepd::engine::internal

#endif  // SWEEPD_WORKER_ENGINE_FORWARD_PLAN_H_
