// Prune plans (coordinator/prune_plan.h) from fabricated head_importance
// records: pooling over shards weighted by tokens, the lowest heads per layer
// by fraction and count with ties broken by head index, KV groups with a
// different KV head count on full layers, the layer selector, and the errors
// that say why no plan can be made.
#include "coordinator/prune_plan.h"

#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sweepd {
namespace {

namespace v1 = ::sweepd::v1;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

// A DONE head_importance record of `stage` with `tokens` scored tokens and
// deltas[layer][head].
v1::TaskRecord Record(const std::string& stage, double tokens,
                      const std::map<int, std::vector<double>>& deltas,
                      double baseline = 2.0) {
  v1::TaskRecord r;
  r.set_state(v1::TASK_STATE_DONE);
  r.mutable_spec()->set_kind(v1::JOB_KIND_HEAD_IMPORTANCE);
  r.mutable_spec()->set_stage(stage);
  auto add = [&](const std::string& name, double value,
                 std::map<std::string, std::string> labels) {
    v1::Metric* m = r.mutable_result()->add_metrics();
    m->set_name(name);
    m->set_value(value);
    labels["dataset"] = "calib";
    for (const auto& [k, v] : labels) (*m->mutable_labels())[k] = v;
  };
  add("head_importance_tokens", tokens, {});
  add("head_importance_baseline_nll", baseline, {});
  for (const auto& [layer, heads] : deltas) {
    for (size_t h = 0; h < heads.size(); ++h) {
      add("head_nll_delta", heads[h],
          {{"layer", std::to_string(layer)}, {"head", std::to_string(h)}});
    }
  }
  return r;
}

TEST(PrunePlanTest, PoolsShardsWeightedByTokens) {
  std::vector<v1::TaskRecord> records = {
      Record("", 100, {{0, {0.4, 0.1}}}, 2.0),
      Record("", 300, {{0, {0.0, 0.5}}}, 3.0),
      Record("other", 1000, {{0, {9, 9}}}),  // another stage
  };
  v1::TaskRecord failed = Record("", 100, {{0, {9, 9}}});
  failed.set_state(v1::TASK_STATE_FAILED);
  records.push_back(failed);
  HeadImportance imp = PoolHeadImportance(records, "", /*any_stage=*/false);
  EXPECT_EQ(imp.tasks, 2);
  EXPECT_DOUBLE_EQ(imp.delta[0][0], (0.4 * 100 + 0.0 * 300) / 400);
  EXPECT_DOUBLE_EQ(imp.delta[0][1], (0.1 * 100 + 0.5 * 300) / 400);
  EXPECT_DOUBLE_EQ(imp.baseline_nll["calib"], (2.0 * 100 + 3.0 * 300) / 400);
  EXPECT_EQ(PoolHeadImportance(records, "", /*any_stage=*/true).tasks, 3);
}

TEST(PrunePlanTest, LowestHeadsPerLayerTiesByIndex) {
  const HeadImportance imp = PoolHeadImportance(
      {Record("", 10, {{0, {0.3, 0.1, 0.2, 0.4}}, {1, {0.5, 0.2, 0.2, 0.1}}})},
      "", false);
  PrunePlanOptions o;
  o.num_heads = 4;
  o.fraction = 0.5;
  auto plan = DerivePrunePlan(imp, o);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_THAT(*plan, SizeIs(2));
  EXPECT_EQ((*plan)[0].layer, 0);
  EXPECT_THAT((*plan)[0].heads, ElementsAre(1, 2));
  EXPECT_EQ((*plan)[1].layer, 1);
  EXPECT_THAT((*plan)[1].heads, ElementsAre(1, 3));
  o.fraction = 0;
  o.count = 2;
  o.layers = {1};
  plan = DerivePrunePlan(imp, o);
  ASSERT_TRUE(plan.ok());
  ASSERT_THAT(*plan, SizeIs(1));
  // 0.1 (head 3), then the tie 0.2 / 0.2 goes to the lower index (head 1).
  EXPECT_THAT((*plan)[0].heads, ElementsAre(1, 3));
  o.count = 1;
  plan = DerivePrunePlan(imp, o);
  EXPECT_THAT((*plan)[0].heads, ElementsAre(3));
  // 0.25 of 4 heads rounds down to 1; 0.2 of 4 to none (layer left out).
  o.count = 0;
  o.layers = {};
  o.fraction = 0.2;
  plan = DerivePrunePlan(imp, o);
  ASSERT_TRUE(plan.ok());
  EXPECT_THAT(*plan, SizeIs(0));
}

TEST(PrunePlanTest, KvGroupsFollowEachLayersKvHeads) {
  // Layer 0 (sliding): 2 KV heads, groups {0,1} and {2,3}; layer 1 (full):
  // 1 KV head for all 4 query heads.
  const HeadImportance imp = PoolHeadImportance(
      {Record("", 10, {{0, {0.3, 0.3, 0.1, 0.2}}, {1, {0.1, 0.1, 0.1, 0.1}}})},
      "", false);
  PrunePlanOptions o;
  o.num_heads = 4;
  o.count = 1;
  o.kv_groups = true;
  o.kv_heads = {2, 1};
  o.layers = {0};
  auto plan = DerivePrunePlan(imp, o);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_THAT((*plan)[0].heads, ElementsAre(2, 3));  // 0.3 < 0.6
  o.layers = {0, 1};
  plan = DerivePrunePlan(imp, o);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(plan.status().message(),
              HasSubstr("layer 1 would lose all of its 1 KV groups"));
  o.kv_heads = {3, 1};
  o.layers = {0};
  EXPECT_THAT(DerivePrunePlan(imp, o).status().message(),
              HasSubstr("layer 0 has 3 KV heads, which do not divide its 4"));
}

TEST(PrunePlanTest, ErrorsSayWhy) {
  PrunePlanOptions o;
  o.num_heads = 4;
  o.fraction = 0.25;
  auto empty = DerivePrunePlan(HeadImportance{}, o);
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(empty.status().message(), HasSubstr("no head_nll_delta rows"));
  const HeadImportance imp =
      PoolHeadImportance({Record("", 10, {{0, {0.3, 0.1, 0.2}}})}, "", false);
  EXPECT_THAT(DerivePrunePlan(imp, o).status().message(),
              HasSubstr("layer 0 has no delta for heads 3 of 4"));
  o.layers = {2};
  EXPECT_THAT(DerivePrunePlan(imp, o).status().message(),
              HasSubstr("layer 2 has no head_nll_delta rows"));
  o.count = 1;
  EXPECT_EQ(DerivePrunePlan(imp, o).status().code(),
            absl::StatusCode::kInvalidArgument);
  o.fraction = 0;
  o.count = 4;
  o.layers = {};
  o.num_heads = 3;
  EXPECT_THAT(DerivePrunePlan(imp, o).status().message(),
              HasSubstr("would lose all of its 3 heads"));
}

}  // namespace
}  // namespace sweepd
