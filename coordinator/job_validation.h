// Validation of a spec's job and execution policy for the planner
// (docs/JOBS.md): the job of every kind (eval, probe, generate, canary and
// synthetic here; the calibration kinds through calibration_validation.h) is
// checked and completed in place with its defaults and canonical forms, which
// the task key hashes; the policy gets its defaults (sweep_policy.h) and range
// checks. Errors are INVALID_ARGUMENT naming the field ("generate.top_p: 2
// must be in (0, 1]"). Split out of planner.cc, which validates the sweep's
// job and each combination of swept parameters with ValidateJob. Internal to
// coordinator/.
//
// Stateless free functions; thread-safe.
#ifndef SWEEPD_COORDINATOR_JOB_VALIDATION_H_
#define SWEEPD_COORDINATOR_JOB_VALIDATION_H_

#include "absl/status/status.h"
#include "coordinator/spec_checks.h"
#include "coordinator/sweep_policy.h"
#include "sweepd/v1/spec.pb.h"

namespace sweepd::internal {

// Validates and completes spec->job (whichever kind is set; INVALID_ARGUMENT
// "job: ..." when none is). Reads spec->datasets() (generate takes its
// prompts from a dataset when it lists none).
absl::Status ValidateJob(sweepd::v1::SweepSpec* spec, const ModelShape& m);

// Fills defaults (spec, then the coordinator's configured defaults, then the
// built-in ones: coordinator/sweep_policy.h) and checks ranges.
absl::Status ValidatePolicy(const SweepPolicyDefaults& defaults,
                            sweepd::v1::ExecutionPolicy* p);

}  // namespace sweepd::internal

#endif  // SWEEPD_COORDINATOR_JOB_VALIDATION_H_
