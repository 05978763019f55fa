// jobs_bench: measures prefix reuse on the eval executor. Writes a
// random-weight model from a config (default
// configs/models/gemma4-tiny-60.json), takes records of a text corpus until the
// shard holds --windows windows of
// --context tokens, and runs one group of the unablated baseline plus the
// single-layer skip ablation of every layer, once with prefix reuse and once
// without. Prints layer-forwards executed, wall time, their ratios, and the
// largest relative difference between the two runs' metrics.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/tokenizer.h"
#include "nlohmann/json.hpp"
#include "worker/engine/api.h"
#include "worker/engine/config.h"
#include "worker/engine/model_generator.h"
#include "worker/jobs/dataset.h"
#include "worker/jobs/lm_executor.h"
#include "worker/jobs/windowing.h"

namespace sweepd {
namespace {

constexpr char kUsage[] = R"(usage: jobs_bench [flags]
  --config FILE     model config (default configs/models/gemma4-tiny-60.json)
  --corpus FILE     text corpus (default configs/data/corpus_prose.txt)
  --windows N       windows in the shard (default 4)
  --context N       context_length = stride (default 128)
  --seed N          weight seed (default 1)
  --threads N       CPU threads for the engine (default: all)
)";

class BenchContext : public TaskContext {
 public:
  bool cancelled() const override { return false; }
  bool task_cancelled(size_t) const override { return false; }
  void SetProgress(double) override {}
};

struct RunResult {
  int64_t layer_forwards = 0;
  double seconds = 0;
  std::vector<TaskOutput> outputs;
  int failures = 0;
};

RunResult RunOnce(const std::shared_ptr<LmBackend>& backend, bool reuse,
                  const std::vector<TaskInput>& tasks) {
  LmExecutorOptions opts;
  opts.prefix_reuse = reuse;
  auto exec = LmExecutor::Create("eval", backend, opts);
  if (!exec.ok()) {
    std::fprintf(stderr, "%s\n", exec.status().ToString().c_str());
    std::exit(1);
  }
  RunResult out;
  out.outputs.resize(tasks.size());
  BenchContext ctx;
  const int64_t before = backend->total_layer_forwards();
  const auto t0 = std::chrono::steady_clock::now();
  (*exec)->RunGroup(tasks, ctx, [&](size_t i, absl::StatusOr<TaskOutput> r) {
    if (!r.ok()) {
      std::fprintf(stderr, "task %zu: %s\n", i, r.status().ToString().c_str());
      ++out.failures;
      return;
    }
    out.outputs[i] = std::move(*r);
  });
  out.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  out.layer_forwards = backend->total_layer_forwards() - before;
  return out;
}

int Main(int argc, char** argv) {
  std::string config = "configs/models/gemma4-tiny-60.json";
  std::string corpus = "configs/data/corpus_prose.txt";
  int64_t windows = 4, context = 128, seed = 1, threads = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "jobs_bench: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    auto number = [&](int64_t* out) {
      const std::string v = value();
      if (!absl::SimpleAtoi(v, out)) {
        std::fprintf(stderr, "jobs_bench: %s: '%s' is not a number\n",
                     a.c_str(), v.c_str());
        std::exit(2);
      }
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--config") {
      config = value();
    } else if (a == "--corpus") {
      corpus = value();
    } else if (a == "--windows") {
      number(&windows);
    } else if (a == "--context") {
      number(&context);
    } else if (a == "--seed") {
      number(&seed);
    } else if (a == "--threads") {
      number(&threads);
    } else {
      std::fprintf(stderr, "jobs_bench: unknown flag %s\n%s", a.c_str(),
                   kUsage);
      return 2;
    }
  }
  char tmpl[] = "/tmp/jobs_bench_XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::string dir = tmpl;
  const std::string model_dir = dir + "/model";
  absl::Status s =
      engine::MakeRandomModel(config, static_cast<uint64_t>(seed), model_dir);
  if (!s.ok()) {
    std::fprintf(stderr, "jobs_bench: %s\n", s.ToString().c_str());
    return 1;
  }
  auto tokenizer = Tokenizer::FromFile(model_dir + "/tokenizer.json");
  auto records = ReadRecords(corpus, 0);
  if (!tokenizer.ok() || !records.ok()) {
    std::fprintf(stderr, "jobs_bench: %s %s\n",
                 tokenizer.status().ToString().c_str(),
                 records.status().ToString().c_str());
    return 1;
  }
  Windowing w;
  w.context_length = static_cast<int>(context);
  w.stride = static_cast<int>(context);
  w.bos = BosPolicy::kOn;
  // Take records until the shard holds `windows` windows.
  int64_t have = 0, scored = 0, used = 0;
  for (const TextRecord& r : *records) {
    if (have >= windows) break;
    auto ids = (*tokenizer)->Encode(r.text, BosPolicy::kOn);
    if (!ids.ok()) {
      std::fprintf(stderr, "jobs_bench: %s\n", ids.status().ToString().c_str());
      return 1;
    }
    for (const TokenWindow& win : MakeWindows(ids->size(), w)) {
      ++have;
      scored += win.scored();
    }
    ++used;
  }
  auto cfg = engine::ModelConfig::FromFile(config);
  if (!cfg.ok()) {
    std::fprintf(stderr, "jobs_bench: %s\n", cfg.status().ToString().c_str());
    return 1;
  }
  const std::string config_text = absl::StrCat(
      cfg->num_hidden_layers, " layers, hidden ", cfg->hidden_size);
  const int N = cfg->num_hidden_layers;

  LmBackendOptions bo;
  bo.engine.model_dir = model_dir;
  bo.engine.cpu_threads_per_rank = static_cast<int>(threads);
  auto backend = LmBackend::Create(bo);
  if (!backend.ok()) {
    std::fprintf(stderr, "jobs_bench: %s\n",
                 backend.status().ToString().c_str());
    return 1;
  }
  nlohmann::json base = {
      {"model", {{"path", model_dir}}},
      {"data",
       {{"dataset",
         {{"name", "bench"}, {"path", corpus}, {"max_records", used}}},
        {"shard_index", 0},
        {"num_shards", 1}}},
      {"eval",
       {{"windowing",
         {{"context_length", context}, {"stride", context}, {"bos", "on"}}}}}};
  std::vector<TaskInput> tasks;
  for (int L = -1; L < N; ++L) {
    TaskInput t;
    t.kind = "eval";
    t.task_key = L < 0 ? "baseline" : absl::StrCat("skip-", L);
    t.spec = base;
    if (L >= 0) {
      t.spec["interventions"] = {
          {"interventions", {{{"skip", {{"layers", std::to_string(L)}}}}}}};
    }
    tasks.push_back(std::move(t));
  }
  std::printf(
      "model: %s (%s), shard: %lld records, %lld windows, %lld scored "
      "tokens, context %lld; tasks: baseline + skip of each of %d "
      "layers = %zu\n",
      config.c_str(), config_text.c_str(), (long long)used, (long long)have,
      (long long)scored, (long long)context, N, tasks.size());
  // Warm-up (first-touch allocations) on the baseline only.
  RunOnce(*backend, false, {tasks[0]});
  RunResult off = RunOnce(*backend, false, tasks);
  RunResult on = RunOnce(*backend, true, tasks);
  double max_rel = 0;
  for (size_t i = 0; i < tasks.size(); ++i) {
    const auto& a = off.outputs[i].metrics;
    const auto& b = on.outputs[i].metrics;
    if (a.size() != b.size()) {
      max_rel = INFINITY;
      continue;
    }
    for (size_t k = 0; k < a.size(); ++k) {
      const double d = std::fabs(a[k].value - b[k].value) /
                       std::max(1e-30, std::fabs(a[k].value));
      max_rel = std::max(max_rel, d);
    }
  }
  std::printf("%-14s %16s %12s\n", "prefix reuse", "layer-forwards", "wall s");
  std::printf("%-14s %16lld %12.3f\n", "off", (long long)off.layer_forwards,
              off.seconds);
  std::printf("%-14s %16lld %12.3f\n", "on", (long long)on.layer_forwards,
              on.seconds);
  std::printf("ratio on/off: layer-forwards %.3f, wall time %.3f\n",
              static_cast<double>(on.layer_forwards) / off.layer_forwards,
              on.seconds / off.seconds);
  std::printf("max relative metric difference on vs off: %.3g; failures: %d\n",
              max_rel, off.failures + on.failures);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return off.failures + on.failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace sweepd

int main(int argc, char** argv) { return sweepd::Main(argc, argv); }
