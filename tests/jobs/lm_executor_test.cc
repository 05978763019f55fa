// The eval / probe executor against the engine on a random tiny Gemma 4 model:
// prefix reuse on == off, eval metrics == a hand computation from
// Engine::Forward NLLs over independently chosen windows, BOS on/off token
// counts, probe aggregates == a hand aggregation of the engine's LayerStats,
// errors and cancellation; baseline probe tasks sharing the eval pass of
// their shard equal the probe run alone, and fall back to their own pass when
// the prompts are not prefixes of the eval windows.
#include "worker/jobs/lm_executor.h"

#include <unistd.h>

#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/artifact_store.h"
#include "common/fs.h"
#include "common/layer_selector.h"
#include "common/safetensors.h"
#include "common/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/jobs/executor_test_env.h"
#include "worker/engine/engine.h"
#include "worker/engine/model_generator.h"
#include "worker/jobs/register_executors.h"
#include "worker/jobs/windowing.h"

namespace sweepd {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

using jobs_test::SourceDir;

class FakeContext : public TaskContext {
 public:
  bool cancelled() const override { return cancel_all; }
  bool task_cancelled(size_t i) const override {
    return cancel_all || cancelled_tasks.count(i) > 0;
  }
  void SetProgress(double f) override { progress.push_back(f); }

  bool cancel_all = false;
  std::set<size_t> cancelled_tasks;
  std::vector<double> progress;
};

using Outcomes = std::map<size_t, absl::StatusOr<TaskOutput>>;

// name + sorted labels -> value
std::map<std::string, double> Flatten(const TaskOutput& out) {
  std::map<std::string, double> m;
  for (const MetricRow& r : out.metrics) {
    std::string key = r.name;
    for (const auto& [k, v] : r.labels) absl::StrAppend(&key, "|", k, "=", v);
    EXPECT_TRUE(m.emplace(key, r.value).second) << "duplicate row " << key;
  }
  return m;
}

// The metric row name + labels (jobs_test::Metric).
constexpr auto& Get = jobs_test::Metric;

void ExpectRelNear(double expected, double actual, double rel,
                   const std::string& what) {
  EXPECT_LE(std::fabs(expected - actual),
            rel * std::max(1e-12, std::fabs(expected)))
      << what << ": expected " << expected << " got " << actual;
}

class LmExecutorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto dir = jobs_test::MakeTinyModelDir("lm_executor_test");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = new std::string(std::move(*dir));
    Write("prose.txt",
          "The river rises in a high valley where snow lingers.\n"
          "It runs through farmland past villages.\n\n"
          "Lighthouses were built along the northern coast.\n\n"
          "Short.\n\n"
          "Each tower had its own pattern of flashes, two long and one "
          "short, so captains knew where they were.\n");
    Write(
        "probe.jsonl",
        R"({"prompt": "The capital of France is", "target": " Paris", "text": "The capital of France is Paris", "category": "factual"})"
        "\n"
        R"({"prompt": "Two plus two is", "target": " four", "text": "Two plus two is four", "category": "math"})"
        "\n"
        R"({"prompt": "The capital of Spain is", "target": " Madrid", "text": "The capital of Spain is Madrid", "category": "factual"})"
        "\n"
        R"({"prompt": "Hello there, how", "target": " are", "text": "Hello there, how are you"})"
        "\n"
        R"({"text": "A record without a prompt has no rank but enters BI.", "category": "math"})"
        "\n");
    // Every record: text = prompt + target (the eval pass can carry the
    // probe).
    Write(
        "shared.jsonl",
        R"({"prompt": "The capital of France is", "target": " Paris", "text": "The capital of France is Paris", "category": "factual"})"
        "\n"
        R"({"prompt": "Two plus two is", "target": " four", "text": "Two plus two is four", "category": "math"})"
        "\n"
        R"({"prompt": "The capital of Spain is", "target": " Madrid", "text": "The capital of Spain is Madrid", "category": "factual"})"
        "\n"
        R"({"prompt": "Hello there, how", "target": " are", "text": "Hello there, how are"})"
        "\n"
        R"({"prompt": "Ten minus three is", "target": " seven", "text": "Ten minus three is seven", "category": "math"})"
        "\n");
    // As shared.jsonl, but one record's text does not continue with its
    // target.
    Write(
        "mismatch.jsonl",
        R"({"prompt": "The capital of France is", "target": " Paris", "text": "The capital of France is Paris", "category": "factual"})"
        "\n"
        R"({"prompt": "Two plus two is", "target": " four", "text": "Two plus two is not five", "category": "math"})"
        "\n");
  }
  static void TearDownTestSuite() {
    EXPECT_TRUE(RemoveAll(*dir_).ok());
    delete dir_;
  }
  static void Write(const std::string& name, const std::string& text) {
    std::ofstream(*dir_ + "/" + name) << text;
  }
  static std::string Path(const std::string& name) {
    return *dir_ + "/" + name;
  }

  void SetUp() override {
    auto backend = jobs_test::MakeBackend(Path("model"));
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = *backend;
    auto tok = Tokenizer::FromFile(Path("model/tokenizer.json"));
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = std::move(*tok);
    engine::EngineOptions eo;
    eo.model_dir = Path("model");
    eo.cpu_threads_per_rank = 1;
    auto e = engine::Engine::Create(eo);
    ASSERT_TRUE(e.ok()) << e.status();
    engine_ = std::move(*e);
  }

  // The typed task the agent would hand over for a spec written as the
  // protobuf JSON mapping (`windowing`, `interventions`), the way these tests
  // were first written.
  static TaskInput Task(const std::string& kind, const std::string& key,
                        const std::string& data, json windowing,
                        json interventions = json::array()) {
    TaskInput t;
    t.kind = kind;
    t.task_key = key;
    LmJobSpec job;
    job.model.path = Path("model");
    job.dataset_name = "d";
    job.data.path = Path(data);
    auto w = ResolveWindowing(windowing.value("context_length", 0),
                              windowing.value("stride", 0),
                              windowing.value("bos", ""), kind + ".windowing");
    EXPECT_TRUE(w.ok()) << w.status();
    job.windowing = *w;
    for (size_t i = 0; i < interventions.size(); ++i) {
      const json& iv = interventions[i];
      const std::string field =
          absl::StrCat("interventions.interventions[", i, "]");
      if (iv.contains("mask_heads")) {
        job.interventions.push_back(engine::Intervention::MaskHeads(
            iv["mask_heads"]["layer"].get<int>(),
            iv["mask_heads"]["heads"].get<std::vector<int>>()));
        job.intervention_fields.push_back(field + ".mask_heads");
        continue;
      }
      for (const char* op : {"skip", "zero", "reinit"}) {
        if (!iv.contains(op)) continue;
        auto layers = ParseLayerSelector(iv[op]["layers"].get<std::string>(),
                                         kLayerCountUnknown, "layers");
        EXPECT_TRUE(layers.ok()) << layers.status();
        // 64-bit integers are JSON strings in the proto JSON mapping.
        const json seed_json = iv[op].value("seed", json(0));
        const uint64_t seed = seed_json.is_string()
                                  ? std::stoull(seed_json.get<std::string>())
                                  : seed_json.get<uint64_t>();
        for (int l : *layers) {
          job.interventions.push_back(
              std::string(op) == "skip" ? engine::Intervention::Skip(l)
              : std::string(op) == "zero"
                  ? engine::Intervention::Zero(l)
                  : engine::Intervention::Reinit(l, seed));
          job.intervention_fields.push_back(
              absl::StrCat(field, ".", op, ".layers"));
        }
      }
    }
    t.job = std::move(job);
    return t;
  }

  static LmJobSpec& Job(TaskInput& t) { return std::get<LmJobSpec>(t.job); }

  Outcomes Run(const std::vector<TaskInput>& tasks, bool reuse,
               FakeContext* ctx_in = nullptr, int64_t max_batch_tokens = 4096,
               std::shared_ptr<ArtifactStore> artifacts = nullptr) {
    LmExecutorOptions opts;
    opts.prefix_reuse = reuse;
    opts.max_batch_tokens = max_batch_tokens;
    opts.artifacts = std::move(artifacts);
    auto exec = LmExecutor::Create(tasks[0].kind, backend_, opts);
    EXPECT_TRUE(exec.ok()) << exec.status();
    FakeContext local;
    FakeContext& ctx = ctx_in != nullptr ? *ctx_in : local;
    Outcomes out;
    (*exec)->RunGroup(tasks, ctx, [&](size_t i, absl::StatusOr<TaskOutput> r) {
      EXPECT_TRUE(out.emplace(i, std::move(r)).second)
          << "task " << i << " reported twice";
    });
    EXPECT_EQ(out.size(), tasks.size());
    return out;
  }

  // Sum of the engine's NLLs over the tokens of `ids` that strided perplexity
  // scores, choosing for each token j >= 1 the window with the smallest begin
  // that contains j - 1 and j. One Engine::Forward per window (batch 1).
  void HandEval(const std::vector<int32_t>& ids, int ctx, int stride,
                const std::vector<engine::Intervention>& ivs, double* nll_sum,
                int64_t* tokens) {
    const int64_t n = static_cast<int64_t>(ids.size());
    if (n < 2) return;
    std::vector<std::pair<int64_t, int64_t>> windows;  // [begin, end)
    for (int64_t b = 0;;) {
      const int64_t e = std::min<int64_t>(b + ctx, n);
      windows.push_back({b, e});
      if (e == n) break;
      b = std::min<int64_t>(b + stride, e - 1);
    }
    std::vector<int> times_scored(n, 0);
    std::map<size_t, engine::ForwardResult> results;
    for (int64_t j = 1; j < n; ++j) {
      size_t w = 0;
      while (!(windows[w].first <= j - 1 && j < windows[w].second)) ++w;
      if (results.count(w) == 0) {
        engine::ForwardRequest req;
        req.tokens.assign(ids.begin() + windows[w].first,
                          ids.begin() + windows[w].second);
        req.batch = 1;
        req.seq = windows[w].second - windows[w].first;
        req.interventions = ivs;
        auto r = engine_->Forward(req);
        ASSERT_TRUE(r.ok()) << r.status();
        results[w] = std::move(*r);
      }
      const engine::ForwardResult& r = results[w];
      const int64_t pos = j - 1 - windows[w].first;
      ASSERT_TRUE(r.target_valid[pos]);
      *nll_sum += r.nll[pos];
      ++*tokens;
      ++times_scored[j];
    }
    for (int64_t j = 1; j < n; ++j) ASSERT_EQ(times_scored[j], 1);
  }

  static std::string* dir_;
  std::shared_ptr<LmBackend> backend_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<engine::Engine> engine_;
};

std::string* LmExecutorTest::dir_ = nullptr;

TEST_F(LmExecutorTest, ReuseOnEqualsReuseOffForEveryIntervention) {
  const json w = {{"context_length", 12}, {"stride", 5}, {"bos", "on"}};
  const json pw = {{"context_length", 16}, {"bos", "on"}};
  std::vector<TaskInput> tasks = {
      Task("eval", "base", "prose.txt", w),
      Task("eval", "skip2", "prose.txt", w, {{{"skip", {{"layers", "2"}}}}}),
      Task("eval", "zero", "prose.txt", w, {{{"zero", {{"layers", "3,5"}}}}}),
      Task("eval", "reinit", "prose.txt", w,
           {{{"reinit", {{"layers", "4"}, {"seed", "7"}}}}}),
      Task("eval", "heads", "prose.txt", w,
           {{{"mask_heads", {{"layer", 1}, {"heads", {0, 2}}}}}}),
      Task("eval", "skip0", "prose.txt", w,
           {{{"skip", {{"layers", "0:6:2"}}}}}),
      Task("probe", "pbase", "probe.jsonl", pw),
      Task("probe", "pskip", "probe.jsonl", pw,
           {{{"skip", {{"layers", "3"}}}}}),
      Task("probe", "pheads", "probe.jsonl", pw,
           {{{"mask_heads", {{"layer", 4}, {"heads", {1}}}}}}),
  };
  const int64_t f0 = backend_->total_layer_forwards();
  Outcomes off = Run(tasks, /*reuse=*/false);
  const int64_t f1 = backend_->total_layer_forwards();
  Outcomes on = Run(tasks, /*reuse=*/true);
  const int64_t f2 = backend_->total_layer_forwards();
  EXPECT_LT(f2 - f1, f1 - f0);
  for (size_t i = 0; i < tasks.size(); ++i) {
    ASSERT_TRUE(off.at(i).ok()) << off.at(i).status();
    ASSERT_TRUE(on.at(i).ok()) << on.at(i).status();
    auto a = Flatten(*off.at(i));
    auto b = Flatten(*on.at(i));
    ASSERT_EQ(a.size(), b.size()) << tasks[i].task_key;
    for (const auto& [key, value] : a) {
      ASSERT_EQ(b.count(key), 1u) << key;
      ExpectRelNear(value, b.at(key), 1e-6, tasks[i].task_key + " " + key);
    }
  }
  // The interventions changed the results (the comparison is not vacuous).
  EXPECT_NE(Get(*on.at(0), "nll_sum", {{"category", "all"}}),
            Get(*on.at(1), "nll_sum", {{"category", "all"}}));
  EXPECT_NE(Get(*on.at(6), "bi", {{"category", "all"}, {"layer", "3"}}),
            Get(*on.at(7), "bi", {{"category", "all"}, {"layer", "3"}}));
}

TEST_F(LmExecutorTest, EvalEqualsHandComputationFromForwardNlls) {
  const int ctx = 9, stride = 4;
  const json w = {{"context_length", ctx}, {"stride", stride}, {"bos", "on"}};
  const json skip = {{{"skip", {{"layers", "2"}}}}};
  // Small batches so windows of one length span several forwards.
  Outcomes out = Run({Task("eval", "base", "prose.txt", w),
                      Task("eval", "skip", "prose.txt", w, skip)},
                     /*reuse=*/true, nullptr, /*max_batch_tokens=*/20);
  const std::vector<std::string> texts = {
      "The river rises in a high valley where snow lingers.\nIt runs through "
      "farmland past villages.",
      "Lighthouses were built along the northern coast.", "Short.",
      "Each tower had its own pattern of flashes, two long and one short, so "
      "captains knew where they were."};
  for (int k = 0; k < 2; ++k) {
    std::vector<engine::Intervention> ivs;
    if (k == 1) ivs.push_back(engine::Intervention::Skip(2));
    double nll = 0;
    int64_t tokens = 0;
    for (const std::string& t : texts) {
      auto ids = tokenizer_->Encode(t, BosPolicy::kOn);
      ASSERT_TRUE(ids.ok());
      HandEval(*ids, ctx, stride, ivs, &nll, &tokens);
    }
    ASSERT_TRUE(out.at(k).ok()) << out.at(k).status();
    const TaskOutput& o = *out.at(k);
    const std::map<std::string, std::string> all = {{"category", "all"}};
    EXPECT_EQ(Get(o, "tokens", all), static_cast<double>(tokens));
    ExpectRelNear(nll, Get(o, "nll_sum", all), 1e-5, "nll_sum");
    ExpectRelNear(nll / tokens, Get(o, "nll_mean", all), 1e-5, "nll_mean");
    ExpectRelNear(std::exp(nll / tokens), Get(o, "ppl", all), 1e-5, "ppl");
    EXPECT_EQ(Get(o, "bos", {}), 1.0);
  }
}

// Steer and replace_layer whose vector / weights live in the artifact store:
// the eval rows equal the hand computation from Engine::Forward per window
// (steering positions are window-relative), with prefix reuse on and off; a
// worker without a store fails only those tasks, FAILED_PRECONDITION.
TEST_F(LmExecutorTest, SteerAndReplaceLayerFromArtifacts) {
  const std::string dir = *dir_ + "/artifacts";
  ASSERT_TRUE(MakeDirs(dir).ok());
  absl::StatusOr<std::unique_ptr<ArtifactStore>> opened =
      ArtifactStore::Open(dir + "/store");
  ASSERT_TRUE(opened.ok()) << opened.status();
  std::shared_ptr<ArtifactStore> store = std::move(*opened);
  const int64_t hidden = engine_->config().hidden_size;
  std::vector<float> v(hidden);
  for (int64_t i = 0; i < hidden; ++i) v[i] = 0.05f * ((i * 7) % 13) - 0.3f;
  SafetensorsWriter vw;
  ASSERT_TRUE(vw.Add("direction", StDtype::kF32, {hidden}, v.data(),
                     v.size() * sizeof(float))
                  .ok());
  ASSERT_TRUE(
      vw.Add("other", StDtype::kF32, {1}, v.data(), sizeof(float)).ok());
  ASSERT_TRUE(vw.WriteFile(dir + "/v.safetensors").ok());
  auto vinfo = store->PutFile("steer/direction", dir + "/v.safetensors");
  ASSERT_TRUE(vinfo.ok()) << vinfo.status();
  auto ckpt = Checkpoint::Open(Path("model"));
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  const TensorView* o = (*ckpt)->Find("model.layers.3.self_attn.o_proj.weight");
  ASSERT_NE(o, nullptr);
  auto ov = TensorToFloat(*o);
  ASSERT_TRUE(ov.ok());
  for (size_t i = 0; i < ov->size(); ++i) (*ov)[i] *= (i % 3 == 0) ? 0 : 1.5f;
  SafetensorsWriter ow;
  ASSERT_TRUE(ow.Add("self_attn.o_proj.weight", StDtype::kF32, o->shape,
                     ov->data(), ov->size() * sizeof(float))
                  .ok());
  ASSERT_TRUE(ow.WriteFile(dir + "/o.safetensors").ok());
  auto oinfo = store->PutFile("heal/o_proj/layer3", dir + "/o.safetensors");
  ASSERT_TRUE(oinfo.ok()) << oinfo.status();

  const int ctx = 9, stride = 4;
  const json w = {{"context_length", ctx}, {"stride", stride}, {"bos", "on"}};
  std::vector<TaskInput> tasks = {Task("eval", "base", "prose.txt", w),
                                  Task("eval", "steer", "prose.txt", w),
                                  Task("eval", "replace", "prose.txt", w)};
  LmJobSpec& steer = Job(tasks[1]);
  steer.interventions.push_back(engine::Intervention::Steer(
      2, engine::Intervention::SteerMode::kAdd, {}, 4.0, {0, -1}));
  steer.intervention_fields.push_back("interventions.interventions[0].steer");
  steer.intervention_artifacts.push_back(
      {0, vinfo->path, vinfo->sha256, "direction"});
  LmJobSpec& replace = Job(tasks[2]);
  replace.interventions.push_back(engine::Intervention::ReplaceLayer(3, ""));
  replace.interventions.push_back(engine::Intervention::MaskHeads(3, {1}));
  replace.intervention_fields = {"interventions.interventions[0].replace_layer",
                                 "interventions.interventions[1].mask_heads"};
  replace.intervention_artifacts.push_back({0, oinfo->path, "", ""});

  const std::vector<std::string> texts = {
      "The river rises in a high valley where snow lingers.\nIt runs through "
      "farmland past villages.",
      "Lighthouses were built along the northern coast.", "Short.",
      "Each tower had its own pattern of flashes, two long and one short, so "
      "captains knew where they were."};
  const std::vector<std::vector<engine::Intervention>> hand_ivs = {
      {},
      {engine::Intervention::Steer(2, engine::Intervention::SteerMode::kAdd, v,
                                   4.0, {0, -1})},
      {engine::Intervention::ReplaceLayer(3, dir + "/o.safetensors"),
       engine::Intervention::MaskHeads(3, {1})}};
  const std::map<std::string, std::string> all = {{"category", "all"}};
  for (bool reuse : {false, true}) {
    SCOPED_TRACE(reuse);
    Outcomes out = Run(tasks, reuse, nullptr, /*max_batch_tokens=*/40, store);
    for (size_t k = 0; k < tasks.size(); ++k) {
      ASSERT_TRUE(out.at(k).ok()) << out.at(k).status();
      double nll = 0;
      int64_t tokens = 0;
      for (const std::string& t : texts) {
        auto ids = tokenizer_->Encode(t, BosPolicy::kOn);
        ASSERT_TRUE(ids.ok());
        HandEval(*ids, ctx, stride, hand_ivs[k], &nll, &tokens);
      }
      ExpectRelNear(nll, Get(*out.at(k), "nll_sum", all), 1e-5,
                    tasks[k].task_key);
      if (k > 0) {
        EXPECT_NE(Get(*out.at(k), "nll_sum", all),
                  Get(*out.at(0), "nll_sum", all));
      }
    }
  }
  Outcomes no_store = Run(tasks, true);
  EXPECT_TRUE(no_store.at(0).ok()) << no_store.at(0).status();
  for (size_t k : {1, 2}) {
    ASSERT_FALSE(no_store.at(k).ok());
    EXPECT_EQ(no_store.at(k).status().code(),
              absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(no_store.at(k).status().message(),
                HasSubstr("needs --artifact-root on the worker"));
  }
}

TEST_F(LmExecutorTest, EvalPerCategoryRowsForJsonl) {
  const json w = {{"context_length", 64}, {"bos", "off"}};
  Outcomes out = Run({Task("eval", "base", "probe.jsonl", w)}, true);
  ASSERT_TRUE(out.at(0).ok()) << out.at(0).status();
  const TaskOutput& o = *out.at(0);
  double sum = 0, tokens = 0;
  for (const char* c : {"factual", "math"}) {
    sum += Get(o, "nll_sum", {{"category", c}});
    tokens += Get(o, "tokens", {{"category", c}});
  }
  // The record without a category counts only in "all".
  auto ids = tokenizer_->Encode("Hello there, how are you", BosPolicy::kOff);
  ASSERT_TRUE(ids.ok());
  double nll = 0;
  int64_t n = 0;
  HandEval(*ids, 64, 64, {}, &nll, &n);
  EXPECT_EQ(Get(o, "tokens", {{"category", "all"}}), tokens + n);
  ExpectRelNear(sum + nll, Get(o, "nll_sum", {{"category", "all"}}), 1e-5,
                "all = sum of categories + uncategorised");
  EXPECT_EQ(Get(o, "bos", {}), 0.0);
}

TEST_F(LmExecutorTest, BosOnScoresOneMoreTokenPerRecord) {
  Outcomes on = Run(
      {Task("eval", "a", "prose.txt", {{"context_length", 16}, {"bos", "on"}})},
      true);
  Outcomes off = Run({Task("eval", "b", "prose.txt",
                           {{"context_length", 16}, {"bos", "off"}})},
                     true);
  ASSERT_TRUE(on.at(0).ok() && off.at(0).ok());
  const std::map<std::string, std::string> all = {{"category", "all"}};
  // Four records: with <bos> each record's first text token is scored too.
  EXPECT_EQ(Get(*on.at(0), "tokens", all), Get(*off.at(0), "tokens", all) + 4);
  EXPECT_EQ(Get(*on.at(0), "bos", {}), 1.0);
  EXPECT_EQ(Get(*off.at(0), "bos", {}), 0.0);
}

TEST_F(LmExecutorTest, ProbeEqualsHandAggregationOfLayerStats) {
  const int N = engine_->config().num_hidden_layers;
  Outcomes out = Run({Task("probe", "p", "probe.jsonl",
                           {{"context_length", 32}, {"bos", "on"}})},
                     true);
  ASSERT_TRUE(out.at(0).ok()) << out.at(0).status();
  const TaskOutput& o = *out.at(0);
  struct Rec {
    std::string category, prompt, target;
  };
  const std::vector<Rec> recs = {
      {"factual", "The capital of France is", " Paris"},
      {"math", "Two plus two is", " four"},
      {"factual", "The capital of Spain is", " Madrid"},
      {"", "Hello there, how", " are"},
      {"math", "A record without a prompt has no rank but enters BI.", ""}};
  struct Agg {
    std::vector<double> bi, norm, rank, top1;
    double decision = 0, tokens = 0, prompts = 0;
  };
  std::map<std::string, Agg> agg;
  for (const Rec& r : recs) {
    auto ids = tokenizer_->Encode(r.prompt, BosPolicy::kOn);
    ASSERT_TRUE(ids.ok());
    engine::ForwardRequest req;
    req.tokens = *ids;
    req.batch = 1;
    req.seq = static_cast<int64_t>(ids->size());
    req.targets.assign(ids->size(), -1);
    if (!r.target.empty()) {
      auto t = tokenizer_->Encode(r.target, BosPolicy::kOff);
      ASSERT_TRUE(t.ok());
      req.targets.back() = (*t)[0];
    }
    req.layer_stats = true;
    auto res = engine_->Forward(req);
    ASSERT_TRUE(res.ok()) << res.status();
    std::vector<std::string> cats = {"all"};
    if (!r.category.empty()) cats.push_back(r.category);
    for (const std::string& c : cats) {
      Agg& a = agg[c];
      a.bi.resize(N);
      a.norm.resize(N);
      a.rank.resize(N);
      a.top1.resize(N);
      a.tokens += req.seq;
      int decision = N;
      for (int L = 0; L < N; ++L) {
        const engine::LayerStats& st = res->layer_stats[L];
        for (int64_t p = 0; p < req.seq; ++p) {
          a.bi[L] += st.block_influence[p];
          a.norm[L] += st.resid_out_norm[p];
        }
        if (!r.target.empty()) {
          const int64_t rank = st.target_rank[req.seq - 1];
          a.rank[L] += rank;
          a.top1[L] += rank == 0;
          if (rank == 0 && decision == N) decision = L;
        }
      }
      if (!r.target.empty()) {
        a.prompts += 1;
        a.decision += decision;
      }
    }
  }
  ASSERT_EQ(agg.size(), 3u);
  for (const auto& [c, a] : agg) {
    const std::map<std::string, std::string> cat = {{"category", c}};
    EXPECT_EQ(Get(o, "tokens", cat), a.tokens) << c;
    EXPECT_EQ(Get(o, "prompts", cat), a.prompts) << c;
    ExpectRelNear(a.decision / a.prompts, Get(o, "decision_layer", cat), 1e-9,
                  c + " decision_layer");
    for (int L = 0; L < N; ++L) {
      std::map<std::string, std::string> l = cat;
      l["layer"] = std::to_string(L);
      ExpectRelNear(a.bi[L] / a.tokens, Get(o, "bi", l), 1e-5, c + " bi");
      ExpectRelNear(a.norm[L] / a.tokens, Get(o, "resid_norm", l), 1e-5,
                    c + " resid_norm");
      ExpectRelNear(a.rank[L] / a.prompts, Get(o, "lens_rank", l), 1e-9,
                    c + " lens_rank");
      ExpectRelNear(a.top1[L] / a.prompts, Get(o, "lens_top1", l), 1e-9,
                    c + " lens_top1");
    }
  }
}

// Outcomes and layer-forwards of three runs on one shard: the baseline probe
// task alone, the eval tasks (baseline, skip 2) alone, and all three as one
// group.
struct SharedRuns {
  Outcomes probe_alone, eval_alone, group;
  int64_t probe_forwards = 0, eval_forwards = 0, group_forwards = 0;
};

class LmExecutorSharedPassTest : public LmExecutorTest {
 protected:
  // The longest prompt of `data` in tokens (BOS on).
  int MaxPromptTokens(const std::vector<std::string>& prompts) {
    int p = 0;
    for (const std::string& prompt : prompts) {
      auto ids = tokenizer_->Encode(prompt, BosPolicy::kOn);
      EXPECT_TRUE(ids.ok()) << ids.status();
      if (ids.ok()) p = std::max(p, static_cast<int>(ids->size()));
    }
    return p;
  }

  SharedRuns RunAll(const std::string& data, const json& eval_w,
                    const json& probe_w) {
    const json skip = {{{"skip", {{"layers", "2"}}}}};
    SharedRuns r;
    const int64_t f0 = backend_->total_layer_forwards();
    r.probe_alone = Run({Task("probe", "p", data, probe_w)}, true);
    const int64_t f1 = backend_->total_layer_forwards();
    r.eval_alone = Run({Task("eval", "base", data, eval_w),
                        Task("eval", "skip", data, eval_w, skip)},
                       true);
    const int64_t f2 = backend_->total_layer_forwards();
    r.group = Run({Task("eval", "base", data, eval_w),
                   Task("eval", "skip", data, eval_w, skip),
                   Task("probe", "p", data, probe_w)},
                  true);
    const int64_t f3 = backend_->total_layer_forwards();
    r.probe_forwards = f1 - f0;
    r.eval_forwards = f2 - f1;
    r.group_forwards = f3 - f2;
    return r;
  }

  // Probe metrics of the group equal the probe task run alone: counts and
  // ranks exactly, BI and norms to 1e-6 relative; eval metrics unchanged.
  void ExpectSameResults(const SharedRuns& r) {
    for (size_t i = 0; i < 3; ++i) {
      ASSERT_TRUE(r.group.at(i).ok()) << r.group.at(i).status();
    }
    ASSERT_TRUE(r.probe_alone.at(0).ok()) << r.probe_alone.at(0).status();
    const auto alone = Flatten(*r.probe_alone.at(0));
    const auto shared = Flatten(*r.group.at(2));
    ASSERT_EQ(alone.size(), shared.size());
    int lens_rows = 0;
    for (const auto& [key, value] : alone) {
      ASSERT_EQ(shared.count(key), 1u) << key;
      if (key.rfind("bi|", 0) == 0 || key.rfind("resid_norm|", 0) == 0) {
        ExpectRelNear(value, shared.at(key), 1e-6, "probe " + key);
      } else {
        EXPECT_EQ(value, shared.at(key)) << "probe " << key;
        if (key.rfind("lens_rank|", 0) == 0) ++lens_rows;
      }
    }
    const int N = engine_->config().num_hidden_layers;
    EXPECT_EQ(lens_rows, 3 * N);  // all, factual, math
    for (size_t i = 0; i < 2; ++i) {
      ASSERT_TRUE(r.eval_alone.at(i).ok()) << r.eval_alone.at(i).status();
      const auto a = Flatten(*r.eval_alone.at(i));
      const auto b = Flatten(*r.group.at(i));
      ASSERT_EQ(a.size(), b.size());
      for (const auto& [key, value] : a) {
        ASSERT_EQ(b.count(key), 1u) << key;
        ExpectRelNear(value, b.at(key), 1e-6, "eval " + key);
      }
    }
  }

  const std::vector<std::string> shared_prompts_ = {
      "The capital of France is", "Two plus two is", "The capital of Spain is",
      "Hello there, how", "Ten minus three is"};
};

TEST_F(LmExecutorSharedPassTest, ProbeTakesItsMetricsFromTheEvalPass) {
  const int N = engine_->config().num_hidden_layers;
  const int ctx = MaxPromptTokens(shared_prompts_) + 4;
  const json w = {{"context_length", ctx}, {"bos", "on"}};
  const SharedRuns r = RunAll("shared.jsonl", w, w);
  ExpectSameResults(r);
  ASSERT_GT(r.probe_forwards, 0);
  // The probe task alone runs one unablated pass (N layers per batch).
  EXPECT_EQ(r.probe_forwards % N, 0);
  // Before: eval streams + the probe's own unablated pass. Now: the eval
  // streams only.
  EXPECT_EQ(r.group_forwards, r.eval_forwards);
  EXPECT_LT(r.group_forwards, r.eval_forwards + r.probe_forwards);
}

TEST_F(LmExecutorSharedPassTest, PromptLongerThanContextFallsBackToProbePass) {
  const int p = MaxPromptTokens(shared_prompts_);
  // The eval windows hold every text; the probe would cut the longest prompt.
  const json ew = {{"context_length", p + 4}, {"bos", "on"}};
  const json pw = {{"context_length", p - 1}, {"bos", "on"}};
  const SharedRuns r = RunAll("shared.jsonl", ew, pw);
  ExpectSameResults(r);
  EXPECT_EQ(r.group_forwards, r.eval_forwards + r.probe_forwards);
}

TEST_F(LmExecutorSharedPassTest, TextNotContinuingWithTargetFallsBack) {
  const json w = {{"context_length", 32}, {"bos", "on"}};
  const SharedRuns r = RunAll("mismatch.jsonl", w, w);
  ASSERT_TRUE(r.group.at(2).ok()) << r.group.at(2).status();
  ASSERT_TRUE(r.probe_alone.at(0).ok()) << r.probe_alone.at(0).status();
  const auto alone = Flatten(*r.probe_alone.at(0));
  const auto shared = Flatten(*r.group.at(2));
  ASSERT_EQ(alone.size(), shared.size());
  for (const auto& [key, value] : alone) {
    ASSERT_EQ(shared.count(key), 1u) << key;
    ExpectRelNear(value, shared.at(key), 1e-6, key);
  }
  EXPECT_EQ(r.group_forwards, r.eval_forwards + r.probe_forwards);
}

TEST_F(LmExecutorSharedPassTest, ProbeWithInterventionsKeepsItsOwnPass) {
  const int ctx = MaxPromptTokens(shared_prompts_) + 4;
  const json w = {{"context_length", ctx}, {"bos", "on"}};
  const json skip3 = {{{"skip", {{"layers", "3"}}}}};
  Outcomes alone = Run({Task("probe", "p", "shared.jsonl", w),
                        Task("probe", "pskip", "shared.jsonl", w, skip3)},
                       true);
  Outcomes group = Run({Task("eval", "base", "shared.jsonl", w),
                        Task("probe", "p", "shared.jsonl", w),
                        Task("probe", "pskip", "shared.jsonl", w, skip3)},
                       true);
  for (size_t i = 0; i < 2; ++i) {
    ASSERT_TRUE(alone.at(i).ok()) << alone.at(i).status();
    ASSERT_TRUE(group.at(i + 1).ok()) << group.at(i + 1).status();
    const auto a = Flatten(*alone.at(i));
    const auto b = Flatten(*group.at(i + 1));
    ASSERT_EQ(a.size(), b.size());
    for (const auto& [key, value] : a) {
      ASSERT_EQ(b.count(key), 1u) << key;
      ExpectRelNear(value, b.at(key), 1e-6, key);
    }
  }
  EXPECT_NE(Get(*group.at(1), "bi", {{"category", "all"}, {"layer", "3"}}),
            Get(*group.at(2), "bi", {{"category", "all"}, {"layer", "3"}}));
}

TEST_F(LmExecutorSharedPassTest, LayerStudyProbeSetSharesThePass) {
  // configs/sweeps/layer_study.yaml: eval and probe on a shard of the probe
  // set, windowing {context_length 64, bos on}.
  const json w = {{"context_length", 64}, {"bos", "on"}};
  auto task = [&](const std::string& kind, const std::string& key) {
    TaskInput t = Task(kind, key, "unused", w);
    Job(t).data.path = SourceDir() + "/configs/data/probe.jsonl";
    Job(t).data.shard_index = 1;
    Job(t).data.num_shards = 4;
    return t;
  };
  const int64_t f0 = backend_->total_layer_forwards();
  Outcomes eval_alone = Run({task("eval", "base")}, true);
  const int64_t f1 = backend_->total_layer_forwards();
  Outcomes probe_alone = Run({task("probe", "p")}, true);
  const int64_t f2 = backend_->total_layer_forwards();
  Outcomes group = Run({task("eval", "base"), task("probe", "p")}, true);
  const int64_t f3 = backend_->total_layer_forwards();
  ASSERT_GT(f2 - f1, 0);
  EXPECT_EQ(f3 - f2, f1 - f0);
  ASSERT_TRUE(probe_alone.at(0).ok()) << probe_alone.at(0).status();
  ASSERT_TRUE(group.at(1).ok()) << group.at(1).status();
  const auto a = Flatten(*probe_alone.at(0));
  const auto b = Flatten(*group.at(1));
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [key, value] : a) {
    ASSERT_EQ(b.count(key), 1u) << key;
    ExpectRelNear(value, b.at(key), 1e-6, key);
  }
  EXPECT_GT(Get(*group.at(1), "prompts", {{"category", "all"}}), 50);
}

// Defect: results did not say what decided their numbers. Every output now
// carries the engine's determinism record.
TEST_F(LmExecutorTest, OutputsCarryTheDeterminismRecord) {
  Outcomes out = Run(
      {Task("eval", "a", "prose.txt", {{"context_length", 16}, {"bos", "on"}})},
      true);
  ASSERT_TRUE(out.at(0).ok()) << out.at(0).status();
  const DeterminismRecord& d = out.at(0)->determinism;
  EXPECT_EQ(d.dtype, "float32");
  EXPECT_EQ(d.device_kind, "cpu");
  EXPECT_EQ(d.tensor_parallel, 1);
  EXPECT_THAT(d.attention_path, ::testing::AnyOf("sdpa", "eager"));
  EXPECT_EQ(d.gemm_tuning, "off");
  EXPECT_FALSE(d.libtorch_version.empty());
  EXPECT_EQ(d.cuda_version, "");
  EXPECT_EQ(d.nccl_version, "");
  EXPECT_THAT(d.code_version, ::testing::StartsWith("0.1.0+"));
}

TEST_F(LmExecutorTest, TaskErrorsAreReportedPerTask) {
  const json w = {{"context_length", 16}};
  std::vector<TaskInput> tasks = {
      Task("eval", "ok", "prose.txt", w),
      Task("eval", "bad-layer", "prose.txt", w,
           {{{"skip", {{"layers", "9"}}}}}),
      Task("eval", "no-file", "missing.txt", w),
  };
  tasks.push_back(tasks[0]);
  Job(tasks[3]).data.path.clear();  // no dataset
  Outcomes out = Run(tasks, true);
  EXPECT_TRUE(out.at(0).ok()) << out.at(0).status();
  ASSERT_FALSE(out.at(1).ok());
  EXPECT_EQ(out.at(1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(out.at(1).status().message(),
              HasSubstr("interventions.interventions[0].skip.layers"));
  EXPECT_THAT(out.at(1).status().message(), HasSubstr("task bad-layer"));
  ASSERT_FALSE(out.at(2).ok());
  EXPECT_EQ(out.at(2).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(out.at(2).status().message(), HasSubstr(Path("missing.txt")));
  ASSERT_FALSE(out.at(3).ok());
  EXPECT_THAT(out.at(3).status().message(), HasSubstr("data.dataset"));
}

// A worker with --model-root / --data-root refuses a task's model or dataset
// that resolves outside them, symlinks followed (issue 13, confinement).
TEST_F(LmExecutorTest, ModelsAndDatasetsOutsideTheRootsAreRefused) {
  const std::string allowed = Path("allowed");
  ASSERT_TRUE(MakeDirs(allowed + "/data").ok());
  ASSERT_TRUE(
      engine::MakeRandomModel(SourceDir() + "/configs/models/gemma4-tiny.json",
                              5, allowed + "/model")
          .ok());
  std::ofstream(allowed + "/data/prose.txt") << "Inside the data root.\n";
  // A model directory inside the root whose config.json links outside it.
  ASSERT_TRUE(MakeDirs(allowed + "/linked").ok());
  for (const char* name : {"model.safetensors", "tokenizer.json"}) {
    ASSERT_EQ(symlink((allowed + "/model/" + name).c_str(),
                      (allowed + "/linked/" + name).c_str()),
              0);
  }
  ASSERT_EQ(symlink(Path("model/config.json").c_str(),
                    (allowed + "/linked/config.json").c_str()),
            0);

  LmBackendOptions bo;
  bo.engine.model_dir = allowed + "/model";
  bo.engine.cpu_threads_per_rank = 1;
  bo.model_roots = {allowed};
  auto backend = LmBackend::Create(bo);
  ASSERT_TRUE(backend.ok()) << backend.status();
  LmExecutorOptions opts;
  opts.data_roots = {allowed + "/data"};
  auto exec = LmExecutor::Create("eval", *backend, opts);
  ASSERT_TRUE(exec.ok()) << exec.status();

  const json w = {{"context_length", 16}};
  std::vector<TaskInput> tasks = {Task("eval", "inside", "prose.txt", w),
                                  Task("eval", "outside-model", "prose.txt", w),
                                  Task("eval", "linked-config", "prose.txt", w),
                                  Task("eval", "outside-data", "prose.txt", w)};
  Job(tasks[0]).model.path = allowed + "/model";
  Job(tasks[0]).data.path = allowed + "/data/prose.txt";
  Job(tasks[1]).model.path = Path("model");
  Job(tasks[1]).data.path = allowed + "/data/prose.txt";
  Job(tasks[2]).model.path = allowed + "/linked";
  Job(tasks[2]).data.path = allowed + "/data/prose.txt";
  Job(tasks[3]).model.path = allowed + "/model";
  Outcomes out;
  for (size_t i = 0; i < tasks.size(); ++i) {
    FakeContext ctx;
    (*exec)->RunGroup({tasks[i]}, ctx,
                      [&](size_t, absl::StatusOr<TaskOutput> r) {
                        out.emplace(i, std::move(r));
                      });
  }
  ASSERT_EQ(out.size(), 4u);
  EXPECT_TRUE(out.at(0).ok()) << out.at(0).status();
  for (size_t i : {1, 2, 3}) {
    SCOPED_TRACE(tasks[i].task_key);
    ASSERT_FALSE(out.at(i).ok());
    EXPECT_EQ(out.at(i).status().code(), absl::StatusCode::kPermissionDenied)
        << out.at(i).status();
    EXPECT_THAT(out.at(i).status().message(), HasSubstr("outside"));
  }
  EXPECT_THAT(out.at(2).status().message(), HasSubstr("config.json"));
  EXPECT_THAT(out.at(3).status().message(), HasSubstr("data.dataset.path"));
}

TEST_F(LmExecutorTest, CancellationStopsTasks) {
  const json w = {{"context_length", 16}};
  std::vector<TaskInput> tasks = {
      Task("eval", "a", "prose.txt", w),
      Task("eval", "b", "prose.txt", w, {{{"skip", {{"layers", "1"}}}}})};
  FakeContext one;
  one.cancelled_tasks.insert(1);
  Outcomes out = Run(tasks, true, &one);
  EXPECT_TRUE(out.at(0).ok());
  EXPECT_EQ(out.at(1).status().code(), absl::StatusCode::kCancelled);
  ASSERT_FALSE(one.progress.empty());
  EXPECT_DOUBLE_EQ(one.progress.back(), 1.0);

  FakeContext all;
  all.cancel_all = true;
  const int64_t before = backend_->total_layer_forwards();
  out = Run(tasks, true, &all);
  EXPECT_EQ(out.at(0).status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(out.at(1).status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(backend_->total_layer_forwards(), before);
}

TEST_F(LmExecutorTest, RegisterLmExecutorsRegistersEvalAndProbe) {
  LmBackendOptions bo;
  bo.engine.model_dir = Path("model");
  bo.engine.cpu_threads_per_rank = 1;
  ExecutorRegistry registry;
  ASSERT_TRUE(RegisterLmExecutors(bo, LmExecutorOptions{}, &registry).ok());
  // head_importance shares the backend (docs/CALIBRATION.md); materialize
  // (engine-free) is registered next to them (issue 12).
  EXPECT_THAT(registry.kinds(),
              ::testing::ElementsAre("canary", "capture", "eval", "generate",
                                     "head_importance", "heal", "materialize",
                                     "probe", "retrain"));
  ASSERT_NE(registry.Find("probe"), nullptr);
  // One executor serves both kinds, so a prefix-share group mixing eval and
  // probe tasks (a staged layer study) reaches a single RunGroup.
  EXPECT_EQ(registry.Find("probe"), registry.Find("eval"));

  bo.engine.model_dir = Path("no-such-model");
  ExecutorRegistry empty;
  absl::Status s = RegisterLmExecutors(bo, LmExecutorOptions{}, &empty);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("no-such-model"));
  EXPECT_TRUE(empty.kinds().empty());
}

TEST_F(LmExecutorTest, CreateRejectsOtherKinds) {
  auto e = LmExecutor::Create("generate", backend_, LmExecutorOptions{});
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(e.status().message(), HasSubstr("generate"));
}

}  // namespace
}  // namespace sweepd
