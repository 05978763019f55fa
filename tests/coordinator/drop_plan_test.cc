// Tests of the drop plans (coordinator/drop_plan.h) and of PoolAblation
// (coordinator/layer_profile.h) on hand-made layer studies; the expected
// layers and numbers are worked out by hand from docs/REPORTS.md's rules (the
// k scored, non-critical layers with the lowest score, ties by layer index).
// BuildLayerStudy itself is covered through BuildReportData in
// tests/client/report/report_test.cc and through PlanDerivedStage in
// stages_test.
#include "coordinator/drop_plan.h"

#include <cmath>
#include <string>
#include <vector>

#include "coordinator/layer_profile.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace sweepd {
namespace {

using ::sweepd::testing::IsOk;
using ::sweepd::testing::StatusIs;
using ::testing::DoubleNear;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Optional;

LayerProfile Layer(int layer, std::optional<double> score,
                   bool critical = false) {
  LayerProfile p;
  p.layer = layer;
  p.score = score;
  p.critical = critical;
  return p;
}

EvalRow Row(const std::string& dataset, EvalKind kind,
            const std::string& intervention, double ppl, double tokens) {
  EvalRow row;
  row.dataset = dataset;
  row.kind = kind;
  row.intervention = intervention;
  row.tokens = tokens;
  row.nll_sum = std::log(ppl) * tokens;
  row.ppl = ppl;
  return row;
}

// Layers 0..4: scores 0.5, 0.1, 0.0 (critical), 0.2, unscored.
LayerStudy FiveLayers() {
  LayerStudy study;
  study.num_layers = 5;
  study.layers = {Layer(0, 0.5), Layer(1, 0.1), Layer(2, 0.0, true),
                  Layer(3, 0.2), Layer(4, std::nullopt)};
  return study;
}

TEST(DropPlanTest, LowestScoredNonCriticalLayersPerK) {
  absl::StatusOr<DropPlans> plans = DeriveDropPlans(FiveLayers(), {2, 1, 2, 4});
  ASSERT_THAT(plans, IsOk());
  ASSERT_EQ(plans->plans.size(), 3u);  // k = 1, 2, 4; the duplicate 2 merged
  EXPECT_EQ(plans->plans[0].k, 1);
  EXPECT_THAT(plans->plans[0].layers, ElementsAre(1));
  EXPECT_EQ(plans->plans[1].k, 2);
  EXPECT_TRUE(plans->plans[1].feasible);
  EXPECT_THAT(plans->plans[1].layers, ElementsAre(1, 3));
  // Only layers 0, 1 and 3 are scored and not critical.
  EXPECT_EQ(plans->plans[2].k, 4);
  EXPECT_FALSE(plans->plans[2].feasible);
  EXPECT_THAT(plans->plans[2].layers, IsEmpty());
  EXPECT_THAT(plans->notes,
              ElementsAre("No drop plan for k = 4: only 3 scored layers are "
                          "not critical."));
}

TEST(DropPlanTest, TiesGoToTheLowerLayer) {
  LayerStudy study;
  study.layers = {Layer(0, 0.3), Layer(1, 0.3), Layer(2, 0.3)};
  absl::StatusOr<DropPlans> plans = DeriveDropPlans(study, {2});
  ASSERT_THAT(plans, IsOk());
  EXPECT_THAT(plans->plans[0].layers, ElementsAre(0, 1));
}

TEST(DropPlanTest, RejectsNonPositiveK) {
  EXPECT_THAT(DeriveDropPlans(FiveLayers(), {3, 0}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("drop_k entries must be > 0, got 0")));
  EXPECT_THAT(ValidateDropSizes({-2}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("-2")));
}

TEST(DropPlanTest, MeasuredByTheMatchingBlockDropPooledOverDatasets) {
  LayerStudy study = FiveLayers();
  // Two ablation datasets of 100 and 300 tokens; baselines at ppl 10 and 20,
  // the drop of layers 1 and 3 at 12 and 30. Pooled: exp((100 ln 12 + 300 ln
  // 30) / 400) against exp((100 ln 10 + 300 ln 20) / 400).
  study.ablation_datasets = {"a", "b"};
  study.evals = {Row("a", EvalKind::kBaseline, "none", 10, 100),
                 Row("a", EvalKind::kBlockDrop, "skip 1,3", 12, 100),
                 Row("b", EvalKind::kBaseline, "none", 20, 300),
                 Row("b", EvalKind::kBlockDrop, "skip 1,3", 30, 300),
                 Row("c", EvalKind::kBlockDrop, "skip 1,3", 99, 1000)};
  const double ppl = std::exp((100 * std::log(12) + 300 * std::log(30)) / 400);
  const double base = std::exp((100 * std::log(10) + 300 * std::log(20)) / 400);
  absl::StatusOr<DropPlans> plans = DeriveDropPlans(study, {1, 2});
  ASSERT_THAT(plans, IsOk());
  EXPECT_FALSE(plans->plans[0].measured_ppl.has_value());  // "skip 1" not run
  EXPECT_THAT(plans->plans[1].measured_ppl, Optional(DoubleNear(ppl, 1e-9)));
  EXPECT_THAT(plans->plans[1].measured_delta_pct,
              Optional(DoubleNear(100 * (ppl / base - 1), 1e-9)));
  // A dataset without its baseline does not count.
  study.ablation_datasets = {"c"};
  EXPECT_FALSE(PoolAblation(study, "skip 1,3").has_value());
}

TEST(DropPlanTest, VerdictsFollowThePlans) {
  LayerStudy study = FiveLayers();
  absl::StatusOr<DropPlans> plans = DeriveDropPlans(study, {1, 2});
  ASSERT_THAT(plans, IsOk());
  MarkVerdicts(plans->plans, &study.layers);
  EXPECT_EQ(study.layers[0].verdict, Verdict::kKeep);
  EXPECT_EQ(study.layers[1].verdict, Verdict::kDrop);
  EXPECT_EQ(study.layers[1].first_drop_k, 1);
  EXPECT_EQ(study.layers[2].verdict, Verdict::kNeverTouch);
  EXPECT_EQ(study.layers[3].verdict, Verdict::kDrop);
  EXPECT_EQ(study.layers[3].first_drop_k, 2);
  EXPECT_EQ(study.layers[4].verdict, Verdict::kUnscored);
}

}  // namespace
}  // namespace sweepd
