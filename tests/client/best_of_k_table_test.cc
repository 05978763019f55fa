// Kept samples as rows (client/sample_rows.h) and best-of-k curves per grid
// point (client/best_of_k_table.h) on hand-made TaskRecords: grid points and
// prompt pooling, verifier errors dropped and counted, curve values checked
// against hand enumeration of the k-subsets, the output formats.
#include "client/best_of_k_table.h"

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/sample_rows.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"

namespace sweepd {
namespace {

namespace v1 = ::sweepd::v1;
using ::sweepd::testing::StatusIs;
using ::testing::HasSubstr;

struct S {
  std::string prompt;
  int sample;
  double score;
  bool pass;
  std::string error = "";
  bool scored = true;
};

v1::TaskRecord Task(const std::string& key, const std::string& zero_layer,
                    int shard, const std::vector<S>& samples,
                    v1::TaskState state = v1::TASK_STATE_DONE) {
  v1::TaskRecord r;
  r.set_task_key(key);
  r.set_sweep_id("sw-gen");
  r.set_state(state);
  v1::TaskSpec* spec = r.mutable_spec();
  spec->set_kind(v1::JOB_KIND_GENERATE);
  spec->set_index(shard);
  if (!zero_layer.empty()) {
    spec->mutable_interventions()
        ->add_interventions()
        ->mutable_zero()
        ->set_layers(zero_layer);
  }
  (*spec->mutable_params())["temperature"].set_double_value(1.0);
  spec->mutable_data()->mutable_dataset()->set_name("qa");
  spec->mutable_data()->set_shard_index(shard);
  spec->mutable_generate()->set_temperature(1.0);
  for (const S& s : samples) {
    v1::Sample* out = r.mutable_result()->add_samples();
    out->set_prompt_id(s.prompt);
    out->set_prompt_index(s.prompt == "q1" ? 0 : 1);
    out->set_sample_index(s.sample);
    out->set_category(s.prompt == "q1" ? "math" : "geo");
    out->set_text(absl::StrCat("answer, ", s.score, "\nline two"));
    out->set_num_tokens(5);
    out->set_finish_reason("length");
    out->set_logprob_sum(-3.5);
    out->set_has_score(s.scored && s.error.empty());
    out->set_score(s.error.empty() ? s.score : 0);
    out->set_pass(s.error.empty() && s.pass);
    out->set_verifier_error(s.error);
  }
  return r;
}

// Baseline point: q1 in shard 0 (3 samples) and shard 1 (2 samples, one a
// verifier error) pools to 4 scored samples {0.1, 0.5, 0.9, 0.3}, only 0.9
// passing; q2 (shard 1) has 2 scored samples. zero:2 point: q1 with 1 sample,
// q2 with one unscored sample. A failed task contributes nothing.
std::vector<v1::TaskRecord> Records() {
  return {
      Task(
          "k-base-0", "", 0,
          {{"q1", 0, 0.1, false}, {"q1", 1, 0.5, false}, {"q1", 2, 0.9, true}}),
      Task("k-base-1", "", 1,
           {{"q1", 0, 0.3, false},
            {"q1", 1, 0, false, "verifier: timed out"},
            {"q2", 0, 1.0, true},
            {"q2", 1, 0.0, false}}),
      Task("k-zero-0", "2", 0,
           {{"q1", 0, 0.2, false}, {"q2", 0, 0, false, "", false}}),
      Task("k-failed", "5", 0, {{"q1", 0, 1.0, true}}, v1::TASK_STATE_FAILED),
  };
}

TEST(SampleRowsTest, OneRowPerKeptSampleOfDoneTasksWithTheTaskLabels) {
  std::vector<SampleRecord> rows = CollectSamples(Records());
  ASSERT_EQ(rows.size(), 9u);
  EXPECT_EQ(rows[0].task_key, "k-base-0");
  EXPECT_EQ(rows[0].kind, "generate");
  EXPECT_EQ(rows[0].point.interventions, "baseline");
  EXPECT_EQ(rows[0].point.params, "temperature=1");
  EXPECT_EQ(rows[0].point.Label(), "baseline · temperature=1");
  EXPECT_EQ(rows[0].dataset, "qa#0");
  EXPECT_EQ(rows[4].verifier_error, "verifier: timed out");
  EXPECT_FALSE(rows[4].has_score);
  EXPECT_EQ(rows[7].point.interventions, "zero:2");
  EXPECT_EQ(rows[8].category, "geo");
}

TEST(SampleRowsTest, CsvJsonAndTable) {
  std::vector<SampleRecord> rows = CollectSamples(Records());
  std::ostringstream csv;
  WriteSamples(rows, ResultFormat::kCsv, csv);
  EXPECT_THAT(csv.str(),
              HasSubstr("task_key,index,stage,interventions,params,seed,"
                        "dataset,prompt_id,category,sample_index,num_tokens,"
                        "finish_reason,logprob_sum,score,pass,verifier_error,"
                        "text\n"));
  EXPECT_THAT(csv.str(), HasSubstr("k-base-0,0,,baseline,temperature=1,0,qa#0,"
                                   "q1,math,2,5,length,-3.5,0.9,true,,"
                                   "\"answer, 0.9\nline two\"\n"));
  // The unscored sample: empty score and pass.
  EXPECT_THAT(csv.str(), HasSubstr(",q2,geo,0,5,length,-3.5,,,,"));

  std::ostringstream js;
  WriteSamples(rows, ResultFormat::kJson, js);
  nlohmann::json parsed = nlohmann::json::parse(js.str());
  ASSERT_EQ(parsed.size(), 9u);
  EXPECT_EQ(parsed[2]["text"], "answer, 0.9\nline two");
  EXPECT_EQ(parsed[2]["pass"], true);
  EXPECT_TRUE(parsed[4]["score"].is_null());
  EXPECT_EQ(parsed[4]["verifier_error"], "verifier: timed out");
  EXPECT_TRUE(parsed[8]["pass"].is_null());

  std::ostringstream table;
  WriteSamples(rows, ResultFormat::kTable, table);
  EXPECT_THAT(table.str(), HasSubstr("answer, 0.9\\nline two"));
  std::ostringstream none;
  WriteSamples({}, ResultFormat::kTable, none);
  EXPECT_EQ(none.str(), "(no samples)\n");
}

TEST(BestOfKTableTest, CurvesPerGridPointFromPooledScoredSamples) {
  BootstrapOptions options;
  options.resamples = 200;
  auto points = ComputeBestOfKTable(CollectSamples(Records()), options);
  ASSERT_TRUE(points.ok()) << points.status();
  ASSERT_EQ(points->size(), 2u);
  const PointBestOfK& base = (*points)[0];
  EXPECT_EQ(base.point.interventions, "baseline");
  EXPECT_EQ(base.prompts, 2);
  EXPECT_EQ(base.samples, 6);
  EXPECT_EQ(base.verifier_errors, 1);
  EXPECT_EQ(base.unscored, 0);
  EXPECT_EQ(base.max_samples, 4);
  ASSERT_EQ(base.per_prompt.size(), 2u);
  const PromptBestOfK& q1 = base.per_prompt[0];
  EXPECT_EQ(q1.prompt_id, "q1");
  EXPECT_EQ(q1.category, "math");
  EXPECT_EQ(q1.samples, 4);
  EXPECT_EQ(q1.passes, 1);
  EXPECT_EQ(q1.verifier_errors, 1);
  EXPECT_DOUBLE_EQ(q1.mean_score, (0.1 + 0.5 + 0.9 + 0.3) / 4);
  EXPECT_TRUE(q1.has_first_sample);
  EXPECT_DOUBLE_EQ(q1.first_sample_score, 0.1);  // the first task's sample 0
  // By hand over the C(4, k) subsets of {0.1, 0.5, 0.9*, 0.3} (* passes):
  // pass@k = P(0.9 drawn) = k/4; best of 2 = (0.5+0.9+0.3+0.9+0.5+0.9)/6;
  // best of 3 = (0.9+0.5+0.9+0.9)/4; selected pass = P(0.9 drawn) as 0.9 is
  // the highest score.
  ASSERT_EQ(q1.curve.pass_at_k.size(), 4u);
  for (int k = 1; k <= 4; ++k) {
    EXPECT_NEAR(q1.curve.pass_at_k[k - 1], k / 4.0, 1e-12) << k;
    EXPECT_NEAR(q1.curve.selected_pass[k - 1], k / 4.0, 1e-12) << k;
  }
  EXPECT_NEAR(q1.curve.best_score[0], 0.45, 1e-12);
  EXPECT_NEAR(q1.curve.best_score[1], 4.0 / 6, 1e-12);
  EXPECT_NEAR(q1.curve.best_score[2], 3.2 / 4, 1e-12);
  EXPECT_NEAR(q1.curve.best_score[3], 0.9, 1e-12);
  // q2: {1.0*, 0.0}: pass@1 = 1/2, pass@2 = 1.
  const PromptBestOfK& q2 = base.per_prompt[1];
  EXPECT_EQ(q2.samples, 2);
  EXPECT_NEAR(q2.curve.pass_at_k[0], 0.5, 1e-12);
  EXPECT_NEAR(q2.curve.pass_at_k[1], 1.0, 1e-12);

  // The mean over prompts with n >= k.
  ASSERT_EQ(base.curve.size(), 4u);
  EXPECT_EQ(base.curve[0].num_prompts, 2);
  EXPECT_NEAR(base.curve[0].pass_at_k.mean, (0.25 + 0.5) / 2, 1e-12);
  EXPECT_NEAR(base.curve[1].pass_at_k.mean, (0.5 + 1.0) / 2, 1e-12);
  EXPECT_EQ(base.curve[2].num_prompts, 1);
  EXPECT_NEAR(base.curve[2].pass_at_k.mean, 0.75, 1e-12);
  for (const AggregatePoint& a : base.curve) {
    EXPECT_LE(a.pass_at_k.lower, a.pass_at_k.mean);
    EXPECT_GE(a.pass_at_k.upper, a.pass_at_k.mean);
  }

  const PointBestOfK& zero = (*points)[1];
  EXPECT_EQ(zero.point.interventions, "zero:2");
  EXPECT_EQ(zero.prompts, 1);
  EXPECT_EQ(zero.unscored, 1);
  ASSERT_EQ(zero.per_prompt.size(), 2u);
  EXPECT_EQ(zero.per_prompt[1].samples, 0);
  EXPECT_TRUE(zero.per_prompt[1].curve.pass_at_k.empty());
  ASSERT_EQ(zero.curve.size(), 1u);
  EXPECT_DOUBLE_EQ(zero.curve[0].best_score.mean, 0.2);

  // A filter (one category) and the same seed giving the same intervals.
  auto math = ComputeBestOfKTable(
      CollectSamples(Records()), options,
      [](const SampleRecord& s) { return s.category == "math"; });
  ASSERT_TRUE(math.ok()) << math.status();
  ASSERT_EQ(math->size(), 2u);
  EXPECT_EQ((*math)[0].prompts, 1);
  auto again = ComputeBestOfKTable(CollectSamples(Records()), options);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)[0].curve[1].best_score.lower,
            base.curve[1].best_score.lower);
}

TEST(BestOfKTableTest, BadOptionsAndScoresAreNamed) {
  BootstrapOptions options;
  options.level = 1.0;
  EXPECT_THAT(ComputeBestOfKTable(CollectSamples(Records()), options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("level")));
  options = BootstrapOptions();
  std::vector<SampleRecord> rows = CollectSamples(Records());
  rows[1].score = std::nan("");
  EXPECT_THAT(ComputeBestOfKTable(rows, options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("task k-base-0, prompt q1, sample 1")));
}

TEST(BestOfKTableTest, CsvJsonAndTableOutput) {
  BootstrapOptions options;
  options.resamples = 100;
  auto points = ComputeBestOfKTable(CollectSamples(Records()), options);
  ASSERT_TRUE(points.ok()) << points.status();
  std::ostringstream csv;
  WriteBestOfK(*points, /*per_prompt=*/true, options.level, ResultFormat::kCsv,
               csv);
  std::vector<std::string> lines =
      absl::StrSplit(csv.str(), '\n', absl::SkipEmpty());
  EXPECT_EQ(lines[0],
            "stage,interventions,params,prompt,category,k,prompts,samples,"
            "pass_at_k,pass_at_k_lower,pass_at_k_upper,best_score,"
            "best_score_lower,best_score_upper,selected_pass,"
            "selected_pass_lower,selected_pass_upper,verifier_errors,"
            "unscored");
  // Aggregates: 4 (baseline) + 1 (zero:2); per prompt: 4 + 2 (baseline),
  // 1 + one count-only row (zero:2's q2 has no scored sample).
  ASSERT_EQ(lines.size(), 1u + 5 + 8);
  EXPECT_THAT(lines[2], ::testing::StartsWith(
                            ",baseline,temperature=1,all,,2,2,6,0.75,"));
  EXPECT_THAT(lines[6], ::testing::StartsWith(
                            ",baseline,temperature=1,q1,math,1,1,4,0.25,,,"));
  EXPECT_THAT(lines[13],
              ::testing::StartsWith(",zero:2,temperature=1,q2,geo,,1,0,"));

  std::ostringstream js;
  WriteBestOfK(*points, false, options.level, ResultFormat::kJson, js);
  nlohmann::json parsed = nlohmann::json::parse(js.str());
  ASSERT_EQ(parsed.size(), 5u);
  EXPECT_EQ(parsed[0]["k"], 1);
  EXPECT_EQ(parsed[0]["verifier_errors"], 1);
  EXPECT_TRUE(parsed[0]["pass_at_k_lower"].is_number());

  std::ostringstream table;
  WriteBestOfK(*points, false, options.level, ResultFormat::kTable, table);
  EXPECT_THAT(table.str(), HasSubstr("95% bootstrap interval"));
  EXPECT_THAT(table.str(), HasSubstr("0.7500 ["));
}

}  // namespace
}  // namespace sweepd
