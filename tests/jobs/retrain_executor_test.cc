// The retrain executor on a random tiny Gemma 4 model (CPU, float32): the
// loss decreases; a run stopped after some steps and resumed by a fresh
// executor from its checkpoint in the artifact store ends with the same bits
// as an uninterrupted run; the trained layer, used through a replace_layer
// intervention in an eval, gives a lower NLL than the re-initialised layer
// (closer to the base model); bad inputs give errors naming the field.
#include "worker/jobs/retrain_executor.h"

#include <cmath>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/jobs/executor_test_env.h"
#include "worker/jobs/lm_executor.h"

namespace sweepd {
namespace {

using ::testing::HasSubstr;

using jobs_test::Metric;
using jobs_test::RunOne;

constexpr int kLayer = 1;
constexpr uint64_t kInitSeed = 11;

class RetrainExecutorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto dir = jobs_test::MakeTinyModelDir("retrain_executor_test");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = new std::string(std::move(*dir));
    std::ofstream(*dir_ + "/corpus.txt")
        << "The river rises in a high valley where snow lingers late.\n\n"
           "Lighthouses were built along the northern coast of the bay.\n\n"
           "Each tower had its own pattern of flashes, two long and one "
           "short, so captains knew where they were at night.\n\n"
           "Bread is made of flour, water, salt and a little yeast.\n\n"
           "Trains leave the station every hour on the hour.\n\n"
           "The museum opens at nine and closes at five.\n";
    store_ = new std::shared_ptr<ArtifactStore>(
        std::move(*ArtifactStore::Open(*dir_ + "/store")));
    auto backend = jobs_test::MakeBackend(*dir_ + "/model");
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = new std::shared_ptr<LmBackend>(std::move(*backend));
  }
  static void TearDownTestSuite() {
    EXPECT_TRUE(RemoveAll(*dir_).ok());
    delete dir_;
    delete store_;
    delete backend_;
  }

  static std::unique_ptr<RetrainExecutor> Exec(
      std::function<bool(int)> after_step = nullptr, bool with_store = true) {
    RetrainExecutorOptions o;
    if (with_store) o.artifacts = *store_;
    o.after_step = std::move(after_step);
    auto e = RetrainExecutor::Create(*backend_, o);
    EXPECT_TRUE(e.ok());
    return std::move(*e);
  }

  static TaskInput Task(const std::string& key, int steps, double lr = 3e-3) {
    TaskInput t;
    t.kind = kRetrainKind;
    t.task_key = key;
    RetrainJobSpec job;
    job.model.path = *dir_ + "/model";
    job.dataset_name = "corpus";
    job.data.path = *dir_ + "/corpus.txt";
    job.windowing.context_length = 12;
    job.windowing.stride = 12;
    job.layer = kLayer;
    job.init_seed = kInitSeed;
    job.steps = steps;
    job.lr = lr;
    job.batch_windows = 2;
    job.checkpoint_every = 3;
    job.seed = 4;
    t.job = std::move(job);
    return t;
  }

  static inline std::string* dir_ = nullptr;
  static inline std::shared_ptr<ArtifactStore>* store_ = nullptr;
  static inline std::shared_ptr<LmBackend>* backend_ = nullptr;
};

TEST_F(RetrainExecutorTest, LossDecreasesAndTheArtifactHoldsTheLayer) {
  auto out = RunOne(Exec().get(), Task("decrease", 30));
  ASSERT_TRUE(out.ok()) << out.status();
  const std::map<std::string, std::string> layer = {{"layer", "1"}};
  const double initial = Metric(*out, "retrain_initial_loss", layer);
  const double final_loss = Metric(*out, "retrain_final_loss", layer);
  EXPECT_LT(final_loss, 0.5 * initial);
  EXPECT_EQ(Metric(*out, "retrain_loss", {{"layer", "1"}, {"step", "1"}}),
            initial);
  EXPECT_LT(Metric(*out, "retrain_loss", {{"layer", "1"}, {"step", "30"}}),
            initial);
  EXPECT_EQ(Metric(*out, "retrain_steps", layer), 30);
  EXPECT_EQ(Metric(*out, "retrain_tokens", layer), 30 * 2 * 12);
  EXPECT_GE(Metric(*out, "retrain_seconds", layer), 0);
  ASSERT_EQ(out->artifacts.size(), 1u);
  EXPECT_EQ(out->artifacts[0].name, "retrain/layer1");
  auto path = (*store_)->Resolve(out->artifacts[0].path, "");
  ASSERT_TRUE(path.ok()) << path.status();
  auto f = SafetensorsFile::Open(*path);
  ASSERT_TRUE(f.ok()) << f.status();
  for (const char* name :
       {"self_attn.q_proj.weight", "self_attn.o_proj.weight",
        "mlp.down_proj.weight", "input_layernorm.weight", "layer_scalar"}) {
    const TensorView* t = (*f)->Find(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->dtype, StDtype::kF32);
  }
  // The finished task leaves no checkpoint behind.
  auto ckpt = (*store_)->GetCheckpoint("decrease/retrain");
  ASSERT_TRUE(ckpt.ok());
  EXPECT_FALSE(ckpt->has_value());
}

TEST_F(RetrainExecutorTest, ResumeAfterAKillIsBitIdentical) {
  auto full = RunOne(Exec().get(), Task("full", 8));
  ASSERT_TRUE(full.ok()) << full.status();

  // The first attempt dies after 5 steps; its last checkpoint is step 3.
  auto killed =
      RunOne(Exec([](int done) { return done < 5; }).get(), Task("resumed", 8));
  ASSERT_FALSE(killed.ok());
  EXPECT_EQ(killed.status().code(), absl::StatusCode::kAborted);
  auto ckpt = (*store_)->GetCheckpoint("resumed/retrain");
  ASSERT_TRUE(ckpt.ok() && ckpt->has_value());
  auto cpath = (*store_)->Resolve((*ckpt)->path, (*ckpt)->sha256);
  ASSERT_TRUE(cpath.ok());
  auto cf = SafetensorsFile::Open(*cpath);
  ASSERT_TRUE(cf.ok()) << cf.status();
  EXPECT_EQ((*cf)->metadata().at("next_step"), "3");
  EXPECT_EQ((*cf)->metadata().at("adam_step"), "3");
  EXPECT_EQ((*cf)->metadata().at("data_position"), "6");
  EXPECT_NE((*cf)->Find("exp_avg/self_attn.q_proj.weight"), nullptr);
  EXPECT_NE((*cf)->Find("exp_avg_sq/mlp.up_proj.weight"), nullptr);
  EXPECT_NE((*cf)->Find("weights/layer_scalar"), nullptr);

  // A fresh executor (a re-leased attempt) resumes at step 4.
  auto resumed = RunOne(Exec().get(), Task("resumed", 8));
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  const std::map<std::string, std::string> layer = {{"layer", "1"}};
  EXPECT_EQ(Metric(*resumed, "retrain_resumed_at", layer), 3);
  EXPECT_EQ(Metric(*full, "retrain_resumed_at", layer), 0);
  ASSERT_EQ(resumed->artifacts.size(), 1u);
  EXPECT_EQ(resumed->artifacts[0].sha256, full->artifacts[0].sha256);
  for (int s = 1; s <= 8; ++s) {
    const std::map<std::string, std::string> at = {{"layer", "1"},
                                                   {"step", absl::StrCat(s)}};
    EXPECT_EQ(Metric(*resumed, "retrain_loss", at),
              Metric(*full, "retrain_loss", at))
        << s;
  }
}

TEST_F(RetrainExecutorTest, TrainedLayerBeatsTheReinitInAnEval) {
  auto trained = RunOne(Exec().get(), Task("for-eval", 60, 5e-3));
  ASSERT_TRUE(trained.ok()) << trained.status();
  const ArtifactRow& art = trained->artifacts.at(0);

  LmExecutorOptions eo;
  eo.artifacts = *store_;
  auto eval = LmExecutor::Create("eval", *backend_, eo);
  ASSERT_TRUE(eval.ok()) << eval.status();
  auto task = [&](const std::string& key) {
    TaskInput t;
    t.kind = kEvalKind;
    t.task_key = key;
    LmJobSpec job;
    job.model.path = *dir_ + "/model";
    job.dataset_name = "corpus";
    job.data.path = *dir_ + "/corpus.txt";
    job.windowing.context_length = 12;
    job.windowing.stride = 12;
    t.job = std::move(job);
    return t;
  };
  TaskInput base = task("base");
  TaskInput reinit = task("reinit");
  std::get<LmJobSpec>(reinit.job)
      .interventions.push_back(engine::Intervention::Reinit(kLayer, kInitSeed));
  std::get<LmJobSpec>(reinit.job).intervention_fields.push_back("reinit");
  TaskInput replaced = task("replaced");
  LmJobSpec& rj = std::get<LmJobSpec>(replaced.job);
  rj.interventions.push_back(engine::Intervention::ReplaceLayer(kLayer, ""));
  rj.intervention_fields.push_back("replace_layer");
  rj.intervention_artifacts.push_back({0, art.path, art.sha256, ""});
  const std::map<std::string, std::string> all = {{"category", "all"}};
  std::map<std::string, double> nll;
  for (TaskInput* t : {&base, &reinit, &replaced}) {
    auto out = RunOne(eval->get(), *t);
    ASSERT_TRUE(out.ok()) << t->task_key << ": " << out.status();
    nll[t->task_key] = Metric(*out, "nll_sum", all);
  }
  EXPECT_LT(nll["replaced"], nll["reinit"]);
  EXPECT_LT(std::abs(nll["replaced"] - nll["base"]),
            std::abs(nll["reinit"] - nll["base"]));
}

TEST_F(RetrainExecutorTest, BadInputsNameTheField) {
  auto expect = [](absl::StatusOr<TaskOutput> out, absl::StatusCode code,
                   const std::string& text) {
    ASSERT_FALSE(out.ok());
    EXPECT_EQ(out.status().code(), code) << out.status();
    EXPECT_THAT(std::string(out.status().message()), HasSubstr(text));
  };
  expect(RunOne(Exec(nullptr, /*with_store=*/false).get(), Task("e0", 2)),
         absl::StatusCode::kFailedPrecondition, "--artifact-root");
  TaskInput t = Task("e1", 2);
  std::get<RetrainJobSpec>(t.job).layer = 99;
  expect(RunOne(Exec().get(), t), absl::StatusCode::kInvalidArgument,
         "retrain.layer");
  t = Task("e2", 0);
  expect(RunOne(Exec().get(), t), absl::StatusCode::kInvalidArgument,
         "retrain.steps");
  t = Task("e3", 2);
  std::get<RetrainJobSpec>(t.job).beta2 = 1.0;
  expect(RunOne(Exec().get(), t), absl::StatusCode::kInvalidArgument,
         "retrain.beta");
  t = Task("e4", 2);
  std::get<RetrainJobSpec>(t.job).batch_windows = 0;
  expect(RunOne(Exec().get(), t), absl::StatusCode::kInvalidArgument,
         "retrain.batch_windows");
  t = Task("e5", 2);
  t.kind = kEvalKind;
  expect(RunOne(Exec().get(), t), absl::StatusCode::kInvalidArgument,
         "runs kind retrain");
}

TEST_F(RetrainExecutorTest, ACheckpointOfOtherInputsIsIgnored) {
  // A checkpoint written for lr 3e-3 does not resume a task with lr 1e-3.
  auto killed =
      RunOne(Exec([](int done) { return done < 3; }).get(), Task("other", 6));
  ASSERT_FALSE(killed.ok());
  auto changed = RunOne(Exec().get(), Task("other", 6, 1e-3));
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_EQ(Metric(*changed, "retrain_resumed_at", {{"layer", "1"}}), 0);
}

}  // namespace
}  // namespace sweepd
