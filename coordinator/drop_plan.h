// Drop plans: for each requested size k, the k scored, non-critical layers
// with the lowest combined safety score (ties by layer index), derived from a
// LayerStudy (coordinator/layer_profile.h) by the rules of docs/REPORTS.md.
// The report shows them; the planner turns them into the eval tasks of a
// derived drop_plan stage (docs/STAGES.md).
//
// Plain value types and stateless free functions: thread-safe, no I/O.
#ifndef SWEEPD_COORDINATOR_DROP_PLAN_H_
#define SWEEPD_COORDINATOR_DROP_PLAN_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "coordinator/layer_profile.h"

namespace sweepd {

struct DropPlan {
  int k = 0;
  // False when fewer than k scored non-critical layers exist; `layers` is then
  // empty.
  bool feasible = false;
  std::vector<int> layers;  // ascending
  // Measured by a block-drop (or, for k = 1, single-skip) task on exactly these
  // layers (PoolAblation over the study's ablation datasets).
  std::optional<double> measured_ppl;
  std::optional<double> measured_delta_pct;
};

struct DropPlans {
  // Ascending k, one per distinct requested size.
  std::vector<DropPlan> plans;
  // "No drop plan for k = ..." for each infeasible size.
  std::vector<std::string> notes;
};

// INVALID_ARGUMENT when an entry of `drop_k` is <= 0.
absl::Status ValidateDropSizes(const std::vector<int>& drop_k);

// Derives one plan per distinct k in `drop_k` (sorted and de-duplicated).
// INVALID_ARGUMENT when an entry is <= 0.
absl::StatusOr<DropPlans> DeriveDropPlans(const LayerStudy& study,
                                          std::vector<int> drop_k);

// Sets each layer's first_drop_k (smallest k whose plan contains it) and its
// verdict: never touch (critical), unscored, drop (in some plan) or keep.
// `plans` ascending by k, as DeriveDropPlans returns them.
void MarkVerdicts(const std::vector<DropPlan>& plans,
                  std::vector<LayerProfile>* layers);

}  // namespace sweepd

#endif  // SWEEPD_COORDINATOR_DROP_PLAN_H_
