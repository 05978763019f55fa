// configs/sweeps/layer_degeneration.yaml through the coordinator's spec loader
// and planner (against a random tiny model under a temp model root and the
// shipped corpora), then every planned task through the agent's conversion and
// the eval executor: the example sweep plans and runs.
#include <unistd.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "client/report.h"
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

// Defect: a param axis planned distinct tasks that computed identical numbers.
// Two context lengths now give two baselines, each ablation compared with its
// own (docs/REPORTS.md, "Which task is what").
TEST(SweptParamsTest, TwoContextLengthsGiveTwoBaselines) {
  const std::string root =
      ::testing::TempDir() + "/swept_params_" + std::to_string(getpid());
  ASSERT_TRUE(RemoveAll(root).ok());
  ASSERT_TRUE(
      engine::MakeRandomModel(SourceDir() + "/configs/models/gemma4-tiny.json",
                              3, root + "/gemma4-tiny")
          .ok());
  v1::SweepSpec spec;
  spec.set_name("two-context-lengths");
  spec.mutable_model()->set_path("gemma4-tiny");
  v1::DatasetRef* ds = spec.add_datasets();
  ds->set_name("prose");
  ds->set_path("corpus_prose.txt");
  ds->set_max_records(4);
  spec.mutable_eval()->mutable_windowing()->set_bos("on");
  v1::LayerAxis* layers = spec.mutable_grid()->add_axes()->mutable_layers();
  layers->set_op("skip");
  layers->set_select("1");
  layers->set_include_baseline(true);
  v1::ValueAxis* ctx = spec.mutable_grid()->add_axes()->mutable_param();
  ctx->set_name("context_length");
  ctx->add_values()->set_int_value(8);
  ctx->add_values()->set_int_value(32);
  PlannerOptions po;
  po.model_root = root;
  po.data_root = SourceDir() + "/configs/data";
  auto plan = PlanSweep(spec, po);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->tasks.size(), 4u);

  LmBackendOptions bo;
  bo.engine.model_dir = root + "/gemma4-tiny";
  bo.engine.cpu_threads_per_rank = 1;
  auto backend = LmBackend::Create(bo);
  ASSERT_TRUE(backend.ok()) << backend.status();
  auto exec = LmExecutor::Create("eval", *backend, LmExecutorOptions{});
  ASSERT_TRUE(exec.ok()) << exec.status();
  std::vector<v1::TaskRecord> records;
  for (const PlannedTask& t : plan->tasks) {
    v1::TaskAssignment a;
    a.set_task_key(t.task_key);
    a.set_group_key(t.group_key);
    *a.mutable_spec() = t.spec;
    auto input = ToTaskInput(a);
    ASSERT_TRUE(input.ok()) << input.status();
    NoCancel ctx_none;
    (*exec)->RunGroup({*input}, ctx_none,
                      [&](size_t, absl::StatusOr<TaskOutput> r) {
                        ASSERT_TRUE(r.ok()) << r.status();
                        v1::TaskRecord rec;
                        rec.set_task_key(t.task_key);
                        rec.set_state(v1::TASK_STATE_DONE);
                        *rec.mutable_spec() = t.spec;
                        *rec.mutable_result() = ToTaskResult(*r);
                        records.push_back(rec);
                      });
  }
  ASSERT_EQ(records.size(), 4u);
  auto report = BuildReportData(records, ReportOptions{});
  ASSERT_TRUE(report.ok()) << report.status();
  std::map<std::string, double> baseline_ppl;
  int skips_with_delta = 0;
  for (const EvalRow& row : report->evals) {
    if (row.kind == EvalKind::kBaseline) baseline_ppl[row.dataset] = row.ppl;
    if (row.kind == EvalKind::kSingleSkip && row.ppl_delta_pct.has_value()) {
      ++skips_with_delta;
    }
  }
  ASSERT_EQ(baseline_ppl.size(), 2u) << "one baseline per context length";
  EXPECT_NE(baseline_ppl.begin()->second, baseline_ppl.rbegin()->second)
      << "the context length changes the numbers";
  EXPECT_EQ(skips_with_delta, 2);
  EXPECT_TRUE(RemoveAll(root).ok());
}

}  // namespace
}  // namespace sweepd
