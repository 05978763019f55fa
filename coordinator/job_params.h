// The job parameters a grid's `param` axis may set, per job kind, and how a
// value is written into the job (docs/JOBS.md, "Swept parameters"). The
// planner applies each value to the task's copy of the job before validating
// it, so the task key, the prefix-share group and what the worker computes
// all follow the value; any other name is refused at submit time.
//
// Stateless free functions; thread-safe.
#ifndef SWEEPD_COORDINATOR_JOB_PARAMS_H_
#define SWEEPD_COORDINATOR_JOB_PARAMS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "sweepd/v1/spec.pb.h"

namespace sweepd {

// INVALID_ARGUMENT "<field>.name: unknown parameter ..." (listing the kind's
// parameters) when `name` is not a parameter of `kind`, or
// "<field>.values[j]: ..." when a value has the wrong type.
absl::Status CheckParamAxis(sweepd::v1::JobKind kind, const std::string& name,
                            const std::vector<sweepd::v1::Value>& values,
                            const std::string& field);

// Writes parameter `name` (checked by CheckParamAxis) into the job of `spec`.
// INVALID_ARGUMENT naming `field` for an integer outside the int32 range.
absl::Status ApplyJobParam(sweepd::v1::SweepSpec* spec, const std::string& name,
                           const sweepd::v1::Value& value,
                           const std::string& field);

// A value as written in errors and labels: 32, 0.5, "on", true.
std::string ParamValueText(const sweepd::v1::Value& value);

}  // namespace sweepd

#endif  // SWEEPD_COORDINATOR_JOB_PARAMS_H_
