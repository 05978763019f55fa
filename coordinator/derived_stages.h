// Derived stages (docs/STAGES.md): stages planned after the sweep's earlier
// tasks finished, from their results. A stage is derived when it has a
// drop_plan (seed 000: the k safest layers skipped), a prune_plan (seed 001:
// the heads of the lowest importance per layer; heal gets one task per pruned
// layer, materialize the plan's heads, eval / generate / canary the plan's
// head masks), a heal job with capture_stage (its Grams), a materialize job
// with heal_stage (its healed o_proj artifacts), model_from_stage (it runs
// on the checkpoint a materialize stage wrote), or replace_layer_from_stage
// (every task replaces the layers a retrain stage trained by its artifacts).
// Every stage after a derived one is deferred too, so stages are always
// appended in order.
//
// PlanDerivedStage (declared in planner.h) is defined here. Stateless free
// functions: thread-safe; they read model configs and fingerprints.
#ifndef SWEEPD_COORDINATOR_DERIVED_STAGES_H_
#define SWEEPD_COORDINATOR_DERIVED_STAGES_H_

#include "absl/status/status.h"
#include "coordinator/planner.h"
#include "sweepd/v1/spec.pb.h"

namespace sweepd {

// Whether `stage` needs the results of earlier stages to be planned.
bool IsDerivedStage(const sweepd::v1::Stage& stage);

// Submit-time checks of deferred stage `index` of `spec` (names of referenced
// stages exist and come earlier, derivation options are consistent, the job
// and datasets are valid with placeholder values for what is derived later).
// INVALID_ARGUMENT naming the field ("stages[3].prune_plan.fraction").
absl::Status ValidateDeferredStage(const sweepd::v1::SweepSpec& spec, int index,
                                   const PlannerOptions& options);

}  // namespace sweepd

#endif  // SWEEPD_COORDINATOR_DERIVED_STAGES_H_
