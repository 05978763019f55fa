// SyntheticExecutor: the documented test workload of job kind "synthetic"
// (docs/SYNTHETIC.md). Every decision is derived from the task key with Hash64,
// so a task behaves the same on every worker and after every restart: its
// duration in [min_ms, max_ms], a permanent failure with probability
// permanent_failure_rate (the same on every attempt), a transient (retryable)
// failure with probability failure_rate (drawn per attempt), and its metrics.
// Load and fault tests use it to exercise the coordinator without a model.
//
// Ownership: borrows the Clock (it must outlive the executor). Thread-safety:
// RunGroup may be called concurrently; the free functions are pure and
// thread-safe.
#ifndef SWEEPD_WORKER_JOBS_SYNTHETIC_EXECUTOR_H_
#define SWEEPD_WORKER_JOBS_SYNTHETIC_EXECUTOR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "worker/jobs/executor.h"

namespace sweepd {

// The synthetic job's parameters.
using SyntheticParams = SyntheticJobSpec;

// INVALID_ARGUMENT naming the field (e.g. "synthetic.max_ms") for negative
// durations, max_ms < min_ms or a rate outside [0, 1].
absl::Status CheckSyntheticJob(const SyntheticJobSpec& job);

// Hash64(tag + "/" + key) mapped to [0, 1) with 53 bits of precision.
double SyntheticUnit(const std::string& tag, const std::string& key);

// The task's duration: min_ms + Hash64("synthetic/duration/" + key) mod (max_ms
// - min_ms + 1).
int64_t SyntheticDurationMs(const std::string& task_key,
                            const SyntheticParams& params);
// SyntheticUnit("synthetic/permanent", key) < permanent_failure_rate.
bool SyntheticPermanentFailure(const std::string& task_key,
                               const SyntheticParams& params);
// SyntheticUnit("synthetic/transient", key + "/" + attempt) < failure_rate.
bool SyntheticTransientFailure(const std::string& task_key, int attempt,
                               const SyntheticParams& params);
// The "value" metric: SyntheticUnit("synthetic/value", key).
double SyntheticValue(const std::string& task_key);

struct SyntheticExecutorOptions {
  // Borrowed; Clock::Real() when null.
  Clock* clock = nullptr;
  // Longest single sleep; cancellation is noticed within one slice.
  int64_t sleep_slice_ms = 50;
};

// Runs the tasks of a group one after another: permanent failure check, sliced
// sleep for the derived duration (cancellation noticed within one slice),
// transient failure check, metrics "value", "index" (spec.index) and
// "duration_ms".
class SyntheticExecutor : public Executor {
 public:
  static absl::StatusOr<std::unique_ptr<SyntheticExecutor>> Create(
      const SyntheticExecutorOptions& options);

  std::string kind() const override { return kSyntheticKind; }
  void RunGroup(const std::vector<TaskInput>& tasks, TaskContext& ctx,
                const TaskSink& sink) override;

 private:
  explicit SyntheticExecutor(const SyntheticExecutorOptions& options);
  absl::StatusOr<TaskOutput> RunOne(const TaskInput& task, size_t index,
                                    size_t group_size, TaskContext& ctx);

  Clock* const clock_;
  const int64_t sleep_slice_ms_;
};

}  // namespace sweepd

#endif  // SWEEPD_WORKER_JOBS_SYNTHETIC_EXECUTOR_H_
