#include "worker/agent/conversion.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sweepd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ConversionTest, JobKindNamesRoundTrip) {
  EXPECT_EQ(JobKindName(sweepd::v1::JOB_KIND_SYNTHETIC), "synthetic");
  EXPECT_EQ(JobKindName(sweepd::v1::JOB_KIND_HEAD_IMPORTANCE),
            "head_importance");
  EXPECT_EQ(JobKindName(sweepd::v1::JOB_KIND_UNSPECIFIED), "");
  auto kind = JobKindFromName("head_importance");
  ASSERT_TRUE(kind.ok());
  EXPECT_EQ(*kind, sweepd::v1::JOB_KIND_HEAD_IMPORTANCE);
  auto bad = JobKindFromName("evall");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("'evall'"));
  EXPECT_FALSE(JobKindFromName("unspecified").ok());
}

TEST(ConversionTest, KindFallsBackToTheJobOneof) {
  sweepd::v1::TaskSpec spec;
  EXPECT_EQ(TaskKindOf(spec), "");
  spec.mutable_synthetic()->set_tasks(3);
  EXPECT_EQ(TaskKindOf(spec), "synthetic");
  spec.set_kind(sweepd::v1::JOB_KIND_EVAL);  // an explicit kind wins
  EXPECT_EQ(TaskKindOf(spec), "eval");
}

TEST(ConversionTest, SyntheticTaskInputIsTyped) {
  sweepd::v1::TaskAssignment a;
  a.set_task_key("tk1");
  a.set_sweep_id("sw-1");
  a.set_group_key("gk1");
  a.set_attempt(2);
  a.set_fencing_token(99);
  sweepd::v1::TaskSpec* spec = a.mutable_spec();
  spec->set_kind(sweepd::v1::JOB_KIND_SYNTHETIC);
  spec->set_index(7);
  spec->mutable_synthetic()->set_min_ms(3);
  spec->mutable_synthetic()->set_max_ms(9);
  spec->mutable_synthetic()->set_permanent_failure_rate(0.25);
  auto input = ToTaskInput(a);
  ASSERT_TRUE(input.ok()) << input.status();
  EXPECT_EQ(input->task_key, "tk1");
  EXPECT_EQ(input->sweep_id, "sw-1");
  EXPECT_EQ(input->group_key, "gk1");
  EXPECT_EQ(input->attempt, 2);
  EXPECT_EQ(input->kind, "synthetic");
  const auto* job = std::get_if<SyntheticJobSpec>(&input->job);
  ASSERT_NE(job, nullptr);
  EXPECT_EQ(job->min_ms, 3);
  EXPECT_EQ(job->max_ms, 9);
  EXPECT_DOUBLE_EQ(job->permanent_failure_rate, 0.25);
  EXPECT_DOUBLE_EQ(job->failure_rate, 0.0);  // absent fields: proto defaults
  EXPECT_EQ(input->index, 7);
}

// An eval task as the planner writes it: explicit layer lists, base
// interventions, windowing, a shard.
sweepd::v1::TaskAssignment EvalAssignment() {
  sweepd::v1::TaskAssignment a;
  a.set_task_key("tk-eval");
  sweepd::v1::TaskSpec* spec = a.mutable_spec();
  spec->set_kind(sweepd::v1::JOB_KIND_EVAL);
  spec->mutable_model()->set_path("/m");
  spec->mutable_model()->set_dtype("float32");
  sweepd::v1::DataShard* data = spec->mutable_data();
  data->mutable_dataset()->set_name("d");
  data->mutable_dataset()->set_path("/data/x.txt");
  data->mutable_dataset()->set_shards(4);
  data->set_shard_index(2);
  data->set_num_shards(4);
  sweepd::v1::EvalJob* eval = spec->mutable_eval();
  eval->mutable_windowing()->set_context_length(32);
  eval->mutable_windowing()->set_stride(16);
  eval->mutable_base_interventions()
      ->add_interventions()
      ->mutable_zero()
      ->set_layers("0");
  auto* ivs = spec->mutable_interventions();
  ivs->add_interventions()->mutable_skip()->set_layers("2,4-5");
  auto* reinit = ivs->add_interventions()->mutable_reinit();
  reinit->set_layers("7");
  reinit->set_seed(18446744073709551615ull);
  auto* mask = ivs->add_interventions()->mutable_mask_heads();
  mask->set_layer(3);
  mask->add_heads(0);
  mask->add_heads(2);
  (*spec->mutable_params())["context_length"].set_int_value(32);
  return a;
}

TEST(ConversionTest, EvalTaskBecomesEngineInterventions) {
  auto input = ToTaskInput(EvalAssignment());
  ASSERT_TRUE(input.ok()) << input.status();
  const auto* job = std::get_if<LmJobSpec>(&input->job);
  ASSERT_NE(job, nullptr);
  EXPECT_EQ(job->model.path, "/m");
  EXPECT_EQ(job->model.dtype, "float32");
  EXPECT_EQ(job->dataset_name, "d");
  EXPECT_EQ(job->data.path, "/data/x.txt");
  EXPECT_EQ(job->data.shard_index, 2);
  EXPECT_EQ(job->data.num_shards, 4);
  EXPECT_EQ(job->data.split, TextSplit::kParagraph);
  EXPECT_EQ(job->windowing.context_length, 32);
  EXPECT_EQ(job->windowing.stride, 16);
  EXPECT_EQ(input->params.at("context_length"), "32");
  const std::vector<engine::Intervention>& ivs = job->interventions;
  ASSERT_EQ(ivs.size(), 6u);
  using K = engine::Intervention::Kind;
  EXPECT_EQ(ivs[0].kind, K::kZeroLayer);  // base interventions first
  EXPECT_EQ(ivs[0].layer, 0);
  EXPECT_EQ(ivs[1].kind, K::kSkipLayer);
  EXPECT_EQ(ivs[1].layer, 2);
  EXPECT_EQ(ivs[3].layer, 5);
  EXPECT_EQ(ivs[4].kind, K::kReinitLayer);
  EXPECT_EQ(ivs[4].seed, 18446744073709551615ull);
  EXPECT_EQ(ivs[5].kind, K::kMaskHeads);
  EXPECT_EQ(ivs[5].layer, 3);
  EXPECT_THAT(ivs[5].heads, ElementsAre(0, 2));
  EXPECT_EQ(engine::FirstTouchedLayer(ivs, 8), 0);
}

TEST(ConversionTest, SteerAndReplaceLayerKeepTheirArtifacts) {
  auto a = EvalAssignment();
  auto* ivs = a.mutable_spec()->mutable_interventions();
  const std::string object = "objects/ab/ab" + std::string(62, '0');
  auto* st = ivs->add_interventions()->mutable_steer();
  st->set_layer(4);
  st->set_mode("replace");
  st->add_vector(1.5f);
  st->add_vector(-2.0f);
  st->set_scale(0.25);
  st->add_positions(-1);
  st->add_positions(3);
  auto* sa = ivs->add_interventions()->mutable_steer();
  sa->set_layer(1);
  sa->mutable_vector_artifact()->set_path(object);
  sa->mutable_vector_artifact()->set_tensor("direction");
  auto* rl = ivs->add_interventions()->mutable_replace_layer();
  rl->set_layer(6);
  rl->mutable_weights()->set_path(object);
  rl->mutable_weights()->set_sha256("ab" + std::string(62, '0'));
  auto input = ToTaskInput(a);
  ASSERT_TRUE(input.ok()) << input.status();
  const auto* job = std::get_if<LmJobSpec>(&input->job);
  ASSERT_NE(job, nullptr);
  const std::vector<engine::Intervention>& out = job->interventions;
  ASSERT_EQ(out.size(), 9u);
  using K = engine::Intervention::Kind;
  using M = engine::Intervention::SteerMode;
  EXPECT_EQ(out[6].kind, K::kSteer);
  EXPECT_EQ(out[6].layer, 4);
  EXPECT_EQ(out[6].steer_mode, M::kReplace);
  EXPECT_THAT(out[6].vector, ElementsAre(1.5f, -2.0f));
  EXPECT_EQ(out[6].scale, 0.25);
  EXPECT_THAT(out[6].positions, ElementsAre(-1, 3));
  EXPECT_EQ(out[7].steer_mode, M::kAdd);  // the default
  EXPECT_EQ(out[7].scale, 1.0);
  EXPECT_TRUE(out[7].vector.empty());
  EXPECT_EQ(out[8].kind, K::kReplaceLayer);
  EXPECT_EQ(out[8].layer, 6);
  ASSERT_EQ(job->intervention_artifacts.size(), 2u);
  EXPECT_EQ(job->intervention_artifacts[0].intervention, 7u);
  EXPECT_EQ(job->intervention_artifacts[0].path, object);
  EXPECT_EQ(job->intervention_artifacts[0].tensor, "direction");
  EXPECT_EQ(job->intervention_artifacts[1].intervention, 8u);
  EXPECT_EQ(job->intervention_artifacts[1].sha256, "ab" + std::string(62, '0'));
  EXPECT_EQ(job->intervention_fields[8],
            "interventions.interventions[5].replace_layer");

  auto bad_mode = a;
  bad_mode.mutable_spec()
      ->mutable_interventions()
      ->mutable_interventions(3)
      ->mutable_steer()
      ->set_mode("mul");
  EXPECT_THAT(std::string(ToTaskInput(bad_mode).status().message()),
              HasSubstr("interventions.interventions[3].steer.mode"));
  auto both = a;
  *both.mutable_spec()
       ->mutable_interventions()
       ->mutable_interventions(3)
       ->mutable_steer()
       ->mutable_vector_artifact() = sa->vector_artifact();
  EXPECT_THAT(std::string(ToTaskInput(both).status().message()),
              HasSubstr("exactly one of vector and vector_artifact"));
  auto bad_path = a;
  bad_path.mutable_spec()
      ->mutable_interventions()
      ->mutable_interventions(5)
      ->mutable_replace_layer()
      ->mutable_weights()
      ->set_path("../w.safetensors");
  EXPECT_THAT(
      std::string(ToTaskInput(bad_path).status().message()),
      HasSubstr("interventions.interventions[5].replace_layer.weights.path"));
}

TEST(ConversionTest, EvalConversionErrorsNameTheField) {
  auto all = EvalAssignment();
  all.mutable_spec()
      ->mutable_interventions()
      ->mutable_interventions(1)
      ->mutable_reinit()
      ->set_layers("all");  // the planner writes explicit lists only
  auto a = ToTaskInput(all);
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(a.status().message()),
              HasSubstr("interventions.interventions[1].reinit.layers"));
  EXPECT_THAT(std::string(a.status().message()), HasSubstr("tk-eval"));

  auto no_heads = EvalAssignment();
  no_heads.mutable_spec()
      ->mutable_interventions()
      ->mutable_interventions(2)
      ->mutable_mask_heads()
      ->clear_heads();
  EXPECT_THAT(std::string(ToTaskInput(no_heads).status().message()),
              HasSubstr("interventions.interventions[2].mask_heads.heads"));

  auto no_path = EvalAssignment();
  no_path.mutable_spec()->mutable_data()->mutable_dataset()->clear_path();
  auto b = ToTaskInput(no_path);
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(b.status().message()),
              HasSubstr("data.dataset.path"));

  auto bad_shard = EvalAssignment();
  bad_shard.mutable_spec()->mutable_data()->set_shard_index(4);
  EXPECT_THAT(std::string(ToTaskInput(bad_shard).status().message()),
              HasSubstr("data.shard_index"));

  auto bad_split = EvalAssignment();
  bad_split.mutable_spec()->mutable_data()->mutable_dataset()->set_split(
      "sentence");
  EXPECT_THAT(std::string(ToTaskInput(bad_split).status().message()),
              HasSubstr("data.dataset.split"));
}

TEST(ConversionTest, ProbeIgnoresBaseInterventionsAndChecksWindowing) {
  auto probe = EvalAssignment();
  sweepd::v1::TaskSpec* spec = probe.mutable_spec();
  spec->set_kind(sweepd::v1::JOB_KIND_PROBE);
  spec->mutable_probe()->mutable_windowing()->set_bos("sometimes");
  auto d = ToTaskInput(probe);
  EXPECT_THAT(std::string(d.status().message()),
              HasSubstr("probe.windowing.bos"));
  spec->mutable_probe()->mutable_windowing()->set_bos("off");
  auto e = ToTaskInput(probe);
  ASSERT_TRUE(e.ok()) << e.status();
  const auto* job = std::get_if<LmJobSpec>(&e->job);
  ASSERT_NE(job, nullptr);
  EXPECT_EQ(job->interventions.size(), 5u);
  EXPECT_EQ(job->windowing.bos, BosPolicy::kOff);
}

TEST(ConversionTest, CaptureAndHealTasksAreTyped) {
  sweepd::v1::TaskAssignment a = EvalAssignment();
  sweepd::v1::TaskSpec* spec = a.mutable_spec();
  spec->set_kind(sweepd::v1::JOB_KIND_CAPTURE);
  spec->clear_interventions();
  sweepd::v1::CaptureJob* c = spec->mutable_capture();
  c->mutable_windowing()->set_context_length(64);
  c->add_points("attn_heads[3]");
  c->add_points("hidden_states[4]");
  c->set_gram(true);
  c->add_gram_targets("attn_out[3]");
  c->add_gram_targets("");
  c->set_dtype("float32");
  c->mutable_positions()->set_mode("sample");
  c->mutable_positions()->set_k(5);
  c->mutable_positions()->set_min_position(50);
  c->mutable_positions()->set_seed(42);
  auto input = ToTaskInput(a);
  ASSERT_TRUE(input.ok()) << input.status();
  const auto* job = std::get_if<CaptureJobSpec>(&input->job);
  ASSERT_NE(job, nullptr);
  EXPECT_EQ(job->data.shard_index, 2);
  EXPECT_EQ(job->windowing.context_length, 64);
  EXPECT_THAT(job->points, ElementsAre("attn_heads[3]", "hidden_states[4]"));
  EXPECT_THAT(job->gram_targets, ElementsAre("attn_out[3]", ""));
  EXPECT_TRUE(job->gram);
  EXPECT_FALSE(job->raw);
  EXPECT_EQ(job->dtype, "float32");
  EXPECT_EQ(job->positions.mode, CapturePositionsSpec::Mode::kSample);
  EXPECT_EQ(job->positions.k, 5);
  EXPECT_EQ(job->positions.min_position, 50);
  EXPECT_EQ(job->positions.seed, 42u);
  c->mutable_positions()->set_mode("middle");
  EXPECT_THAT(std::string(ToTaskInput(a).status().message()),
              HasSubstr("capture.positions.mode"));

  sweepd::v1::TaskAssignment h;
  h.set_task_key("tk-heal");
  sweepd::v1::TaskSpec* hs = h.mutable_spec();
  hs->set_kind(sweepd::v1::JOB_KIND_HEAL);
  hs->mutable_model()->set_path("/m");
  sweepd::v1::HealJob* heal = hs->mutable_heal();
  heal->set_layer(3);
  heal->add_heads_removed(1);
  heal->set_ridge_rel(0.01);
  heal->add_grams()->set_path("objects/ab/ab12");
  heal->mutable_grams(0)->set_sha256("ab12");
  heal->add_heldout_grams()->set_path("objects/cd/cd34");
  auto hin = ToTaskInput(h);
  ASSERT_TRUE(hin.ok()) << hin.status();
  const auto* hj = std::get_if<HealJobSpec>(&hin->job);
  ASSERT_NE(hj, nullptr);
  EXPECT_EQ(hj->layer, 3);
  EXPECT_THAT(hj->heads_removed, ElementsAre(1));
  EXPECT_DOUBLE_EQ(hj->ridge_rel, 0.01);
  ASSERT_EQ(hj->grams.size(), 1u);
  EXPECT_EQ(hj->grams[0].path, "objects/ab/ab12");
  EXPECT_EQ(hj->grams[0].sha256, "ab12");
  ASSERT_EQ(hj->heldout_grams.size(), 1u);
  heal->clear_grams();
  EXPECT_THAT(std::string(ToTaskInput(h).status().message()),
              HasSubstr("heal.grams"));
}

TEST(ConversionTest, RetrainTaskIsTyped) {
  auto a = EvalAssignment();
  sweepd::v1::TaskSpec* spec = a.mutable_spec();
  spec->set_kind(sweepd::v1::JOB_KIND_RETRAIN);
  spec->clear_interventions();
  sweepd::v1::RetrainJob* r = spec->mutable_retrain();
  r->mutable_windowing()->set_context_length(64);
  r->set_layer(3);
  r->set_init_seed(7);
  r->set_steps(100);
  r->set_batch_windows(4);
  r->set_lr(0.003);
  r->set_beta2(0.99);
  r->set_seed(5);
  auto in = ToTaskInput(a);
  ASSERT_TRUE(in.ok()) << in.status();
  EXPECT_EQ(in->kind, "retrain");
  const auto* job = std::get_if<RetrainJobSpec>(&in->job);
  ASSERT_NE(job, nullptr);
  EXPECT_EQ(job->layer, 3);
  EXPECT_EQ(job->init_seed, 7u);
  EXPECT_EQ(job->steps, 100);
  EXPECT_EQ(job->batch_windows, 4);
  EXPECT_DOUBLE_EQ(job->lr, 0.003);
  EXPECT_DOUBLE_EQ(job->beta1, 0.9);  // 0 = the default
  EXPECT_DOUBLE_EQ(job->beta2, 0.99);
  EXPECT_EQ(job->checkpoint_every, 50);
  EXPECT_EQ(job->seed, 5u);
  EXPECT_EQ(job->windowing.context_length, 64);
  EXPECT_EQ(job->data.shard_index, 2);
  r->set_beta1(1.5);
  EXPECT_THAT(std::string(ToTaskInput(a).status().message()),
              HasSubstr("retrain.beta1"));
  r->set_beta1(0);
  r->set_steps(0);
  EXPECT_THAT(std::string(ToTaskInput(a).status().message()),
              HasSubstr("retrain.steps"));
}

TEST(ConversionTest, HeadImportanceTaskIsTyped) {
  auto a = EvalAssignment();
  sweepd::v1::TaskSpec* spec = a.mutable_spec();
  spec->set_kind(sweepd::v1::JOB_KIND_HEAD_IMPORTANCE);
  spec->clear_interventions();
  spec->mutable_head_importance()->set_layers("1,3");
  spec->mutable_head_importance()->set_heads_per_forward(8);
  spec->mutable_head_importance()->mutable_windowing()->set_context_length(64);
  auto input = ToTaskInput(a);
  ASSERT_TRUE(input.ok()) << input.status();
  EXPECT_EQ(input->kind, "head_importance");
  const auto* job = std::get_if<HeadImportanceJobSpec>(&input->job);
  ASSERT_NE(job, nullptr);
  EXPECT_EQ(job->model.path, "/m");
  EXPECT_EQ(job->dataset_name, "d");
  EXPECT_EQ(job->data.shard_index, 2);
  EXPECT_EQ(job->data.num_shards, 4);
  EXPECT_THAT(job->layers, ElementsAre(1, 3));
  EXPECT_EQ(job->heads_per_forward, 8);
  EXPECT_EQ(job->windowing.context_length, 64);

  spec->mutable_head_importance()->set_heads_per_forward(-1);
  EXPECT_THAT(std::string(ToTaskInput(a).status().message()),
              HasSubstr("head_importance.heads_per_forward"));
  spec->mutable_head_importance()->set_heads_per_forward(0);
  spec->mutable_head_importance()->set_layers("all");
  EXPECT_THAT(std::string(ToTaskInput(a).status().message()),
              HasSubstr("head_importance.layers"));
}

TEST(ConversionTest, MaterializeTaskIsTyped) {
  sweepd::v1::TaskAssignment a;
  a.set_task_key("tk-m");
  sweepd::v1::TaskSpec* spec = a.mutable_spec();
  spec->set_kind(sweepd::v1::JOB_KIND_MATERIALIZE);
  spec->mutable_model()->set_path("/models/base");
  spec->mutable_model()->set_fingerprint("fp");
  auto* m = spec->mutable_materialize();
  m->set_out_dir("pruned/he1");
  auto* p = m->add_pruned();
  p->set_layer(3);
  p->add_heads(1);
  p->add_heads(5);
  auto* h = m->add_heals();
  h->set_layer(3);
  h->mutable_artifact()->set_path("objects/ab/abc");
  h->mutable_artifact()->set_sha256("abc");
  m->set_layers("0-3");
  auto input = ToTaskInput(a);
  ASSERT_TRUE(input.ok()) << input.status();
  EXPECT_EQ(input->kind, "materialize");
  const auto* job = std::get_if<MaterializeJobSpec>(&input->job);
  ASSERT_NE(job, nullptr);
  EXPECT_EQ(job->model.path, "/models/base");
  EXPECT_EQ(job->model.fingerprint, "fp");
  EXPECT_EQ(job->out_dir, "pruned/he1");
  ASSERT_EQ(job->pruned.size(), 1u);
  EXPECT_EQ(job->pruned[0].layer, 3);
  EXPECT_THAT(job->pruned[0].heads, ElementsAre(1, 5));
  ASSERT_EQ(job->heals.size(), 1u);
  EXPECT_EQ(job->heals[0].path, "objects/ab/abc");
  EXPECT_EQ(job->heals[0].sha256, "abc");
  EXPECT_TRUE(job->has_layers);
  EXPECT_THAT(job->layers, ElementsAre(0, 1, 2, 3));

  m->mutable_heals(0)->mutable_artifact()->clear_path();
  EXPECT_THAT(std::string(ToTaskInput(a).status().message()),
              HasSubstr("materialize.heals[0].artifact.path: required"));
}

TEST(ConversionTest, EmptyTaskKeyIsRejected) {
  sweepd::v1::TaskAssignment a;
  auto input = ToTaskInput(a);
  EXPECT_EQ(input.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(input.status().message()), HasSubstr("task_key"));
}

TEST(ConversionTest, OutputAndFailure) {
  TaskOutput out;
  out.metrics.push_back(
      MetricRow{"nll", 2.5, {{"layer", "3"}, {"category", "code"}}});
  out.artifacts.push_back(
      ArtifactRow{"acts", "/store/a.safetensors", 1234, "abcd"});
  out.wall_seconds = 1.5;
  out.determinism.dtype = "bfloat16";
  out.determinism.device_kind = "NVIDIA H100 80GB HBM3";
  out.determinism.tensor_parallel = 2;
  out.determinism.gemm_tuning = "autotune";
  out.determinism.cudnn_version = "9.10.2";
  sweepd::v1::TaskResult r = ToTaskResult(out);
  EXPECT_EQ(r.determinism().dtype(), "bfloat16");
  EXPECT_EQ(r.determinism().device_kind(), "NVIDIA H100 80GB HBM3");
  EXPECT_EQ(r.determinism().tensor_parallel(), 2);
  EXPECT_EQ(r.determinism().gemm_tuning(), "autotune");
  EXPECT_EQ(r.determinism().cudnn_version(), "9.10.2");
  ASSERT_EQ(r.metrics_size(), 1);
  EXPECT_EQ(r.metrics(0).name(), "nll");
  EXPECT_DOUBLE_EQ(r.metrics(0).value(), 2.5);
  EXPECT_EQ(r.metrics(0).labels().at("layer"), "3");
  EXPECT_EQ(r.metrics(0).labels().at("category"), "code");
  ASSERT_EQ(r.artifacts_size(), 1);
  EXPECT_EQ(r.artifacts(0).path(), "/store/a.safetensors");
  EXPECT_EQ(r.artifacts(0).bytes(), 1234);
  EXPECT_EQ(r.artifacts(0).sha256(), "abcd");
  EXPECT_DOUBLE_EQ(r.wall_seconds(), 1.5);

  sweepd::v1::TaskFailure permanent =
      ToTaskFailure(absl::InvalidArgumentError("bad layer"));
  EXPECT_FALSE(permanent.retryable());
  EXPECT_THAT(permanent.message(), HasSubstr("INVALID_ARGUMENT"));
  EXPECT_THAT(permanent.message(), HasSubstr("bad layer"));
  sweepd::v1::TaskFailure transient =
      ToTaskFailure(absl::UnavailableError("oom"));
  EXPECT_TRUE(transient.retryable());
}

}  // namespace
}  // namespace sweepd
