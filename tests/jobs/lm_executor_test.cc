// The eval / probe executor as a unit on a random tiny Gemma 4 model: the
// determinism record on every output, per-task errors, --model-root /
// --data-root confinement, cancellation, registration and Create's checks.
// Its metrics are tested in lm_executor_eval_test.cc and
// lm_executor_probe_test.cc, prefix reuse in lm_executor_prefix_reuse_test.cc.
#include "worker/jobs/lm_executor.h"

#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "common/fs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/jobs/executor_test_env.h"
#include "tests/jobs/lm_executor_fixture.h"
#include "worker/engine/model_generator.h"
#include "worker/jobs/executor.h"
#include "worker/jobs/register_executors.h"

namespace sweepd {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

using jobs_test::FakeContext;
using jobs_test::LmExecutorTest;
using jobs_test::Outcomes;
using jobs_test::SourceDir;

// Defect: results did not say what decided their numbers. Every output now
// carries the engine's determinism record.
TEST_F(LmExecutorTest, OutputsCarryTheDeterminismRecord) {
  Outcomes out = Run(
      {Task("eval", "a", "prose.txt", {{"context_length", 16}, {"bos", "on"}})},
      true);
  ASSERT_TRUE(out.at(0).ok()) << out.at(0).status();
  const DeterminismRecord& d = out.at(0)->determinism;
  EXPECT_EQ(d.dtype, "float32");
  EXPECT_EQ(d.device_kind, "cpu");
  EXPECT_EQ(d.tensor_parallel, 1);
  EXPECT_THAT(d.attention_path, ::testing::AnyOf("sdpa", "eager"));
  EXPECT_EQ(d.gemm_tuning, "off");
  EXPECT_FALSE(d.libtorch_version.empty());
  EXPECT_EQ(d.cuda_version, "");
  EXPECT_EQ(d.nccl_version, "");
  EXPECT_THAT(d.code_version, ::testing::StartsWith("0.1.0+"));
}

TEST_F(LmExecutorTest, TaskErrorsAreReportedPerTask) {
  const json w = {{"context_length", 16}};
  std::vector<TaskInput> tasks = {
      Task("eval", "ok", "prose.txt", w),
      Task("eval", "bad-layer", "prose.txt", w,
           {{{"skip", {{"layers", "9"}}}}}),
      Task("eval", "no-file", "missing.txt", w),
  };
  tasks.push_back(tasks[0]);
  Job(tasks[3]).data.path.clear();  // no dataset
  Outcomes out = Run(tasks, true);
  EXPECT_TRUE(out.at(0).ok()) << out.at(0).status();
  ASSERT_FALSE(out.at(1).ok());
  EXPECT_EQ(out.at(1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(out.at(1).status().message(),
              HasSubstr("interventions.interventions[0].skip.layers"));
  EXPECT_THAT(out.at(1).status().message(), HasSubstr("task bad-layer"));
  ASSERT_FALSE(out.at(2).ok());
  EXPECT_EQ(out.at(2).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(out.at(2).status().message(), HasSubstr(Path("missing.txt")));
  ASSERT_FALSE(out.at(3).ok());
  EXPECT_THAT(out.at(3).status().message(), HasSubstr("data.dataset"));
}

// A worker with --model-root / --data-root refuses a task's model or dataset
// that resolves outside them, symlinks followed (issue 13, confinement).
TEST_F(LmExecutorTest, ModelsAndDatasetsOutsideTheRootsAreRefused) {
  const std::string allowed = Path("allowed");
  ASSERT_TRUE(MakeDirs(allowed + "/data").ok());
  ASSERT_TRUE(
      engine::MakeRandomModel(SourceDir() + "/configs/models/gemma4-tiny.json",
                              5, allowed + "/model")
          .ok());
  std::ofstream(allowed + "/data/prose.txt") << "Inside the data root.\n";
  // A model directory inside the root whose config.json links outside it.
  ASSERT_TRUE(MakeDirs(allowed + "/linked").ok());
  for (const char* name : {"model.safetensors", "tokenizer.json"}) {
    ASSERT_EQ(symlink((allowed + "/model/" + name).c_str(),
                      (allowed + "/linked/" + name).c_str()),
              0);
  }
  ASSERT_EQ(symlink(Path("model/config.json").c_str(),
                    (allowed + "/linked/config.json").c_str()),
            0);

  LmBackendOptions bo;
  bo.engine.model_dir = allowed + "/model";
  bo.engine.cpu_threads_per_rank = 1;
  bo.model_roots = {allowed};
  auto backend = LmBackend::Create(bo);
  ASSERT_TRUE(backend.ok()) << backend.status();
  LmExecutorOptions opts;
  opts.data_roots = {allowed + "/data"};
  auto exec = LmExecutor::Create("eval", *backend, opts);
  ASSERT_TRUE(exec.ok()) << exec.status();

  const json w = {{"context_length", 16}};
  std::vector<TaskInput> tasks = {Task("eval", "inside", "prose.txt", w),
                                  Task("eval", "outside-model", "prose.txt", w),
                                  Task("eval", "linked-config", "prose.txt", w),
                                  Task("eval", "outside-data", "prose.txt", w)};
  Job(tasks[0]).model.path = allowed + "/model";
  Job(tasks[0]).data.path = allowed + "/data/prose.txt";
  Job(tasks[1]).model.path = Path("model");
  Job(tasks[1]).data.path = allowed + "/data/prose.txt";
  Job(tasks[2]).model.path = allowed + "/linked";
  Job(tasks[2]).data.path = allowed + "/data/prose.txt";
  Job(tasks[3]).model.path = allowed + "/model";
  Outcomes out;
  for (size_t i = 0; i < tasks.size(); ++i) {
    FakeContext ctx;
    (*exec)->RunGroup({tasks[i]}, ctx,
                      [&](size_t, absl::StatusOr<TaskOutput> r) {
                        out.emplace(i, std::move(r));
                      });
  }
  ASSERT_EQ(out.size(), 4u);
  EXPECT_TRUE(out.at(0).ok()) << out.at(0).status();
  for (size_t i : {1, 2, 3}) {
    SCOPED_TRACE(tasks[i].task_key);
    ASSERT_FALSE(out.at(i).ok());
    EXPECT_EQ(out.at(i).status().code(), absl::StatusCode::kPermissionDenied)
        << out.at(i).status();
    EXPECT_THAT(out.at(i).status().message(), HasSubstr("outside"));
  }
  EXPECT_THAT(out.at(2).status().message(), HasSubstr("config.json"));
  EXPECT_THAT(out.at(3).status().message(), HasSubstr("data.dataset.path"));
}

TEST_F(LmExecutorTest, CancellationStopsTasks) {
  const json w = {{"context_length", 16}};
  std::vector<TaskInput> tasks = {
      Task("eval", "a", "prose.txt", w),
      Task("eval", "b", "prose.txt", w, {{{"skip", {{"layers", "1"}}}}})};
  FakeContext one;
  one.cancelled_tasks.insert(1);
  Outcomes out = Run(tasks, true, &one);
  EXPECT_TRUE(out.at(0).ok());
  EXPECT_EQ(out.at(1).status().code(), absl::StatusCode::kCancelled);
  ASSERT_FALSE(one.progress.empty());
  EXPECT_DOUBLE_EQ(one.progress.back(), 1.0);

  FakeContext all;
  all.cancel_all = true;
  const int64_t before = backend_->total_layer_forwards();
  out = Run(tasks, true, &all);
  EXPECT_EQ(out.at(0).status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(out.at(1).status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(backend_->total_layer_forwards(), before);
}

TEST_F(LmExecutorTest, RegisterLmExecutorsRegistersEvalAndProbe) {
  LmBackendOptions bo;
  bo.engine.model_dir = Path("model");
  bo.engine.cpu_threads_per_rank = 1;
  ExecutorRegistry registry;
  ASSERT_TRUE(RegisterLmExecutors(bo, LmExecutorOptions{}, &registry).ok());
  // head_importance shares the backend (docs/CALIBRATION.md); materialize
  // (engine-free) is registered next to them (issue 12).
  EXPECT_THAT(registry.kinds(),
              ::testing::ElementsAre("canary", "capture", "eval", "generate",
                                     "head_importance", "heal", "materialize",
                                     "probe", "retrain"));
  ASSERT_NE(registry.Find("probe"), nullptr);
  // One executor serves both kinds, so a prefix-share group mixing eval and
  // probe tasks (a staged layer study) reaches a single RunGroup.
  EXPECT_EQ(registry.Find("probe"), registry.Find("eval"));

  bo.engine.model_dir = Path("no-such-model");
  ExecutorRegistry empty;
  absl::Status s = RegisterLmExecutors(bo, LmExecutorOptions{}, &empty);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("no-such-model"));
  EXPECT_TRUE(empty.kinds().empty());
}

TEST_F(LmExecutorTest, CreateRejectsOtherKinds) {
  auto e = LmExecutor::Create("generate", backend_, LmExecutorOptions{});
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(e.status().message(), HasSubstr("generate"));
}

}  // namespace
}  // namespace sweepd
