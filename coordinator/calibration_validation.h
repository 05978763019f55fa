// Validation of the calibration job kinds for the planner (docs/CALIBRATION.md,
// docs/STAGES.md): head_importance, capture, heal, materialize and retrain.
// Each check fills the job's defaults and canonical forms in place (what the
// task key hashes) and returns INVALID_ARGUMENT naming the field
// ("retrain.beta1: 1 must be in [0, 1)"). Split out of planner.cc;
// ValidateJob (job_validation.cc) calls ValidateCalibrationJob. Internal to
// coordinator/.
//
// Stateless free functions; thread-safe.
#ifndef SWEEPD_COORDINATOR_CALIBRATION_VALIDATION_H_
#define SWEEPD_COORDINATOR_CALIBRATION_VALIDATION_H_

#include <string>

#include "absl/status/status.h"
#include "coordinator/spec_checks.h"
#include "sweepd/v1/spec.pb.h"

namespace sweepd::internal {

// True for the job kinds ValidateCalibrationJob handles.
bool IsCalibrationJob(sweepd::v1::SweepSpec::JobCase job);

// Validates and completes spec->job when it is a calibration kind
// (IsCalibrationJob); INVALID_ARGUMENT otherwise. retrain also needs at most
// one dataset, of one shard (one task per trained layer).
absl::Status ValidateCalibrationJob(sweepd::v1::SweepSpec* spec,
                                    const ModelShape& m);

// A capture point "name[index]" (resid_in, resid_out, attn_heads, attn_out,
// mlp_in: a layer; hidden_states: 0..num_layers).
absl::Status ValidateCapturePoint(const std::string& point, const ModelShape& m,
                                  const std::string& field);

// retrain: layer in range, steps > 0, batch_windows > 0, lr and weight_decay
// finite and >= 0, betas in [0, 1), checkpoint_every >= 0; fills the
// windowing defaults and the optimiser defaults a 0 stands for (lr 1e-4,
// beta1 0.9, beta2 0.999, checkpoint_every 50; weight_decay 0 is none).
absl::Status ValidateRetrainJob(sweepd::v1::RetrainJob* job,
                                const ModelShape& m);

}  // namespace sweepd::internal

#endif  // SWEEPD_COORDINATOR_CALIBRATION_VALIDATION_H_
