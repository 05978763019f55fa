// Planner: turns a submitted SweepSpec into the sweep's tasks. It validates the
// spec (errors are INVALID_ARGUMENT naming the offending field path, e.g.
// "grid.axes[1].layers.select"), resolves the model and datasets under the
// allowed roots and fingerprints them, and expands the grid (lists, ranges,
// "all" layers, cartesian products over axes, dataset shards) into tasks with
// content-hash keys.
//
// Keys:
// - task_key  = SHA-256 of the deterministic serialisation of the TaskSpec plus
// kCodeVersion.
//               Identical work always has the identical key, across sweeps and
//               restarts.
// - group_key = SHA-256 of (model fingerprint, dataset fingerprint, shard, job
// parameters):
//               tasks that can share one unablated prefix pass (docs/DESIGN.md,
//               prefix reuse).
// - sweep_id  = "sw-" + first 16 hex digits of SHA-256 of the resolved spec:
// submitting an
//               identical sweep again yields the same id (idempotent submit).
//
// Stages (docs/STAGES.md): the spec's own job + grid is the first stage;
// further stages without a drop_plan are planned at submit time (their tasks
// carry TaskSpec.stage), and drop_plan stages are deferred
// (Plan::deferred_stages) until PlanDerivedStage.
//
// Stateless apart from the options; PlanSweep is thread-safe. It reads files
// (config.json, safetensors headers, datasets): call it off gRPC reactor
// threads.
#ifndef SWEEPD_COORDINATOR_PLANNER_H_
#define SWEEPD_COORDINATOR_PLANNER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/layer_selector.h"  // ParseLayerSelector (used with plans)
#include "common/version.h"
#include "coordinator/sweep_policy.h"
#include "sweepd/v1/spec.pb.h"
#include "sweepd/v1/task.pb.h"

namespace sweepd {

// Bumped whenever a change alters what a task computes; part of every task key
// (common/version.h).
inline constexpr const char* kCodeVersion = kTaskCodeVersion;

struct PlannerOptions {
  // Model and dataset paths must resolve inside these directories (symlinks
  // resolved). Empty = no restriction (tests only; sweepd always sets them).
  std::string model_root;
  std::string data_root;
  // Upper bound on the tasks one sweep may expand to (sweepd
  // --max-tasks-per-sweep). Checked on the product of the axis sizes before
  // any task is built, so an 8e9-task grid is refused at once.
  int64_t max_tasks = 1'000'000;
  // The compute dtype of a sweep whose model.dtype is empty ("float32" or
  // "bfloat16", sweepd --default-dtype). Resolved at plan time, so it is part
  // of every task key.
  std::string default_dtype = "float32";
  // Per-file digest cache of the model fingerprint
  // (common/model_fingerprint.h); "" = none, every model file is read at each
  // plan. sweepd sets it from --fingerprint-cache.
  std::string fingerprint_cache;
  // What policy fields left at 0 become (sweepd's --lease-seconds).
  SweepPolicyDefaults policy_defaults;
};

// Length limits (bytes) of the names and labels a spec carries; they are
// stored with the sweep and shown in every listing.
inline constexpr size_t kMaxSweepNameBytes = 256;    // name, stages[].name
inline constexpr int kMaxLabels = 64;                // labels entries
inline constexpr size_t kMaxLabelKeyBytes = 128;     // a label's key
inline constexpr size_t kMaxLabelValueBytes = 1024;  // a label's value

struct PlannedTask {
  std::string task_key;
  std::string group_key;
  sweepd::v1::TaskSpec spec;
  // Non-empty: the task is recorded FAILED with this error instead of being run
  // (a derived stage that could not be planned says why this way).
  std::string failure;
};

struct Plan {
  std::string sweep_id;
  // The submitted spec with fingerprints and defaults filled in.
  sweepd::v1::SweepSpec resolved_spec;
  // In expansion order (spec.index() == position): the first stage, then every
  // stage planned at submit time.
  std::vector<PlannedTask> tasks;
  // Indices into resolved_spec.stages() of the derived stages (drop_plan),
  // planned later by PlanDerivedStage, in order.
  std::vector<int> deferred_stages;
  // Who submits it (the service fills it from the call's Caller; the planner
  // leaves it empty). Not part of sweep_id: the first submitter owns a sweep.
  std::string submitter;
};

absl::StatusOr<Plan> PlanSweep(const sweepd::v1::SweepSpec& spec,
                               const PlannerOptions& options);

// Plans derived stage `stage_index` of a sweep (resolved_spec as stored by the
// ledger) from the records of its earlier stages: the drop plans of
// docs/REPORTS.md become one eval task per (plan, dataset shard), indexed from
// `first_index`. FAILED_PRECONDITION when the results allow no drop plan.
absl::StatusOr<std::vector<PlannedTask>> PlanDerivedStage(
    const sweepd::v1::SweepSpec& resolved_spec, int stage_index,
    const std::vector<sweepd::v1::TaskRecord>& records, int64_t first_index,
    const PlannerOptions& options);

// The job kind of a sweep's (or stage's) job oneof; UNSPECIFIED when none is
// set.
sweepd::v1::JobKind JobKindOf(sweepd::v1::SweepSpec::JobCase job);

}  // namespace sweepd

#endif  // SWEEPD_COORDINATOR_PLANNER_H_
