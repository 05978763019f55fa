#include "tests/jobs/executor_test_env.h"

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "gtest/gtest.h"
#include "worker/engine/model_generator.h"

namespace sweepd::jobs_test {

std::string SourceDir() {
  const char* d = std::getenv("SWEEPD_SOURCE_DIR");
  return d != nullptr ? d : ".";
}

absl::StatusOr<std::string> MakeTinyModelDir(const std::string& name) {
  const std::string dir =
      absl::StrCat(::testing::TempDir(), "/", name, "_", getpid());
  if (absl::Status s = RemoveAll(dir); !s.ok()) return s;
  if (absl::Status s = MakeDirs(dir); !s.ok()) return s;
  if (absl::Status s = engine::MakeRandomModel(
          SourceDir() + "/configs/models/gemma4-tiny.json", 5, dir + "/model");
      !s.ok()) {
    return s;
  }
  return dir;
}

std::string TestDevice() {
  const char* d = std::getenv("SWEEPD_TEST_DEVICE");
  return d != nullptr && *d != '\0' ? d : "cpu";
}

absl::StatusOr<std::shared_ptr<LmBackend>> MakeBackend(
    const std::string& model_dir, int tp_size) {
  LmBackendOptions bo;
  bo.engine.model_dir = model_dir;
  bo.engine.device = TestDevice();
  bo.engine.cpu_threads_per_rank = 1;
  bo.engine.tp_size = tp_size;
  return LmBackend::Create(bo);
}

absl::StatusOr<TaskOutput> RunOne(Executor* exec, const TaskInput& task) {
  NoCancelContext ctx;
  return RunOne(exec, task, ctx);
}

absl::StatusOr<TaskOutput> RunOne(Executor* exec, const TaskInput& task,
                                  TaskContext& ctx) {
  absl::StatusOr<TaskOutput> out = absl::InternalError("not called");
  exec->RunGroup({task}, ctx, [&](size_t, absl::StatusOr<TaskOutput> o) {
    out = std::move(o);
  });
  return out;
}

double Metric(const TaskOutput& out, const std::string& name,
              const std::map<std::string, std::string>& labels) {
  for (const MetricRow& r : out.metrics) {
    if (r.name == name && r.labels == labels) return r.value;
  }
  ADD_FAILURE() << "no metric " << name;
  return NAN;
}

}  // namespace sweepd::jobs_test
