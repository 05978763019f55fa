// Checks a task's engine interventions against the model that will run them.
// The planner validated them against the model it fingerprinted; this is the
// worker's own check, so a task planned for another shape fails with a clear
// error instead of indexing out of range.
//
// ResolveInterventionArtifacts fills in the inputs that live in the artifact
// store (a steer's vector, a replace_layer's weights file) before a task runs.
//
// Plain C++; functions are thread-safe (the store is).
#ifndef SWEEPD_WORKER_JOBS_INTERVENTIONS_H_
#define SWEEPD_WORKER_JOBS_INTERVENTIONS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/artifact_store.h"
#include "worker/engine/engine.h"
#include "worker/jobs/task.h"

namespace sweepd {

// INVALID_ARGUMENT naming the spec field of the intervention (`fields[i]`, or
// "interventions[i]" when `fields` is shorter) when a layer is outside
// [0, num_hidden_layers), a head outside [0, num_attention_heads), or a head
// mask is empty.
absl::Status CheckInterventions(
    const std::vector<engine::Intervention>& interventions,
    const std::vector<std::string>& fields, const ModelConfig& config);

// Resolves `refs` through `store` into `interventions`: a replace_layer gets
// the object's local path (checksum verified), a steer the values of the
// safetensors object's tensor `tensor` (or its only tensor; any shape with
// hidden_size elements, float dtypes). Reads go through ResolveInputArtifact
// (job_artifacts.h): FAILED_PRECONDITION "<field> (artifact <path>) needs
// --artifact-root on the worker" without a store, UNAVAILABLE (retryable)
// for a missing object, DATA_LOSS for a corrupt one; INVALID_ARGUMENT naming
// the field for a missing or ambiguous tensor or a non-float dtype.
absl::Status ResolveInterventionArtifacts(
    const std::shared_ptr<ArtifactStore>& store,
    const std::vector<InterventionArtifactRef>& refs,
    const std::vector<std::string>& fields,
    std::vector<engine::Intervention>* interventions);

// The steering positions of `interventions` as generation resolves them for
// a prompt of `prompt_len` tokens (p < 0: prompt_len + p), so that a forward
// over the prompt and a continuation steers the same tokens; positions that
// fall before the prompt are dropped (a steer left without positions is
// removed, since an empty list means every position).
std::vector<engine::Intervention> PromptRelativeSteering(
    const std::vector<engine::Intervention>& interventions, int64_t prompt_len);

}  // namespace sweepd

#endif  // SWEEPD_WORKER_JOBS_INTERVENTIONS_H_
