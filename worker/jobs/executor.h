// Executor: runs the tasks of one job kind on a worker. The agent
// (worker/agent) converts the protobuf TaskAssignments it leases into typed
// TaskInput structs (worker/jobs/task.h), hands one prefix-share group at a
// time to the executor registered for the group's kind, and converts each
// TaskOutput back into a TaskResult. This header is plain C++ on purpose: it
// includes neither libtorch nor protobuf (docs/DESIGN.md, "the one hard
// boundary"), so engine-backed executors can link libtorch PRIVATE and the
// agent can include it next to generated *.pb.h files.
//
// Ownership: the ExecutorRegistry owns its executors. An Executor borrows the
// TaskContext for the duration of one RunGroup call. Thread-safety: RunGroup
// may be called from any single thread at a time per executor (the agent runs
// one group at a time); TaskContext methods are thread-safe; ExecutorRegistry
// is immutable after registration and then thread-safe.
#ifndef SWEEPD_WORKER_JOBS_EXECUTOR_H_
#define SWEEPD_WORKER_JOBS_EXECUTOR_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/jobs/task.h"

namespace sweepd {

// One measured number in tidy form.
struct MetricRow {
  std::string name;
  double value = 0.0;
  std::map<std::string, std::string> labels;
};

// A large output written to the artifact store.
struct ArtifactRow {
  std::string name;
  std::string path;
  int64_t bytes = 0;
  std::string sha256;
};

// What decided a result's numbers (TaskResult.determinism in
// proto/sweepd/v1/task.proto). Executors fill what their engine knows; the
// agent fills the worker's device kind and code version where empty.
struct DeterminismRecord {
  std::string dtype;
  std::string device_kind;
  int tensor_parallel = 0;
  std::string attention_path;
  std::string gemm_tuning;
  std::string libtorch_version;
  std::string cuda_version;
  std::string cudnn_version;
  std::string nccl_version;
  std::string code_version;
};

// One generated sample (Sample in proto/sweepd/v1/task.proto).
struct SampleRow {
  int prompt_index = 0;
  int sample_index = 0;
  std::string prompt_id;
  std::string category;
  std::string text;
  int num_tokens = 0;
  std::string finish_reason;  // "stop" / "length"
  double logprob_sum = 0.0;
  bool has_score = false;
  double score = 0.0;
  bool pass = false;
  std::string verifier_error;
  std::vector<float> token_logprobs;
  std::vector<int32_t> token_ids;
};

struct TaskOutput {
  DeterminismRecord determinism;
  std::vector<MetricRow> metrics;
  std::vector<ArtifactRow> artifacts;
  std::vector<SampleRow> samples;
  // Worker-side wall time of the task, seconds.
  double wall_seconds = 0.0;
};

// The executor's view of the agent while a group runs. Implemented by the agent
// (and by tests). Thread-safe.
class TaskContext {
 public:
  virtual ~TaskContext() = default;
  // True once the whole group must stop (drain grace expired, worker stopping,
  // or every task of the group cancelled by the coordinator). Executors poll it
  // between units of work.
  virtual bool cancelled() const = 0;
  // True once task `index` of the group must stop (cancelled by the
  // coordinator, or cancelled()). An executor skips such a task and hands
  // absl::CancelledError to the sink.
  virtual bool task_cancelled(size_t index) const = 0;
  // Fraction of the group done so far, in [0, 1]; reported with heartbeats.
  virtual void SetProgress(double fraction) = 0;
};

// Receives the outcome of task `index` of the group as soon as it is known.
// Called once per task, from the thread running RunGroup. Error codes:
// INVALID_ARGUMENT, FAILED_PRECONDITION and NOT_FOUND are permanent failures
// (retrying cannot help); CANCELLED means the task was stopped and is not
// reported; every other error is a retryable failure.
using TaskSink =
    std::function<void(size_t index, absl::StatusOr<TaskOutput> outcome)>;

class Executor {
 public:
  virtual ~Executor() = default;
  // The job kind this executor runs ("synthetic", ...), as in TaskInput::kind.
  virtual std::string kind() const = 0;
  // Runs a prefix-share group: 1..n tasks with one group_key and this kind.
  // Calls `sink` exactly once per task. Must return promptly (within one unit
  // of work) once ctx.cancelled() is true.
  virtual void RunGroup(const std::vector<TaskInput>& tasks, TaskContext& ctx,
                        const TaskSink& sink) = 0;
};

// True for the error codes that mean "retrying this task cannot help".
bool IsPermanentTaskError(const absl::Status& status);

// kind -> executor. Fill it once at start-up, then share it read-only.
class ExecutorRegistry {
 public:
  ExecutorRegistry() = default;
  ExecutorRegistry(const ExecutorRegistry&) = delete;
  ExecutorRegistry& operator=(const ExecutorRegistry&) = delete;

  // ALREADY_EXISTS if an executor for the same kind was registered;
  // INVALID_ARGUMENT for a null executor or an empty kind.
  absl::Status Register(std::unique_ptr<Executor> executor);
  // Registers one executor for several kinds (it must handle a group mixing
  // them: the agent hands a prefix-share group to one executor). Same errors.
  absl::Status RegisterFor(const std::vector<std::string>& kinds,
                           std::shared_ptr<Executor> executor);
  // The executor for `kind`, or nullptr. Borrowed; valid while the registry
  // lives.
  Executor* Find(const std::string& kind) const;
  // Registered kinds, sorted.
  std::vector<std::string> kinds() const;

 private:
  std::map<std::string, std::shared_ptr<Executor>> executors_;
};

}  // namespace sweepd

#endif  // SWEEPD_WORKER_JOBS_EXECUTOR_H_
