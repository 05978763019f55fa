// Calibration stages derived from fabricated ledger records (docs/STAGES.md,
// docs/CALIBRATION.md "Pipeline"): seed 001's staged sweep on the tiny model
// shape — head importance first, a capture stage planned at submit, then heal
// (one task per pruned layer, Grams of the capture stage in dataset-shard
// order, held-out Grams apart), materialize (pruned heads + heal artifacts,
// all layers and a subset), a canary with the plan's head masks, and an eval
// on the materialized checkpoint (model_from_stage) — plus the errors that say
// why a stage cannot be derived.
#include <stdlib.h>
#include <sys/stat.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/hash.h"
#include "common/model_fingerprint.h"
#include "coordinator/planner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/coordinator/coordinator_test_util.h"

namespace sweepd {
namespace {

using ::sweepd::testing::TempPath;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
  ASSERT_TRUE(out.good()) << path;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A well-formed artifact object path "objects/<aa>/<sha256>" and its SHA-256
// for a fabricated object named `what`.
std::string Sha(const std::string& what) { return Sha256Hex(what); }
std::string Obj(const std::string& what) {
  const std::string hex = Sha(what);
  return absl::StrCat("objects/", hex.substr(0, 2), "/", hex);
}

// Stage indices of the spec below.
enum : int {
  kCapture = 0,
  kHeal,
  kMaterialize,
  kMaterializeSubset,
  kCanary,
  kEvalMaterialized
};

class DerivedStagesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = TempPath("derived") + "-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    options_.model_root = root_ + "/models";
    options_.data_root = root_ + "/data";
    ASSERT_EQ(mkdir(options_.model_root.c_str(), 0755), 0);
    ASSERT_EQ(mkdir(options_.data_root.c_str(), 0755), 0);
    const char* src = std::getenv("SWEEPD_SOURCE_DIR");
    const std::string config =
        ReadFile(std::string(src != nullptr ? src : ".") +
                 "/configs/models/gemma4-tiny.json");
    ASSERT_FALSE(config.empty());
    for (const char* name : {"tiny", "pruned"}) {
      const std::string dir = options_.model_root + "/" + name;
      ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
      WriteFile(dir + "/config.json", config);
      // Header-only safetensors; "pruned" differs (its fingerprint too).
      const std::string header =
          std::string(name) == "tiny" ? "{}" : "{\"__metadata__\":{}}";
      std::string st(8, '\0');
      st[0] = static_cast<char>(header.size());
      WriteFile(dir + "/model.safetensors", st + header);
    }
    WriteFile(options_.data_root + "/calib.txt", "one\n\ntwo\n\nthree\n");
    WriteFile(options_.data_root + "/heldout.txt", "four\n");
  }

  v1::SweepSpec Spec() {
    v1::SweepSpec spec;
    spec.set_name("head-prune");
    spec.mutable_model()->set_path("tiny");
    auto* calib = spec.add_datasets();
    calib->set_name("calib");
    calib->set_path("calib.txt");
    calib->set_shards(2);
    spec.mutable_head_importance()->set_layers("all");
    spec.mutable_head_importance()->mutable_windowing()->set_context_length(16);

    auto* capture = spec.add_stages();
    capture->set_name("capture");
    *capture->add_datasets() = *calib;
    auto* heldout = capture->add_datasets();
    heldout->set_name("heldout");
    heldout->set_path("heldout.txt");
    auto* cj = capture->mutable_capture();
    cj->set_gram(true);
    for (int L = 0; L < 6; ++L)
      cj->add_points(absl::StrCat("attn_heads[", L, "]"));

    v1::PrunePlanDerivation plan;
    plan.set_fraction(0.25);
    auto* heal = spec.add_stages();
    heal->set_name("heal");
    *heal->mutable_prune_plan() = plan;
    heal->mutable_heal()->set_ridge_rel(0.01);
    heal->mutable_heal()->set_capture_stage("capture");
    heal->mutable_heal()->set_heldout_dataset("heldout");

    auto* mat = spec.add_stages();
    mat->set_name("materialize");
    *mat->mutable_prune_plan() = plan;
    mat->mutable_materialize()->set_out_dir("pruned");
    mat->mutable_materialize()->set_heal_stage("heal");

    auto* subset = spec.add_stages();
    subset->set_name("materialize-l0-1");
    *subset->mutable_prune_plan() = plan;
    subset->mutable_materialize()->set_out_dir("pruned-l0-1");
    subset->mutable_materialize()->set_heal_stage("heal");
    subset->mutable_materialize()->set_layers("0-1");

    auto* canary = spec.add_stages();
    canary->set_name("canary");
    *canary->mutable_prune_plan() = plan;
    auto* c = canary->mutable_canary()->add_cases();
    c->set_prompt("The capital of France is");
    c->add_expect("Paris");

    auto* eval = spec.add_stages();
    eval->set_name("eval-materialized");
    eval->set_model_from_stage("materialize");
    eval->mutable_eval()->mutable_windowing()->set_context_length(16);
    return spec;
  }

  // DONE importance records: in layer L the lowest delta is head (L % 4).
  static std::vector<v1::TaskRecord> ImportanceRecords(const Plan& plan) {
    std::vector<v1::TaskRecord> out;
    for (const PlannedTask& t : plan.tasks) {
      if (t.spec.kind() != v1::JOB_KIND_HEAD_IMPORTANCE) continue;
      v1::TaskRecord r = Done(t);
      for (int L = 0; L < 6; ++L) {
        for (int h = 0; h < 4; ++h) {
          AddMetric(&r, "head_nll_delta", h == L % 4 ? 0.001 : 0.1 + 0.01 * h,
                    {{"layer", std::to_string(L)},
                     {"head", std::to_string(h)},
                     {"dataset", "calib"}});
        }
      }
      AddMetric(&r, "head_importance_tokens", 100, {{"dataset", "calib"}});
      out.push_back(std::move(r));
    }
    return out;
  }

  // DONE capture records: one Gram artifact per point, named as the capture
  // contract says, object Obj("<dataset><shard>/<L>").
  static std::vector<v1::TaskRecord> CaptureRecords(const Plan& plan,
                                                    int skip_layer = -1) {
    std::vector<v1::TaskRecord> out;
    for (const PlannedTask& t : plan.tasks) {
      if (t.spec.kind() != v1::JOB_KIND_CAPTURE) continue;
      v1::TaskRecord r = Done(t);
      const std::string ds = t.spec.data().dataset().name();
      const int shard = t.spec.data().shard_index();
      for (int L = 0; L < 6; ++L) {
        if (L == skip_layer) continue;
        v1::Artifact* a = r.mutable_result()->add_artifacts();
        a->set_name(
            absl::StrCat("gram/attn_heads[", L, "]/", ds, "/shard", shard));
        a->set_path(Obj(absl::StrCat(ds, shard, "/", L)));
        a->set_sha256(Sha(absl::StrCat(ds, shard, "/", L)));
      }
      out.push_back(std::move(r));
    }
    return out;
  }

  static v1::TaskRecord Done(const PlannedTask& t) {
    v1::TaskRecord r;
    r.set_task_key(t.task_key);
    r.set_state(v1::TASK_STATE_DONE);
    *r.mutable_spec() = t.spec;
    return r;
  }

  static void AddMetric(v1::TaskRecord* r, const std::string& name,
                        double value,
                        const std::map<std::string, std::string>& labels) {
    v1::Metric* m = r->mutable_result()->add_metrics();
    m->set_name(name);
    m->set_value(value);
    for (const auto& [k, v] : labels) (*m->mutable_labels())[k] = v;
  }

  std::string root_;
  PlannerOptions options_;
};

TEST_F(DerivedStagesTest, SeedOnePipelineIsDerivedStageByStage) {
  auto plan = PlanSweep(Spec(), options_);
  ASSERT_TRUE(plan.ok()) << plan.status();
  // head_importance per calib shard (2) + capture per shard (2 calib + 1
  // heldout) at submit; the rest is deferred.
  ASSERT_THAT(plan->tasks, SizeIs(5));
  EXPECT_THAT(plan->deferred_stages,
              ElementsAre(kHeal, kMaterialize, kMaterializeSubset, kCanary,
                          kEvalMaterialized));
  std::vector<v1::TaskRecord> records = ImportanceRecords(*plan);
  for (auto& r : CaptureRecords(*plan)) records.push_back(std::move(r));
  int64_t next = static_cast<int64_t>(plan->tasks.size());

  // Heal: one task per layer, removing head L % 4 (0.25 of 4 heads).
  auto heals =
      PlanDerivedStage(plan->resolved_spec, kHeal, records, next, options_);
  ASSERT_TRUE(heals.ok()) << heals.status();
  ASSERT_THAT(*heals, SizeIs(6));
  for (int L = 0; L < 6; ++L) {
    const v1::TaskSpec& s = (*heals)[L].spec;
    SCOPED_TRACE(L);
    EXPECT_EQ(s.kind(), v1::JOB_KIND_HEAL);
    EXPECT_EQ(s.stage(), "heal");
    EXPECT_EQ(s.index(), next + L);
    EXPECT_FALSE(s.has_data());
    EXPECT_EQ(s.heal().layer(), L);
    EXPECT_THAT(s.heal().heads_removed(), ElementsAre(L % 4));
    EXPECT_EQ(s.heal().ridge_rel(), 0.01);
    ASSERT_THAT(s.heal().grams(), SizeIs(2));
    EXPECT_EQ(s.heal().grams(0).path(), Obj(absl::StrCat("calib0/", L)));
    EXPECT_EQ(s.heal().grams(1).path(), Obj(absl::StrCat("calib1/", L)));
    EXPECT_EQ(s.heal().grams(1).sha256(), Sha(absl::StrCat("calib1/", L)));
    ASSERT_THAT(s.heal().heldout_grams(), SizeIs(1));
    EXPECT_EQ(s.heal().heldout_grams(0).path(),
              Obj(absl::StrCat("heldout0/", L)));
  }
  next += 6;
  for (const PlannedTask& t : *heals) {
    v1::TaskRecord r = Done(t);
    v1::Artifact* a = r.mutable_result()->add_artifacts();
    a->set_name(absl::StrCat("heal/o_proj/layer", t.spec.heal().layer()));
    a->set_path(Obj(absl::StrCat("heal", t.spec.heal().layer())));
    a->set_sha256(Sha(absl::StrCat("heal", t.spec.heal().layer())));
    records.push_back(std::move(r));
  }

  // Materialize, all layers: every layer's pruned heads and heal.
  auto mat = PlanDerivedStage(plan->resolved_spec, kMaterialize, records, next,
                              options_);
  ASSERT_TRUE(mat.ok()) << mat.status();
  ASSERT_THAT(*mat, SizeIs(1));
  const v1::MaterializeJob& m = (*mat)[0].spec.materialize();
  ASSERT_THAT(m.pruned(), SizeIs(6));
  ASSERT_THAT(m.heals(), SizeIs(6));
  for (int L = 0; L < 6; ++L) {
    EXPECT_EQ(m.pruned(L).layer(), L);
    EXPECT_THAT(m.pruned(L).heads(), ElementsAre(L % 4));
    EXPECT_EQ(m.heals(L).layer(), L);
    EXPECT_EQ(m.heals(L).artifact().path(), Obj(absl::StrCat("heal", L)));
  }
  EXPECT_EQ(m.out_dir(), "pruned");
  // The subset: heals of layers 0-1 only (the writer restricts to `layers`).
  auto subset = PlanDerivedStage(plan->resolved_spec, kMaterializeSubset,
                                 records, next + 1, options_);
  ASSERT_TRUE(subset.ok()) << subset.status();
  ASSERT_THAT((*subset)[0].spec.materialize().heals(), SizeIs(2));
  EXPECT_EQ((*subset)[0].spec.materialize().layers(), "0-1");
  // An open range is read against the model's 6 layers.
  v1::SweepSpec open_range = plan->resolved_spec;
  open_range.mutable_stages(kMaterializeSubset)
      ->mutable_materialize()
      ->set_layers("4:");
  auto tail = PlanDerivedStage(open_range, kMaterializeSubset, records,
                               next + 1, options_);
  ASSERT_TRUE(tail.ok()) << tail.status();
  ASSERT_THAT((*tail)[0].spec.materialize().heals(), SizeIs(2));
  EXPECT_EQ((*tail)[0].spec.materialize().heals(0).layer(), 4);
  EXPECT_EQ((*tail)[0].spec.materialize().heals(1).layer(), 5);

  // Canary: the plan's head masks, no datasets.
  auto canary = PlanDerivedStage(plan->resolved_spec, kCanary, records,
                                 next + 2, options_);
  ASSERT_TRUE(canary.ok()) << canary.status();
  ASSERT_THAT(*canary, SizeIs(1));
  const v1::InterventionSet& iv = (*canary)[0].spec.interventions();
  ASSERT_THAT(iv.interventions(), SizeIs(6));
  for (int L = 0; L < 6; ++L) {
    EXPECT_EQ(iv.interventions(L).mask_heads().layer(), L);
    EXPECT_THAT(iv.interventions(L).mask_heads().heads(), ElementsAre(L % 4));
  }
  EXPECT_FALSE((*canary)[0].spec.has_data());

  // Eval on the materialized checkpoint (its path and fingerprint).
  const std::string pruned_dir = options_.model_root + "/pruned";
  auto fp = ComputeModelFingerprint(pruned_dir);
  ASSERT_TRUE(fp.ok()) << fp.status();
  v1::TaskRecord done_mat = Done((*mat)[0]);
  AddMetric(&done_mat, "materialized_model", 1,
            {{"path", "pruned"}, {"fingerprint", *fp}});
  records.push_back(done_mat);
  auto eval = PlanDerivedStage(plan->resolved_spec, kEvalMaterialized, records,
                               next + 3, options_);
  ASSERT_TRUE(eval.ok()) << eval.status();
  ASSERT_THAT(*eval, SizeIs(2));  // per calib shard
  EXPECT_THAT((*eval)[0].spec.model().path(), ::testing::EndsWith("/pruned"));
  EXPECT_EQ((*eval)[0].spec.model().fingerprint(), *fp);
  EXPECT_NE(*fp, plan->resolved_spec.model().fingerprint());
  EXPECT_EQ((*eval)[0].spec.interventions().interventions_size(), 0);

  // A fingerprint that does not match what is on disk.
  records.back().mutable_result()->mutable_metrics(0)->mutable_labels()->at(
      "fingerprint") = "stale";
  auto stale = PlanDerivedStage(plan->resolved_spec, kEvalMaterialized, records,
                                next + 3, options_);
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(stale.status().message(), HasSubstr("not the stale"));
}

// A plain stage after derived ones is deferred too and planned as at submit:
// the base model, its own job, no head masks.
TEST_F(DerivedStagesTest, PlainStageAfterDerivedOnesIsDeferred) {
  v1::SweepSpec spec = Spec();
  auto* base = spec.add_stages();
  base->set_name("eval-base");
  base->mutable_eval()->mutable_windowing()->set_context_length(16);
  auto plan = PlanSweep(spec, options_);
  ASSERT_TRUE(plan.ok()) << plan.status();
  const int index = spec.stages_size() - 1;
  ASSERT_FALSE(plan->deferred_stages.empty());
  EXPECT_EQ(plan->deferred_stages.back(), index);
  auto tasks = PlanDerivedStage(plan->resolved_spec, index, {}, 5, options_);
  ASSERT_TRUE(tasks.ok()) << tasks.status();
  ASSERT_THAT(*tasks, SizeIs(2));  // per calib shard
  for (const PlannedTask& t : *tasks) {
    EXPECT_EQ(t.spec.kind(), v1::JOB_KIND_EVAL);
    EXPECT_EQ(t.spec.stage(), "eval-base");
    EXPECT_EQ(t.spec.model().fingerprint(),
              plan->resolved_spec.model().fingerprint());
    EXPECT_FALSE(t.spec.has_interventions());
  }
  EXPECT_EQ((*tasks)[0].spec.index(), 5);
}

TEST_F(DerivedStagesTest, DerivationsSayWhyTheyCannotBeMade) {
  auto plan = PlanSweep(Spec(), options_);
  ASSERT_TRUE(plan.ok()) << plan.status();
  // No importance rows.
  auto none = PlanDerivedStage(plan->resolved_spec, kHeal,
                               CaptureRecords(*plan), 5, options_);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(none.status().message(),
              HasSubstr("stages[1].prune_plan: no head_nll_delta rows"));
  // The capture stage lacks layer 3's Grams.
  std::vector<v1::TaskRecord> records = ImportanceRecords(*plan);
  for (auto& r : CaptureRecords(*plan, /*skip_layer=*/3)) {
    records.push_back(std::move(r));
  }
  auto missing =
      PlanDerivedStage(plan->resolved_spec, kHeal, records, 5, options_);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(missing.status().message(),
              HasSubstr("capture stage \"capture\" has no Gram "
                        "\"gram/attn_heads[3]/calib/shard0\""));
  // Materialize before any heal finished.
  auto no_heal = PlanDerivedStage(plan->resolved_spec, kMaterialize,
                                  ImportanceRecords(*plan), 5, options_);
  EXPECT_EQ(no_heal.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(no_heal.status().message(),
              HasSubstr("heal stage \"heal\" has no DONE heal of layer 0"));
  // model_from_stage without a materialized_model row.
  auto no_model = PlanDerivedStage(plan->resolved_spec, kEvalMaterialized,
                                   ImportanceRecords(*plan), 5, options_);
  EXPECT_THAT(no_model.status().message(),
              HasSubstr("stages[5].model_from_stage: stage \"materialize\" "
                        "reported 0 materialized_model rows"));
}

// Seed 002's pipeline: eval base / reinit, retrain (planned at submit), then an
// eval with the retrain stage's trained layer as a replace_layer intervention.
TEST_F(DerivedStagesTest, RetrainedLayerReplacesTheLayerInALaterStage) {
  v1::SweepSpec spec;
  spec.set_name("retrain");
  spec.mutable_model()->set_path("tiny");
  auto* calib = spec.add_datasets();
  calib->set_name("calib");
  calib->set_path("calib.txt");
  spec.mutable_eval()->mutable_windowing()->set_context_length(16);
  auto* retrain = spec.add_stages();
  retrain->set_name("retrain");
  auto* rj = retrain->mutable_retrain();
  rj->set_layer(2);
  rj->set_init_seed(7);
  rj->set_steps(10);
  rj->set_batch_windows(2);
  auto* eval = spec.add_stages();
  eval->set_name("eval-retrained");
  eval->set_replace_layer_from_stage("retrain");
  eval->mutable_eval()->mutable_windowing()->set_context_length(16);
  auto plan = PlanSweep(spec, options_);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_THAT(plan->deferred_stages, ElementsAre(1));
  std::vector<v1::TaskRecord> records;
  for (const PlannedTask& t : plan->tasks) {
    if (t.spec.kind() != v1::JOB_KIND_RETRAIN) continue;
    EXPECT_EQ(t.spec.retrain().lr(), 1e-4);  // the default, filled in
    v1::TaskRecord r = Done(t);
    v1::Artifact* a = r.mutable_result()->add_artifacts();
    a->set_name("retrain/layer2");
    a->set_path(Obj("layer2"));
    a->set_sha256(Sha("layer2"));
    records.push_back(std::move(r));
  }
  ASSERT_THAT(records, SizeIs(1));
  // Before the retrain finished: why it cannot be derived.
  auto early = PlanDerivedStage(plan->resolved_spec, 1, {}, 5, options_);
  EXPECT_EQ(early.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(early.status().message(),
              HasSubstr("stages[1].replace_layer_from_stage: retrain stage "
                        "\"retrain\" has no DONE task"));
  std::vector<v1::TaskRecord> twice = records;
  twice.push_back(records[0]);
  EXPECT_THAT(PlanDerivedStage(plan->resolved_spec, 1, twice, 5, options_)
                  .status()
                  .message(),
              HasSubstr("trained layer 2 in more than one task"));
  auto tasks = PlanDerivedStage(plan->resolved_spec, 1, records, 5, options_);
  ASSERT_TRUE(tasks.ok()) << tasks.status();
  ASSERT_THAT(*tasks, SizeIs(1));
  const v1::TaskSpec& t = (*tasks)[0].spec;
  EXPECT_EQ(t.kind(), v1::JOB_KIND_EVAL);
  ASSERT_EQ(t.interventions().interventions_size(), 1);
  const v1::ReplaceLayer& rl =
      t.interventions().interventions(0).replace_layer();
  EXPECT_EQ(rl.layer(), 2);
  EXPECT_EQ(rl.weights().path(), Obj("layer2"));
  EXPECT_EQ(rl.weights().sha256(), Sha("layer2"));

  // Submit-time errors name the field.
  v1::SweepSpec bad = spec;
  bad.mutable_stages(1)->set_replace_layer_from_stage("nope");
  EXPECT_THAT(PlanSweep(bad, options_).status().message(),
              HasSubstr("stages[1].replace_layer_from_stage: no earlier stage "
                        "is named \"nope\""));
  bad = spec;
  bad.mutable_stages(0)->mutable_retrain()->set_steps(0);
  EXPECT_THAT(PlanSweep(bad, options_).status().message(),
              HasSubstr("retrain.steps"));
  bad = spec;
  auto* other = bad.add_stages();
  other->set_name("eval-2");
  other->set_replace_layer_from_stage("eval-retrained");
  other->mutable_eval();
  EXPECT_THAT(PlanSweep(bad, options_).status().message(),
              HasSubstr("stage \"eval-retrained\" is not a retrain stage"));
}

TEST_F(DerivedStagesTest, SubmitTimeValidationNamesTheField) {
  v1::SweepSpec spec = Spec();
  spec.mutable_stages(kHeal)->mutable_heal()->set_capture_stage("nope");
  auto plan = PlanSweep(spec, options_);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(plan.status().message(),
              HasSubstr("stages[1].heal.capture_stage: no earlier stage is "
                        "named \"nope\""));
  spec = Spec();
  spec.mutable_stages(kHeal)->mutable_prune_plan()->set_count(1);
  EXPECT_THAT(PlanSweep(spec, options_).status().message(),
              HasSubstr("stages[1].prune_plan: set exactly one of fraction "
                        "and count"));
  spec = Spec();
  spec.mutable_stages(kEvalMaterialized)->set_model_from_stage("heal");
  EXPECT_THAT(PlanSweep(spec, options_).status().message(),
              HasSubstr("stage \"heal\" is not a materialize stage"));
  spec = Spec();
  spec.mutable_stages(kCanary)->clear_canary();
  spec.mutable_stages(kCanary)->mutable_probe();
  EXPECT_THAT(PlanSweep(spec, options_).status().message(),
              HasSubstr("stages[4].prune_plan: needs a heal, materialize"));
  spec = Spec();
  spec.mutable_stages(kMaterialize)->mutable_materialize()->clear_out_dir();
  EXPECT_THAT(PlanSweep(spec, options_).status().message(),
              HasSubstr("materialize.out_dir"));
}

}  // namespace
}  // namespace sweepd
