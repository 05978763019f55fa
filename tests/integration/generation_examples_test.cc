// The generation examples of configs/sweeps/ (best_of_n.yaml,
// degeneration_samples.yaml, canary.yaml) end to end on CPU: a tiny model made
// with `sweep-worker make-model`, a real `sweepd` with the shipped datasets
// as --data-root, two `sweep-worker`s; each example is loaded by the spec
// loader and submitted (best_of_n with fewer new tokens and the example
// verifier at its absolute path), then checked from the ledger's results:
// every (task, prompt, sample) exactly once, the sample counts, bans held,
// best-of-k from the kept samples non-decreasing in k, `sweepctl results
// --best-of-k` and `--samples` against the live coordinator, the report's
// generation sections (eye tests, canary pass/fail per case and BOS).
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/best_of_k_table.h"
#include "client/ctl_commands.h"
#include "client/report.h"
#include "client/sample_rows.h"
#include "client/spec_loader.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/process.h"
#include "tests/testing/sweep_cluster.h"
#include "tests/testing/sweep_run.h"

namespace sweepd::testing {
namespace {

namespace v1 = ::sweepd::v1;

class GenerationExamplesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto dir = MakeTempDir("sweepd-generation-examples");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = new std::string(*dir);
    auto worker_bin = BuildBinary("worker/sweep-worker");
    ASSERT_TRUE(worker_bin.ok()) << worker_bin.status();
    absl::Status made = MakeTinyModelWithWorker(
        *worker_bin, *dir_ + "/gemma4-tiny", *dir_ + "/make-model.log");
    ASSERT_TRUE(made.ok()) << made;

    SweepClusterOptions options{*dir_};
    options.sweepd_args = {"--model-root", *dir_, "--data-root",
                           SourceDir() + "/configs/data"};
    auto cluster = SweepCluster::Create(options);
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = cluster->release();
    ASSERT_TRUE(cluster_->StartCoordinator().ok()) << cluster_->DescribeLogs();
    for (int i = 0; i < 2; ++i) {
      auto w = cluster_->StartWorker(
          absl::StrCat("gen-worker-", i),
          {"--model", *dir_ + "/gemma4-tiny", "--threads", "1",
           "--heartbeat-ms", "300", "--verifier-command", "python3"});
      ASSERT_TRUE(w.ok()) << w.status();
    }
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
    delete dir_;
  }

  // `sweepctl ARGS` against the cluster; returns stdout, expects exit 0.
  static std::string Ctl(std::vector<std::string> args) {
    std::ostringstream out, err;
    CtlEnv env;
    env.out = &out;
    env.err = &err;
    env.clock = Clock::Real();
    args.insert(args.begin(), {"--coordinator", cluster_->address()});
    EXPECT_EQ(RunSweepctl(args, env), kCtlExitOk) << err.str();
    return out.str();
  }

  static std::string* dir_;
  static SweepCluster* cluster_;
};

std::string* GenerationExamplesTest::dir_ = nullptr;
SweepCluster* GenerationExamplesTest::cluster_ = nullptr;

// Every (task, prompt, sample) once, prompt_index x sample_index a full grid.
void ExpectEverySampleOnce(const v1::TaskRecord& t, int prompts, int n) {
  ASSERT_EQ(t.state(), v1::TASK_STATE_DONE) << t.task_key() << t.error();
  std::set<std::pair<int, int>> seen;
  for (const v1::Sample& s : t.result().samples()) {
    EXPECT_TRUE(seen.insert({s.prompt_index(), s.sample_index()}).second)
        << t.task_key() << " repeats prompt " << s.prompt_index() << " sample "
        << s.sample_index();
    EXPECT_GE(s.prompt_index(), 0);
    EXPECT_LT(s.prompt_index(), prompts);
    EXPECT_GE(s.sample_index(), 0);
    EXPECT_LT(s.sample_index(), n);
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(prompts * n)) << t.task_key();
}

void ExpectNonDecreasing(const std::vector<double>& v,
                         const std::string& what) {
  for (size_t k = 1; k < v.size(); ++k) {
    EXPECT_GE(v[k], v[k - 1] - 1e-12) << what << " at k = " << k + 1;
  }
}

TEST_F(GenerationExamplesTest, BestOfNWithVerifierAndBans) {
  auto spec = LoadSweepSpecFile(SourceDir() + "/configs/sweeps/best_of_n.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_EQ(spec->generate().samples(), 10);
  ASSERT_EQ(spec->generate().temperature(), 1.0);
  ASSERT_EQ(spec->stages_size(), 2);
  // Keep the test fast; the verifier at its absolute path (workers run in the
  // test's directory).
  const std::string verifier =
      SourceDir() + "/examples/verifiers/numeric_verifier.py";
  auto shorten = [&](v1::GenerateJob* job) {
    job->set_max_new_tokens(6);
    ASSERT_EQ(job->verifier_spec().command(1),
              "examples/verifiers/numeric_verifier.py");
    job->mutable_verifier_spec()->set_command(1, verifier);
  };
  shorten(spec->mutable_generate());
  for (v1::Stage& stage : *spec->mutable_stages()) {
    shorten(stage.mutable_generate());
  }
  SweepRun run;
  ASSERT_NO_FATAL_FAILURE(
      RunSweepToEnd(*cluster_, *spec, absl::Seconds(400), &run));
  const std::string& sweep_id = run.sweep_id;
  const std::vector<v1::TaskRecord>& tasks = run.tasks;
  // 3 stages x 2 shards of 6 prompts.
  ASSERT_EQ(tasks.size(), 6u);
  std::map<std::string, std::set<std::string>> prompts_of_stage;
  for (const v1::TaskRecord& t : tasks) {
    const int n = t.spec().stage() == "greedy" ? 1 : 10;
    ExpectEverySampleOnce(t, 6, n);
    for (const v1::Sample& s : t.result().samples()) {
      prompts_of_stage[t.spec().stage()].insert(s.prompt_id());
      // The example verifier scores every sample (all references hold a
      // number): no per-sample error.
      EXPECT_TRUE(s.has_score()) << s.verifier_error();
      EXPECT_EQ(s.verifier_error(), "");
      EXPECT_FALSE(absl::StrContains(s.text(), "\"")) << s.text();
      if (t.spec().stage() == "ban-both") {
        EXPECT_FALSE(absl::StrContains(s.text(), "'")) << s.text();
      }
    }
  }
  for (const auto& [stage, ids] : prompts_of_stage) {
    EXPECT_EQ(ids.size(), 12u) << "stage '" << stage << "'";
  }

  // Best of k from the kept samples, every k <= N.
  const std::vector<SampleRecord> samples = CollectSamples(tasks);
  ASSERT_EQ(samples.size(), 12u * (10 + 10 + 1));
  BootstrapOptions bootstrap;
  bootstrap.resamples = 200;
  auto curves = ComputeBestOfKTable(samples, bootstrap);
  ASSERT_TRUE(curves.ok()) << curves.status();
  ASSERT_EQ(curves->size(), 3u);
  for (const PointBestOfK& p : *curves) {
    EXPECT_EQ(p.prompts, 12) << p.point.Label();
    EXPECT_EQ(p.verifier_errors, 0);
    ASSERT_EQ(p.curve.size(), p.point.stage == "greedy" ? 1u : 10u);
    std::vector<double> pass, best;
    for (const AggregatePoint& a : p.curve) {
      pass.push_back(a.pass_at_k.mean);
      best.push_back(a.best_score.mean);
      EXPECT_EQ(a.num_prompts, 12);
    }
    ExpectNonDecreasing(pass, p.point.Label() + " pass@k");
    ExpectNonDecreasing(best, p.point.Label() + " best score");
    for (const PromptBestOfK& q : p.per_prompt) {
      ExpectNonDecreasing(q.curve.pass_at_k, q.prompt_id + " pass@k");
      ExpectNonDecreasing(q.curve.best_score, q.prompt_id + " best score");
    }
  }

  // sweepctl against the live coordinator.
  nlohmann::json rows =
      nlohmann::json::parse(Ctl({"results", sweep_id, "--best-of-k", "--format",
                                 "json", "--bootstrap", "50"}));
  EXPECT_EQ(rows.size(), 10u + 10u + 1u);
  nlohmann::json kept = nlohmann::json::parse(
      Ctl({"results", sweep_id, "--samples", "--format", "json"}));
  EXPECT_EQ(kept.size(), samples.size());

  // The report: the best-of-k charts and the category tables.
  ReportOptions ro;
  ro.bootstrap.resamples = 100;
  auto report = BuildReportData(tasks, ro);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_FALSE(report->layer_study);
  EXPECT_EQ(report->generation.best_of_k.size(), 2u);  // greedy has no curve
  // all + addition, multiplication, word problem.
  ASSERT_EQ(report->generation.categories.size(), 4u);
  EXPECT_EQ(report->generation.categories[0].rows[0].selection, "greedy");
  EXPECT_TRUE(report->generation.categories[0].rows[0].score[0].has_value())
      << "the greedy stage fills the greedy row of the first ban's column";
  EXPECT_THAT(ReportChartIds(*report),
              ::testing::ElementsAre("chart-bok-pass", "chart-bok-score",
                                     "chart-bok-selected"));
  auto html = RenderReportHtml(*report);
  ASSERT_TRUE(html.ok()) << html.status();
  EXPECT_THAT(*html, ::testing::HasSubstr("id=\"table-bok-0\""));
}

TEST_F(GenerationExamplesTest, DegenerationSamplesGiveEyeTestTables) {
  auto spec = LoadSweepSpecFile(SourceDir() +
                                "/configs/sweeps/degeneration_samples.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_EQ(spec->generate().temperature(), 1.0);
  spec->mutable_generate()->set_max_new_tokens(12);
  SweepRun run;
  ASSERT_NO_FATAL_FAILURE(
      RunSweepToEnd(*cluster_, *spec, absl::Seconds(400), &run));
  const std::vector<v1::TaskRecord>& tasks = run.tasks;
  // 10 points: 1 generate task + 2 eval tasks (two corpora) each.
  ASSERT_EQ(tasks.size(), 30u);
  int generate = 0;
  for (const v1::TaskRecord& t : tasks) {
    ASSERT_EQ(t.state(), v1::TASK_STATE_DONE) << t.error();
    if (t.spec().kind() != v1::JOB_KIND_GENERATE) continue;
    ++generate;
    ExpectEverySampleOnce(t, 2, 2);
  }
  EXPECT_EQ(generate, 10);
  auto report = BuildReportData(tasks, ReportOptions());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->layer_study);
  const std::vector<EyeTestTable>& eye = report->generation.eye_tests;
  ASSERT_EQ(eye.size(), 3u);
  EXPECT_EQ(eye[0].title, "Layer 0");
  EXPECT_EQ(eye[1].title, "Layer 2");
  EXPECT_EQ(eye[2].title, "Layer 5");
  for (const EyeTestTable& table : eye) {
    EXPECT_THAT(table.columns,
                ::testing::ElementsAre("no modification", "skip", "all zeros",
                                       "random initialization"));
    EXPECT_THAT(table.prompts,
                ::testing::ElementsAre("Tell a story", "Factor x^2+3x+2"));
    for (const auto& row : table.texts) {
      for (const auto& cell : row) EXPECT_TRUE(cell.has_value());
    }
  }
  EXPECT_THAT(ReportChartIds(*report),
              ::testing::Contains("chart-degeneration"));
  auto html = RenderReportHtml(*report);
  ASSERT_TRUE(html.ok()) << html.status();
  EXPECT_THAT(*html, ::testing::HasSubstr("id=\"table-eye-2\""));
}

TEST_F(GenerationExamplesTest, CanaryPassFailPerCaseAndBos) {
  auto spec = LoadSweepSpecFile(SourceDir() + "/configs/sweeps/canary.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  const int cases = spec->canary().cases_size();
  ASSERT_EQ(cases, 4);
  SweepRun run;
  ASSERT_NO_FATAL_FAILURE(
      RunSweepToEnd(*cluster_, *spec, absl::Seconds(400), &run));
  const std::vector<v1::TaskRecord>& tasks = run.tasks;
  ASSERT_EQ(tasks.size(), 2u);
  std::set<std::string> bos_seen;
  for (const v1::TaskRecord& t : tasks) {
    ExpectEverySampleOnce(t, cases, 1);
    const std::string bos = t.spec().canary().bos();
    bos_seen.insert(bos);
    std::set<std::string> case_metrics;
    for (const v1::Metric& m : t.result().metrics()) {
      if (m.name() != "canary_pass") continue;
      EXPECT_EQ(m.labels().at("bos"), bos);
      EXPECT_TRUE(m.value() == 0.0 || m.value() == 1.0);
      case_metrics.insert(m.labels().at("case"));
    }
    EXPECT_EQ(case_metrics.size(), static_cast<size_t>(cases));
  }
  EXPECT_EQ(bos_seen, (std::set<std::string>{"on", "off"}));
  auto report = BuildReportData(tasks, ReportOptions());
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_TRUE(report->generation.canary.has_value());
  const CanaryTable& table = *report->generation.canary;
  EXPECT_THAT(table.columns, ::testing::ElementsAre("baseline · bos=off",
                                                    "baseline · bos=on"));
  ASSERT_EQ(table.rows.size(), static_cast<size_t>(cases));
  EXPECT_EQ(table.rows[0].prompt, "The capital of France is");
  EXPECT_THAT(table.rows[0].expect, ::testing::ElementsAre("Paris"));
  for (const CanaryRow& row : table.rows) {
    for (const auto& cell : row.cells) EXPECT_TRUE(cell.has_value());
  }
  auto html = RenderReportHtml(*report);
  ASSERT_TRUE(html.ok()) << html.status();
  EXPECT_THAT(*html, ::testing::HasSubstr("id=\"table-canary\""));
}

}  // namespace
}  // namespace sweepd::testing
