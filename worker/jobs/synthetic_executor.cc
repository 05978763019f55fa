#include "worker/jobs/synthetic_executor.h"

#include <algorithm>
#include <limits>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/hash.h"

namespace sweepd {
absl::Status CheckSyntheticJob(const SyntheticJobSpec& job) {
  if (job.min_ms < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("synthetic.min_ms must be >= 0, got ", job.min_ms));
  }
  if (job.max_ms < job.min_ms) {
    return absl::InvalidArgumentError(
        absl::StrCat("synthetic.max_ms (", job.max_ms,
                     ") must be >= synthetic.min_ms (", job.min_ms, ")"));
  }
  for (auto [name, rate] :
       {std::pair<const char*, double>{"synthetic.failure_rate",
                                       job.failure_rate},
        {"synthetic.permanent_failure_rate", job.permanent_failure_rate}}) {
    if (!(rate >= 0.0 && rate <= 1.0)) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, " must be in [0, 1], got ", rate));
    }
  }
  return absl::OkStatus();
}

double SyntheticUnit(const std::string& tag, const std::string& key) {
  uint64_t h = Hash64(absl::StrCat(tag, "/", key));
  return static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0);  // 2^-53
}

int64_t SyntheticDurationMs(const std::string& task_key,
                            const SyntheticJobSpec& params) {
  uint64_t span = static_cast<uint64_t>(params.max_ms - params.min_ms) + 1;
  return params.min_ms +
         static_cast<int64_t>(
             Hash64(absl::StrCat("synthetic/duration/", task_key)) % span);
}

bool SyntheticPermanentFailure(const std::string& task_key,
                               const SyntheticJobSpec& params) {
  return SyntheticUnit("synthetic/permanent", task_key) <
         params.permanent_failure_rate;
}

bool SyntheticTransientFailure(const std::string& task_key, int attempt,
                               const SyntheticJobSpec& params) {
  return SyntheticUnit("synthetic/transient",
                       absl::StrCat(task_key, "/", attempt)) <
         params.failure_rate;
}

double SyntheticValue(const std::string& task_key) {
  return SyntheticUnit("synthetic/value", task_key);
}

absl::StatusOr<std::unique_ptr<SyntheticExecutor>> SyntheticExecutor::Create(
    const SyntheticExecutorOptions& options) {
  if (options.sleep_slice_ms <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SyntheticExecutorOptions.sleep_slice_ms must be > 0, got ",
        options.sleep_slice_ms));
  }
  return std::unique_ptr<SyntheticExecutor>(new SyntheticExecutor(options));
}

SyntheticExecutor::SyntheticExecutor(const SyntheticExecutorOptions& options)
    : clock_(options.clock != nullptr ? options.clock : Clock::Real()),
      sleep_slice_ms_(options.sleep_slice_ms) {}

void SyntheticExecutor::RunGroup(const std::vector<TaskInput>& tasks,
                                 TaskContext& ctx, const TaskSink& sink) {
  for (size_t i = 0; i < tasks.size(); ++i) {
    if (ctx.task_cancelled(i)) {
      sink(i, absl::CancelledError(absl::StrCat(
                  "task ", tasks[i].task_key, " cancelled before it started")));
      continue;
    }
    sink(i, RunOne(tasks[i], i, tasks.size(), ctx));
    ctx.SetProgress(static_cast<double>(i + 1) / tasks.size());
  }
}

absl::StatusOr<TaskOutput> SyntheticExecutor::RunOne(const TaskInput& task,
                                                     size_t index,
                                                     size_t group_size,
                                                     TaskContext& ctx) {
  if (task.kind != kSyntheticKind) {
    return absl::InvalidArgumentError(absl::StrCat(
        "task ", task.task_key, ": the synthetic executor cannot run kind '",
        task.kind, "'"));
  }
  const SyntheticJobSpec* params = std::get_if<SyntheticJobSpec>(&task.job);
  if (params == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("task ", task.task_key, ": no synthetic job"));
  }
  if (absl::Status checked = CheckSyntheticJob(*params); !checked.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("task ", task.task_key, ": ", checked.message()));
  }
  if (SyntheticPermanentFailure(task.task_key, *params)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "synthetic permanent failure of task ", task.task_key,
        " (permanent_failure_rate=", params->permanent_failure_rate, ")"));
  }
  const int64_t start_ms = clock_->NowMs();
  const int64_t duration_ms = SyntheticDurationMs(task.task_key, *params);
  const int64_t end_ms = start_ms + duration_ms;
  for (int64_t now = start_ms; now < end_ms; now = clock_->NowMs()) {
    if (ctx.task_cancelled(index)) {
      return absl::CancelledError(
          absl::StrCat("task ", task.task_key, " cancelled after ",
                       now - start_ms, " of ", duration_ms, " ms"));
    }
    double done = static_cast<double>(now - start_ms) / duration_ms;
    ctx.SetProgress((static_cast<double>(index) + done) / group_size);
    clock_->SleepUntilMs(std::min(end_ms, now + sleep_slice_ms_));
  }
  if (SyntheticTransientFailure(task.task_key, task.attempt, *params)) {
    return absl::UnavailableError(absl::StrCat(
        "synthetic transient failure of task ", task.task_key, " on attempt ",
        task.attempt, " (failure_rate=", params->failure_rate, ")"));
  }
  TaskOutput out;
  out.metrics.push_back(MetricRow{"value", SyntheticValue(task.task_key), {}});
  out.metrics.push_back(
      MetricRow{"index", static_cast<double>(task.index), {}});
  out.metrics.push_back(MetricRow{
      "duration_ms", static_cast<double>(duration_ms), {{"unit", "ms"}}});
  out.wall_seconds = static_cast<double>(clock_->NowMs() - start_ms) / 1000.0;
  return out;
}

}  // namespace sweepd
