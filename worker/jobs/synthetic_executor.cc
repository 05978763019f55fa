#include "worker/jobs/synthetic_executor.h"

#include <algorithm>
#include <limits>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/hash.h"

namespace sweepd {
namespace {

// Reads an integer field that the JSON mapping may print as a number or
// (64-bit) a string.
absl::StatusOr<int64_t> ReadInt(const nlohmann::json& obj, const char* key,
                                const std::string& path) {
  if (!obj.contains(key) || obj[key].is_null()) return 0;
  const nlohmann::json& v = obj[key];
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_string()) {
    int64_t out = 0;
    if (absl::SimpleAtoi(v.get<std::string>(), &out)) return out;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": expected an integer, got ", v.dump()));
}

absl::StatusOr<double> ReadRate(const nlohmann::json& obj, const char* key,
                                const std::string& path) {
  if (!obj.contains(key) || obj[key].is_null()) return 0.0;
  const nlohmann::json& v = obj[key];
  if (!v.is_number()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": expected a number, got ", v.dump()));
  }
  double rate = v.get<double>();
  if (!(rate >= 0.0 && rate <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " must be in [0, 1], got ", rate));
  }
  return rate;
}

}  // namespace

absl::StatusOr<SyntheticParams> ParseSyntheticParams(
    const nlohmann::json& spec) {
  SyntheticParams params;
  if (!spec.is_object()) {
    return absl::InvalidArgumentError("task spec: expected a JSON object");
  }
  if (!spec.contains("synthetic")) return params;
  const nlohmann::json& job = spec["synthetic"];
  if (!job.is_object()) {
    return absl::InvalidArgumentError("synthetic: expected an object");
  }
  auto min_ms = ReadInt(job, "min_ms", "synthetic.min_ms");
  if (!min_ms.ok()) return min_ms.status();
  auto max_ms = ReadInt(job, "max_ms", "synthetic.max_ms");
  if (!max_ms.ok()) return max_ms.status();
  params.min_ms = *min_ms;
  params.max_ms = *max_ms;
  if (params.min_ms < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("synthetic.min_ms must be >= 0, got ", params.min_ms));
  }
  if (params.max_ms < params.min_ms) {
    return absl::InvalidArgumentError(
        absl::StrCat("synthetic.max_ms (", params.max_ms,
                     ") must be >= synthetic.min_ms (", params.min_ms, ")"));
  }
  auto failure = ReadRate(job, "failure_rate", "synthetic.failure_rate");
  if (!failure.ok()) return failure.status();
  auto permanent = ReadRate(job, "permanent_failure_rate",
                            "synthetic.permanent_failure_rate");
  if (!permanent.ok()) return permanent.status();
  params.failure_rate = *failure;
  params.permanent_failure_rate = *permanent;
  return params;
}

absl::StatusOr<int64_t> ParseSpecIndex(const nlohmann::json& spec) {
  if (!spec.is_object()) {
    return absl::InvalidArgumentError("task spec: expected a JSON object");
  }
  return ReadInt(spec, "index", "index");
}

double SyntheticUnit(const std::string& tag, const std::string& key) {
  uint64_t h = Hash64(absl::StrCat(tag, "/", key));
  return static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0);  // 2^-53
}

int64_t SyntheticDurationMs(const std::string& task_key,
                            const SyntheticParams& params) {
  uint64_t span = static_cast<uint64_t>(params.max_ms - params.min_ms) + 1;
  return params.min_ms +
         static_cast<int64_t>(
             Hash64(absl::StrCat("synthetic/duration/", task_key)) % span);
}

bool SyntheticPermanentFailure(const std::string& task_key,
                               const SyntheticParams& params) {
  return SyntheticUnit("synthetic/permanent", task_key) <
         params.permanent_failure_rate;
}

bool SyntheticTransientFailure(const std::string& task_key, int attempt,
                               const SyntheticParams& params) {
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
  auto params = ParseSyntheticParams(task.spec);
  if (!params.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("task ", task.task_key, ": ", params.status().message()));
  }
  auto spec_index = ParseSpecIndex(task.spec);
  if (!spec_index.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "task ", task.task_key, ": ", spec_index.status().message()));
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
      MetricRow{"index", static_cast<double>(*spec_index), {}});
  out.metrics.push_back(MetricRow{
      "duration_ms", static_cast<double>(duration_ms), {{"unit", "ms"}}});
  out.wall_seconds = static_cast<double>(clock_->NowMs() - start_ms) / 1000.0;
  return out;
}

}  // namespace sweepd
