// Shared set-up of the executor tests in tests/jobs/ (*_executor_test.cc): a
// per-process scratch directory holding the tiny random Gemma 4 model, an
// LmBackend over it (CPU, or the device $SWEEPD_TEST_DEVICE names), a
// TaskContext that never cancels, running one task through Executor::RunGroup,
// and looking up one metric row. Plain functions and a stateless context; each
// test owns what they return. Thread-compatible.
#ifndef SWEEPD_TESTS_JOBS_EXECUTOR_TEST_ENV_H_
#define SWEEPD_TESTS_JOBS_EXECUTOR_TEST_ENV_H_

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/jobs/executor.h"
#include "worker/jobs/lm_executor.h"

namespace sweepd::jobs_test {

// The repository root ($SWEEPD_SOURCE_DIR, set by ctest; else ".").
std::string SourceDir();

// <TempDir>/<name>_<pid>, emptied and created, with the tiny random model
// (configs/models/gemma4-tiny.json, seed 5) written to <dir>/model. Returns
// the directory; errors name the step that failed.
absl::StatusOr<std::string> MakeTinyModelDir(const std::string& name);

// The engine device of the executor tests: $SWEEPD_TEST_DEVICE, "cpu" when
// unset. The gpu-labelled reruns in tests/jobs/CMakeLists.txt set "cuda".
std::string TestDevice();

// A float32 LmBackend over model_dir on TestDevice(): tp_size ranks (on CPU
// one thread each; on CUDA one device each, from device 0).
absl::StatusOr<std::shared_ptr<LmBackend>> MakeBackend(
    const std::string& model_dir, int tp_size = 1);

// A TaskContext that never cancels and ignores progress.
class NoCancelContext : public TaskContext {
 public:
  bool cancelled() const override { return false; }
  bool task_cancelled(size_t) const override { return false; }
  void SetProgress(double) override {}
};

// Runs `task` alone through exec->RunGroup with a NoCancelContext; its outcome
// (INTERNAL "not called" if the sink never ran).
absl::StatusOr<TaskOutput> RunOne(Executor* exec, const TaskInput& task);
// The same with the caller's context (e.g. one that cancels part-way).
absl::StatusOr<TaskOutput> RunOne(Executor* exec, const TaskInput& task,
                                  TaskContext& ctx);

// The value of the metric row with this name and exactly these labels; adds a
// test failure and returns NaN when there is none.
double Metric(const TaskOutput& out, const std::string& name,
              const std::map<std::string, std::string>& labels);

}  // namespace sweepd::jobs_test

#endif  // SWEEPD_TESTS_JOBS_EXECUTOR_TEST_ENV_H_
