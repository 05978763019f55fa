// Grid expansion for the planner (Grid in proto/sweepd/v1/spec.proto; swept
// parameters and seeds in docs/JOBS.md): each axis of a spec's grid (explicit
// intervention lists, layer sweeps with blocks and a baseline, param values or
// ranges, seeds) becomes the list of points it contributes to a task; the
// planner takes their cartesian product. Layer selectors and interventions are
// validated and canonicalised in place (what the task key hashes). Errors are
// INVALID_ARGUMENT naming the axis
// ("grid.axes[1].layers.select"). Split out of planner.cc, whose PlanOneStage
// calls ExpandAxes then CheckParamAxes. Internal to coordinator/.
//
// Stateless free functions; thread-safe. An AxisPoint borrows from the grid
// it was expanded from (param_name), which must outlive it.
#ifndef SWEEPD_COORDINATOR_GRID_EXPANSION_H_
#define SWEEPD_COORDINATOR_GRID_EXPANSION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "coordinator/spec_checks.h"
#include "sweepd/v1/spec.pb.h"

namespace sweepd::internal {

// One point of one axis: what it contributes to a task.
struct AxisPoint {
  std::vector<sweepd::v1::Intervention> interventions;
  bool has_seed = false;
  uint64_t seed = 0;
  const std::string* param_name = nullptr;  // points into the resolved spec
  sweepd::v1::Value param_value;
};

// The points of every axis of `grid`, in axis order. Canonicalises the
// grid in place (layer selectors, intervention fields, layer block 0 -> 1);
// at most one seeds axis, and a parameter swept by at most one axis.
absl::StatusOr<std::vector<std::vector<AxisPoint>>> ExpandAxes(
    sweepd::v1::Grid* grid, const ModelShape& m);

// Every param axis names a parameter of `kind` and gives values of its type
// (checked after the axes' own structure, so those errors come first).
absl::Status CheckParamAxes(const sweepd::v1::Grid& grid,
                            const std::vector<std::vector<AxisPoint>>& axes,
                            sweepd::v1::JobKind kind);

}  // namespace sweepd::internal

#endif  // SWEEPD_COORDINATOR_GRID_EXPANSION_H_
