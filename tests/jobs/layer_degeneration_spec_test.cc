// configs/sweeps/layer_degeneration.yaml through the coordinator's spec loader
// and planner (against a random tiny model under a temp model root and the
// shipped corpora), then every planned task through the agent's conversion and
// the eval executor: the example sweep plans and runs.
#include <unistd.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "client/spec_loader.h"
#include "common/fs.h"
#include "coordinator/planner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sweepd/v1/worker.pb.h"
#include "worker/agent/conversion.h"
#include "worker/engine/model_generator.h"
#include "worker/jobs/lm_executor.h"

namespace sweepd {
namespace {

std::string SourceDir() {
  const char* d = std::getenv("SWEEPD_SOURCE_DIR");
  return d != nullptr ? d : ".";
}

class NoCancel : public TaskContext {
 public:
  bool cancelled() const override { return false; }
  bool task_cancelled(size_t) const override { return false; }
  void SetProgress(double) override {}
};

TEST(LayerDegenerationSpecTest, PlansAndRuns) {
  const std::string root =
      ::testing::TempDir() + "/layer_degeneration_" + std::to_string(getpid());
  ASSERT_TRUE(RemoveAll(root).ok());
  ASSERT_TRUE(
      engine::MakeRandomModel(SourceDir() + "/configs/models/gemma4-tiny.json",
                              3, root + "/gemma4-tiny")
          .ok());
  auto spec = LoadSweepSpecFile(SourceDir() +
                                "/configs/sweeps/layer_degeneration.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  PlannerOptions po;
  po.model_root = root;
  po.data_root = SourceDir() + "/configs/data";
  auto plan = PlanSweep(*spec, po);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->tasks.size(), 14u);

  std::map<std::string, std::vector<TaskInput>> groups;
  for (const PlannedTask& t : plan->tasks) {
    v1::TaskAssignment a;
    a.set_task_key(t.task_key);
    a.set_group_key(t.group_key);
    a.set_sweep_id(plan->sweep_id);
    *a.mutable_spec() = t.spec;
    auto input = ToTaskInput(a);
    ASSERT_TRUE(input.ok()) << input.status();
    EXPECT_EQ(input->kind, "eval");
    groups[t.group_key].push_back(*input);
  }
  ASSERT_EQ(groups.size(), 2u);  // one prefix-share group per corpus

  LmBackendOptions bo;
  bo.engine.model_dir = root + "/gemma4-tiny";
  bo.engine.cpu_threads_per_rank = 1;
  auto backend = LmBackend::Create(bo);
  ASSERT_TRUE(backend.ok()) << backend.status();
  auto exec = LmExecutor::Create("eval", *backend, LmExecutorOptions{});
  ASSERT_TRUE(exec.ok()) << exec.status();
  for (const auto& [key, tasks] : groups) {
    ASSERT_EQ(tasks.size(), 7u);
    std::set<double> ppls;
    NoCancel ctx;
    (*exec)->RunGroup(tasks, ctx, [&](size_t i, absl::StatusOr<TaskOutput> r) {
      ASSERT_TRUE(r.ok()) << tasks[i].task_key << ": " << r.status();
      for (const MetricRow& m : r->metrics) {
        if (m.name == "ppl" && m.labels.at("category") == "all") {
          EXPECT_GT(m.value, 1.0);
          ppls.insert(m.value);
        }
      }
    });
    EXPECT_EQ(ppls.size(), 7u) << "each intervention gives its own perplexity";
  }
  EXPECT_TRUE(RemoveAll(root).ok());
}

}  // namespace
}  // namespace sweepd
