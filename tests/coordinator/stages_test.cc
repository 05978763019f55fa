// Staged sweeps (docs/STAGES.md): planning stages at submit time, deferring
// drop_plan stages, deriving them from results, and the ledger/scheduler
// keeping the sweep RUNNING until every stage is planned — across a restart
// too.
#include <stdlib.h>
#include <sys/stat.h>

#include <cmath>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "coordinator/ledger.h"
#include "coordinator/planner.h"
#include "coordinator/scheduler.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/coordinator/coordinator_test_util.h"

namespace sweepd {
namespace {

using ::sweepd::testing::Await;
using ::sweepd::testing::TempPath;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
  ASSERT_TRUE(out.good()) << path;
}

std::string MakeTempDir() {
  std::string tmpl = TempPath("stages") + "-XXXXXX";
  char* dir = mkdtemp(tmpl.data());
  EXPECT_NE(dir, nullptr);
  return tmpl;
}

class StagesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = MakeTempDir();
    options_.model_root = root_ + "/models";
    options_.data_root = root_ + "/data";
    ASSERT_EQ(mkdir(options_.model_root.c_str(), 0755), 0);
    ASSERT_EQ(mkdir(options_.data_root.c_str(), 0755), 0);
    const std::string model = options_.model_root + "/tiny";
    ASSERT_EQ(mkdir(model.c_str(), 0755), 0);
    WriteFile(model + "/config.json",
              "{\"num_hidden_layers\": 4, \"num_attention_heads\": 2}");
    // Empty safetensors: 8-byte header length 2, header "{}".
    WriteFile(model + "/model.safetensors",
              std::string("\x02\0\0\0\0\0\0\0{}", 10));
    WriteFile(options_.data_root + "/text.txt",
              "one paragraph\n\nanother one\n");
  }

  // Stage 0: baseline + single-layer skip of every layer; stage "drop": k =
  // 1, 2.
  v1::SweepSpec StagedSpec() {
    v1::SweepSpec spec;
    spec.set_name("layer-study");
    spec.mutable_model()->set_path("tiny");
    auto* ds = spec.add_datasets();
    ds->set_name("text");
    ds->set_path("text.txt");
    spec.mutable_eval()->mutable_windowing()->set_context_length(16);
    auto* layers = spec.mutable_grid()->add_axes()->mutable_layers();
    layers->set_op("skip");
    layers->set_select("all");
    layers->set_include_baseline(true);
    auto* stage = spec.add_stages();
    stage->set_name("drop");
    stage->mutable_eval()->mutable_windowing()->set_context_length(16);
    stage->mutable_drop_plan()->add_k(1);
    stage->mutable_drop_plan()->add_k(2);
    return spec;
  }

  // A DONE record of `task` whose mean NLL per token is `nll_per_token`.
  static v1::TaskRecord DoneRecord(const PlannedTask& task,
                                   double nll_per_token) {
    v1::TaskRecord r;
    r.set_task_key(task.task_key);
    r.set_state(v1::TASK_STATE_DONE);
    *r.mutable_spec() = task.spec;
    auto add = [&](const std::string& name, double value) {
      v1::Metric* m = r.mutable_result()->add_metrics();
      m->set_name(name);
      m->set_value(value);
      (*m->mutable_labels())["category"] = "all";
    };
    add("nll_sum", 100 * nll_per_token);
    add("tokens", 100);
    add("nll_mean", nll_per_token);
    add("ppl", std::exp(nll_per_token));
    return r;
  }

  std::string root_;
  PlannerOptions options_;
};

TEST_F(StagesTest, DropPlanStageIsDeferredAndDerivedFromResults) {
  auto plan = PlanSweep(StagedSpec(), options_);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_THAT(plan->tasks, SizeIs(5));  // baseline + 4 single-layer skips
  EXPECT_THAT(plan->deferred_stages, ElementsAre(0));
  for (const PlannedTask& t : plan->tasks) EXPECT_EQ(t.spec.stage(), "");

  // Skipping layer L costs 0.1·L nats per token over the baseline's 1.0, so the
  // safest layers are 0, then 1.
  std::vector<v1::TaskRecord> records;
  for (const PlannedTask& t : plan->tasks) {
    double nll = 1.0;
    if (t.spec.interventions().interventions_size() > 0) {
      nll +=
          0.1 * std::stoi(
                    t.spec.interventions().interventions(0).skip().layers()) +
          0.01;
    }
    records.push_back(DoneRecord(t, nll));
  }
  auto derived =
      PlanDerivedStage(plan->resolved_spec, 0, records,
                       static_cast<int64_t>(plan->tasks.size()), options_);
  ASSERT_TRUE(derived.ok()) << derived.status();
  ASSERT_THAT(*derived, SizeIs(2));
  EXPECT_EQ((*derived)[0].spec.interventions().interventions(0).skip().layers(),
            "0");
  EXPECT_EQ((*derived)[1].spec.interventions().interventions(0).skip().layers(),
            "0-1");  // canonical form
  for (size_t i = 0; i < derived->size(); ++i) {
    EXPECT_EQ((*derived)[i].spec.stage(), "drop");
    EXPECT_EQ((*derived)[i].spec.index(), 5 + static_cast<int64_t>(i));
    // The derived tasks share the prefix group of the stage-0 tasks of the
    // shard.
    EXPECT_EQ((*derived)[i].group_key, plan->tasks[0].group_key);
  }
}

TEST_F(StagesTest, DerivationWithoutAblationResultsSaysWhy) {
  auto plan = PlanSweep(StagedSpec(), options_);
  ASSERT_TRUE(plan.ok()) << plan.status();
  auto derived = PlanDerivedStage(plan->resolved_spec, 0, {}, 5, options_);
  EXPECT_EQ(derived.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(derived.status().message(), HasSubstr("stages[0].drop_plan"));
}

TEST_F(StagesTest, StageValidationNamesTheField) {
  v1::SweepSpec spec = StagedSpec();
  spec.mutable_stages(0)->mutable_drop_plan()->set_k(1, 0);
  auto plan = PlanSweep(spec, options_);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(plan.status().message(), HasSubstr("stages[0].drop_plan.k[1]"));

  spec = StagedSpec();
  spec.add_stages()->set_name("drop");
  plan = PlanSweep(spec, options_);
  EXPECT_THAT(plan.status().message(), HasSubstr("stages[1].name"));
}

TEST_F(StagesTest, ImmediateStagesArePlannedAtSubmitWithTheirName) {
  v1::SweepSpec spec = StagedSpec();
  spec.clear_stages();
  auto* probe = spec.add_stages();
  probe->set_name("probe");
  probe->mutable_probe()->mutable_windowing()->set_context_length(16);
  auto plan = PlanSweep(spec, options_);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_THAT(plan->tasks, SizeIs(6));
  EXPECT_THAT(plan->deferred_stages, IsEmpty());
  const PlannedTask& p = plan->tasks.back();
  EXPECT_EQ(p.spec.stage(), "probe");
  EXPECT_EQ(p.spec.kind(), v1::JOB_KIND_PROBE);
  EXPECT_EQ(p.spec.index(), 5);
  // Probe and eval tasks of one shard share the unablated pass.
  EXPECT_EQ(p.group_key, plan->tasks[0].group_key);
}

class StagedSchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = TempPath("staged") + ".db";
    Open();
  }
  void Open() {
    scheduler_.reset();
    ledger_.reset();
    LedgerOptions lo;
    lo.clock = &clock_;
    auto l = Ledger::Open(path_, lo);
    ASSERT_TRUE(l.ok()) << l.status();
    ledger_ = std::move(l).value();
    SchedulerOptions so;
    so.clock = &clock_;
    auto s = LeaseScheduler::Create(ledger_.get(), so);
    ASSERT_TRUE(s.ok()) << s.status();
    scheduler_ = std::move(s).value();
  }
  std::string Register() {
    v1::WorkerCapabilities caps;
    caps.set_device_kind("cpu");
    auto r = Await<v1::RegisterWorkerResponse>(
        [&](auto cb) { scheduler_->RegisterWorker("w", caps, cb); });
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->worker_id() : "";
  }
  // Leases and completes every leasable task.
  void RunAll(const std::string& worker) {
    while (true) {
      auto batch = Await<LeaseBatch>([&](auto cb) {
        scheduler_->LeaseTasks(worker, 100, std::nullopt, cb);
      });
      ASSERT_TRUE(batch.ok()) << batch.status();
      if (batch->tasks.empty()) return;
      for (const auto& a : batch->tasks) {
        ResultReport rep;
        rep.worker_id = worker;
        rep.task_key = a.task_key();
        rep.fencing_token = a.fencing_token();
        rep.result.emplace();
        auto r =
            Await<bool>([&](auto cb) { scheduler_->ReportResult(rep, cb); });
        ASSERT_TRUE(r.ok()) << r.status();
      }
    }
  }
  v1::SweepState State(const std::string& id) {
    auto s = scheduler_->GetSweep(id);
    return s.has_value() ? s->state : v1::SWEEP_STATE_UNSPECIFIED;
  }
  // A plan of `n` tasks with one deferred stage.
  Plan StagedPlan(int n) {
    Plan plan =
        ::sweepd::testing::MakePlan({.sweep_id = "sw-staged", .tasks = n});
    plan.resolved_spec.add_stages()->set_name("later");
    plan.deferred_stages = {0};
    return plan;
  }
  std::vector<PlannedTask> StageTasks(int n) {
    std::vector<PlannedTask> out =
        ::sweepd::testing::MakePlan({.sweep_id = "sw-later", .tasks = n}).tasks;
    for (auto& t : out) t.spec.set_stage("later");
    return out;
  }

  FakeClock clock_;
  std::string path_;
  std::unique_ptr<Ledger> ledger_;
  std::unique_ptr<LeaseScheduler> scheduler_;
};

TEST_F(StagedSchedulerTest, SweepRunsUntilItsDeferredStageIsPlannedAndDone) {
  auto submitted = Await<SubmitOutcome>(
      [&](auto cb) { scheduler_->SubmitPlan(StagedPlan(3), cb); });
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  const std::string worker = Register();
  // Not ready while stage-0 tasks are pending.
  EXPECT_THAT(scheduler_->TakeSweepsReadyForStage(), IsEmpty());
  RunAll(worker);
  EXPECT_EQ(State("sw-staged"), v1::SWEEP_STATE_RUNNING);

  auto ready = scheduler_->TakeSweepsReadyForStage();
  ASSERT_THAT(ready, SizeIs(1));
  EXPECT_EQ(ready[0].sweep_id, "sw-staged");
  EXPECT_EQ(ready[0].stage_index, 0);
  EXPECT_EQ(ready[0].first_index, 3);
  // Handed out once while the derivation is in flight.
  EXPECT_THAT(scheduler_->TakeSweepsReadyForStage(), IsEmpty());

  auto appended = Await<int64_t>([&](auto cb) {
    scheduler_->AppendStage("sw-staged", 0, StageTasks(2), cb);
  });
  ASSERT_TRUE(appended.ok()) << appended.status();
  EXPECT_EQ(*appended, 2);
  EXPECT_EQ(scheduler_->GetSweep("sw-staged")->counts.total(), 5);
  EXPECT_EQ(State("sw-staged"), v1::SWEEP_STATE_RUNNING);

  // A repeated append of the same stage is a no-op.
  appended = Await<int64_t>([&](auto cb) {
    scheduler_->AppendStage("sw-staged", 0, StageTasks(2), cb);
  });
  ASSERT_TRUE(appended.ok()) << appended.status();
  EXPECT_EQ(*appended, 0);
  EXPECT_EQ(scheduler_->GetSweep("sw-staged")->counts.total(), 5);

  RunAll(worker);
  EXPECT_EQ(State("sw-staged"), v1::SWEEP_STATE_DONE);
  auto row = ledger_->GetSweep("sw-staged");
  ASSERT_TRUE(row.ok()) << row.status();
  EXPECT_EQ(row->state, v1::SWEEP_STATE_DONE);
  EXPECT_EQ(row->total_tasks, 5);
  EXPECT_THAT(row->deferred_stages, IsEmpty());
  auto page = ledger_->ListTasks("sw-staged", {}, -1, 100);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_THAT(page->tasks, SizeIs(5));
  EXPECT_EQ(page->tasks[3].spec().stage(), "later");
  EXPECT_EQ(page->tasks[4].spec().index(), 4);
}

TEST_F(StagedSchedulerTest, DeferredStageSurvivesRestart) {
  auto submitted = Await<SubmitOutcome>(
      [&](auto cb) { scheduler_->SubmitPlan(StagedPlan(2), cb); });
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  RunAll(Register());
  ASSERT_TRUE(ledger_->Flush().ok());
  Open();  // a new coordinator process on the same ledger
  EXPECT_EQ(State("sw-staged"), v1::SWEEP_STATE_RUNNING);
  auto ready = scheduler_->TakeSweepsReadyForStage();
  ASSERT_THAT(ready, SizeIs(1));
  EXPECT_EQ(ready[0].first_index, 2);
  // An abandoned derivation is offered again.
  scheduler_->AbandonStage("sw-staged");
  EXPECT_THAT(scheduler_->TakeSweepsReadyForStage(), SizeIs(1));
}

TEST_F(StagedSchedulerTest, UnplannableStageEndsTheSweepFailedWithTheReason) {
  auto submitted = Await<SubmitOutcome>(
      [&](auto cb) { scheduler_->SubmitPlan(StagedPlan(1), cb); });
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  RunAll(Register());
  ASSERT_THAT(scheduler_->TakeSweepsReadyForStage(), SizeIs(1));
  std::vector<PlannedTask> failure = StageTasks(1);
  failure[0].failure = "stages[0].drop_plan: no feasible drop plan";
  auto appended = Await<int64_t>(
      [&](auto cb) { scheduler_->AppendStage("sw-staged", 0, failure, cb); });
  ASSERT_TRUE(appended.ok()) << appended.status();
  EXPECT_EQ(State("sw-staged"), v1::SWEEP_STATE_FAILED);
  auto page = ledger_->ListTasks("sw-staged", {v1::TASK_STATE_FAILED}, -1, 10);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_THAT(page->tasks, SizeIs(1));
  EXPECT_THAT(page->tasks[0].error(), HasSubstr("no feasible drop plan"));
}

}  // namespace
}  // namespace sweepd
