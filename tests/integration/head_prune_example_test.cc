// configs/sweeps/head_prune.yaml (seed 001) end to end on CPU: a tiny model
// made with `sweep-worker make-model`, a real `sweepd` with the shipped
// datasets as --data-root and an artifact store, one `sweep-worker`; the
// example is loaded by the spec loader and submitted, and the sweep must end
// DONE with every derived stage planned from the results before it:
// importance rows for every (layer, head), one heal per pruned layer with its
// residuals, two materialized checkpoints whose fingerprints differ from the
// base, canaries and evals on them, and a report with the heatmap, the heal
// table, the canary table and the perplexity deltas.
//
// Needs the capture, heal and materialize executors and --artifact-root on
// sweepd and sweep-worker (docs/CALIBRATION.md); skipped, saying so, on a
// build without --artifact-root or without one of those executors.
// ExampleIsValidAndDeferred runs on every build: the example loads, passes
// submit-time validation and defers every stage after `capture`.
#include <sys/stat.h>

#include <fstream>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/report.h"
#include "client/spec_loader.h"
#include "coordinator/planner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/process.h"
#include "tests/testing/sweep_cluster.h"
#include "tests/testing/sweep_run.h"

namespace sweepd::testing {
namespace {

namespace v1 = ::sweepd::v1;
using ::testing::HasSubstr;

TEST(HeadPruneExampleTest, ExampleIsValidAndDeferred) {
  auto dir = MakeTempDir("sweepd-head-prune-plan");
  ASSERT_TRUE(dir.ok()) << dir.status();
  // The tiny model's config and a header-only safetensors file: enough for
  // the planner (shape and fingerprint).
  const std::string model = *dir + "/gemma4-tiny";
  ASSERT_EQ(mkdir(model.c_str(), 0755), 0);
  {
    std::ifstream in(SourceDir() + "/configs/models/gemma4-tiny.json");
    std::ofstream out(model + "/config.json");
    out << in.rdbuf();
    std::ofstream st(model + "/model.safetensors", std::ios::binary);
    st << std::string("\x02\0\0\0\0\0\0\0", 8) << "{}";
  }
  auto spec =
      LoadSweepSpecFile(SourceDir() + "/configs/sweeps/head_prune.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  PlannerOptions options;
  options.model_root = *dir;
  options.data_root = SourceDir() + "/configs/data";
  auto plan = PlanSweep(*spec, options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  // At submit: importance per calib shard (2) and capture per shard (2 calib
  // + 1 held-out); the other 10 stages wait for results.
  std::map<std::string, int> by_stage;
  for (const PlannedTask& t : plan->tasks) ++by_stage[t.spec.stage()];
  EXPECT_EQ(by_stage[""], 2);
  EXPECT_EQ(by_stage["capture"], 3);
  EXPECT_EQ(by_stage.size(), 2u);
  EXPECT_EQ(plan->deferred_stages.size(), 10u);
  EXPECT_EQ(plan->deferred_stages.front(), 1);
}

TEST(HeadPruneExampleTest, SeedOnePipelineRunsStageByStage) {
  auto dir = MakeTempDir("sweepd-head-prune");
  ASSERT_TRUE(dir.ok()) << dir.status();
  auto started = StartTinyArtifactCluster(*dir, "prune-worker");
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<SweepCluster> cluster = std::move(started->cluster);
  const std::string models = started->models;

  auto spec =
      LoadSweepSpecFile(SourceDir() + "/configs/sweeps/head_prune.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  SweepRun run;
  ASSERT_NO_FATAL_FAILURE(
      RunSweepToEnd(*cluster, *spec, absl::Seconds(800), &run));

  std::map<std::string, std::vector<const v1::TaskRecord*>> by_stage;
  for (const v1::TaskRecord& t : run.tasks)
    by_stage[t.spec().stage()].push_back(&t);
  // Importance: 2 shards x 6 layers x 4 heads.
  ASSERT_EQ(by_stage[""].size(), 2u);
  std::set<std::pair<std::string, std::string>> scored;
  for (const v1::TaskRecord* t : by_stage[""]) {
    for (const v1::Metric& m : t->result().metrics()) {
      if (m.name() == "head_nll_delta") {
        scored.insert({m.labels().at("layer"), m.labels().at("head")});
      }
    }
  }
  EXPECT_EQ(scored.size(), 24u);
  // One heal per layer (a quarter of 4 heads = 1 head each), residuals in
  // [0, 1].
  ASSERT_EQ(by_stage["heal"].size(), 6u);
  for (const v1::TaskRecord* t : by_stage["heal"]) {
    EXPECT_EQ(t->spec().heal().heads_removed_size(), 1);
    EXPECT_EQ(t->spec().heal().grams_size(), 2);
    EXPECT_EQ(t->spec().heal().heldout_grams_size(), 1);
  }
  // Two materialized checkpoints, evaluated on their own fingerprints.
  std::set<std::string> fingerprints;
  for (const char* stage : {"materialize", "materialize-l0-1"}) {
    ASSERT_EQ(by_stage[stage].size(), 1u) << stage;
  }
  for (const char* stage : {"eval-base", "eval-all", "eval-l0-1"}) {
    ASSERT_FALSE(by_stage[stage].empty()) << stage;
    fingerprints.insert(by_stage[stage][0]->spec().model().fingerprint());
  }
  EXPECT_EQ(fingerprints.size(), 3u);
  for (const char* stage : {"canary-base", "canary-all", "canary-l0-1"}) {
    ASSERT_EQ(by_stage[stage].size(), 1u) << stage;
  }
  // The canary verdicts on the materialized checkpoints landed in their
  // manifests, keyed by the canary task, agreeing with the task's rows (the
  // random tiny model fails the cases: "failed").
  for (const auto& [stage, out_dir] :
       std::vector<std::pair<std::string, std::string>>{
           {"canary-all", "gemma4-tiny-he1-all"},
           {"canary-l0-1", "gemma4-tiny-he1-l0-1"}}) {
    const v1::TaskRecord& t = *by_stage[stage][0];
    double pass_rate = -1;
    for (const v1::Metric& m : t.result().metrics()) {
      if (m.name() == "canary_pass_rate") pass_rate = m.value();
    }
    std::ifstream in(models + "/" + out_dir + "/sweepd_manifest.json");
    ASSERT_TRUE(in.good()) << out_dir;
    const nlohmann::json canary = nlohmann::json::parse(in)["canary"];
    ASSERT_TRUE(canary["tasks"].contains(t.task_key())) << canary.dump();
    const nlohmann::json& entry = canary["tasks"][t.task_key()];
    EXPECT_EQ(entry["cases"], 2) << stage;
    EXPECT_DOUBLE_EQ(entry["passed"].get<int>() / 2.0, pass_rate) << stage;
    EXPECT_EQ(canary["status"], pass_rate == 1.0 ? "passed" : "failed")
        << stage;
    EXPECT_EQ(canary["tasks"].size(), 1u) << stage;
  }
  EXPECT_FALSE(
      std::ifstream(models + "/gemma4-tiny/sweepd_manifest.json").good());
  ASSERT_FALSE(by_stage["eval-masked"].empty());
  EXPECT_EQ(
      by_stage["eval-masked"][0]->spec().interventions().interventions_size(),
      6);

  auto report = BuildReportData(run.tasks, ReportOptions());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->calibration.importance.size(), 24u);
  EXPECT_EQ(report->calibration.heals.size(), 6u);
  ASSERT_TRUE(report->generation.canary.has_value());
  EXPECT_EQ(report->generation.canary->columns.size(), 3u);
  auto html = RenderReportHtml(*report);
  ASSERT_TRUE(html.ok()) << html.status();
  EXPECT_THAT(*html, HasSubstr("chart-head-importance"));
  EXPECT_THAT(*html, HasSubstr("table-heal"));
  EXPECT_THAT(*html, HasSubstr("table-ppl-delta"));
}

}  // namespace
}  // namespace sweepd::testing
