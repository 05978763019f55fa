// The typed task path: what one leased task is, as executors see it. The agent
// (worker/agent/conversion.h) converts each protobuf TaskAssignment into a
// TaskInput once, at the edge; executors receive these plain structs and never
// parse spec text. One job struct per job family; the planner has already
// resolved layer selectors to explicit lists, param axes into the job's own
// fields and seeds into the interventions that use them (docs/JOBS.md), so
// what an executor reads here is exactly what it computes.
//
// Plain C++ (no libtorch, no protobuf): value types, thread-compatible.
#ifndef SWEEPD_WORKER_JOBS_TASK_H_
#define SWEEPD_WORKER_JOBS_TASK_H_

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "worker/engine/engine.h"
#include "worker/jobs/dataset.h"
#include "worker/jobs/windowing.h"

namespace sweepd {

inline constexpr char kEvalKind[] = "eval";
inline constexpr char kProbeKind[] = "probe";
inline constexpr char kSyntheticKind[] = "synthetic";

// The model a task runs on.
struct ModelRefSpec {
  std::string path;         // model directory ("" = the worker's model)
  std::string fingerprint;  // "" = unknown
  std::string dtype;        // "float32" / "bfloat16"; "" = the worker's
  std::string tokenizer;    // "" = <path>/tokenizer.json
};

// eval and probe (docs/JOBS.md): one dataset shard, windowed, under
// interventions.
struct LmJobSpec {
  ModelRefSpec model;
  std::string dataset_name;
  DatasetShardRef data;
  Windowing windowing;
  // eval.base_interventions first, then the task's own, one engine
  // intervention per layer. Layers and heads are checked against the model by
  // the executor (CheckInterventions in worker/jobs/interventions.h).
  std::vector<engine::Intervention> interventions;
  // The spec field each intervention came from
  // ("interventions.interventions[1].skip.layers"), for errors; same length.
  std::vector<std::string> intervention_fields;
};

// The synthetic test workload (docs/SYNTHETIC.md).
struct SyntheticJobSpec {
  int64_t min_ms = 0;
  int64_t max_ms = 0;
  double failure_rate = 0.0;
  double permanent_failure_rate = 0.0;
};

// One leased task.
struct TaskInput {
  std::string task_key;
  std::string sweep_id;
  std::string group_key;
  // Job kind in lower case without prefix: "synthetic", "eval", "probe", ...;
  // says which member of `job` is set.
  std::string kind;
  // 1 for the first attempt of the task.
  int attempt = 1;
  // Position of the task in its sweep's expansion.
  int64_t index = 0;
  // The stage that planned the task ("" = the first).
  std::string stage;
  // The grid's seed for this task (already folded into the interventions that
  // use it).
  uint64_t seed = 0;
  // Swept job parameters of the grid point, as text ("context_length" ->
  // "256"); already applied to the job struct, kept for labels.
  std::map<std::string, std::string> params;
  std::variant<std::monostate, LmJobSpec, SyntheticJobSpec> job;
};

}  // namespace sweepd

#endif  // SWEEPD_WORKER_JOBS_TASK_H_
