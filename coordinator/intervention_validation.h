// Validation of the interventions a spec carries (docs/JOBS.md): skip, zero,
// reinit, mask_heads, steer and replace_layer, in a grid's intervention items
// and in eval.base_interventions. Each check canonicalises in place what the
// task key hashes (layer selectors "all" -> "0-59", head lists sorted, steer
// mode "add" filled) and returns INVALID_ARGUMENT naming the field
// ("grid.axes[0].interventions.items[1].interventions[0].steer.vector: ...").
// Split out of planner.cc; called from the grid expansion (grid_expansion.h)
// and the job validation (job_validation.h). Internal to coordinator/.
//
// Stateless free functions; thread-safe.
#ifndef SWEEPD_COORDINATOR_INTERVENTION_VALIDATION_H_
#define SWEEPD_COORDINATOR_INTERVENTION_VALIDATION_H_

#include <string>

#include "absl/status/status.h"
#include "coordinator/spec_checks.h"
#include "sweepd/v1/spec.pb.h"

namespace sweepd::internal {

// An artifact reference's form: an object path of a store and, when given, a
// SHA-256 in lower-case hex that matches it.
absl::Status CheckArtifactRef(const sweepd::v1::ArtifactRef& ref,
                              const std::string& field);

// Validates one intervention and canonicalises its layer selectors in place.
absl::Status ValidateIntervention(sweepd::v1::Intervention* iv,
                                  const ModelShape& m,
                                  const std::string& field);

// ValidateIntervention on every intervention of `set`
// ("<field>.interventions[k]").
absl::Status ValidateInterventionSet(sweepd::v1::InterventionSet* set,
                                     const ModelShape& m,
                                     const std::string& field);

}  // namespace sweepd::internal

#endif  // SWEEPD_COORDINATOR_INTERVENTION_VALIDATION_H_
