// The capture executor on a random tiny Gemma 4 model: raw shards equal the
// engine's captures of each document at the right (document, position), each
// token once across overlapping windows; last / sample positions (seed 003's
// per-document keyed sampler); Grams equal float64 sums of the raw rows;
// hidden_states labels; bit-identical artifacts for the same task; errors.
#include "worker/jobs/capture_executor.h"

#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/safetensors.h"
#include "common/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/jobs/executor_test_env.h"
#include "worker/calib/gram_file.h"
#include "worker/engine/engine.h"
#include "worker/jobs/dataset.h"

namespace sweepd {
namespace {

using ::testing::HasSubstr;

// Cancels the task after `batches` progress reports (< 0: never), as a
// preemption would stop it mid-way.
class FakeContext : public TaskContext {
 public:
  explicit FakeContext(int batches = -1) : left_(batches) {}
  bool cancelled() const override { return false; }
  bool task_cancelled(size_t) const override { return left_ == 0; }
  void SetProgress(double) override {
    if (left_ > 0) --left_;
  }

 private:
  int left_;
};

class CaptureExecutorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto dir = jobs_test::MakeTinyModelDir("capture_executor_test");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = new std::string(std::move(*dir));
    std::ofstream(*dir_ + "/prose.txt")
        << "The river rises in a high valley where snow lingers.\n\n"
           "Lighthouses were built along the northern coast.\n\n"
           "Short.\n\n"
           "Each tower had its own pattern of flashes, two long and one "
           "short, so captains knew where they were at night.\n";
  }
  static void TearDownTestSuite() {
    EXPECT_TRUE(RemoveAll(*dir_).ok());
    delete dir_;
  }

  void SetUp() override {
    auto backend = jobs_test::MakeBackend(*dir_ + "/model");
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = *backend;
    const std::string root = *dir_ + "/store_" + std::to_string(++stores_);
    auto store = ArtifactStore::Open(root);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  static TaskInput Task(std::vector<std::string> points, int context = 64,
                        int stride = 0) {
    TaskInput t;
    t.kind = kCaptureKind;
    t.task_key = "capture-task";
    CaptureJobSpec job;
    job.model.path = *dir_ + "/model";
    job.dataset_name = "prose";
    job.data.path = *dir_ + "/prose.txt";
    job.windowing.context_length = context;
    job.windowing.stride = stride > 0 ? stride : context;
    job.points = std::move(points);
    job.dtype = "float32";
    t.job = std::move(job);
    return t;
  }
  static CaptureJobSpec& Job(TaskInput& t) {
    return std::get<CaptureJobSpec>(t.job);
  }

  absl::StatusOr<TaskOutput> Run(const TaskInput& task, bool with_store = true,
                                 int64_t max_batch_tokens = 4096,
                                 int64_t checkpoint_tokens = -1,
                                 int cancel_after = -1) {
    CaptureExecutorOptions opts;
    if (with_store) opts.artifacts = store_;
    opts.max_batch_tokens = max_batch_tokens;
    if (checkpoint_tokens >= 0) opts.checkpoint_tokens = checkpoint_tokens;
    auto exec = CaptureExecutor::Create(backend_, opts);
    EXPECT_TRUE(exec.ok());
    FakeContext ctx(cancel_after);
    return jobs_test::RunOne(exec->get(), task, ctx);
  }

  // The artifact named `name` of `out`, opened.
  std::unique_ptr<SafetensorsFile> Open(const TaskOutput& out,
                                        const std::string& name) {
    for (const ArtifactRow& a : out.artifacts) {
      if (a.name != name) continue;
      auto path = store_->Resolve(a.path, a.sha256);
      EXPECT_TRUE(path.ok()) << path.status();
      auto f = SafetensorsFile::Open(*path);
      EXPECT_TRUE(f.ok()) << f.status();
      return f.ok() ? std::move(*f) : nullptr;
    }
    ADD_FAILURE() << "no artifact " << name;
    return nullptr;
  }

  // Token ids of each document of prose.txt (BOS on).
  std::vector<std::vector<int32_t>> Documents() {
    auto tok = Tokenizer::FromFile(*dir_ + "/model/tokenizer.json");
    EXPECT_TRUE(tok.ok());
    auto records = ReadRecords(*dir_ + "/prose.txt", 0);
    EXPECT_TRUE(records.ok());
    std::vector<std::vector<int32_t>> docs;
    for (const TextRecord& r : *records) {
      docs.push_back(*(*tok)->Encode(r.text, BosPolicy::kOn));
    }
    return docs;
  }

  static std::string* dir_;
  static int stores_;
  std::shared_ptr<LmBackend> backend_;
  std::shared_ptr<ArtifactStore> store_;
};
std::string* CaptureExecutorTest::dir_ = nullptr;
int CaptureExecutorTest::stores_ = 0;

TEST_F(CaptureExecutorTest, RawAllPositionsEqualTheEngineCaptures) {
  auto out = Run(Task({"resid_in[1]", "attn_heads[2]"}, 512));
  ASSERT_TRUE(out.ok()) << out.status();
  const auto docs = Documents();
  engine::EngineOptions eo;
  eo.model_dir = *dir_ + "/model";
  eo.device = jobs_test::TestDevice();
  eo.cpu_threads_per_rank = 1;
  auto engine = engine::Engine::Create(eo);
  ASSERT_TRUE(engine.ok());
  // On CPU the batched capture equals the per-document forward bit for bit.
  // On CUDA the GEMMs of a 512-token batch and of one document may take
  // different kernels, so float32 rounding may differ in the last bits.
  const float tol = eo.device == "cpu" ? 0.0f : 1e-5f;
  auto raw = Open(*out, "raw/attn_heads[2]/prose/shard0");
  ASSERT_NE(raw, nullptr);
  const TensorView* act = raw->Find("activations");
  const TensorView* pos = raw->Find("positions");
  ASSERT_NE(act, nullptr);
  ASSERT_NE(pos, nullptr);
  EXPECT_EQ(act->dtype, StDtype::kF32);
  int64_t total = 0;
  for (const auto& d : docs) total += static_cast<int64_t>(d.size());
  EXPECT_EQ(act->shape, (std::vector<int64_t>{total, 4, 32}));
  EXPECT_EQ(pos->shape, (std::vector<int64_t>{total, 2}));
  auto values = TensorToFloat(*act);
  auto positions = TensorToInt64(*pos);
  ASSERT_TRUE(values.ok() && positions.ok());
  int64_t row = 0;
  for (size_t d = 0; d < docs.size(); ++d) {
    engine::ForwardRequest req;
    req.batch = 1;
    req.seq = static_cast<int64_t>(docs[d].size());
    req.tokens = docs[d];
    req.captures = {"attn_heads[2]"};
    auto r = (*engine)->Forward(req);
    ASSERT_TRUE(r.ok());
    const auto& want = r->captures["attn_heads[2]"].data;
    for (int64_t p = 0; p < req.seq; ++p, ++row) {
      ASSERT_EQ((*positions)[2 * row], static_cast<int64_t>(d));
      ASSERT_EQ((*positions)[2 * row + 1], p);
      for (int64_t k = 0; k < 128; ++k) {
        const float w = want[p * 128 + k];
        ASSERT_NEAR((*values)[row * 128 + k], w, tol * (1.0f + std::fabs(w)))
            << "row " << row << " element " << k;
      }
    }
  }
  std::map<std::string, double> rows;
  for (const MetricRow& m : out->metrics) {
    EXPECT_EQ(m.name, "capture_tokens");
    EXPECT_EQ(m.labels.at("dataset"), "prose");
    EXPECT_EQ(m.labels.at("shard"), "0");
    rows[m.labels.at("point")] = m.value;
  }
  EXPECT_EQ(rows["resid_in[1]"], total);
  EXPECT_EQ(rows["attn_heads[2]"], total);
}

TEST_F(CaptureExecutorTest, OverlappingWindowsTakeEachTokenOnce) {
  // Windows of 8 tokens every 3: each token from the first window holding it.
  TaskInput t = Task({"resid_out[0]"}, 8, 3);
  auto out = Run(t, true, /*max_batch_tokens=*/16);
  ASSERT_TRUE(out.ok()) << out.status();
  auto raw = Open(*out, "raw/resid_out[0]/prose/shard0");
  ASSERT_NE(raw, nullptr);
  auto positions = TensorToInt64(*raw->Find("positions"));
  ASSERT_TRUE(positions.ok());
  const auto docs = Documents();
  std::vector<int64_t> want;
  for (size_t d = 0; d < docs.size(); ++d) {
    for (size_t p = 0; p < docs[d].size(); ++p) {
      want.push_back(static_cast<int64_t>(d));
      want.push_back(static_cast<int64_t>(p));
    }
  }
  EXPECT_EQ(*positions, want);
}

TEST_F(CaptureExecutorTest, LastAndSamplePositions) {
  const auto docs = Documents();
  TaskInput t = Task({"hidden_states[3]"});
  Job(t).positions.mode = CapturePositionsSpec::Mode::kLast;
  auto out = Run(t);
  ASSERT_TRUE(out.ok()) << out.status();
  auto raw = Open(*out, "raw/hidden_states[3]/prose/shard0");
  ASSERT_NE(raw, nullptr);
  EXPECT_EQ(raw->metadata().at("hidden_states_index"), "3");
  EXPECT_EQ(raw->metadata().at("layer_index"), "2");
  auto positions = TensorToInt64(*raw->Find("positions"));
  std::vector<int64_t> want;
  for (size_t d = 0; d < docs.size(); ++d) {
    want.push_back(static_cast<int64_t>(d));
    want.push_back(static_cast<int64_t>(docs[d].size()) - 1);
  }
  EXPECT_EQ(*positions, want);
  ASSERT_EQ(out->metrics.size(), 1u);
  EXPECT_EQ(out->metrics[0].labels.at("hidden_states_index"), "3");
  EXPECT_EQ(out->metrics[0].labels.at("layer_index"), "2");

  Job(t).positions = {CapturePositionsSpec::Mode::kSample, 3, 5, 42};
  out = Run(t);
  ASSERT_TRUE(out.ok()) << out.status();
  raw = Open(*out, "raw/hidden_states[3]/prose/shard0");
  positions = TensorToInt64(*raw->Find("positions"));
  want.clear();
  for (size_t d = 0; d < docs.size(); ++d) {
    for (int64_t p : CapturePositionsOf(Job(t).positions, d, docs[d].size())) {
      want.push_back(static_cast<int64_t>(d));
      want.push_back(p);
    }
  }
  EXPECT_EQ(*positions, want);
  // The "Short." document has fewer than k tokens at or beyond min_position.
  EXPECT_LT(want.size(), 2 * 3 * docs.size());
}

TEST(CapturePositionsTest, KeyedSamplerIsPerDocument) {
  CapturePositionsSpec s{CapturePositionsSpec::Mode::kSample, 5, 50, 42};
  const std::vector<int64_t> a = CapturePositionsOf(s, 100000, 300);
  ASSERT_EQ(a.size(), 5u);
  EXPECT_TRUE(std::is_sorted(a.begin(), a.end()));
  EXPECT_EQ(std::set<int64_t>(a.begin(), a.end()).size(), 5u);
  for (int64_t p : a) {
    EXPECT_GE(p, 50);
    EXPECT_LT(p, 300);
  }
  // A pure function of (seed, document, length).
  EXPECT_EQ(CapturePositionsOf(s, 100000, 300), a);
  EXPECT_NE(CapturePositionsOf(s, 100001, 300), a);
  CapturePositionsSpec other = s;
  other.seed = 43;
  EXPECT_NE(CapturePositionsOf(other, 100000, 300), a);
  // Fewer eligible positions than k: all of them.
  EXPECT_EQ(CapturePositionsOf(s, 7, 53), (std::vector<int64_t>{50, 51, 52}));
  EXPECT_TRUE(CapturePositionsOf(s, 7, 50).empty());
}

TEST_F(CaptureExecutorTest, GramsEqualFloat64SumsOfTheRawRows) {
  TaskInput t = Task({"attn_heads[2]", "resid_in[4]"}, 8, 5);
  Job(t).gram = true;
  Job(t).raw = true;
  Job(t).gram_targets = {"attn_out[2]", ""};
  auto out = Run(t, true, /*max_batch_tokens=*/24);
  ASSERT_TRUE(out.ok()) << out.status();
  for (const auto& [point, target] :
       std::vector<std::pair<std::string, std::string>>{
           {"attn_heads[2]", "attn_out[2]"}, {"resid_in[4]", ""}}) {
    SCOPED_TRACE(point);
    auto raw = Open(*out, "raw/" + point + "/prose/shard0");
    ASSERT_NE(raw, nullptr);
    auto x = TensorToFloat(*raw->Find("activations"));
    const int64_t n = raw->Find("activations")->shape[0];
    const int64_t d = static_cast<int64_t>(x->size()) / n;
    std::vector<double> want(d * d, 0.0);
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t i = 0; i < d; ++i) {
        for (int64_t j = 0; j < d; ++j) {
          want[i * d + j] +=
              static_cast<double>((*x)[r * d + i]) * (*x)[r * d + j];
        }
      }
    }
    std::string path;
    for (const ArtifactRow& a : out->artifacts) {
      if (a.name == "gram/" + point + "/prose/shard0") {
        path = *store_->Resolve(a.path, a.sha256);
      }
    }
    auto g = calib::ReadGramFile(path);
    ASSERT_TRUE(g.ok()) << g.status();
    EXPECT_EQ(g->count, n);
    EXPECT_EQ(g->d, d);
    EXPECT_EQ(g->metadata.at("point"), point);
    EXPECT_EQ(g->metadata.at("target"), target);
    EXPECT_EQ(g->metadata.at("dtype"), "float32");
    EXPECT_EQ(g->e, target.empty() ? 0 : 64);
    double num = 0, den = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      num = std::max(num, std::abs(g->xtx[i] - want[i]));
      den = std::max(den, std::abs(want[i]));
    }
    EXPECT_LE(num / den, 1e-12);
  }
  int grams = 0;
  for (const MetricRow& m : out->metrics) {
    if (m.name == "gram_tokens") ++grams;
  }
  EXPECT_EQ(grams, 2);
}

TEST_F(CaptureExecutorTest, SameTaskGivesIdenticalArtifacts) {
  TaskInput t = Task({"attn_heads[5]"}, 8, 4);
  Job(t).gram = true;
  Job(t).dtype = "bfloat16";
  auto a = Run(t);
  auto b = Run(t);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->artifacts.size(), 2u);
  for (size_t i = 0; i < a->artifacts.size(); ++i) {
    EXPECT_EQ(a->artifacts[i].name, b->artifacts[i].name);
    EXPECT_EQ(a->artifacts[i].sha256, b->artifacts[i].sha256);
  }
  auto raw = Open(*a, "raw/attn_heads[5]/prose/shard0");
  EXPECT_EQ(raw->Find("activations")->dtype, StDtype::kBF16);
}

// A Gram-only task checkpoints its float64 sums every checkpoint_tokens
// tokens; stopped mid-way and re-run, it resumes from the checkpoint and
// writes the same bytes as an uninterrupted run.
TEST_F(CaptureExecutorTest, GramCheckpointsResumeToTheSameBytes) {
  TaskInput t = Task({"attn_heads[2]", "resid_in[3]"}, 8, 8);
  Job(t).gram = true;
  Job(t).raw = false;
  Job(t).gram_targets = {"attn_out[2]", ""};
  const std::string key = "capture\ncapture-task";
  // One window per batch; a segment ends after every second batch.
  const int64_t f0 = backend_->total_layer_forwards();
  auto whole = Run(t, true, /*max_batch_tokens=*/8, /*checkpoint_tokens=*/10);
  ASSERT_TRUE(whole.ok()) << whole.status();
  const int64_t whole_forwards = backend_->total_layer_forwards() - f0;
  EXPECT_FALSE(store_->GetCheckpoint(key)->has_value());

  auto cut = Run(t, true, 8, 10, /*cancel_after=*/3);
  EXPECT_TRUE(absl::IsCancelled(cut.status())) << cut.status();
  ASSERT_TRUE(store_->GetCheckpoint(key)->has_value());
  const int64_t f1 = backend_->total_layer_forwards();
  auto resumed = Run(t, true, 8, 10);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_LT(backend_->total_layer_forwards() - f1, whole_forwards);
  EXPECT_FALSE(store_->GetCheckpoint(key)->has_value());
  ASSERT_EQ(resumed->artifacts.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(resumed->artifacts[i].name, whole->artifacts[i].name);
    EXPECT_EQ(resumed->artifacts[i].sha256, whole->artifacts[i].sha256);
  }

  // A checkpoint of other inputs (here another checkpoint_tokens) is ignored,
  // and cleared by the task that completes.
  cut = Run(t, true, 8, 10, 3);
  EXPECT_TRUE(absl::IsCancelled(cut.status()));
  auto other = Run(t, true, 8, 12);
  ASSERT_TRUE(other.ok()) << other.status();
  ASSERT_EQ(other->metrics.size(), whole->metrics.size());
  for (size_t i = 0; i < whole->metrics.size(); ++i) {
    EXPECT_EQ(other->metrics[i].value, whole->metrics[i].value);
  }
  EXPECT_FALSE(store_->GetCheckpoint(key)->has_value());
  auto one = Run(t, true, 8, /*checkpoint_tokens=*/0);
  ASSERT_TRUE(one.ok()) << one.status();
  // One segment: the same sums within float64 rounding.
  for (size_t i = 0; i < 2; ++i) {
    auto a = calib::ReadGramFile(
        *store_->Resolve(one->artifacts[i].path, one->artifacts[i].sha256));
    auto b = calib::ReadGramFile(
        *store_->Resolve(whole->artifacts[i].path, whole->artifacts[i].sha256));
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(a->count, b->count);
    double num = 0, den = 0;
    for (size_t j = 0; j < a->xtx.size(); ++j) {
      num = std::max(num, std::abs(a->xtx[j] - b->xtx[j]));
      den = std::max(den, std::abs(b->xtx[j]));
    }
    EXPECT_LE(num / den, 1e-12);
  }
}

TEST_F(CaptureExecutorTest, ErrorsNameTheProblem) {
  auto out = Run(Task({"resid_in[1]"}), /*with_store=*/false);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(out.status().message(), HasSubstr("--artifact-root"));
  TaskInput t = Task({"attn_out[9]"});
  Job(t).gram = true;
  out = Run(t);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(out.status().message(), HasSubstr("capture.points[0]"));
  t = Task({"resid_in[1]"});
  Job(t).interventions = {engine::Intervention::Skip(7)};
  Job(t).intervention_fields = {"interventions.interventions[0].skip.layers"};
  EXPECT_THAT(Run(t).status().message(),
              HasSubstr("interventions.interventions[0]"));
}

}  // namespace
}  // namespace sweepd
