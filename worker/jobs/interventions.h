// Checks a task's engine interventions against the model that will run them.
// The planner validated them against the model it fingerprinted; this is the
// worker's own check, so a task planned for another shape fails with a clear
// error instead of indexing out of range.
//
// Plain C++; pure function, thread-safe.
#ifndef SWEEPD_WORKER_JOBS_INTERVENTIONS_H_
#define SWEEPD_WORKER_JOBS_INTERVENTIONS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "worker/engine/engine.h"

namespace sweepd {

// INVALID_ARGUMENT naming the spec field of the intervention (`fields[i]`, or
// "interventions[i]" when `fields` is shorter) when a layer is outside
// [0, num_hidden_layers), a head outside [0, num_attention_heads), or a head
// mask is empty.
absl::Status CheckInterventions(
    const std::vector<engine::Intervention>& interventions,
    const std::vector<std::string>& fields, const ModelConfig& config);

}  // namespace sweepd

#endif  // SWEEPD_WORKER_JOBS_INTERVENTIONS_H_
