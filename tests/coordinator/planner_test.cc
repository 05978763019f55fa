#include "coordinator/planner.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <functional>
#include <iostream>
#include <set>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/hash.h"
#include "common/model_config.h"
#include "common/model_fingerprint.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace sweepd {
namespace {

namespace v1 = ::sweepd::v1;
using ::sweepd::testing::IsOk;
using ::sweepd::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

// The planner's reading of a config.json (common/model_config.h): both counts
// required.
struct ModelCounts {
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
};

absl::StatusOr<ModelCounts> CountsOf(const absl::StatusOr<HfConfig>& config) {
  if (!config.ok()) return config.status();
  ModelCounts counts;
  absl::StatusOr<int> layers = config->RequiredCount("num_hidden_layers");
  if (!layers.ok()) return layers.status();
  absl::StatusOr<int> heads = config->RequiredCount("num_attention_heads");
  if (!heads.ok()) return heads.status();
  counts.num_hidden_layers = *layers;
  counts.num_attention_heads = *heads;
  return counts;
}

absl::StatusOr<ModelCounts> ParseModelConfig(const std::string& config_json,
                                             const std::string& source) {
  return CountsOf(HfConfig::Parse(config_json, source));
}

absl::StatusOr<ModelCounts> ReadModelInfo(const std::string& dir) {
  return CountsOf(HfConfig::ReadFile(dir + "/config.json"));
}

std::string MakeTempDir() {
  std::string tmpl = ::testing::TempDir() + "/planner_test.XXXXXX";
  char* dir = mkdtemp(tmpl.data());
  EXPECT_NE(dir, nullptr);
  return tmpl;
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  ASSERT_TRUE(out.good()) << path;
}

// A safetensors file: 8-byte little-endian header length, the JSON header, then
// `data`.
std::string Safetensors(const std::string& header, const std::string& data) {
  std::string out;
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return out + header + data;
}

void WriteModel(const std::string& dir, int layers, int heads,
                bool nested = false, const std::string& header = "{}",
                const std::string& data = "") {
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0) << dir;
  const std::string counts =
      absl::StrCat("{\"num_hidden_layers\": ", layers,
                   ", \"num_attention_heads\": ", heads, "}");
  WriteFile(dir + "/config.json",
            nested
                ? absl::StrCat("{\"model_type\": \"gemma4\", \"text_config\": ",
                               counts, "}")
                : counts);
  WriteFile(dir + "/model.safetensors", Safetensors(header, data));
}

class PlannerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = MakeTempDir();
    model_root_ = root_ + "/models";
    data_root_ = root_ + "/data";
    ASSERT_EQ(mkdir(model_root_.c_str(), 0755), 0);
    ASSERT_EQ(mkdir(data_root_.c_str(), 0755), 0);
    WriteModel(model_root_ + "/tiny", /*layers=*/8, /*heads=*/4);
    WriteFile(data_root_ + "/wiki.txt", "the quick brown fox\n");
    WriteFile(data_root_ + "/probe.jsonl", "{\"text\": \"a\"}\n");
  }

  PlannerOptions Options() const {
    PlannerOptions o;
    o.model_root = model_root_;
    o.data_root = data_root_;
    return o;
  }

  v1::SweepSpec EvalSpec() const {
    v1::SweepSpec s;
    s.set_name("eval-sweep");
    s.mutable_model()->set_path("tiny");
    v1::DatasetRef* ds = s.add_datasets();
    ds->set_name("wiki");
    ds->set_path("wiki.txt");
    s.mutable_eval();
    return s;
  }

  v1::SweepSpec SyntheticSpec(int tasks) const {
    v1::SweepSpec s;
    s.set_name("synthetic");
    s.mutable_synthetic()->set_tasks(tasks);
    s.mutable_synthetic()->set_min_ms(1);
    s.mutable_synthetic()->set_max_ms(5);
    return s;
  }

  static v1::LayerAxis* AddLayers(v1::SweepSpec* s, const std::string& op,
                                  const std::string& select) {
    v1::LayerAxis* a = s->mutable_grid()->add_axes()->mutable_layers();
    a->set_op(op);
    a->set_select(select);
    return a;
  }

  static void AddSeeds(v1::SweepSpec* s, std::initializer_list<int64_t> seeds) {
    v1::ValueAxis* a = s->mutable_grid()->add_axes()->mutable_seeds();
    for (int64_t seed : seeds) a->add_values()->set_int_value(seed);
  }

  Plan MustPlan(const v1::SweepSpec& s) const { return MustPlan(s, Options()); }
  Plan MustPlan(const v1::SweepSpec& s, const PlannerOptions& o) const {
    absl::StatusOr<Plan> plan = PlanSweep(s, o);
    EXPECT_TRUE(plan.ok()) << plan.status();
    return plan.ok() ? *std::move(plan) : Plan{};
  }

  std::string root_, model_root_, data_root_;
};

// ---- Expansion
// -----------------------------------------------------------------------------

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

// ---- Keys
// ----------------------------------------------------------------------------------

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

// ---- Resolution and fingerprints
// -------------------------------------------------------------

TEST_F(PlannerTest, ResolvesPathsFillsFingerprintsAndDefaults) {
  Plan plan = MustPlan(EvalSpec());
  const v1::SweepSpec& r = plan.resolved_spec;
  char real_root[PATH_MAX];
  ASSERT_NE(realpath(model_root_.c_str(), real_root), nullptr);
  EXPECT_EQ(r.model().path(), std::string(real_root) + "/tiny");
  EXPECT_EQ(r.datasets(0).fingerprint(), Sha256Hex("the quick brown fox\n"));
  EXPECT_EQ(r.datasets(0).shards(), 1);
  EXPECT_THAT(r.model().fingerprint(), ::testing::MatchesRegex("[0-9a-f]{64}"));
  EXPECT_EQ(r.policy().max_attempts(), 3);
  EXPECT_EQ(r.policy().lease_seconds(), 60);
  EXPECT_EQ(r.policy().retry_backoff_ms(), 1000);
  EXPECT_EQ(r.eval().windowing().context_length(), 512);
  EXPECT_EQ(r.eval().windowing().stride(), 512);
  EXPECT_EQ(r.eval().windowing().bos(), "on");
  EXPECT_EQ(plan.tasks[0].spec.model().fingerprint(), r.model().fingerprint());
  EXPECT_EQ(plan.tasks[0].spec.data().dataset().path(), r.datasets(0).path());
}

// Issue 10, defect 3: the fingerprint covers tensor bytes, so an edited
// checkpoint with its base's layout no longer shares the base's fingerprint
// (this test asserted EXPECT_EQ for m1/m2 before).
TEST_F(PlannerTest, ModelFingerprintCoversHeadersAndTensorData) {
  const std::string w =
      R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})";
  const std::string v =
      R"({"v":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})";
  WriteModel(root_ + "/m1", 8, 4, false, w, "AAAA");
  WriteModel(root_ + "/m2", 8, 4, false, w,
             "BBBB");                                 // same header, other data
  WriteModel(root_ + "/m3", 8, 4, false, v, "AAAA");  // other header
  WriteModel(root_ + "/m4", 8, 4, true, w,
             "AAAA");  // other config.json
  auto f1 = ComputeModelFingerprint(root_ + "/m1");
  ASSERT_TRUE(f1.ok()) << f1.status();
  EXPECT_NE(*f1, *ComputeModelFingerprint(root_ + "/m2"));
  EXPECT_NE(*f1, *ComputeModelFingerprint(root_ + "/m3"));
  EXPECT_NE(*f1, *ComputeModelFingerprint(root_ + "/m4"));
  WriteFile(root_ + "/m1/model.safetensors.index.json", "{\"weight_map\": {}}");
  EXPECT_NE(*f1, *ComputeModelFingerprint(root_ + "/m1"));
}

TEST_F(PlannerTest, ModelInfoReadsNestedTextConfig) {
  WriteModel(model_root_ + "/nested", 60, 32, /*nested=*/true);
  auto info = ReadModelInfo(model_root_ + "/nested");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->num_hidden_layers, 60);
  EXPECT_EQ(info->num_attention_heads, 32);
  v1::SweepSpec s = EvalSpec();
  s.mutable_model()->set_path("nested");
  AddLayers(&s, "skip", "all");
  EXPECT_THAT(MustPlan(s).tasks, SizeIs(60));
}

TEST_F(PlannerTest, ModelInfoErrors) {
  EXPECT_THAT(
      ParseModelConfig("{\"num_hidden_layers\": 0, \"num_attention_heads\": 4}",
                       "c"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("num_hidden_layers")));
  EXPECT_THAT(
      ParseModelConfig("{\"text_config\": {\"num_hidden_layers\": 2}}", "c"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("text_config: missing \"num_attention_heads\"")));
  EXPECT_THAT(ParseModelConfig("not json", "c"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not a JSON object")));
  ASSERT_EQ(mkdir((root_ + "/trunc").c_str(), 0755), 0);
  WriteFile(root_ + "/trunc/config.json", "{}");
  WriteFile(root_ + "/trunc/model.safetensors",
            Safetensors("{}", "").substr(0, 9));
  EXPECT_THAT(ComputeModelFingerprint(root_ + "/trunc"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("model.safetensors")));
  ASSERT_EQ(mkdir((root_ + "/noweights").c_str(), 0755), 0);
  WriteFile(root_ + "/noweights/config.json", "{}");
  EXPECT_THAT(
      ComputeModelFingerprint(root_ + "/noweights"),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("no *.safetensors")));
}

TEST_F(PlannerTest, PathsMustStayInsideTheRoots) {
  const std::string outside = root_ + "/outside-model";
  WriteModel(outside, 8, 4);
  v1::SweepSpec s = EvalSpec();
  s.mutable_model()->set_path("../outside-model");
  EXPECT_THAT(
      PlanSweep(s, Options()),
      StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("model.path")));
  s.mutable_model()->set_path(outside);
  EXPECT_THAT(
      PlanSweep(s, Options()),
      StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("model.path")));
  ASSERT_EQ(symlink(outside.c_str(), (model_root_ + "/link").c_str()), 0);
  s.mutable_model()->set_path("link");
  EXPECT_THAT(PlanSweep(s, Options()),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("outside the model root")));

  v1::SweepSpec d = EvalSpec();
  d.mutable_datasets(0)->set_path("../../etc/passwd");
  EXPECT_THAT(PlanSweep(d, Options()),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("datasets[0].path")));

  v1::SweepSpec missing = EvalSpec();
  missing.mutable_model()->set_path("no-such-model");
  EXPECT_THAT(PlanSweep(missing, Options()),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("model.path: 'no-such-model'")));
  v1::SweepSpec missing_data = EvalSpec();
  missing_data.mutable_datasets(0)->set_path("nope.txt");
  EXPECT_THAT(PlanSweep(missing_data, Options()),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("datasets[0].path: 'nope.txt'")));
}

// Defect 7 (issue 13): the model directory was checked, its files were not.
TEST_F(PlannerTest, ModelFilesSymlinkedOutsideTheRootAreRefused) {
  const std::string outside = root_ + "/outside-files";
  WriteModel(outside, 8, 4);
  WriteFile(outside + "/tokenizer.json", "{}");

  // config.json of a directory inside the root links outside it.
  const std::string config_link = model_root_ + "/config-link";
  ASSERT_EQ(mkdir(config_link.c_str(), 0755), 0);
  WriteFile(config_link + "/model.safetensors", Safetensors("{}", ""));
  ASSERT_EQ(symlink((outside + "/config.json").c_str(),
                    (config_link + "/config.json").c_str()),
            0);
  v1::SweepSpec s = EvalSpec();
  s.mutable_model()->set_path("config-link");
  EXPECT_THAT(PlanSweep(s, Options()),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       AllOf(HasSubstr("model.path"), HasSubstr("config.json"),
                             HasSubstr("outside"))));

  // tokenizer.json links outside it.
  const std::string tokenizer_link = model_root_ + "/tokenizer-link";
  WriteModel(tokenizer_link, 8, 4);
  ASSERT_EQ(symlink((outside + "/tokenizer.json").c_str(),
                    (tokenizer_link + "/tokenizer.json").c_str()),
            0);
  s.mutable_model()->set_path("tokenizer-link");
  EXPECT_THAT(
      PlanSweep(s, Options()),
      StatusIs(absl::StatusCode::kPermissionDenied,
               AllOf(HasSubstr("tokenizer.json"), HasSubstr("outside"))));

  // A weights shard links outside it.
  const std::string shard_link = model_root_ + "/shard-link";
  ASSERT_EQ(mkdir(shard_link.c_str(), 0755), 0);
  WriteFile(shard_link + "/config.json",
            "{\"num_hidden_layers\": 8, \"num_attention_heads\": 4}");
  ASSERT_EQ(symlink((outside + "/model.safetensors").c_str(),
                    (shard_link + "/model.safetensors").c_str()),
            0);
  s.mutable_model()->set_path("shard-link");
  EXPECT_THAT(PlanSweep(s, Options()),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("model.safetensors")));

  // Links that stay inside the root are fine (a Hugging Face cache's
  // snapshots link into its blobs).
  const std::string inside = model_root_ + "/inside-link";
  ASSERT_EQ(mkdir(inside.c_str(), 0755), 0);
  for (const char* name : {"config.json", "model.safetensors"}) {
    ASSERT_EQ(symlink((model_root_ + "/tiny/" + name).c_str(),
                      (inside + "/" + name).c_str()),
              0);
  }
  s.mutable_model()->set_path("inside-link");
  EXPECT_THAT(PlanSweep(s, Options()), IsOk());
}

// ---- Validation
// ----------------------------------------------------------------------------

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
