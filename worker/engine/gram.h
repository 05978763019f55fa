// Internal to sweepd::engine: Gram accumulation on the device
// (ForwardRequest::grams, docs/ENGINE.md "Gram accumulation").
//
// GramAccumulatorImpl is the GramAccumulator of engine.h: per rank, the row
// block of XᵀX (and XᵀY, and Σ‖y‖² on rank 0) in float64 on the rank's
// device. Rank r owns rows [row_start, row_start + row_len) of the [d, d]
// matrix: for attn_heads[L] (head-sharded) exactly the columns of its own
// heads (head-major, heads [r·Hl, (r+1)·Hl)), for replicated points an even
// split of the d columns. Each forward computes, per rank, X_rᵀ X (X_r = its
// columns of the selected rows, X = all columns: gathered from every rank for
// head-sharded points) and adds it to the block, so the full matrix is never
// held by one rank and no activation leaves the device.
//
// GramFeed does this inside a rank's forward: capture sites hand it the
// rank-local tensor of a point; when a Gram's X (and target Y) of the forward
// are both present it issues the gathers (every rank the same collectives in
// the same order: the Grams' order in the plan, then the order of the capture
// sites, which is the same on every rank) and accumulates.
//
// Ownership: the accumulator's blocks are written only by their rank's thread
// during a forward and read by ReadGram on the rank threads between forwards
// (the engine serialises both); count and failed are written by the engine's
// calling thread under the engine's forward lock.
#ifndef SWEEPD_WORKER_ENGINE_GRAM_H_
#define SWEEPD_WORKER_ENGINE_GRAM_H_

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "worker/comm/communicator.h"
#include "worker/engine/engine.h"
#include "worker/engine/forward_plan.h"

namespace sweepd::engine::internal {

// Width of a capture point flattened per token: heads * head_dim for
// attn_heads[L], hidden_size otherwise.
int64_t CaptureWidth(const ModelConfig& cfg, const CapturePoint& cp);

// Whether the point is split over the ranks (attn_heads) rather than
// replicated.
inline bool HeadSharded(const CapturePoint& cp) {
  return cp.kind == CapturePoint::kAttnHeads;
}

struct GramBlock {
  at::Tensor xtx;  // [row_len, d] float64
  at::Tensor xty;  // [row_len, e] float64 (with a target)
  at::Tensor yy;   // [] float64, rank 0 only (with a target)
  int64_t row_start = 0;
  int64_t row_len = 0;
};

class GramAccumulatorImpl : public GramAccumulator {
 public:
  const std::string& point() const override { return point_; }
  const std::string& target() const override { return target_; }
  int64_t width() const override { return d; }
  int64_t target_width() const override { return e; }

  const void* owner = nullptr;
  std::string point_, target_;
  CapturePoint x{CapturePoint::kResidIn, 0, ""};
  std::optional<CapturePoint> y;
  int64_t d = 0, e = 0;
  std::vector<GramBlock> blocks;  // per rank
  int64_t count = 0;
  bool failed = false;
};

// A new accumulator of `point` (and `target`, "" = none) for an engine of
// `tp` ranks; INVALID_ARGUMENT naming a bad point.
absl::StatusOr<std::shared_ptr<GramAccumulatorImpl>> MakeGramAccumulator(
    const ModelConfig& cfg, int tp, const void* owner, const std::string& point,
    const std::string& target);

// One rank's Gram work during one forward.
class GramFeed {
 public:
  // `rows`: int64 indices into the forward's batch*seq rows on the rank's
  // device (the selected rows); `grams` the plan's accumulators.
  GramFeed(const ModelConfig& cfg, int rank, int tp, comm::Communicator* comm,
           std::vector<GramAccumulatorImpl*> grams, at::Tensor rows);

  // Called by every rank at every capture site with the rank-local tensor
  // ([B, S, Hl, hd] for attn_heads, [B, S, hidden] otherwise).
  void Offer(CapturePoint::Kind kind, int L, const at::Tensor& t);
  // Whether any Gram takes this site (so callers may skip work).
  bool Wants(CapturePoint::Kind kind, int L) const;

 private:
  struct Pending {
    at::Tensor x_block, x_full, y_full;
  };
  // The selected rows of t flattened to [n, width]; all columns (gathered
  // from every rank when head-sharded).
  at::Tensor FullRows(const CapturePoint& cp, const at::Tensor& t,
                      at::Tensor* local);
  void Accumulate(GramAccumulatorImpl* g, Pending* p);

  const ModelConfig& cfg_;
  const int rank_, tp_;
  comm::Communicator* const comm_;
  std::vector<GramAccumulatorImpl*> grams_;
  std::vector<Pending> pending_;
  at::Tensor rows_;
};

}  // namespace sweepd::engine::internal

#endif  // SWEEPD_WORKER_ENGINE_GRAM_H_
