// Prune plans (seed 001): which attention heads to drop per layer, derived
// from the leave-one-out NLL deltas of head_importance tasks
// (docs/CALIBRATION.md, "Pipeline"). PoolHeadImportance pools the
// "head_nll_delta" rows of task records over shards and datasets, weighted by
// each task's scored tokens ("head_importance_tokens"); DerivePrunePlan takes,
// per selected layer, the heads (or whole KV groups) with the lowest pooled
// delta, ties broken by the lower index. The planner turns a plan into the
// heal / materialize / eval tasks of derived stages (derived_stages.h); the
// report shows the same numbers.
//
// Plain value types and stateless free functions: thread-safe, no I/O.
#ifndef SWEEPD_COORDINATOR_PRUNE_PLAN_H_
#define SWEEPD_COORDINATOR_PRUNE_PLAN_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sweepd/v1/task.pb.h"

namespace sweepd {

// Pooled head importance: delta[layer][head] = sum over tasks of
// delta * tokens / sum of tokens (tasks without a token row weigh 1).
struct HeadImportance {
  std::map<int, std::map<int, double>> delta;
  std::map<int, std::map<int, double>> weight;  // tokens behind each delta
  // Pooled baseline NLL per dataset (weighted the same way).
  std::map<std::string, double> baseline_nll;
  int tasks = 0;  // DONE head_importance records read
};

// Pools the DONE records whose stage is `stage` (any stage when `any_stage`).
// Records of other kinds and unfinished records are ignored.
HeadImportance PoolHeadImportance(
    const std::vector<sweepd::v1::TaskRecord>& records,
    const std::string& stage, bool any_stage);

struct PrunePlanOptions {
  // Exactly one > 0: the lowest floor(fraction * units + 1e-9) units per
  // layer, or `count` units. A unit is a head, or with kv_groups a KV group.
  double fraction = 0.0;
  int count = 0;
  // Drop whole KV groups: the query heads h with h / (num_heads /
  // kv_heads[layer]) == g form group g, scored by the sum of their deltas.
  bool kv_groups = false;
  // Layers to prune; empty = every scored layer.
  std::vector<int> layers;
  int num_heads = 0;
  // Per layer KV heads (needed with kv_groups; full and sliding layers may
  // differ, docs/ENGINE.md).
  std::vector<int> kv_heads;
};

struct LayerPrune {
  int layer = 0;
  std::vector<int> heads;  // ascending
};

// Ascending by layer; layers that lose no head are left out.
using PrunePlan = std::vector<LayerPrune>;

// FAILED_PRECONDITION when the importance has no rows, a selected layer has no
// rows or misses a head, or a layer would lose every head;
// INVALID_ARGUMENT for options that select nothing sensible.
absl::StatusOr<PrunePlan> DerivePrunePlan(const HeadImportance& importance,
                                          const PrunePlanOptions& options);

}  // namespace sweepd

#endif  // SWEEPD_COORDINATOR_PRUNE_PLAN_H_
