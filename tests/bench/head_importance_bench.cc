// head_importance_bench: the head_importance executor (the real job code:
// LmBackend + HeadImportanceExecutor, as sweep-worker runs it) against the
// naive reference (one full forward per head) on one generated window:
// layer-forwards, token-layers (layers run × tokens of every batch row), wall
// time, their ratios and the largest |Δ delta| between the two runs. The
// issue's scale case (docs/CALIBRATION.md, "Head importance"): 60 layers × 32
// heads over 2048 tokens, against the naive 1921 full forwards:
//
//   head_importance_bench --config configs/models/gemma4-31b.json --device cuda
//     --dtype bfloat16 --seq 2048 --heads-per-forward 8
//
// The engine builds random weights on the device from the config (no
// checkpoint is written). --naive off skips the reference run.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/layer_selector.h"
#include "common/model_config.h"
#include "common/tokenizer.h"
#include "common/tokenizer_gen.h"
#include "worker/engine/engine.h"
#include "worker/jobs/head_importance_executor.h"
#include "worker/jobs/lm_executor.h"

namespace sweepd {
namespace {

class BenchContext : public TaskContext {
 public:
  bool cancelled() const override { return false; }
  bool task_cancelled(size_t) const override { return false; }
  void SetProgress(double) override {}
};

struct Run {
  double seconds = 0;
  std::map<std::string, double> rows;  // name|layer|head -> value
  bool ok = false;
};

Run RunOnce(const std::shared_ptr<LmBackend>& backend, bool naive,
            const TaskInput& task, int64_t max_batch_tokens) {
  HeadImportanceExecutorOptions o;
  o.naive = naive;
  o.max_batch_tokens = max_batch_tokens;
  auto ex = HeadImportanceExecutor::Create(backend, o);
  Run out;
  if (!ex.ok()) return out;
  BenchContext ctx;
  const auto t0 = std::chrono::steady_clock::now();
  (*ex)->RunGroup({task}, ctx, [&](size_t, absl::StatusOr<TaskOutput> r) {
    if (!r.ok()) {
      std::fprintf(stderr, "%s\n", r.status().ToString().c_str());
      return;
    }
    out.ok = true;
    for (const MetricRow& m : r->metrics) {
      std::string key = m.name;
      for (const auto& [k, v] : m.labels) absl::StrAppend(&key, "|", v);
      out.rows[key] = m.value;
    }
  });
  out.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  return out;
}

int Main(int argc, char** argv) {
  CLI::App app("head_importance_bench");
  std::string config = "configs/models/gemma4-tiny-60.json";
  std::string device = "cpu", dtype_name = "float32", layers = "all";
  int64_t seq = 256, heads_per_forward = 0, max_batch_tokens = 1 << 20;
  int threads = 0;
  bool naive = true;
  app.add_option("--config", config, "model config.json");
  app.add_option("--device", device, "cpu | cuda");
  app.add_option("--dtype", dtype_name, "float32 | bfloat16");
  app.add_option("--seq", seq, "tokens of the one window");
  app.add_option("--layers", layers, "layer selector to score");
  app.add_option("--heads-per-forward", heads_per_forward,
                 "head copies per forward (0 = all heads of a layer)");
  app.add_option("--max-batch-tokens", max_batch_tokens,
                 "tokens per forward (the window's copies included)");
  app.add_option("--threads", threads, "CPU threads per rank (0 = all)");
  app.add_option("--naive", naive, "also run the naive reference (on|off)");
  CLI11_PARSE(app, argc, argv);

  auto fail = [](const absl::Status& s) {
    std::fprintf(stderr, "head_importance_bench: %s\n", s.ToString().c_str());
    return 1;
  };
  auto cfg = ModelConfig::FromFile(config);
  if (!cfg.ok()) return fail(cfg.status());
  auto dtype = engine::ParseDType(dtype_name);
  if (!dtype.ok()) return fail(dtype.status());
  char tmpl[] = "/tmp/head_importance_bench_XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return fail(absl::InternalError("mkdtemp"));
  const std::string dir = tmpl;
  const std::string model_dir = dir + "/model";
  if (absl::Status s = MakeDirs(model_dir); !s.ok()) return fail(s);
  if (absl::Status s = CopyFile(config, model_dir + "/config.json"); !s.ok()) {
    return fail(s);
  }
  auto tok_json = GenerateTokenizerJson(cfg->vocab_size);
  if (!tok_json.ok()) return fail(tok_json.status());
  std::ofstream(model_dir + "/tokenizer.json") << *tok_json;
  auto tokenizer = Tokenizer::FromFile(model_dir + "/tokenizer.json");
  if (!tokenizer.ok()) return fail(tokenizer.status());
  // One record of the first word count that encodes to at least `seq`
  // tokens; the window is the whole record (one window, `tokens` long).
  std::mt19937_64 rng(7);
  std::string text;
  int64_t tokens = 0;
  static const char* kSyllables[] = {"ka", "lo", "mer", "tin", "sa",
                                     "vo", "ri", "den", "pa",  "gul"};
  while (tokens < seq) {
    text += " ";
    text += kSyllables[rng() % 10];
    text += kSyllables[rng() % 10];
    auto ids = (*tokenizer)->Encode(text, BosPolicy::kOn);
    if (!ids.ok()) return fail(ids.status());
    tokens = static_cast<int64_t>(ids->size());
  }
  std::ofstream(dir + "/shard.txt") << text << "\n";

  LmBackendOptions bo;
  bo.engine.model_dir = model_dir;
  bo.engine.random_weights = true;
  bo.engine.seed = 1;
  bo.engine.device = device;
  bo.engine.dtype = *dtype;
  bo.engine.cpu_threads_per_rank = threads;
  bo.engine.prefix_device_budget_bytes = int64_t{16} << 30;
  auto backend = LmBackend::Create(bo);
  if (!backend.ok()) return fail(backend.status());

  HeadImportanceJobSpec job;
  job.model.path = model_dir;
  job.dataset_name = "bench";
  job.data.path = dir + "/shard.txt";
  job.data.split = TextSplit::kFile;
  job.windowing.context_length = static_cast<int>(tokens);
  job.windowing.stride = static_cast<int>(tokens);
  auto selected =
      ParseLayerSelector(layers, cfg->num_hidden_layers, "--layers");
  if (!selected.ok()) return fail(selected.status());
  job.layers = *selected;
  job.heads_per_forward = static_cast<int>(heads_per_forward);
  TaskInput task;
  task.task_key = "bench";
  task.kind = kHeadImportanceKind;
  task.job = job;

  std::printf(
      "model %s: %d layers x %d heads, %s %s; %lld tokens; %zu "
      "layers scored, heads_per_forward %lld\n",
      config.c_str(), cfg->num_hidden_layers, cfg->num_attention_heads,
      device.c_str(), dtype_name.c_str(), (long long)tokens, job.layers.size(),
      (long long)heads_per_forward);
  const Run batched = RunOnce(*backend, false, task, max_batch_tokens);
  if (!batched.ok) return 1;
  std::printf("%-10s %16s %16s %10s\n", "run", "layer-forwards", "token-layers",
              "wall s");
  auto line = [](const char* name, const Run& r) {
    std::printf("%-10s %16.0f %16.0f %10.3f\n", name,
                r.rows.at("head_importance_layer_forwards"),
                r.rows.at("head_importance_token_layers"), r.seconds);
  };
  line("batched", batched);
  if (naive) {
    const Run ref = RunOnce(*backend, true, task, max_batch_tokens);
    if (!ref.ok) return 1;
    line("naive", ref);
    double max_diff = 0;
    for (const auto& [key, v] : ref.rows) {
      if (key.rfind("head_nll_delta", 0) != 0) continue;
      max_diff = std::max(max_diff, std::fabs(v - batched.rows.at(key)));
    }
    std::printf(
        "ratio batched/naive: token-layers %.3f, wall %.3f; max |delta "
        "difference| %.3g nats\n",
        batched.rows.at("head_importance_token_layers") /
            ref.rows.at("head_importance_token_layers"),
        batched.seconds / ref.seconds, max_diff);
  }
  (void)RemoveAll(dir);
  return 0;
}

}  // namespace
}  // namespace sweepd

int main(int argc, char** argv) { return sweepd::Main(argc, argv); }
