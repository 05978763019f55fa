// configs/sweeps/layer_degeneration.yaml through the coordinator's spec loader
// and planner (against a random tiny model under a temp model root and the
// shipped corpora), then every planned task through the agent's conversion and
// the eval executor: the example sweep plans and runs. The same for seed
// 002's retrained layer, configs/sweeps/retrain_layer.yaml: the retrain stage
// runs, the eval stage with the trained layer is derived from its result.
#include <unistd.h>

#include <cmath>
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
#include "worker/jobs/retrain_executor.h"

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

TEST(RetrainLayerSpecTest, PlansTrainsAndEvaluatesTheTrainedLayer) {
  const std::string root =
      ::testing::TempDir() + "/retrain_layer_" + std::to_string(getpid());
  ASSERT_TRUE(RemoveAll(root).ok());
  ASSERT_TRUE(
      engine::MakeRandomModel(SourceDir() + "/configs/models/gemma4-tiny.json",
                              3, root + "/gemma4-tiny")
          .ok());
  auto spec =
      LoadSweepSpecFile(SourceDir() + "/configs/sweeps/retrain_layer.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  PlannerOptions po;
  po.model_root = root;
  po.data_root = SourceDir() + "/configs/data";
  auto plan = PlanSweep(*spec, po);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->tasks.size(), 3u);  // eval base, eval reinit, retrain
  ASSERT_EQ(plan->deferred_stages.size(), 1u);

  auto opened = ArtifactStore::Open(root + "/artifacts");
  ASSERT_TRUE(opened.ok()) << opened.status();
  std::shared_ptr<ArtifactStore> store = std::move(*opened);
  LmBackendOptions bo;
  bo.engine.model_dir = root + "/gemma4-tiny";
  bo.engine.cpu_threads_per_rank = 1;
  auto backend = LmBackend::Create(bo);
  ASSERT_TRUE(backend.ok()) << backend.status();
  LmExecutorOptions eo;
  eo.artifacts = store;
  auto eval = LmExecutor::Create("eval", *backend, eo);
  ASSERT_TRUE(eval.ok()) << eval.status();
  RetrainExecutorOptions ro;
  ro.artifacts = store;
  auto retrain = RetrainExecutor::Create(*backend, ro);
  ASSERT_TRUE(retrain.ok()) << retrain.status();

  // Runs planned tasks one by one; returns the DONE records and "nll_mean"
  // per task kind / intervention.
  std::map<std::string, double> nll;
  auto run = [&](const std::vector<PlannedTask>& tasks,
                 std::vector<v1::TaskRecord>* records) {
    for (const PlannedTask& t : tasks) {
      v1::TaskAssignment a;
      a.set_task_key(t.task_key);
      a.set_group_key(t.group_key);
      a.set_sweep_id(plan->sweep_id);
      *a.mutable_spec() = t.spec;
      auto input = ToTaskInput(a);
      ASSERT_TRUE(input.ok()) << input.status();
      Executor* exec = input->kind == "retrain"
                           ? static_cast<Executor*>(retrain->get())
                           : eval->get();
      NoCancel ctx;
      exec->RunGroup({*input}, ctx, [&](size_t, absl::StatusOr<TaskOutput> r) {
        ASSERT_TRUE(r.ok()) << t.task_key << ": " << r.status();
        v1::TaskRecord rec;
        rec.set_task_key(t.task_key);
        rec.set_state(v1::TASK_STATE_DONE);
        *rec.mutable_spec() = t.spec;
        std::string what = input->kind;
        for (const auto& iv : t.spec.interventions().interventions()) {
          what += iv.has_reinit() ? "+reinit" : "+replace_layer";
        }
        for (const MetricRow& m : r->metrics) {
          if (m.name == "nll_mean" && m.labels.at("category") == "all") {
            nll[what] = m.value;
          }
          if (m.name == "retrain_final_loss") nll["final_loss"] = m.value;
          if (m.name == "retrain_initial_loss") nll["initial_loss"] = m.value;
        }
        for (const ArtifactRow& ar : r->artifacts) {
          v1::Artifact* art = rec.mutable_result()->add_artifacts();
          art->set_name(ar.name);
          art->set_path(ar.path);
          art->set_bytes(ar.bytes);
          art->set_sha256(ar.sha256);
        }
        records->push_back(std::move(rec));
      });
    }
  };
  std::vector<v1::TaskRecord> records;
  run(plan->tasks, &records);
  auto derived = PlanDerivedStage(plan->resolved_spec, plan->deferred_stages[0],
                                  records, 3, po);
  ASSERT_TRUE(derived.ok()) << derived.status();
  ASSERT_EQ(derived->size(), 1u);
  EXPECT_EQ((*derived)[0].spec.stage(), "eval-retrained");
  run(*derived, &records);
  ASSERT_EQ(nll.count("eval"), 1u);
  ASSERT_EQ(nll.count("eval+reinit"), 1u);
  ASSERT_EQ(nll.count("eval+replace_layer"), 1u);
  EXPECT_LT(nll["final_loss"], nll["initial_loss"]);
  // The trained layer brings the model back toward the base.
  EXPECT_LT(std::abs(nll["eval+replace_layer"] - nll["eval"]),
            std::abs(nll["eval+reinit"] - nll["eval"]));
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
