// Internal to the planner: the single-stage planning that PlanSweep
// (planner.cc) and the derived stages (derived_stages.cc) share. Not for use
// outside coordinator/; the contract of the public API is planner.h.
//
// Stateless apart from the options; thread-safe. Reads files (model and
// dataset fingerprints).
#ifndef SWEEPD_COORDINATOR_PLANNER_INTERNAL_H_
#define SWEEPD_COORDINATOR_PLANNER_INTERNAL_H_

#include <string>

#include "absl/status/statusor.h"
#include "coordinator/planner.h"
#include "sweepd/v1/spec.pb.h"

namespace sweepd::internal {

// Plans one stage: `spec` without stages (validated, resolved, expanded);
// every task records `stage` in TaskSpec.stage.
absl::StatusOr<Plan> PlanOneStage(const sweepd::v1::SweepSpec& spec,
                                  const PlannerOptions& options,
                                  const std::string& stage);

// The spec of stage `stage` of `spec`: the sweep's model, policy and labels
// with the stage's job (or the sweep's), grid and datasets (or the sweep's).
sweepd::v1::SweepSpec StageSpec(const sweepd::v1::SweepSpec& spec,
                                const sweepd::v1::Stage& stage);

}  // namespace sweepd::internal

#endif  // SWEEPD_COORDINATOR_PLANNER_INTERNAL_H_
