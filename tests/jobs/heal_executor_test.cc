// The heal executor end to end on a random tiny Gemma 4 model: Grams of
// attn_heads[L] from the capture executor (two calibration shards and a
// held-out dataset), the healed o_proj artifact (full shape, removed columns
// zero), its metrics, a lower residual than plain masking, shard-order
// invariance and determinism, and errors. The solve itself is checked against
// numpy in tests/calib/ridge_test.cc.
#include "worker/jobs/heal_executor.h"

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
#include "worker/calib/gram_file.h"
#include "worker/calib/ridge.h"
#include "worker/jobs/capture_executor.h"

namespace sweepd {
namespace {

using ::testing::HasSubstr;

using jobs_test::Metric;
using jobs_test::RunOne;

class HealExecutorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto dir = jobs_test::MakeTinyModelDir("heal_executor_test");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = new std::string(std::move(*dir));
    std::ofstream(*dir_ + "/calib.txt")
        << "The river rises in a high valley where snow lingers late.\n\n"
           "Lighthouses were built along the northern coast of the bay.\n\n"
           "Each tower had its own pattern of flashes, two long and one "
           "short, so captains knew where they were at night.\n\n"
           "Bread is made of flour, water, salt and a little yeast.\n";
    std::ofstream(*dir_ + "/heldout.txt")
        << "Trains leave the station every hour on the hour.\n\n"
           "The museum opens at nine and closes at five.\n";
    store_ = new std::shared_ptr<ArtifactStore>(
        std::move(*ArtifactStore::Open(*dir_ + "/store")));
    auto backend = jobs_test::MakeBackend(*dir_ + "/model");
    ASSERT_TRUE(backend.ok()) << backend.status();
    CaptureExecutorOptions co;
    co.artifacts = *store_;
    auto capture = CaptureExecutor::Create(*backend, co);
    ASSERT_TRUE(capture.ok());
    grams_ = new std::vector<ArtifactRefSpec>();
    heldout_ = new std::vector<ArtifactRefSpec>();
    auto capture_shard = [&](const std::string& file, const std::string& name,
                             int shard, int shards, const std::string& point,
                             std::vector<ArtifactRefSpec>* into) {
      TaskInput t;
      t.kind = kCaptureKind;
      t.task_key = "capture";
      CaptureJobSpec job;
      job.model.path = *dir_ + "/model";
      job.dataset_name = name;
      job.data.path = *dir_ + "/" + file;
      job.data.shard_index = shard;
      job.data.num_shards = shards;
      job.windowing.context_length = 16;
      job.windowing.stride = 16;
      job.points = {point};
      job.raw = false;
      job.gram = true;
      t.job = std::move(job);
      auto out = RunOne(capture->get(), t);
      ASSERT_TRUE(out.ok()) << out.status();
      ASSERT_EQ(out->artifacts.size(), 1u);
      into->push_back({out->artifacts[0].path, out->artifacts[0].sha256, ""});
    };
    capture_shard("calib.txt", "calib", 0, 2, "attn_heads[2]", grams_);
    capture_shard("calib.txt", "calib", 1, 2, "attn_heads[2]", grams_);
    capture_shard("heldout.txt", "heldout", 0, 1, "attn_heads[2]", heldout_);
    wrong_ = new std::vector<ArtifactRefSpec>();
    capture_shard("calib.txt", "calib", 0, 2, "attn_heads[3]", wrong_);
  }
  static void TearDownTestSuite() {
    EXPECT_TRUE(RemoveAll(*dir_).ok());
    delete dir_;
    delete store_;
    delete grams_;
    delete heldout_;
    delete wrong_;
  }

  std::unique_ptr<HealExecutor> Exec(bool with_store = true,
                                     const std::string& fingerprint = "") {
    HealExecutorOptions o;
    if (with_store) o.artifacts = *store_;
    o.model_dir = *dir_ + "/model";
    o.model_fingerprint = fingerprint;
    auto e = HealExecutor::Create(o);
    EXPECT_TRUE(e.ok());
    return std::move(*e);
  }

  static TaskInput Task(std::vector<ArtifactRefSpec> grams) {
    TaskInput t;
    t.kind = kHealKind;
    t.task_key = "heal";
    HealJobSpec job;
    job.layer = 2;
    job.heads_removed = {1};
    job.ridge_rel = 0.01;
    job.grams = std::move(grams);
    job.heldout_grams = *heldout_;
    t.job = std::move(job);
    return t;
  }

  // The healed weight of an output, as float.
  std::vector<float> Weight(const TaskOutput& out) {
    EXPECT_EQ(out.artifacts.size(), 1u);
    EXPECT_EQ(out.artifacts[0].name, "heal/o_proj/layer2");
    auto path =
        (*store_)->Resolve(out.artifacts[0].path, out.artifacts[0].sha256);
    EXPECT_TRUE(path.ok());
    auto f = SafetensorsFile::Open(*path);
    EXPECT_TRUE(f.ok());
    const TensorView* t = (*f)->Find("self_attn.o_proj.weight");
    EXPECT_NE(t, nullptr);
    EXPECT_EQ(t->dtype, StDtype::kF32);
    EXPECT_EQ(t->shape, (std::vector<int64_t>{64, 128}));
    EXPECT_EQ((*f)->metadata().at("heads_removed"), "1");
    EXPECT_EQ((*f)->metadata().at("solver_device"), "cpu");
    return *TensorToFloat(*t);
  }

  static std::string* dir_;
  static std::shared_ptr<ArtifactStore>* store_;
  static std::vector<ArtifactRefSpec>* grams_;
  static std::vector<ArtifactRefSpec>* heldout_;
  static std::vector<ArtifactRefSpec>* wrong_;
};
std::string* HealExecutorTest::dir_ = nullptr;
std::shared_ptr<ArtifactStore>* HealExecutorTest::store_ = nullptr;
std::vector<ArtifactRefSpec>* HealExecutorTest::grams_ = nullptr;
std::vector<ArtifactRefSpec>* HealExecutorTest::heldout_ = nullptr;
std::vector<ArtifactRefSpec>* HealExecutorTest::wrong_ = nullptr;

TEST_F(HealExecutorTest, HealsBetterThanMaskingAndReportsMetrics) {
  auto exec = Exec();
  auto out = RunOne(exec.get(), Task(*grams_));
  ASSERT_TRUE(out.ok()) << out.status();
  const std::vector<float> w = Weight(*out);
  for (int64_t o = 0; o < 64; ++o) {
    for (int64_t c = 32; c < 64; ++c) ASSERT_EQ(w[o * 128 + c], 0.0f);
  }
  const double rc = Metric(*out, "heal_residual_rel",
                           {{"layer", "2"}, {"split", "calibration"}});
  const double rh =
      Metric(*out, "heal_residual_rel", {{"layer", "2"}, {"split", "heldout"}});
  EXPECT_EQ(Metric(*out, "heal_kept_heads", {{"layer", "2"}}), 3);
  EXPECT_EQ(
      Metric(*out, "heal_solver", {{"layer", "2"}, {"solver", "cholesky"}}), 1);
  EXPECT_GT(Metric(*out, "heal_lambda", {{"layer", "2"}}), 0);
  EXPECT_GE(Metric(*out, "heal_seconds", {{"layer", "2"}}), 0);

  // Plain masking (W with head 1's columns zero) on the same Grams: the
  // ridge fit has the lower residual on the calibration data.
  calib::Gram g;
  for (size_t i = 0; i < grams_->size(); ++i) {
    auto read = calib::ReadGramFile(
        *(*store_)->Resolve((*grams_)[i].path, (*grams_)[i].sha256));
    ASSERT_TRUE(read.ok());
    if (i == 0) {
      g = *read;
    } else {
      ASSERT_TRUE(calib::AddGram(*read, &g).ok());
    }
  }
  auto ckpt = Checkpoint::Open(*dir_ + "/model");
  auto wt =
      TensorToFloat(**(*ckpt)->Get("model.layers.2.self_attn.o_proj.weight"));
  std::vector<double> base(wt->begin(), wt->end());
  std::vector<double> masked = base;
  for (int64_t o = 0; o < 64; ++o) {
    for (int64_t c = 32; c < 64; ++c) masked[o * 128 + c] = 0.0;
  }
  auto masked_rel = calib::RelativeResidual(g, base, 64, masked);
  ASSERT_TRUE(masked_rel.ok());
  EXPECT_LT(rc, *masked_rel);
  EXPECT_GT(rc, 0);
  EXPECT_GT(rh, 0);
  // The reported residual is the written weight's (float32) within rounding.
  std::vector<double> written(w.begin(), w.end());
  auto again = calib::RelativeResidual(g, base, 64, written);
  EXPECT_NEAR(*again, rc, 1e-5 * rc);
}

TEST_F(HealExecutorTest, ShardOrderAndReruns) {
  auto exec = Exec();
  auto a = RunOne(exec.get(), Task(*grams_));
  auto b = RunOne(exec.get(), Task(*grams_));
  std::vector<ArtifactRefSpec> reversed(grams_->rbegin(), grams_->rend());
  auto c = RunOne(exec.get(), Task(reversed));
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  // Same Grams in the same order: the same bytes.
  EXPECT_EQ(a->artifacts[0].sha256, b->artifacts[0].sha256);
  // Another order: equal within float64 rounding, then float32 storage.
  const std::vector<float> wa = Weight(*a), wc = Weight(*c);
  double num = 0, den = 0;
  for (size_t i = 0; i < wa.size(); ++i) {
    num = std::max(num, std::abs(static_cast<double>(wa[i]) - wc[i]));
    den = std::max(den, std::abs(static_cast<double>(wa[i])));
  }
  EXPECT_LE(num / den, 1e-6);
}

// As LmBackend::Acquire: a task whose fingerprint is the worker's model uses
// the worker's model directory, whatever path the coordinator knows it by.
TEST_F(HealExecutorTest, WorkerModelByFingerprint) {
  TaskInput t = Task(*grams_);
  std::get<HealJobSpec>(t.job).model.path = *dir_ + "/elsewhere";
  std::get<HealJobSpec>(t.job).model.fingerprint = "fp-tiny";
  auto base = RunOne(Exec().get(), Task(*grams_));
  auto out = RunOne(Exec(true, "fp-tiny").get(), t);
  ASSERT_TRUE(base.ok()) << base.status();
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->artifacts[0].sha256, base->artifacts[0].sha256);
  // Another fingerprint: the task's own path, which does not exist.
  out = RunOne(Exec(true, "fp-other").get(), t);
  EXPECT_FALSE(out.ok());
  EXPECT_THAT(out.status().message(), HasSubstr("elsewhere"));
}

TEST_F(HealExecutorTest, ErrorsNameTheProblem) {
  auto out = RunOne(Exec(false).get(), Task(*grams_));
  EXPECT_EQ(out.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(out.status().message(), HasSubstr("--artifact-root"));
  out = RunOne(Exec().get(), Task(*wrong_));
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(out.status().message(), HasSubstr("heal.grams[0]"));
  EXPECT_THAT(out.status().message(), HasSubstr("attn_heads[3]"));
  TaskInput t = Task(*grams_);
  std::get<HealJobSpec>(t.job).heads_removed = {0, 1, 2, 3};
  EXPECT_THAT(RunOne(Exec().get(), t).status().message(),
              HasSubstr("every head is removed"));
  std::get<HealJobSpec>(t.job).heads_removed = {4};
  EXPECT_THAT(RunOne(Exec().get(), t).status().message(),
              HasSubstr("heal.heads_removed[0]"));
  t = Task(*grams_);
  std::get<HealJobSpec>(t.job).grams[1].sha256 = std::string(64, '0');
  out = RunOne(Exec().get(), t);
  EXPECT_FALSE(out.ok());
  EXPECT_THAT(out.status().message(), HasSubstr("heal.grams[1]"));
}

}  // namespace
}  // namespace sweepd
