// Unit tests of the report model (BuildReportData) and the HTML it renders.
// Expected numbers are worked out by hand in the comments next to them, from
// the inputs of each test.
#include "client/report.h"

#include <cmath>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/report/report_test_util.h"

namespace sweepd {
namespace {

using ::sweepd::testing::GenerationSweep;
using ::sweepd::testing::MakeEval;
using ::sweepd::testing::MakeProbe;
using ::sweepd::testing::Op;
using ::sweepd::testing::ProbeShard;
using ::sweepd::testing::StatusIs;
using ::sweepd::v1::TaskRecord;
using ::testing::Contains;
using ::testing::DoubleNear;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Optional;

constexpr double kTol = 1e-9;

const EvalRow* FindEval(const ReportData& data, const std::string& dataset,
                        const std::string& intervention) {
  for (const EvalRow& row : data.evals) {
    if (row.dataset == dataset && row.intervention == intervention) return &row;
  }
  return nullptr;
}

const ProbeCell* FindCell(const ReportData& data, int layer,
                          const std::string& category) {
  for (const ProbeCell& cell : data.probe) {
    if (cell.layer == layer && cell.category == category) return &cell;
  }
  return nullptr;
}

// Baseline and ablation nll_sum for `tokens` tokens that give perplexity `ppl`.
double NllFor(double ppl, double tokens) { return tokens * std::log(ppl); }

TEST(BuildReportDataTest, PoolsEvalShardsBySummedNllAndTokens) {
  // Baseline: shard 0 has 100 nats over 50 tokens, shard 1 90 nats over 30
  // tokens. Pooled ppl = exp(190 / 80) = exp(2.375); the mean of the shard ppls
  // would be (exp(2) + exp(3)) / 2, a different number. Skip 1: shard 0 120/50,
  // shard 1 99/30 -> exp(219 / 80) = exp(2.7375). Delta = 100 * (exp(2.7375
  // - 2.375) - 1) = 100 * (exp(0.3625) - 1).
  std::vector<TaskRecord> tasks = {
      MakeEval("b0", "wiki", 0, 2, {}, 100, 50),
      MakeEval("b1", "wiki", 1, 2, {}, 90, 30),
      MakeEval("s0", "wiki", 0, 2, {{"skip", "1"}}, 120, 50),
      MakeEval("s1", "wiki", 1, 2, {{"skip", "1"}}, 99, 30),
  };
  ReportOptions options;
  options.num_layers = 4;
  absl::StatusOr<ReportData> data = BuildReportData(tasks, options);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->sweep_id, "sw-test");
  EXPECT_EQ(data->tasks_done, 4);
  const EvalRow* base = FindEval(*data, "wiki", "none");
  ASSERT_NE(base, nullptr);
  EXPECT_EQ(base->kind, EvalKind::kBaseline);
  EXPECT_NEAR(base->ppl, std::exp(2.375), kTol);
  EXPECT_DOUBLE_EQ(base->tokens, 80);
  EXPECT_EQ(base->shards, 2);
  const EvalRow* skip = FindEval(*data, "wiki", "skip 1");
  ASSERT_NE(skip, nullptr);
  EXPECT_EQ(skip->kind, EvalKind::kSingleSkip);
  EXPECT_NEAR(skip->ppl, std::exp(2.7375), kTol);
  EXPECT_THAT(skip->ppl_delta_pct,
              Optional(DoubleNear(100 * (std::exp(0.3625) - 1), 1e-9)));
  ASSERT_EQ(data->layers.size(), 4u);
  EXPECT_THAT(data->layers[1].ablation_delta_pct,
              Optional(DoubleNear(100 * (std::exp(0.3625) - 1), 1e-9)));
  EXPECT_FALSE(data->layers[0].ablation_delta_pct.has_value());
}

TEST(BuildReportDataTest,
     WeightsProbeMeansByTokensAndPromptsAndComputesBiVariance) {
  // Two shards of one probe dataset, layers 0 and 1, categories "a", "b" and
  // "all".
  ProbeShard s0, s1;
  s0.tokens = {{"a", 10}, {"b", 30}, {"all", 40}};
  s1.tokens = {{"a", 30}, {"b", 10}, {"all", 40}};
  s0.prompts = {{"a", 1}, {"b", 3}, {"all", 4}};
  s1.prompts = {{"a", 3}, {"b", 1}, {"all", 4}};
  s0.decision = {{"a", 1}, {"b", 2}, {"all", 1.75}};
  s1.decision = {{"a", 2}, {"b", 0}, {"all", 1.5}};
  for (int layer = 0; layer < 2; ++layer) {
    s0.cells[{layer, "a"}] = {0.1 + layer, 10, 100, 0.0};
    s1.cells[{layer, "a"}] = {0.3 + layer, 20, 200, 0.5};
    s0.cells[{layer, "b"}] = {0.2, 30, 50, 1.0};
    s1.cells[{layer, "b"}] = {0.6, 40, 10, 0.0};
    s0.cells[{layer, "all"}] = {0.5, 1, 1, 1};
    s1.cells[{layer, "all"}] = {0.7, 3, 5, 0};
  }
  std::vector<TaskRecord> tasks = {MakeProbe("p0", "probe", 0, 2, s0),
                                   MakeProbe("p1", "probe", 1, 2, s1)};
  absl::StatusOr<ReportData> data = BuildReportData(tasks, ReportOptions{});
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->num_layers, 2);
  EXPECT_THAT(data->categories, ElementsAre("a", "b"));

  // bi[0,a] = (0.1*10 + 0.3*30) / 40 = 10 / 40 = 0.25; bi[1,a] = (1.1*10
  // + 1.3*30) / 40 = 1.25. bi[*,b] = (0.2*30 + 0.6*10) / 40 = 0.3.
  // resid_norm[*,a] = (10*10 + 20*30) / 40 = 17.5.
  // lens_rank[*,a] by prompts = (100*1 + 200*3) / 4 = 175; lens_rank[*,b] =
  // (50*3 + 10) / 4 = 40. lens_top1[*,a] = (0*1 + 0.5*3) / 4 = 0.375.
  const ProbeCell* a0 = FindCell(*data, 0, "a");
  ASSERT_NE(a0, nullptr);
  EXPECT_THAT(a0->bi, Optional(DoubleNear(0.25, kTol)));
  EXPECT_THAT(a0->resid_norm, Optional(DoubleNear(17.5, kTol)));
  EXPECT_THAT(a0->lens_rank, Optional(DoubleNear(175, kTol)));
  EXPECT_THAT(a0->lens_top1, Optional(DoubleNear(0.375, kTol)));
  const ProbeCell* a1 = FindCell(*data, 1, "a");
  ASSERT_NE(a1, nullptr);
  EXPECT_THAT(a1->bi, Optional(DoubleNear(1.25, kTol)));
  const ProbeCell* b0 = FindCell(*data, 0, "b");
  ASSERT_NE(b0, nullptr);
  EXPECT_THAT(b0->bi, Optional(DoubleNear(0.3, kTol)));
  EXPECT_THAT(b0->lens_rank, Optional(DoubleNear(40, kTol)));
  // "all": bi = (0.5*40 + 0.7*40) / 80 = 0.6.
  EXPECT_THAT(data->layers[0].bi, Optional(DoubleNear(0.6, kTol)));
  // Variance over {a, b} (population): layer 0: mean 0.275, var = 0.025^2 =
  // 0.000625. Layer 1: values 1.25, 0.3, mean 0.775, var = 0.475^2 = 0.225625.
  EXPECT_THAT(data->layers[0].bi_var, Optional(DoubleNear(0.000625, kTol)));
  EXPECT_THAT(data->layers[1].bi_var, Optional(DoubleNear(0.225625, kTol)));
  // decision_layer by prompts: a = (1*1 + 2*3) / 4 = 1.75; b = (2*3 + 0*1) / 4
  // = 1.5.
  ASSERT_EQ(data->decision_layers.size(), 3u);
  EXPECT_EQ(data->decision_layers[0].category, "a");
  EXPECT_NEAR(data->decision_layers[0].mean_layer, 1.75, kTol);
  EXPECT_EQ(data->decision_layers[1].category, "all");
  EXPECT_EQ(data->decision_layers[2].category, "b");
  EXPECT_NEAR(data->decision_layers[2].mean_layer, 1.5, kTol);
  EXPECT_DOUBLE_EQ(data->decision_layers[2].prompts, 4);
}

// Five layers with hand-picked BI, BI variance and single-layer deltas (see the
// comments of SafetyScoreRanksLayersAndPlansDrops for the worked numbers).
std::vector<TaskRecord> FiveLayerStudy(bool with_block_drop) {
  const double bi[5] = {0.5, 0.1, 0.2, 0.05, 0.9};
  const double spread[5] = {0.1, 0.0, 0.02, 0.01, 0.2};  // var = spread^2
  const double delta_pct[5] = {5000, -20, 10, 30, 800};
  ProbeShard probe;
  probe.tokens = {{"a", 100}, {"b", 100}, {"all", 200}};
  probe.prompts = {{"a", 5}, {"b", 5}, {"all", 10}};
  probe.decision = {{"a", 3}, {"b", 4}, {"all", 3.5}};
  for (int layer = 0; layer < 5; ++layer) {
    probe.cells[{layer, "all"}] = {bi[layer], 1, 1, 0};
    probe.cells[{layer, "a"}] = {bi[layer] + spread[layer], 1, 1, 0};
    probe.cells[{layer, "b"}] = {bi[layer] - spread[layer], 1, 1, 0};
  }
  std::vector<TaskRecord> tasks = {MakeProbe("probe", "probe", 0, 1, probe)};
  const double tokens = 1000;
  tasks.push_back(
      MakeEval("base", "wiki", 0, 1, {}, NllFor(10, tokens), tokens));
  for (int layer = 0; layer < 5; ++layer) {
    tasks.push_back(MakeEval("skip" + std::to_string(layer), "wiki", 0, 1,
                             {{"skip", std::to_string(layer)}},
                             NllFor(10 * (1 + delta_pct[layer] / 100), tokens),
                             tokens));
  }
  if (with_block_drop) {
    // Drop of {1, 3}: ppl 13 -> +30%.
    tasks.push_back(MakeEval("drop13", "wiki", 0, 1, {{"skip", "1,3"}},
                             NllFor(13, tokens), tokens));
  }
  return tasks;
}

TEST(BuildReportDataTest, SafetyScoreRanksLayersAndPlansDrops) {
  ReportOptions options;
  options.weights = {0.4, 0.2, 0.4};
  options.critical_delta_pct = 1000;
  options.drop_k = {5, 3, 2, 3};
  absl::StatusOr<ReportData> data =
      BuildReportData(FiveLayerStudy(true), options);
  ASSERT_TRUE(data.ok()) << data.status();
  ASSERT_EQ(data->layers.size(), 5u);
  EXPECT_TRUE(data->score_uses_bi && data->score_uses_bi_var &&
              data->score_uses_delta);
  // Layer 0 (+5000% > 1000%) is critical; the ranges come from layers 1-4:
  //   BI 0.05..0.9, var 0..0.04, max(Δ,0) 0..800.
  // n(BI):  L0 0.45/0.85, L1 0.05/0.85, L2 0.15/0.85, L3 0, L4 1.
  // n(var): L0 0.01/0.04 = 0.25, L1 0, L2 0.0004/0.04 = 0.01, L3 0.0025, L4 1.
  // n(Δ):   L0 clamp(5000/800) = 1, L1 0, L2 10/800 = 0.0125, L3 30/800 =
  // 0.0375, L4 1. score = 0.4 n(BI) + 0.2 n(var) + 0.4 n(Δ):
  //   L0 = 0.18/0.85 + 0.05 + 0.4 = 0.661764705882...
  //   L1 = 0.02/0.85 = 0.023529411764...
  //   L2 = 0.06/0.85 + 0.002 + 0.005 = 0.077588235294...
  //   L3 = 0.0005 + 0.015 = 0.0155
  //   L4 = 1.0
  EXPECT_THAT(data->layers[0].score,
              Optional(DoubleNear(0.18 / 0.85 + 0.45, 1e-9)));
  EXPECT_THAT(data->layers[1].score, Optional(DoubleNear(0.02 / 0.85, 1e-9)));
  EXPECT_THAT(data->layers[2].score,
              Optional(DoubleNear(0.06 / 0.85 + 0.007, 1e-9)));
  EXPECT_THAT(data->layers[3].score, Optional(DoubleNear(0.0155, 1e-9)));
  EXPECT_THAT(data->layers[4].score, Optional(DoubleNear(1.0, 1e-9)));
  EXPECT_TRUE(data->layers[0].critical);
  EXPECT_FALSE(data->layers[4].critical);

  // Candidates by score: L3 (0.0155), L1 (0.0235), L2 (0.0776), L4 (1.0).
  ASSERT_EQ(data->drop_plans.size(),
            3u);  // k = 2, 3, 5 (sorted, de-duplicated)
  EXPECT_EQ(data->drop_plans[0].k, 2);
  EXPECT_TRUE(data->drop_plans[0].feasible);
  EXPECT_THAT(data->drop_plans[0].layers, ElementsAre(1, 3));
  EXPECT_THAT(data->drop_plans[0].measured_ppl, Optional(DoubleNear(13, 1e-9)));
  EXPECT_THAT(data->drop_plans[0].measured_delta_pct,
              Optional(DoubleNear(30, 1e-9)));
  EXPECT_EQ(data->drop_plans[1].k, 3);
  EXPECT_THAT(data->drop_plans[1].layers, ElementsAre(1, 2, 3));
  EXPECT_FALSE(data->drop_plans[1].measured_delta_pct.has_value());
  EXPECT_EQ(data->drop_plans[2].k, 5);
  EXPECT_FALSE(data->drop_plans[2].feasible);
  EXPECT_TRUE(data->drop_plans[2].layers.empty());
  EXPECT_THAT(
      data->notes,
      Contains(HasSubstr("No drop plan for k = 5: only 4 scored layers")));

  EXPECT_EQ(data->layers[0].verdict, Verdict::kNeverTouch);
  EXPECT_EQ(data->layers[1].verdict, Verdict::kDrop);
  EXPECT_EQ(data->layers[1].first_drop_k, 2);
  EXPECT_EQ(data->layers[2].verdict, Verdict::kDrop);
  EXPECT_EQ(data->layers[2].first_drop_k, 3);
  EXPECT_EQ(data->layers[3].first_drop_k, 2);
  EXPECT_EQ(data->layers[4].verdict, Verdict::kKeep);

  const EvalRow* block = FindEval(*data, "wiki", "skip 1,3");
  ASSERT_NE(block, nullptr);
  EXPECT_EQ(block->kind, EvalKind::kBlockDrop);
  EXPECT_THAT(block->layers, ElementsAre(1, 3));
}

TEST(BuildReportDataTest, CriticalLayerNeverEntersAPlanEvenWithTheLowestScore) {
  // Score by BI alone (weights 1, 0, 0) with layer 0 -- critical at +5000% --
  // having the lowest BI of all layers.
  std::vector<TaskRecord> tasks = FiveLayerStudy(false);
  ProbeShard probe;
  probe.tokens = {{"all", 10}};
  probe.prompts = {{"all", 10}};
  const double bi[5] = {0.01, 0.1, 0.2, 0.05, 0.9};
  for (int layer = 0; layer < 5; ++layer)
    probe.cells[{layer, "all"}] = {bi[layer], 1, 1, 0};
  tasks[0] = MakeProbe("probe", "probe", 0, 1, probe);
  ReportOptions options;
  options.weights = {1, 0, 0};
  options.drop_k = {1, 2};
  absl::StatusOr<ReportData> data = BuildReportData(tasks, options);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_FALSE(data->score_uses_bi_var);
  EXPECT_FALSE(data->score_uses_delta);
  // Range over non-critical layers 1-4: 0.05..0.9; layer 0 clamps to 0.
  EXPECT_THAT(data->layers[0].score, Optional(DoubleNear(0, kTol)));
  EXPECT_THAT(data->layers[3].score, Optional(DoubleNear(0, kTol)));
  EXPECT_THAT(data->layers[1].score, Optional(DoubleNear(0.05 / 0.85, kTol)));
  EXPECT_THAT(data->drop_plans[0].layers, ElementsAre(3));
  // k = 1 is measured by the single-layer skip of layer 3: +30%.
  EXPECT_THAT(data->drop_plans[0].measured_delta_pct,
              Optional(DoubleNear(30, 1e-9)));
  EXPECT_THAT(data->drop_plans[1].layers, ElementsAre(1, 3));
  EXPECT_EQ(data->layers[0].verdict, Verdict::kNeverTouch);
}

TEST(BuildReportDataTest, ThresholdIsConfigurable) {
  ReportOptions options;
  options.critical_delta_pct = 500;  // layer 4 (+800%) becomes critical too
  absl::StatusOr<ReportData> data =
      BuildReportData(FiveLayerStudy(false), options);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_TRUE(data->layers[0].critical);
  EXPECT_TRUE(data->layers[4].critical);
  EXPECT_FALSE(data->layers[3].critical);
  EXPECT_EQ(data->layers[4].verdict, Verdict::kNeverTouch);
}

TEST(BuildReportDataTest, ClassifiesDegenerationAndOtherInterventions) {
  const double t = 100;
  std::vector<TaskRecord> tasks = {
      MakeEval("b", "wiki", 0, 1, {}, NllFor(10, t), t),
      MakeEval("z0", "wiki", 0, 1, {{"zero", "0"}}, NllFor(2000, t), t),
      MakeEval("r0", "wiki", 0, 1, {{"reinit", "0", 7}}, NllFor(11000, t), t),
      MakeEval("z23", "doc", 0, 1, {{"zero", "23"}}, NllFor(5, t), t),
      MakeEval("m", "wiki", 0, 1, {{"mask_heads", "3"}}, NllFor(10.5, t), t),
      MakeEval("two", "wiki", 0, 1, {{"skip", "3"}, {"skip", "5"}},
               NllFor(12, t), t),
      MakeEval("rng", "wiki", 0, 1, {{"skip", "10-12"}}, NllFor(20, t), t),
  };
  ReportOptions options;
  options.num_layers = 48;
  absl::StatusOr<ReportData> data = BuildReportData(tasks, options);
  ASSERT_TRUE(data.ok()) << data.status();
  const EvalRow* zero = FindEval(*data, "wiki", "zero 0");
  ASSERT_NE(zero, nullptr);
  EXPECT_EQ(zero->kind, EvalKind::kZero);
  EXPECT_THAT(zero->ppl_delta_pct,
              Optional(DoubleNear(100 * (2000.0 / 10 - 1), 1e-6)));
  const EvalRow* reinit = FindEval(*data, "wiki", "reinit 0 (seed 7)");
  ASSERT_NE(reinit, nullptr);
  EXPECT_EQ(reinit->kind, EvalKind::kReinit);
  EXPECT_NEAR(reinit->ppl, 11000, 1e-6);
  // "doc" has no baseline: the row exists without a delta.
  const EvalRow* doc = FindEval(*data, "doc", "zero 23");
  ASSERT_NE(doc, nullptr);
  EXPECT_FALSE(doc->ppl_delta_pct.has_value());
  const EvalRow* mask = FindEval(*data, "wiki", "mask_heads layer 3 heads 0,3");
  ASSERT_NE(mask, nullptr);
  EXPECT_EQ(mask->kind, EvalKind::kOther);
  const EvalRow* two = FindEval(*data, "wiki", "skip 3,5");
  ASSERT_NE(two, nullptr);
  EXPECT_EQ(two->kind, EvalKind::kBlockDrop);
  const EvalRow* range = FindEval(*data, "wiki", "skip 10,11,12");
  ASSERT_NE(range, nullptr);
  EXPECT_THAT(range->layers, ElementsAre(10, 11, 12));
  EXPECT_EQ(data->num_layers, 48);
}

TEST(BuildReportDataTest, LeavesOutIncompleteConditionsAndCountsStates) {
  std::vector<TaskRecord> tasks = {
      MakeEval("b0", "wiki", 0, 2, {}, 10, 10),
      MakeEval("b1", "wiki", 1, 2, {}, 10, 10),
      MakeEval("s0", "wiki", 0, 2, {{"skip", "2"}}, 30, 10),
      MakeEval("s1", "wiki", 1, 2, {{"skip", "2"}}, 30, 10),
  };
  tasks[3].set_state(sweepd::v1::TASK_STATE_FAILED);
  TaskRecord pending = MakeEval("s3", "wiki", 0, 2, {{"skip", "3"}}, 0, 1);
  pending.set_state(sweepd::v1::TASK_STATE_PENDING);
  pending.clear_result();
  tasks.push_back(pending);
  ReportOptions options;
  options.num_layers = 4;
  absl::StatusOr<ReportData> data = BuildReportData(tasks, options);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->tasks_total, 5);
  EXPECT_EQ(data->tasks_done, 3);
  EXPECT_EQ(data->tasks_failed, 1);
  EXPECT_EQ(data->tasks_unfinished, 1);
  EXPECT_EQ(FindEval(*data, "wiki", "skip 2"), nullptr);
  EXPECT_NE(FindEval(*data, "wiki", "none"), nullptr);
  EXPECT_THAT(
      data->notes,
      Contains(HasSubstr("\"skip 2\" on \"wiki\" left out: 1 of 2 shards")));
  EXPECT_THAT(data->notes,
              Contains(HasSubstr("No finished shard for \"skip 3\"")));
  EXPECT_FALSE(data->layers[2].ablation_delta_pct.has_value());
}

TEST(BuildReportDataTest, PoolsDatasetsUnlessOneIsChosen) {
  // wiki: baseline 100 nats / 100 tokens, skip 0 150 / 100.
  // doc:  baseline 100 nats / 50 tokens,  skip 0 110 / 50.
  // Pooled: exp(260/150) / exp(200/150) = exp(0.4) -> delta 100 (e^0.4 - 1).
  // wiki only: exp(1.5 - 1) -> 100 (e^0.5 - 1).
  std::vector<TaskRecord> tasks = {
      MakeEval("bw", "wiki", 0, 1, {}, 100, 100),
      MakeEval("sw", "wiki", 0, 1, {{"skip", "0"}}, 150, 100),
      MakeEval("bd", "doc", 0, 1, {}, 100, 50),
      MakeEval("sd", "doc", 0, 1, {{"skip", "0"}}, 110, 50),
  };
  ReportOptions options;
  options.num_layers = 2;
  absl::StatusOr<ReportData> pooled = BuildReportData(tasks, options);
  ASSERT_TRUE(pooled.ok()) << pooled.status();
  EXPECT_THAT(pooled->layers[0].ablation_delta_pct,
              Optional(DoubleNear(100 * (std::exp(0.4) - 1), 1e-9)));
  options.ablation_dataset = "wiki";
  absl::StatusOr<ReportData> wiki = BuildReportData(tasks, options);
  ASSERT_TRUE(wiki.ok()) << wiki.status();
  EXPECT_THAT(wiki->layers[0].ablation_delta_pct,
              Optional(DoubleNear(100 * (std::exp(0.5) - 1), 1e-9)));
  options.ablation_dataset = "c4";
  EXPECT_THAT(
      BuildReportData(tasks, options),
      StatusIs(
          absl::StatusCode::kInvalidArgument,
          HasSubstr(
              "ablation_dataset \"c4\" has no complete evaluation results; "
              "datasets: doc, wiki")));
}

TEST(BuildReportDataTest, SweptParametersSeparateBaselines) {
  std::vector<TaskRecord> tasks = {MakeEval("b1", "wiki", 0, 1, {}, 100, 100),
                                   MakeEval("b2", "wiki", 0, 1, {}, 200, 100)};
  (*tasks[0].mutable_spec()->mutable_params())["context_length"].set_int_value(
      512);
  (*tasks[1].mutable_spec()->mutable_params())["context_length"].set_int_value(
      1024);
  absl::StatusOr<ReportData> data = BuildReportData(tasks, ReportOptions{});
  ASSERT_TRUE(data.ok()) << data.status();
  ASSERT_NE(FindEval(*data, "wiki [context_length=512]", "none"), nullptr);
  ASSERT_NE(FindEval(*data, "wiki [context_length=1024]", "none"), nullptr);
}

TEST(BuildReportDataTest, RejectsMalformedResults) {
  ProbeShard no_tokens;
  no_tokens.cells[{0, "a"}] = {0.1, 1, 1, 0};
  no_tokens.prompts = {{"a", 1}};
  EXPECT_THAT(
      BuildReportData({MakeProbe("p", "probe", 0, 1, no_tokens)},
                      ReportOptions{}),
      StatusIs(
          absl::StatusCode::kInvalidArgument,
          HasSubstr(
              "probe task p: metric bi for category \"a\" has no tokens row")));

  TaskRecord bad_layer = MakeProbe("q", "probe", 0, 1, ProbeShard{});
  *bad_layer.mutable_result()->add_metrics() =
      testing::MakeMetric("bi", 0.1, {{"layer", "x1"}, {"category", "all"}});
  EXPECT_THAT(BuildReportData({bad_layer}, ReportOptions{}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("task q: metric bi has layer label \"x1\"")));

  TaskRecord no_nll = MakeEval("e", "wiki", 0, 1, {}, 1, 1);
  no_nll.mutable_result()->mutable_metrics()->DeleteSubrange(0, 1);
  EXPECT_THAT(
      BuildReportData({no_nll}, ReportOptions{}),
      StatusIs(
          absl::StatusCode::kInvalidArgument,
          HasSubstr("eval task e has no nll_sum row for category \"all\"")));

  EXPECT_THAT(BuildReportData({MakeEval("d1", "wiki", 0, 1, {}, 1, 1),
                               MakeEval("d2", "wiki", 0, 1, {}, 2, 1)},
                              ReportOptions{}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("tasks d1 and d2 both report shard 0")));

  EXPECT_THAT(
      BuildReportData({MakeEval("all", "wiki", 0, 1, {{"skip", "all"}}, 1, 1)},
                      ReportOptions{}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("uses \"all\" but the number of layers is unknown")));
}

TEST(BuildReportDataTest, RejectsInvalidOptions) {
  ReportOptions negative;
  negative.weights.bi_var = -1;
  EXPECT_THAT(
      BuildReportData({}, negative),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("safety weight bi_var must be a finite number >= 0")));
  ReportOptions zero;
  zero.weights = {0, 0, 0};
  EXPECT_THAT(
      BuildReportData({}, zero),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("all zero")));
  ReportOptions bad_k;
  bad_k.drop_k = {4, 0};
  EXPECT_THAT(BuildReportData({}, bad_k),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("drop_k entries must be > 0")));
  ReportOptions types;
  types.num_layers = 3;
  types.layer_types = {"full", "sliding"};
  EXPECT_THAT(
      BuildReportData({}, types),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("layer_types has 2 entries but num_layers is 3")));
}

TEST(LayerTypesFromConfigJsonTest, ReadsTextConfigLayerTypes) {
  absl::StatusOr<std::vector<std::string>> types = LayerTypesFromConfigJson(
      R"({"text_config": {"layer_types": ["sliding_attention", "full_attention", "x"]}})",
      "config.json");
  ASSERT_TRUE(types.ok()) << types.status();
  EXPECT_THAT(*types, ElementsAre("sliding", "full", "x"));
  EXPECT_THAT(
      LayerTypesFromConfigJson(R"({"num_hidden_layers": 2})", "m/config.json"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("m/config.json: no \"layer_types\" list")));
  EXPECT_THAT(LayerTypesFromConfigJson("{", "c.json"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("c.json: not a JSON object")));
}

TEST(RenderReportHtmlTest, InlinesLibrariesAndEscapesData) {
  std::vector<TaskRecord> tasks = FiveLayerStudy(true);
  // A dataset name that would break out of a <script> or a table cell if not
  // escaped.
  tasks.push_back(MakeEval("evil", "</script><b>x", 0, 1, {}, 1, 1));
  tasks.push_back(
      MakeEval("evil-z", "</script><b>x", 0, 1, {{"zero", "1"}}, 2, 1));
  absl::StatusOr<ReportData> data = BuildReportData(tasks, ReportOptions{});
  ASSERT_TRUE(data.ok()) << data.status();
  absl::StatusOr<std::string> html = RenderReportHtml(*data);
  ASSERT_TRUE(html.ok()) << html.status();
  EXPECT_THAT(*html, HasSubstr("vega.min.js */"));
  EXPECT_THAT(*html, HasSubstr("vega-lite.min.js */"));
  EXPECT_THAT(*html, HasSubstr("vega-embed.min.js */"));
  // No network references for scripts or styles: everything is inline.
  EXPECT_THAT(*html, Not(HasSubstr("<script src")));
  EXPECT_THAT(*html, Not(HasSubstr("<link")));
  EXPECT_THAT(*html, Not(HasSubstr("</script><b>x")));
  EXPECT_THAT(*html, HasSubstr("&lt;/script&gt;&lt;b&gt;x"));
  EXPECT_THAT(*html, HasSubstr("\\u003c/script\\u003e\\u003cb\\u003ex"));
  const std::vector<std::string> ids = ReportChartIds(*data);
  EXPECT_THAT(
      ids,
      ElementsAre("chart-bi", "chart-bi-heatmap", "chart-resid-norm",
                  "chart-lens-rank", "chart-decision", "chart-ablation",
                  "chart-block-drop", "chart-safety", "chart-degeneration"));
  for (const std::string& id : ids) {
    EXPECT_THAT(*html,
                HasSubstr("<div class=\"chart\" id=\"" + id + "\"></div>"));
  }
  EXPECT_THAT(*html, HasSubstr("id=\"table-profile\""));
  EXPECT_THAT(*html, HasSubstr("id=\"table-drop-plan\""));
  EXPECT_THAT(*html, HasSubstr("window.__sweepdCharts"));
}

TEST(RenderReportHtmlTest, OmitsSectionsWithoutData) {
  // Only evaluation of degeneration: no probe, no single-layer skips, no block
  // drops.
  std::vector<TaskRecord> tasks = {
      MakeEval("b", "wiki", 0, 1, {}, 100, 100),
      MakeEval("z", "wiki", 0, 1, {{"zero", "0"}}, 300, 100)};
  ReportOptions options;
  options.num_layers = 3;
  absl::StatusOr<ReportData> data = BuildReportData(tasks, options);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_THAT(ReportChartIds(*data), ElementsAre("chart-degeneration"));
  absl::StatusOr<std::string> html = RenderReportHtml(*data);
  ASSERT_TRUE(html.ok()) << html.status();
  EXPECT_THAT(*html, HasSubstr("No probe results in this sweep"));
  EXPECT_THAT(*html, HasSubstr("No single-layer ablations in this sweep"));
  EXPECT_THAT(*html, HasSubstr("No multi-layer drops in this sweep"));
  EXPECT_THAT(*html, Not(HasSubstr("id=\"chart-bi\"")));
  EXPECT_THAT(*html, HasSubstr("id=\"table-degeneration\""));
}

// The generation sections' model on seed 003 / 002 / 001 shaped records
// (report_test_util.h: sample s of prompt p scores ((7p + 3s + salt) % 10) /
// 10, passing at 0.8): values computed by hand from that formula.
TEST(BuildReportDataTest, GenerationSweepGivesSelectionCanaryAndEyeTables) {
  ReportOptions options;
  options.bootstrap.resamples = 50;
  auto data = BuildReportData(::sweepd::testing::GenerationSweep(), options);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_FALSE(data->layer_study);
  EXPECT_EQ(data->tasks_total, 7);
  EXPECT_EQ(data->tasks_done, 7);
  const GenerationReport& g = data->generation;
  EXPECT_EQ(g.generate_tasks, 5);
  EXPECT_EQ(g.canary_tasks, 2);
  // Sampled points, sorted: baseline, zero:0, zero:3, ban-both's baseline.
  ASSERT_EQ(g.best_of_k.size(), 4u);
  EXPECT_EQ(g.best_of_k[0].point.Label(), "baseline");
  EXPECT_EQ(g.best_of_k[1].point.Label(), "zero:0");
  EXPECT_EQ(g.best_of_k[3].point.Label(), "ban-both · baseline");
  ASSERT_EQ(g.best_of_k[0].curve.size(), 10u);

  ASSERT_EQ(g.categories.size(), 4u);
  EXPECT_EQ(g.categories[0].category, "all");
  EXPECT_EQ(g.categories[1].category, "addition");
  const CategoryTable& all = g.categories[0];
  std::vector<std::string> selections;
  for (const SelectionRow& row : all.rows) selections.push_back(row.selection);
  EXPECT_THAT(selections,
              ElementsAre("greedy", "first sample", "best of 2", "best of 3",
                          "best of 5", "best of 10", "mean over samples"));
  EXPECT_EQ(all.prompts[0], 12);
  // Greedy (salt 1, sample 0): sum over p of (7p + 1) % 10 = 54.
  EXPECT_THAT(all.rows[0].score[0], Optional(DoubleNear(5.4 / 12, 1e-12)));
  EXPECT_THAT(all.rows[0].score[3], Optional(DoubleNear(5.4 / 12, 1e-12)));
  EXPECT_EQ(all.rows[0].score[1], std::nullopt);  // no greedy zero:0
  // First sample (salt 0): sum over p of 7p % 10 = 52; passes at p = 4, 7.
  EXPECT_THAT(all.rows[1].score[0], Optional(DoubleNear(5.2 / 12, 1e-12)));
  EXPECT_THAT(all.rows[1].accuracy[0], Optional(DoubleNear(2.0 / 12, 1e-12)));
  // Each prompt's 10 scores are 0.0 .. 0.9 once: best of 10 = 0.9, passing;
  // the mean is 0.45 and 2 of 10 pass.
  EXPECT_THAT(all.rows[5].score[0], Optional(DoubleNear(0.9, 1e-12)));
  EXPECT_THAT(all.rows[5].accuracy[0], Optional(DoubleNear(1.0, 1e-12)));
  EXPECT_THAT(all.rows[6].score[2], Optional(DoubleNear(0.45, 1e-12)));
  EXPECT_THAT(all.rows[6].accuracy[2], Optional(DoubleNear(0.2, 1e-12)));
  // Best of 2 over {0.0, ..., 0.9}: sum_i 0.i * (i / 45) = 2.85 / 4.5.
  EXPECT_THAT(all.rows[2].score[0], Optional(DoubleNear(0.6 + 1.0 / 30, 1e-9)));
  EXPECT_EQ(g.categories[1].prompts[0], 4);

  ASSERT_TRUE(g.canary.has_value());
  EXPECT_THAT(g.canary->columns,
              ElementsAre("baseline · bos=off", "baseline · bos=on"));
  ASSERT_EQ(g.canary->rows.size(), 4u);
  EXPECT_EQ(g.canary->rows[1].prompt, "Canary prompt 1");
  EXPECT_THAT(g.canary->rows[1].expect, ElementsAre("answer1"));
  ASSERT_TRUE(g.canary->rows[1].cells[1].has_value());
  EXPECT_TRUE(g.canary->rows[1].cells[1]->pass);   // bos on, odd case
  EXPECT_FALSE(g.canary->rows[1].cells[0]->pass);  // bos off
  EXPECT_THAT(g.canary->passed, ElementsAre(2, 2));

  ASSERT_EQ(g.eye_tests.size(), 2u);
  EXPECT_EQ(g.eye_tests[0].title, "Layer 0");
  EXPECT_EQ(g.eye_tests[1].title, "Layer 3");
  EXPECT_THAT(g.eye_tests[0].columns,
              ElementsAre("no modification", "no modification (ban-both)",
                          "no modification (greedy)", "all zeros"));
  ASSERT_EQ(g.eye_tests[0].prompts.size(), 12u);
  EXPECT_EQ(g.eye_tests[0].prompts[0], "Prompt number 0 <b>&");
  EXPECT_THAT(g.eye_tests[0].texts[0][3],
              Optional(HasSubstr("Sample 0 of prompt 0")));

  auto html = RenderReportHtml(*data);
  ASSERT_TRUE(html.ok()) << html.status();
  // Sample and prompt text is escaped.
  EXPECT_THAT(*html, HasSubstr("Prompt number 0 &lt;b&gt;&amp;"));
  EXPECT_THAT(*html, Not(HasSubstr("<tag>")));
  EXPECT_THAT(*html, Not(HasSubstr("Phase A")));
}

}  // namespace
}  // namespace sweepd
