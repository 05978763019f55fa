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
#include "common/safetensors.h"
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
// One steering intervention as the ranks apply it to resid_in[layer].
struct SteerOp {
  Intervention::SteerMode mode = Intervention::SteerMode::kAdd;
  std::vector<float> delta;   // scale * vector, [hidden] float32
  std::vector<int64_t> rows;  // flat rows of [batch * seq], ascending
};

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
  // Per layer: the replace_layer file (validated against the model), or null.
  std::vector<std::shared_ptr<const SafetensorsFile>> replace;
  // Per layer: the steering applied to the residual entering it, in request
  // order.
  std::vector<std::vector<SteerOp>> steer;
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

// Sets the rows every steering intervention of `req` selects: row r (of
// [batch * seq]) holds the token at position pos[r] of a sequence whose
// negative positions count from len[r] (pos[r] < 0: a pad, never selected).
// MakePlan calls it with pos = r % seq, len = seq; generation with the
// prompt's positions and length (docs/GENERATION.md).
void ResolveSteering(const ForwardRequest& req, const std::vector<int64_t>& pos,
                     const std::vector<int64_t>& len, Plan* plan);

// Validates `req` against the model and fills `plan` (INVALID_ARGUMENT naming
// what is wrong). `owner` identifies the engine: start_from must carry it, and
// a kept state gets it. `req` must outlive the plan.
absl::Status MakePlan(const ModelConfig& cfg, int tp_size, const void* owner,
                      const ForwardRequest& req, Plan* plan);

}  // namespace sweepd::engine::internal

#endif  // SWEEPD_WORKER_ENGINE_FORWARD_PLAN_H_
