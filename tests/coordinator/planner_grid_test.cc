// Grid expansion through PlanSweep (coordinator/grid_expansion.cc): layer
// axes (blocks, baseline, ops), cartesian products over axes, datasets and
// shards, param values and ranges, seeds, explicit intervention lists.
#include <cstdint>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "coordinator/planner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/coordinator/planner_test_util.h"
#include "tests/testing/status_matchers.h"

namespace sweepd {
namespace {

namespace v1 = ::sweepd::v1;
using planner_test::PlannerTest;
using ::sweepd::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

TEST_F(PlannerTest, LayerAxisAllLayersAndBaseline) {
  v1::SweepSpec s = EvalSpec();
  AddLayers(&s, "skip", "all");
  Plan plan = MustPlan(s);
  ASSERT_THAT(plan.tasks, SizeIs(8));
  for (int l = 0; l < 8; ++l) {
    const auto& ivs = plan.tasks[l].spec.interventions().interventions();
    ASSERT_EQ(ivs.size(), 1);
    EXPECT_EQ(ivs[0].skip().layers(), absl::StrCat(l));
  }
  s.mutable_grid()->mutable_axes(0)->mutable_layers()->set_include_baseline(
      true);
  plan = MustPlan(s);
  ASSERT_THAT(plan.tasks, SizeIs(9));
  EXPECT_EQ(plan.tasks[0].spec.interventions().interventions_size(), 0);
}

TEST_F(PlannerTest, LayerAxisBlocks) {
  v1::SweepSpec s = EvalSpec();
  AddLayers(&s, "zero", "all")->set_block(3);
  Plan plan = MustPlan(s);
  // Blocks start at every selected layer that leaves room: 0..5.
  ASSERT_THAT(plan.tasks, SizeIs(6));
  EXPECT_EQ(plan.tasks[0].spec.interventions().interventions(0).zero().layers(),
            "0-2");
  EXPECT_EQ(plan.tasks[5].spec.interventions().interventions(0).zero().layers(),
            "5-7");

  v1::SweepSpec strided = EvalSpec();
  AddLayers(&strided, "skip", "0:8:2")->set_block(2);
  plan = MustPlan(strided);
  ASSERT_THAT(plan.tasks, SizeIs(4));
  EXPECT_EQ(plan.tasks[3].spec.interventions().interventions(0).skip().layers(),
            "6-7");
}

TEST_F(PlannerTest, MaskHeadsAndReinitOps) {
  v1::SweepSpec s = EvalSpec();
  AddLayers(&s, "mask_heads", "2")->set_block(2);
  Plan plan = MustPlan(s);
  ASSERT_THAT(plan.tasks, SizeIs(1));
  const auto& ivs = plan.tasks[0].spec.interventions().interventions();
  ASSERT_EQ(ivs.size(), 2);
  EXPECT_EQ(ivs[0].mask_heads().layer(), 2);
  EXPECT_EQ(ivs[1].mask_heads().layer(), 3);
  EXPECT_THAT(ivs[1].mask_heads().heads(), ElementsAre(0, 1, 2, 3));

  v1::SweepSpec r = EvalSpec();
  AddLayers(&r, "reinit", "1,4")->set_seed(77);
  plan = MustPlan(r);
  ASSERT_THAT(plan.tasks, SizeIs(2));
  EXPECT_EQ(
      plan.tasks[1].spec.interventions().interventions(0).reinit().layers(),
      "4");
  EXPECT_EQ(plan.tasks[1].spec.interventions().interventions(0).reinit().seed(),
            77u);
}

TEST_F(PlannerTest, CartesianProductOverAxesDatasetsAndShards) {
  v1::SweepSpec s = EvalSpec();
  s.mutable_datasets(0)->set_shards(2);
  v1::DatasetRef* probe = s.add_datasets();
  probe->set_name("probe");
  probe->set_path("probe.jsonl");  // 1 shard by default
  AddLayers(&s, "reinit", "all");  // 8 (reinit takes the grid's seed)
  AddSeeds(&s, {1, 2, 3});         // 3
  Plan plan = MustPlan(s);
  ASSERT_THAT(plan.tasks, SizeIs(8 * 3 * 3));
  // Last axis varies fastest; datasets/shards outermost.
  EXPECT_EQ(plan.tasks[0].spec.seed(), 1u);
  EXPECT_EQ(plan.tasks[1].spec.seed(), 2u);
  EXPECT_EQ(
      plan.tasks[3].spec.interventions().interventions(0).reinit().layers(),
      "1");
  EXPECT_EQ(plan.tasks[24].spec.data().shard_index(), 1);
  EXPECT_EQ(plan.tasks[48].spec.data().dataset().name(), "probe");
  std::set<std::string> keys;
  for (const auto& t : plan.tasks) keys.insert(t.task_key);
  EXPECT_EQ(keys.size(), plan.tasks.size());
}

TEST_F(PlannerTest, ParamValuesAndRanges) {
  // A param axis may set only its job's parameters (docs/JOBS.md): windowing
  // for eval, the workload's numbers for synthetic.
  v1::SweepSpec s = EvalSpec();
  v1::ValueAxis* ctx = s.mutable_grid()->add_axes()->mutable_param();
  ctx->set_name("context_length");
  ctx->mutable_range()->set_start(128);
  ctx->mutable_range()->set_stop(513);
  ctx->mutable_range()->set_step(128);
  v1::ValueAxis* bos = s.mutable_grid()->add_axes()->mutable_param();
  bos->set_name("bos");
  bos->add_values()->set_string_value("on");
  bos->add_values()->set_string_value("off");
  Plan plan = MustPlan(s);
  ASSERT_THAT(plan.tasks, SizeIs(4 * 2));
  const auto& last = plan.tasks.back().spec.params();
  EXPECT_EQ(last.at("context_length").int_value(), 512);
  EXPECT_EQ(last.at("bos").string_value(), "off");
  EXPECT_EQ(plan.tasks[0].spec.params().at("context_length").int_value(), 128);

  v1::SweepSpec syn = SyntheticSpec(1);
  v1::ValueAxis* rate = syn.mutable_grid()->add_axes()->mutable_param();
  rate->set_name("failure_rate");
  rate->mutable_range()->set_start(0.0);
  rate->mutable_range()->set_stop(1.0);
  rate->mutable_range()->set_step(0.25);
  Plan rates = MustPlan(syn);
  ASSERT_THAT(rates.tasks, SizeIs(4));
  EXPECT_DOUBLE_EQ(
      rates.tasks.back().spec.params().at("failure_rate").double_value(), 0.75);
}

// Defect: a param axis planned distinct tasks that computed identical numbers
// because nothing applied the value. Now it is applied to the task's job.
TEST_F(PlannerTest, ParamAxisSetsTheJobsField) {
  v1::SweepSpec s = EvalSpec();
  v1::ValueAxis* ctx = s.mutable_grid()->add_axes()->mutable_param();
  ctx->set_name("context_length");
  ctx->add_values()->set_int_value(16);
  ctx->add_values()->set_int_value(32);
  Plan plan = MustPlan(s);
  ASSERT_THAT(plan.tasks, SizeIs(2));
  EXPECT_EQ(plan.tasks[0].spec.eval().windowing().context_length(), 16);
  EXPECT_EQ(plan.tasks[0].spec.eval().windowing().stride(), 16);  // default
  EXPECT_EQ(plan.tasks[1].spec.eval().windowing().context_length(), 32);
  EXPECT_EQ(plan.tasks[1].spec.eval().windowing().stride(), 32);
  // Different windowing: different prefix passes.
  EXPECT_NE(plan.tasks[0].group_key, plan.tasks[1].group_key);

  v1::SweepSpec syn = SyntheticSpec(1);
  v1::ValueAxis* max = syn.mutable_grid()->add_axes()->mutable_param();
  max->set_name("max_ms");
  max->add_values()->set_int_value(7);
  EXPECT_EQ(MustPlan(syn).tasks[0].spec.synthetic().max_ms(), 7);
}

TEST_F(PlannerTest, ParamAxisErrorsNameTheParameter) {
  v1::SweepSpec s = EvalSpec();
  v1::ValueAxis* t = s.mutable_grid()->add_axes()->mutable_param();
  t->set_name("temperature");
  t->add_values()->set_double_value(0.5);
  EXPECT_THAT(PlanSweep(s, Options()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("grid.axes[0].param.name"),
                             HasSubstr("unknown parameter \"temperature\""),
                             HasSubstr("context_length, stride, bos"))));
  t->set_name("context_length");
  t->mutable_values(0)->set_string_value("long");
  EXPECT_THAT(PlanSweep(s, Options()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("grid.axes[0].param.values[0]")));
  // A value that makes the job invalid names the grid point.
  s.mutable_eval()->mutable_windowing()->set_stride(64);
  t->mutable_values(0)->set_int_value(32);
  EXPECT_THAT(PlanSweep(s, Options()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("grid point {context_length=32}"),
                             HasSubstr("eval.windowing.stride"))));
}

// Defect: the seeds axis did nothing for eval. It now seeds the reinit
// interventions that name no seed, and is refused where nothing uses it.
TEST_F(PlannerTest, SeedsAxisSeedsReinitInterventions) {
  v1::SweepSpec s = EvalSpec();
  auto* list = s.mutable_grid()->add_axes()->mutable_interventions();
  list->add_items();  // baseline: does not use the seed
  list->add_items()->add_interventions()->mutable_reinit()->set_layers("2");
  AddSeeds(&s, {5, 6});
  Plan plan = MustPlan(s);
  // The baseline is planned once; each seed gives its own reinit.
  ASSERT_THAT(plan.tasks, SizeIs(3));
  EXPECT_EQ(plan.tasks[0].spec.seed(), 0u);
  EXPECT_EQ(plan.tasks[1].spec.interventions().interventions(0).reinit().seed(),
            5u);
  EXPECT_EQ(plan.tasks[2].spec.interventions().interventions(0).reinit().seed(),
            6u);
  EXPECT_NE(plan.tasks[1].task_key, plan.tasks[2].task_key);

  v1::SweepSpec unused = EvalSpec();
  AddLayers(&unused, "skip", "0-1");
  AddSeeds(&unused, {1, 2});
  EXPECT_THAT(PlanSweep(unused, Options()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("grid.axes[1].seeds"),
                             HasSubstr("same numbers"))));
}

TEST_F(PlannerTest, SeedRangeAndBaseInterventions) {
  v1::SweepSpec s = EvalSpec();
  s.mutable_eval()
      ->mutable_base_interventions()
      ->add_interventions()
      ->mutable_skip()
      ->set_layers("7");
  AddLayers(&s, "reinit", "0-1");
  v1::ValueAxis* seeds = s.mutable_grid()->add_axes()->mutable_seeds();
  seeds->mutable_range()->set_start(10);
  seeds->mutable_range()->set_stop(14);
  Plan plan = MustPlan(s);
  ASSERT_THAT(plan.tasks, SizeIs(2 * 4));
  const auto& ivs = plan.tasks[5].spec.interventions().interventions();
  ASSERT_EQ(ivs.size(), 2);
  EXPECT_EQ(ivs[0].skip().layers(), "7");  // base first
  EXPECT_EQ(ivs[1].reinit().layers(), "1");
  EXPECT_EQ(plan.tasks[5].spec.seed(), 11u);
}

TEST_F(PlannerTest, ExplicitInterventionListsConcatenateAcrossAxes) {
  v1::SweepSpec s = EvalSpec();
  auto* list = s.mutable_grid()->add_axes()->mutable_interventions();
  list->add_items();  // baseline point
  auto* hm = list->add_items()->add_interventions()->mutable_mask_heads();
  hm->set_layer(3);
  hm->add_heads(2);
  hm->add_heads(0);
  hm->add_heads(2);
  AddLayers(&s, "skip", "5");
  Plan plan = MustPlan(s);
  ASSERT_THAT(plan.tasks, SizeIs(2));
  const auto& ivs = plan.tasks[1].spec.interventions().interventions();
  ASSERT_EQ(ivs.size(), 2);
  EXPECT_THAT(ivs[0].mask_heads().heads(),
              ElementsAre(0, 2));  // sorted, de-duplicated
  EXPECT_EQ(ivs[1].skip().layers(), "5");
}

}  // namespace
}  // namespace sweepd
