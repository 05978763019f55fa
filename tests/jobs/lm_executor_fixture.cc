#include "tests/jobs/lm_executor_fixture.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/layer_selector.h"
#include "tests/jobs/executor_test_env.h"
#include "worker/jobs/windowing.h"

namespace sweepd::jobs_test {
namespace {

// Records whose text is prompt + target, shared by probe.jsonl and
// shared.jsonl.
const char kThreeProbeRecords[] =
    R"({"prompt": "The capital of France is", "target": " Paris", "text": "The capital of France is Paris", "category": "factual"})"
    "\n"
    R"({"prompt": "Two plus two is", "target": " four", "text": "Two plus two is four", "category": "math"})"
    "\n"
    R"({"prompt": "The capital of Spain is", "target": " Madrid", "text": "The capital of Spain is Madrid", "category": "factual"})"
    "\n";

}  // namespace

using json = nlohmann::json;

std::map<std::string, double> Flatten(const TaskOutput& out) {
  std::map<std::string, double> m;
  for (const MetricRow& r : out.metrics) {
    std::string key = r.name;
    for (const auto& [k, v] : r.labels) absl::StrAppend(&key, "|", k, "=", v);
    EXPECT_TRUE(m.emplace(key, r.value).second) << "duplicate row " << key;
  }
  return m;
}

void ExpectRelNear(double expected, double actual, double rel,
                   const std::string& what) {
  EXPECT_LE(std::fabs(expected - actual),
            rel * std::max(1e-12, std::fabs(expected)))
      << what << ": expected " << expected << " got " << actual;
}

std::string* LmExecutorTest::dir_ = nullptr;

void LmExecutorTest::SetUpTestSuite() {
  auto dir = MakeTinyModelDir("lm_executor_test");
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
      std::string(kThreeProbeRecords) +
          R"({"prompt": "Hello there, how", "target": " are", "text": "Hello there, how are you"})"
          "\n"
          R"({"text": "A record without a prompt has no rank but enters BI.", "category": "math"})"
          "\n");
  // Every record: text = prompt + target (the eval pass can carry the
  // probe).
  Write(
      "shared.jsonl",
      std::string(kThreeProbeRecords) +
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

void LmExecutorTest::TearDownTestSuite() {
  EXPECT_TRUE(RemoveAll(*dir_).ok());
  delete dir_;
}

void LmExecutorTest::Write(const std::string& name, const std::string& text) {
  std::ofstream(*dir_ + "/" + name) << text;
}

std::string LmExecutorTest::Path(const std::string& name) {
  return *dir_ + "/" + name;
}

void LmExecutorTest::SetUp() {
  auto backend = MakeBackend(Path("model"));
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

TaskInput LmExecutorTest::Task(const std::string& kind, const std::string& key,
                               const std::string& data, json windowing,
                               json interventions) {
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

Outcomes LmExecutorTest::Run(const std::vector<TaskInput>& tasks, bool reuse,
                             FakeContext* ctx_in, int64_t max_batch_tokens,
                             std::shared_ptr<ArtifactStore> artifacts) {
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

void LmExecutorTest::HandEval(const std::vector<int32_t>& ids, int ctx,
                              int stride,
                              const std::vector<engine::Intervention>& ivs,
                              double* nll_sum, int64_t* tokens) {
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

}  // namespace sweepd::jobs_test
