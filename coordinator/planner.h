// Planner: turns a submitted SweepSpec into the sweep's tasks. It validates the spec (errors
// are INVALID_ARGUMENT naming the offending field path, e.g. "grid.axes[1].layers.select"),
// resolves the model and datasets under the allowed roots and fingerprints them, and expands
// the grid (lists, ranges, "all" layers, cartesian products over axes, dataset shards) into
// tasks with content-hash keys.
//
// Keys:
// - task_key  = SHA-256 of the deterministic serialisation of the TaskSpec plus kCodeVersion.
//               Identical work always has the identical key, across sweeps and restarts.
// - group_key = SHA-256 of (model fingerprint, dataset fingerprint, shard, job parameters):
//               tasks that can share one unablated prefix pass (docs/DESIGN.md, prefix reuse).
// - sweep_id  = "sw-" + first 16 hex digits of SHA-256 of the resolved spec: submitting an
//               identical sweep again yields the same id (idempotent submit).
//
// Stateless apart from the options; PlanSweep is thread-safe. It reads files (config.json,
// safetensors headers, datasets): call it off gRPC reactor threads.
#ifndef SWEEPD_COORDINATOR_PLANNER_H_
#define SWEEPD_COORDINATOR_PLANNER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sweepd/v1/spec.pb.h"
#include "sweepd/v1/task.pb.h"

namespace sweepd {

// Bumped whenever a change alters what a task computes; part of every task key.
inline constexpr char kCodeVersion[] = "sweepd-task-v1";

struct PlannerOptions {
  // Model and dataset paths must resolve inside these directories (symlinks resolved).
  // Empty = no restriction (tests only; sweepd always sets them).
  std::string model_root;
  std::string data_root;
  // Upper bound on the tasks one sweep may expand to.
  int64_t max_tasks = 1'000'000;
};

struct PlannedTask {
  std::string task_key;
  std::string group_key;
  sweepd::v1::TaskSpec spec;
};

struct Plan {
  std::string sweep_id;
  // The submitted spec with fingerprints and defaults filled in.
  sweepd::v1::SweepSpec resolved_spec;
  // In expansion order (spec.index() == position).
  std::vector<PlannedTask> tasks;
};

absl::StatusOr<Plan> PlanSweep(const sweepd::v1::SweepSpec& spec,
                               const PlannerOptions& options);

// Parses a layer selector ("all", "3", "0,5,11", "10-22", "0:60:2", mixes) for a model with
// `num_layers` layers into a sorted, de-duplicated list. `field` names the spec field in errors.
absl::StatusOr<std::vector<int>> ParseLayerSelector(const std::string& selector,
                                                    int num_layers,
                                                    const std::string& field);

}  // namespace sweepd

#endif  // SWEEPD_COORDINATOR_PLANNER_H_
