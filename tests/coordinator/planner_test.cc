// The planner's own steps (coordinator/planner.cc): one task per data slot,
// the task and group keys and the sweep id, the dtype and dataset split in the
// key, synthetic tasks, the task limit, name and label limits. Grid axes are
// in planner_grid_test.cc, paths and fingerprints in planner_paths_test.cc,
// validation in planner_validation_test.cc.
#include "coordinator/planner.h"

#include <chrono>
#include <cstdint>
#include <iostream>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/coordinator/planner_test_util.h"
#include "tests/testing/status_matchers.h"

namespace sweepd {
namespace {

namespace v1 = ::sweepd::v1;
using planner_test::PlannerTest;
using planner_test::WriteModel;
using ::sweepd::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::SizeIs;

TEST_F(PlannerTest, EmptyGridIsOneTaskPerShard) {
  v1::SweepSpec s = EvalSpec();
  s.mutable_datasets(0)->set_shards(3);
  Plan plan = MustPlan(s);
  ASSERT_THAT(plan.tasks, SizeIs(3));
  for (int i = 0; i < 3; ++i) {
    const v1::TaskSpec& t = plan.tasks[i].spec;
    EXPECT_EQ(t.index(), i);
    EXPECT_EQ(t.kind(), v1::JOB_KIND_EVAL);
    EXPECT_EQ(t.data().shard_index(), i);
    EXPECT_EQ(t.data().num_shards(), 3);
    EXPECT_EQ(t.interventions().interventions_size(), 0);
    EXPECT_TRUE(t.has_eval());
  }
}

// Defect: with model.dtype empty, fp32 and bf16 runs shared task keys.
TEST_F(PlannerTest, DtypeIsResolvedIntoTheTaskKey) {
  v1::SweepSpec s = EvalSpec();
  Plan fp32 = MustPlan(s);
  EXPECT_EQ(fp32.resolved_spec.model().dtype(), "float32");
  EXPECT_EQ(fp32.tasks[0].spec.model().dtype(), "float32");
  PlannerOptions bf16_default = Options();
  bf16_default.default_dtype = "bfloat16";
  Plan bf16 = MustPlan(s, bf16_default);
  EXPECT_EQ(bf16.tasks[0].spec.model().dtype(), "bfloat16");
  EXPECT_NE(fp32.tasks[0].task_key, bf16.tasks[0].task_key);
  // Spelling the default out is the same work.
  s.mutable_model()->set_dtype("float32");
  EXPECT_EQ(MustPlan(s).tasks[0].task_key, fp32.tasks[0].task_key);
}

TEST_F(PlannerTest, DatasetSplitIsValidatedAndKeyed) {
  v1::SweepSpec s = EvalSpec();
  Plan paragraph = MustPlan(s);
  s.mutable_datasets(0)->set_split("paragraph");  // the default, spelled out
  EXPECT_EQ(MustPlan(s).tasks[0].task_key, paragraph.tasks[0].task_key);
  s.mutable_datasets(0)->set_split("file");
  Plan file = MustPlan(s);
  EXPECT_EQ(file.tasks[0].spec.data().dataset().split(), "file");
  EXPECT_NE(file.tasks[0].task_key, paragraph.tasks[0].task_key);
  s.mutable_datasets(0)->set_shards(2);
  EXPECT_THAT(PlanSweep(s, Options()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("datasets[0].shards")));
  s.mutable_datasets(0)->set_shards(1);
  s.mutable_datasets(0)->set_split("sentence");
  EXPECT_THAT(PlanSweep(s, Options()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("datasets[0].split")));
  s.mutable_datasets(0)->set_split("line");
  s.mutable_datasets(0)->set_path("probe.jsonl");
  EXPECT_THAT(
      PlanSweep(s, Options()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("plain-text")));
}

TEST_F(PlannerTest, SyntheticTasksAreIndexed) {
  Plan plan = MustPlan(SyntheticSpec(1000));
  ASSERT_THAT(plan.tasks, SizeIs(1000));
  absl::flat_hash_set<std::string> keys, groups;
  for (int i = 0; i < 1000; ++i) {
    EXPECT_EQ(plan.tasks[i].spec.index(), i);
    EXPECT_EQ(plan.tasks[i].spec.kind(), v1::JOB_KIND_SYNTHETIC);
    EXPECT_EQ(plan.tasks[i].spec.synthetic().tasks(), 1000);
    keys.insert(plan.tasks[i].task_key);
    groups.insert(plan.tasks[i].group_key);
  }
  EXPECT_EQ(keys.size(), 1000u);
  EXPECT_EQ(groups.size(), 1000u);  // no prefix to share: one group per task

  v1::SweepSpec seeded = SyntheticSpec(10);
  AddSeeds(&seeded, {1, 2});
  EXPECT_THAT(MustPlan(seeded).tasks, SizeIs(20));
}

TEST_F(PlannerTest, HundredThousandSyntheticTasksPlanQuickly) {
  PlannerOptions o = Options();
  const auto start = std::chrono::steady_clock::now();
  Plan plan = MustPlan(SyntheticSpec(100'000), o);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  std::cout << "planned 100000 synthetic tasks in " << seconds << " s\n";
  ASSERT_THAT(plan.tasks, SizeIs(100'000));
  EXPECT_EQ(plan.tasks.back().spec.index(), 99'999);
}

TEST_F(PlannerTest, MaxTasksIsEnforced) {
  PlannerOptions o = Options();
  o.max_tasks = 1000;
  v1::SweepSpec s = SyntheticSpec(100);
  AddSeeds(&s, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11});
  EXPECT_THAT(
      PlanSweep(s, o),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("expands to 1100 tasks, more than max_tasks = 1000")));
}

// A grid of three 2,000-value axes is 8e9 tasks: refused from the product of
// the axis sizes, before any task is built, with the default limit.
TEST_F(PlannerTest, HugeGridIsRefusedBeforeAnyTaskIsBuilt) {
  v1::SweepSpec s = SyntheticSpec(1);
  for (const char* name : {"min_ms", "max_ms", "failure_rate"}) {
    v1::ValueAxis* axis = s.mutable_grid()->add_axes()->mutable_param();
    axis->set_name(name);
    axis->mutable_range()->set_start(0);
    axis->mutable_range()->set_stop(name[0] == 'f' ? 1.0 : 2000);
    axis->mutable_range()->set_step(name[0] == 'f' ? 1.0 / 2000 : 1);
  }
  const absl::Time start = absl::Now();
  EXPECT_THAT(PlanSweep(s, Options()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("expands to 8000000000 tasks"),
                             HasSubstr("max_tasks = 1000000"))));
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

TEST_F(PlannerTest, NamesAndLabelsHaveLengthLimits) {
  v1::SweepSpec s = SyntheticSpec(1);
  s.set_name(std::string(kMaxSweepNameBytes + 1, 'n'));
  EXPECT_THAT(PlanSweep(s, Options()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("name: is 257 bytes long"),
                             HasSubstr("limit is 256 bytes"))));
  s.set_name("ok");
  (*s.mutable_labels())["note"] = std::string(kMaxLabelValueBytes + 1, 'v');
  EXPECT_THAT(PlanSweep(s, Options()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("labels[\"note\"]: is 1025 bytes long")));
  s.clear_labels();
  (*s.mutable_labels())[std::string(kMaxLabelKeyBytes + 1, 'k')] = "v";
  EXPECT_THAT(PlanSweep(s, Options()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("(key): is 129 bytes long")));
  s.clear_labels();
  for (int i = 0; i <= kMaxLabels; ++i) {
    (*s.mutable_labels())[absl::StrCat("k", i)] = "v";
  }
  EXPECT_THAT(PlanSweep(s, Options()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("labels: has 65 entries; the limit is 64")));
  s.clear_labels();
  (*s.mutable_labels())["fine"] = std::string(kMaxLabelValueBytes, 'v');
  EXPECT_TRUE(PlanSweep(s, Options()).ok());
}

TEST_F(PlannerTest, SameSpecSameKeysAndSweepId) {
  v1::SweepSpec s = EvalSpec();
  AddLayers(&s, "skip", "all");
  Plan a = MustPlan(s);
  Plan b = MustPlan(s);
  EXPECT_EQ(a.sweep_id, b.sweep_id);
  EXPECT_THAT(a.sweep_id, ::testing::MatchesRegex("sw-[0-9a-f]{16}"));
  ASSERT_EQ(a.tasks.size(), b.tasks.size());
  for (size_t i = 0; i < a.tasks.size(); ++i) {
    EXPECT_EQ(a.tasks[i].task_key, b.tasks[i].task_key);
    EXPECT_EQ(a.tasks[i].group_key, b.tasks[i].group_key);
  }
  // Equivalent selector spellings share keys; another name is another sweep.
  v1::SweepSpec renamed = s;
  renamed.set_name("other");
  Plan c = MustPlan(renamed);
  EXPECT_NE(c.sweep_id, a.sweep_id);
  EXPECT_EQ(c.tasks[3].task_key, a.tasks[3].task_key);
}

TEST_F(PlannerTest, InterventionsChangeTaskKeyButShareGroupPerShard) {
  v1::SweepSpec s = EvalSpec();
  s.mutable_datasets(0)->set_shards(2);
  AddLayers(&s, "skip", "0,1")->set_include_baseline(true);
  Plan plan = MustPlan(s);
  ASSERT_THAT(plan.tasks, SizeIs(6));
  // Shard 0: tasks 0..2, shard 1: tasks 3..5.
  EXPECT_NE(plan.tasks[1].task_key, plan.tasks[2].task_key);
  EXPECT_EQ(plan.tasks[0].group_key, plan.tasks[1].group_key);
  EXPECT_EQ(plan.tasks[1].group_key, plan.tasks[2].group_key);
  EXPECT_EQ(plan.tasks[3].group_key, plan.tasks[5].group_key);
  EXPECT_NE(plan.tasks[0].group_key, plan.tasks[3].group_key);
  EXPECT_NE(plan.tasks[0].task_key, plan.tasks[3].task_key);
}

TEST_F(PlannerTest, SelectorSpellingsAndModelLocationDoNotChangeKeys) {
  v1::SweepSpec a = EvalSpec();
  a.mutable_eval()
      ->mutable_base_interventions()
      ->add_interventions()
      ->mutable_zero()
      ->set_layers("all");
  v1::SweepSpec b = EvalSpec();
  b.mutable_eval()
      ->mutable_base_interventions()
      ->add_interventions()
      ->mutable_zero()
      ->set_layers("0:8");
  // The same weights in another directory.
  WriteModel(model_root_ + "/tiny-copy", 8, 4);
  b.mutable_model()->set_path("tiny-copy");
  Plan pa = MustPlan(a);
  Plan pb = MustPlan(b);
  EXPECT_EQ(pa.resolved_spec.eval()
                .base_interventions()
                .interventions(0)
                .zero()
                .layers(),
            "0-7");
  EXPECT_EQ(pa.resolved_spec.model().fingerprint(),
            pb.resolved_spec.model().fingerprint());
  EXPECT_EQ(pa.tasks[0].task_key, pb.tasks[0].task_key);
  EXPECT_NE(pa.tasks[0].spec.model().path(), pb.tasks[0].spec.model().path());
}

TEST_F(PlannerTest, DuplicateGridPointsArePlannedOnce) {
  v1::SweepSpec s = EvalSpec();
  AddLayers(&s, "skip", "0,1")->set_include_baseline(true);
  AddLayers(&s, "skip", "0,1")->set_include_baseline(true);
  // 3 x 3 points; (baseline, skip 0) and (skip 0, baseline) are the same work.
  Plan plan = MustPlan(s);
  EXPECT_THAT(plan.tasks, SizeIs(7));
  for (size_t i = 0; i < plan.tasks.size(); ++i)
    EXPECT_EQ(plan.tasks[i].spec.index(), i);
}

}  // namespace
}  // namespace sweepd
