// Spec validation through PlanSweep (coordinator/job_validation.cc,
// intervention_validation.cc, calibration_validation.cc): defaults filled in,
// and every bad field refused with INVALID_ARGUMENT naming it.
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "coordinator/planner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/coordinator/planner_test_util.h"
#include "tests/testing/status_matchers.h"

namespace sweepd {
namespace {

namespace v1 = ::sweepd::v1;
using planner_test::PlannerTest;
using planner_test::Safetensors;
using planner_test::WriteFile;
using ::sweepd::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::SizeIs;

TEST_F(PlannerTest, CaptureDefaultsAndAttnOut) {
  v1::SweepSpec s = EvalSpec();
  auto* c = s.mutable_capture();
  c->add_points("attn_heads[2]");
  c->add_points("hidden_states[8]");
  c->set_gram(true);
  c->add_gram_targets("attn_out[2]");
  c->add_gram_targets("");
  Plan plan = MustPlan(s);
  ASSERT_FALSE(plan.tasks.empty());
  const v1::CaptureJob& job = plan.tasks[0].spec.capture();
  EXPECT_EQ(job.dtype(), "bfloat16");
  EXPECT_EQ(job.positions().mode(), "all");
  EXPECT_FALSE(job.raw());
  EXPECT_EQ(job.gram_targets(0), "attn_out[2]");
  c->set_dtype("fp32");
  c->mutable_positions()->set_mode("sample");
  c->mutable_positions()->set_k(5);
  c->mutable_positions()->set_min_position(50);
  c->mutable_positions()->set_seed(42);
  plan = MustPlan(s);
  EXPECT_EQ(plan.tasks[0].spec.capture().dtype(), "float32");
  EXPECT_EQ(plan.tasks[0].spec.capture().positions().k(), 5);
}

TEST_F(PlannerTest, RetrainDefaultsAndValidation) {
  v1::SweepSpec s = EvalSpec();
  auto* r = s.mutable_retrain();
  r->set_layer(2);
  r->set_steps(10);
  r->set_batch_windows(4);
  r->set_init_seed(7);
  Plan plan = MustPlan(s);
  ASSERT_FALSE(plan.tasks.empty());
  const v1::TaskSpec& t = plan.tasks[0].spec;
  EXPECT_EQ(t.kind(), v1::JOB_KIND_RETRAIN);
  EXPECT_TRUE(t.has_data());
  // The defaults a 0 stands for are written into the task.
  EXPECT_EQ(t.retrain().lr(), 1e-4);
  EXPECT_EQ(t.retrain().beta1(), 0.9);
  EXPECT_EQ(t.retrain().beta2(), 0.999);
  EXPECT_EQ(t.retrain().weight_decay(), 0.0);
  EXPECT_EQ(t.retrain().checkpoint_every(), 50);
  EXPECT_EQ(t.retrain().windowing().context_length(), 512);
  EXPECT_EQ(t.retrain().init_seed(), 7u);

  struct Case {
    std::function<void(v1::RetrainJob*)> edit;
    std::string error;
  };
  const std::vector<Case> cases = {
      {[](v1::RetrainJob* j) { j->set_layer(8); },
       "retrain.layer: layer 8 out of range"},
      {[](v1::RetrainJob* j) { j->set_layer(-1); }, "retrain.layer"},
      {[](v1::RetrainJob* j) { j->set_steps(0); },
       "retrain.steps: 0 must be > 0"},
      {[](v1::RetrainJob* j) { j->set_batch_windows(0); },
       "retrain.batch_windows: 0 must be > 0"},
      {[](v1::RetrainJob* j) { j->set_lr(-1); }, "retrain.lr"},
      {[](v1::RetrainJob* j) { j->set_weight_decay(-0.5); },
       "retrain.weight_decay"},
      {[](v1::RetrainJob* j) { j->set_beta1(1.0); },
       "retrain.beta1: 1 must be in [0, 1)"},
      {[](v1::RetrainJob* j) { j->set_beta2(-0.1); }, "retrain.beta2"},
      {[](v1::RetrainJob* j) { j->set_checkpoint_every(-2); },
       "retrain.checkpoint_every"},
      {[](v1::RetrainJob* j) { j->mutable_windowing()->set_stride(600); },
       "retrain.windowing.stride"},
  };
  for (const Case& c : cases) {
    v1::SweepSpec bad = s;
    c.edit(bad.mutable_retrain());
    absl::StatusOr<Plan> p = PlanSweep(bad, Options());
    ASSERT_FALSE(p.ok()) << c.error;
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(p.status().message()), HasSubstr(c.error));
  }
  v1::SweepSpec no_data = s;
  no_data.clear_datasets();
  EXPECT_FALSE(PlanSweep(no_data, Options()).ok());
  v1::SweepSpec sharded = s;
  sharded.mutable_datasets(0)->set_shards(2);
  EXPECT_THAT(std::string(PlanSweep(sharded, Options()).status().message()),
              HasSubstr("datasets[0].shards: 2: a retrain job trains on one "
                        "stream"));
}

// Steer and replace_layer (issue 12): checked against the model's layer count
// and hidden_size (when config.json gives one); errors name the field.
TEST_F(PlannerTest, SteerAndReplaceLayerAreValidated) {
  const std::string dir = model_root_ + "/hid";
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
  WriteFile(dir + "/config.json",
            "{\"num_hidden_layers\": 8, \"num_attention_heads\": 4, "
            "\"hidden_size\": 4}");
  WriteFile(dir + "/model.safetensors", Safetensors("{}", ""));
  const std::string object = "objects/ab/ab" + std::string(62, '0');
  auto spec = [&](const std::function<void(v1::Intervention*)>& fill) {
    v1::SweepSpec s = EvalSpec();
    s.mutable_model()->set_path("hid");
    auto* list = s.mutable_grid()->add_axes()->mutable_interventions();
    fill(list->add_items()->add_interventions());
    return s;
  };
  auto steer = [&](v1::Intervention* iv) {
    v1::Steer* st = iv->mutable_steer();
    st->set_layer(2);
    for (float x : {1.0f, -2.0f, 0.5f, 0.0f}) st->add_vector(x);
    st->add_positions(-1);
    st->add_positions(0);
  };
  auto replace = [&](v1::Intervention* iv) {
    iv->mutable_replace_layer()->set_layer(7);
    iv->mutable_replace_layer()->mutable_weights()->set_path(object);
  };

  // Valid: the mode defaults to "add"; an artifact vector is not sized here.
  Plan plan = MustPlan(spec(steer));
  ASSERT_THAT(plan.tasks, SizeIs(1));
  EXPECT_EQ(plan.tasks[0].spec.interventions().interventions(0).steer().mode(),
            "add");
  MustPlan(spec(replace));
  MustPlan(spec([&](v1::Intervention* iv) {
    iv->mutable_steer()->set_layer(0);
    iv->mutable_steer()->set_mode("replace");
    iv->mutable_steer()->mutable_vector_artifact()->set_path(object);
    iv->mutable_steer()->mutable_vector_artifact()->set_tensor("v");
  }));

  const std::string f = "grid.axes[0].interventions.items[0].interventions[0]";
  const std::vector<
      std::pair<std::function<void(v1::Intervention*)>, std::string>>
      bad = {
          {[&](v1::Intervention* iv) {
             steer(iv);
             iv->mutable_steer()->set_layer(8);
           },
           f + ".steer.layer: layer 8 out of range [0, 8)"},
          {[&](v1::Intervention* iv) {
             steer(iv);
             iv->mutable_steer()->clear_vector();
           },
           f + ".steer: exactly one of vector (inline values) and "
               "vector_artifact is required"},
          {[&](v1::Intervention* iv) {
             steer(iv);
             iv->mutable_steer()->mutable_vector_artifact()->set_path(object);
           },
           f + ".steer: exactly one of vector"},
          {[&](v1::Intervention* iv) {
             steer(iv);
             iv->mutable_steer()->add_vector(1.0f);
           },
           f + ".steer.vector: 5 values; the model's hidden_size is 4"},
          {[&](v1::Intervention* iv) {
             steer(iv);
             iv->mutable_steer()->set_mode("scale");
           },
           f + ".steer.mode: must be \"add\" or \"replace\", got \"scale\""},
          {[&](v1::Intervention* iv) {
             steer(iv);
             iv->mutable_steer()->set_vector(1, std::nanf(""));
           },
           f + ".steer.vector[1]: must be finite"},
          {[&](v1::Intervention* iv) {
             steer(iv);
             iv->mutable_steer()->set_scale(INFINITY);
           },
           f + ".steer.scale: must be finite"},
          {[&](v1::Intervention* iv) {
             steer(iv);
             iv->mutable_steer()->add_positions(-1);
           },
           f + ".steer.positions[2]: -1 is listed twice"},
          {[&](v1::Intervention* iv) {
             steer(iv);
             iv->mutable_steer()->mutable_vector()->Clear();
             iv->mutable_steer()->mutable_vector_artifact()->set_path(
                 "/tmp/v.safetensors");
           },
           f + ".steer.vector_artifact.path: \"/tmp/v.safetensors\" is not an "
               "artifact object path"},
          {[&](v1::Intervention* iv) {
             replace(iv);
             iv->mutable_replace_layer()->set_layer(-1);
           },
           f + ".replace_layer.layer: layer -1 out of range [0, 8)"},
          {[&](v1::Intervention* iv) {
             replace(iv);
             iv->mutable_replace_layer()->clear_weights();
           },
           f + ".replace_layer.weights: an artifact reference (path, sha256) "
               "is required"},
          {[&](v1::Intervention* iv) {
             replace(iv);
             iv->mutable_replace_layer()->mutable_weights()->set_sha256(
                 std::string(64, 'c'));
           },
           f + ".replace_layer.weights.sha256: \"" + std::string(64, 'c') +
               "\" does not match the path"},
      };
  for (size_t i = 0; i < bad.size(); ++i) {
    EXPECT_THAT(
        PlanSweep(spec(bad[i].first), Options()),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(bad[i].second)))
        << i;
  }
  // Without hidden_size in config.json the vector length is the worker's to
  // check.
  v1::SweepSpec unsized = spec([&](v1::Intervention* iv) {
    steer(iv);
    iv->mutable_steer()->add_vector(1.0f);
  });
  unsized.mutable_model()->set_path("tiny");
  MustPlan(unsized);
}

struct BadSpecCase {
  std::string label;
  std::function<void(v1::SweepSpec*)> mutate;
  std::string expected;  // substring; every error here is INVALID_ARGUMENT
  bool synthetic = false;
};

TEST_F(PlannerTest, InvalidSpecsNameTheField) {
  const std::vector<BadSpecCase> cases = {
      {"no name", [](v1::SweepSpec* s) { s->clear_name(); }, "name: required"},
      {"no job", [](v1::SweepSpec* s) { s->clear_eval(); },
       "job: exactly one job"},
      {"no model", [](v1::SweepSpec* s) { s->mutable_model()->clear_path(); },
       "model.path: required"},
      {"bad dtype",
       [](v1::SweepSpec* s) { s->mutable_model()->set_dtype("fp8"); },
       "model.dtype"},
      {"no datasets", [](v1::SweepSpec* s) { s->clear_datasets(); },
       "datasets: at least one"},
      {"dataset name",
       [](v1::SweepSpec* s) { s->mutable_datasets(0)->clear_name(); },
       "datasets[0].name: required"},
      {"dataset shards",
       [](v1::SweepSpec* s) { s->mutable_datasets(0)->set_shards(-2); },
       "datasets[0].shards: -2 out of range"},
      {"duplicate dataset",
       [](v1::SweepSpec* s) { *s->add_datasets() = s->datasets(0); },
       "datasets[1].name: duplicate"},
      {"bos",
       [](v1::SweepSpec* s) {
         s->mutable_eval()->mutable_windowing()->set_bos("yes");
       },
       "eval.windowing.bos: must be \"on\" or \"off\""},
      {"stride",
       [](v1::SweepSpec* s) {
         s->mutable_eval()->mutable_windowing()->set_context_length(64);
         s->mutable_eval()->mutable_windowing()->set_stride(65);
       },
       "eval.windowing.stride"},
      {"context",
       [](v1::SweepSpec* s) {
         s->mutable_eval()->mutable_windowing()->set_context_length(-1);
       },
       "eval.windowing.context_length"},
      {"policy attempts",
       [](v1::SweepSpec* s) { s->mutable_policy()->set_max_attempts(-1); },
       "policy.max_attempts"},
      {"policy lease",
       [](v1::SweepSpec* s) { s->mutable_policy()->set_lease_seconds(-5); },
       "policy.lease_seconds"},
      {"layer out of range",
       [](v1::SweepSpec* s) {
         AddLayers(s, "skip", "all");
         AddLayers(s, "skip", "9");
       },
       "grid.axes[1].layers.select: layer 9 out of range [0, 8)"},
      {"layer op", [](v1::SweepSpec* s) { AddLayers(s, "drop", "1"); },
       "grid.axes[0].layers.op"},
      {"layer select", [](v1::SweepSpec* s) { AddLayers(s, "skip", ""); },
       "grid.axes[0].layers.select: required"},
      {"block",
       [](v1::SweepSpec* s) { AddLayers(s, "skip", "all")->set_block(9); },
       "grid.axes[0].layers.block"},
      {"block no room",
       [](v1::SweepSpec* s) { AddLayers(s, "skip", "7")->set_block(2); },
       "grid.axes[0].layers: no block of 2"},
      {"seed without reinit",
       [](v1::SweepSpec* s) { AddLayers(s, "skip", "1")->set_seed(3); },
       "grid.axes[0].layers.seed"},
      {"head out of range",
       [](v1::SweepSpec* s) {
         auto* list = s->mutable_grid()->add_axes()->mutable_interventions();
         list->add_items();
         auto* hm =
             list->add_items()->add_interventions()->mutable_mask_heads();
         hm->set_layer(1);
         hm->add_heads(4);
       },
       "grid.axes[0].interventions.items[1].interventions[0].mask_heads.heads["
       "0]: head 4 out "
       "of range [0, 4)"},
      {"empty intervention",
       [](v1::SweepSpec* s) {
         s->mutable_grid()
             ->add_axes()
             ->mutable_interventions()
             ->add_items()
             ->add_interventions();
       },
       "grid.axes[0].interventions.items[0].interventions[0]: empty "
       "intervention"},
      {"base intervention",
       [](v1::SweepSpec* s) {
         s->mutable_eval()
             ->mutable_base_interventions()
             ->add_interventions()
             ->mutable_skip()
             ->set_layers("3-12");
       },
       "eval.base_interventions.interventions[0].skip.layers: layer 12 out of "
       "range"},
      {"empty axis", [](v1::SweepSpec* s) { s->mutable_grid()->add_axes(); },
       "grid.axes[0]: empty axis"},
      {"param name",
       [](v1::SweepSpec* s) {
         s->mutable_grid()
             ->add_axes()
             ->mutable_param()
             ->add_values()
             ->set_int_value(1);
       },
       "grid.axes[0].param.name: required"},
      {"param twice",
       [](v1::SweepSpec* s) {
         for (int i = 0; i < 2; ++i) {
           auto* p = s->mutable_grid()->add_axes()->mutable_param();
           p->set_name("t");
           p->add_values()->set_int_value(i);
         }
       },
       "grid.axes[1].param.name: parameter \"t\""},
      {"param values and range",
       [](v1::SweepSpec* s) {
         auto* p = s->mutable_grid()->add_axes()->mutable_param();
         p->set_name("t");
         p->add_values()->set_int_value(1);
         p->mutable_range()->set_stop(3);
       },
       "grid.axes[0].param: give either values or range"},
      {"param no values",
       [](v1::SweepSpec* s) {
         s->mutable_grid()->add_axes()->mutable_param()->set_name("t");
       },
       "grid.axes[0].param.values: no values"},
      {"empty range",
       [](v1::SweepSpec* s) {
         auto* p = s->mutable_grid()->add_axes()->mutable_param();
         p->set_name("t");
         p->mutable_range()->set_start(5);
         p->mutable_range()->set_stop(5);
       },
       "grid.axes[0].param.range"},
      {"negative step",
       [](v1::SweepSpec* s) {
         auto* p = s->mutable_grid()->add_axes()->mutable_param();
         p->set_name("t");
         p->mutable_range()->set_stop(5);
         p->mutable_range()->set_step(-1);
       },
       "grid.axes[0].param.range.step"},
      {"seed value",
       [](v1::SweepSpec* s) {
         s->mutable_grid()
             ->add_axes()
             ->mutable_seeds()
             ->add_values()
             ->set_string_value("x");
       },
       "grid.axes[0].seeds.values[0]: seeds must be non-negative integers"},
      {"synthetic tasks",
       [](v1::SweepSpec* s) { s->mutable_synthetic()->set_tasks(0); },
       "synthetic.tasks", true},
      {"synthetic ms",
       [](v1::SweepSpec* s) {
         s->mutable_synthetic()->set_min_ms(50);
         s->mutable_synthetic()->set_max_ms(10);
       },
       "synthetic.min_ms: 50 > max_ms 10", true},
      {"synthetic rate",
       [](v1::SweepSpec* s) { s->mutable_synthetic()->set_failure_rate(1.5); },
       "synthetic.failure_rate", true},
      {"synthetic permanent",
       [](v1::SweepSpec* s) {
         s->mutable_synthetic()->set_permanent_failure_rate(-0.1);
       },
       "synthetic.permanent_failure_rate", true},
      {"synthetic layers", [](v1::SweepSpec* s) { AddLayers(s, "skip", "1"); },
       "grid.axes[0]: synthetic jobs without a model", true},
      {"head importance layers",
       [](v1::SweepSpec* s) {
         s->mutable_head_importance()->set_layers("0,8");
       },
       "head_importance.layers: layer 8 out of range"},
      {"capture point",
       [](v1::SweepSpec* s) {
         s->mutable_capture()->add_points("resid_mid[2]");
       },
       "capture.points[0]: unknown capture point"},
      {"capture layer",
       [](v1::SweepSpec* s) {
         s->mutable_capture()->add_points("resid_in[8]");
       },
       "capture.points[0]: layer 8 out of range"},
      {"capture target point",
       [](v1::SweepSpec* s) {
         auto* c = s->mutable_capture();
         c->add_points("attn_heads[2]");
         c->set_gram(true);
         c->add_gram_targets("attn_outs[2]");
       },
       "capture.gram_targets[0]: unknown capture point"},
      {"capture targets without gram",
       [](v1::SweepSpec* s) {
         auto* c = s->mutable_capture();
         c->add_points("attn_heads[2]");
         c->add_gram_targets("attn_out[2]");
       },
       "capture.gram_targets: needs gram: true"},
      {"capture target count",
       [](v1::SweepSpec* s) {
         auto* c = s->mutable_capture();
         c->add_points("attn_heads[2]");
         c->add_points("attn_heads[3]");
         c->set_gram(true);
         c->add_gram_targets("attn_out[2]");
       },
       "capture.gram_targets: 1 targets for 2 points"},
      {"capture dtype",
       [](v1::SweepSpec* s) {
         s->mutable_capture()->add_points("resid_in[1]");
         s->mutable_capture()->set_dtype("float16");
       },
       "capture.dtype: \"float16\" must be \"bfloat16\" or \"float32\""},
      {"capture positions mode",
       [](v1::SweepSpec* s) {
         s->mutable_capture()->add_points("resid_in[1]");
         s->mutable_capture()->mutable_positions()->set_mode("first");
       },
       "capture.positions.mode: \"first\" must be"},
      {"capture sample k",
       [](v1::SweepSpec* s) {
         s->mutable_capture()->add_points("resid_in[1]");
         s->mutable_capture()->mutable_positions()->set_mode("sample");
       },
       "capture.positions.k: 0: sample mode needs k >= 1"},
      {"capture k without sample",
       [](v1::SweepSpec* s) {
         s->mutable_capture()->add_points("resid_in[1]");
         s->mutable_capture()->mutable_positions()->set_k(5);
       },
       "capture.positions: k, min_position and seed apply only to mode"},
      {"heal grams",
       [](v1::SweepSpec* s) {
         s->clear_datasets();
         s->mutable_heal()->set_layer(2);
         s->mutable_heal()->add_heads_removed(1);
       },
       "heal.grams: at least one Gram artifact"},
      {"heal gram path",
       [](v1::SweepSpec* s) {
         s->clear_datasets();
         s->mutable_heal()->set_layer(2);
         s->mutable_heal()->add_heads_removed(1);
         s->mutable_heal()->add_grams()->set_path("../etc/passwd");
       },
       "heal.grams[0].path"},
      {"heal head",
       [](v1::SweepSpec* s) {
         s->clear_datasets();
         s->mutable_heal()->set_layer(2);
         s->mutable_heal()->add_heads_removed(7);
       },
       "heal.heads_removed[0]: head 7 out of range [0, 4)"},
      {"generate top_p",
       [](v1::SweepSpec* s) {
         s->mutable_generate()->add_prompts("hi");
         s->mutable_generate()->set_top_p(1.5);
       },
       "generate.top_p"},
      {"canary expect",
       [](v1::SweepSpec* s) {
         s->mutable_canary()->add_cases()->set_prompt("2+2=");
       },
       "canary.cases[0].expect"},
      {"materialize", [](v1::SweepSpec* s) { s->mutable_materialize(); },
       "materialize.out_dir: required"},
      {"materialize escaping out_dir",
       [](v1::SweepSpec* s) {
         s->mutable_materialize()->set_out_dir("pruned/../../etc");
       },
       "materialize.out_dir: 'pruned/../../etc' may not contain '..'"},
      {"materialize head",
       [](v1::SweepSpec* s) {
         s->mutable_materialize()->set_out_dir("pruned");
         auto* p = s->mutable_materialize()->add_pruned();
         p->set_layer(1);
         p->add_heads(0);
         p->add_heads(4);
       },
       "materialize.pruned[0].heads[1]: head 4 out of range [0, 4)"},
      {"materialize heal layer",
       [](v1::SweepSpec* s) {
         s->mutable_materialize()->set_out_dir("pruned");
         s->mutable_materialize()->add_heals()->set_layer(9);
       },
       "materialize.heals[0].layer: layer 9 out of range"},
      {"materialize layers",
       [](v1::SweepSpec* s) {
         s->mutable_materialize()->set_out_dir("pruned");
         s->mutable_materialize()->set_layers("0-9");
       },
       "materialize.layers"},
      {"materialize mode",
       [](v1::SweepSpec* s) {
         s->mutable_materialize()->set_out_dir("pruned");
         s->mutable_materialize()->set_mode("reshape");
       },
       "materialize.mode: 'reshape' is not supported"},
  };
  for (const BadSpecCase& c : cases) {
    v1::SweepSpec s = c.synthetic ? SyntheticSpec(10) : EvalSpec();
    c.mutate(&s);
    EXPECT_THAT(
        PlanSweep(s, Options()),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.expected)))
        << c.label;
  }
}

}  // namespace
}  // namespace sweepd
