// head_importance_bench: the head_importance executor (the real job code:
// LmBackend + HeadImportanceExecutor, as sweep-worker runs it: per window
// batch one unablated forward keeping the prefix state, then per layer L one
// forward from layer L with the heads as batch rows) on --tokens calibration
// tokens cut into windows of --window tokens, against the naive baseline:
// leave-one-out with one full forward per masked head, 1 + layers × heads
// forwards. The naive run at the 31B shape is 1921 full forwards, so by
// default it is ESTIMATED: --naive-forwards K full forwards of the same
// windows, each with one head masked, are timed and the median × (layers ×
// heads + 1) is printed as "naive estimate". --naive on also runs the naive
// executor itself (layer-forwards, token-layers, wall time, the largest
// |Δ delta| between the two). With --layers restricting the scored layers
// (printed) the all-layers batched time is extrapolated by token-layers
// (labelled). The scale case (docs/CALIBRATION.md, "Head importance"):
//
//   head_importance_bench --config configs/models/gemma4-31b.json
//     --random-weights --device cuda --dtype bf16 --tokens 2048
//     --heads-per-forward 8 [--layers 0,30,59]
//
// The engine builds random weights on the device from the config (no
// checkpoint is written; bench_model.h makes the model directory).
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
#include "tests/bench/bench_model.h"
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
  bench::ModelFlags model;
  model.engine.config_path = "configs/models/gemma4-tiny-60.json";
  model.dtype = "float32";
  std::string layers = "all";
  int64_t tokens_wanted = 2048, window = 2048, heads_per_forward = 0;
  int64_t max_batch_tokens = 1 << 20;
  int naive_forwards = 3;
  bool naive = false;
  bench::AddModelFlags(app, model);
  app.add_option("--tokens", tokens_wanted, "calibration tokens (at least)");
  app.add_option("--window", window, "window length (tokens)");
  app.add_option("--seq", window, "same as --window");
  app.add_option("--layers", layers, "layer selector to score");
  app.add_option("--heads-per-forward", heads_per_forward,
                 "head copies per forward (0 = all heads of a layer)");
  app.add_option("--max-batch-tokens", max_batch_tokens,
                 "tokens per forward (the window's copies included)");
  app.add_option("--naive-forwards", naive_forwards,
                 "full one-head-masked forwards timed for the naive estimate "
                 "(0 = none)");
  app.add_option("--naive", naive, "also run the naive executor (on|off)");
  CLI11_PARSE(app, argc, argv);
  // The engine always builds random weights from a config here.
  if (model.engine.model_dir.empty()) model.engine.random_weights = true;

  auto fail = [](const absl::Status& s) {
    std::fprintf(stderr, "head_importance_bench: %s\n", s.ToString().c_str());
    return 1;
  };
  if (absl::Status s = bench::FinishModelFlags(model); !s.ok()) return fail(s);
  if (tokens_wanted < 2 || window < 2) {
    return fail(absl::InvalidArgumentError("--tokens, --window: at least 2"));
  }
  std::string temp_model;
  auto model_dir = bench::ModelDirFor(model, &temp_model);
  if (!model_dir.ok()) return fail(model_dir.status());
  auto cfg = ModelConfig::FromFile(*model_dir + "/config.json");
  if (!cfg.ok()) return fail(cfg.status());
  char tmpl[] = "/tmp/head_importance_bench_XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return fail(absl::InternalError("mkdtemp"));
  const std::string dir = tmpl;
  auto tokenizer = Tokenizer::FromFile(*model_dir + "/tokenizer.json");
  if (!tokenizer.ok()) return fail(tokenizer.status());
  // One record that encodes to at least --tokens tokens, cut into windows of
  // --window tokens (stride = window: every token scored once).
  std::mt19937_64 rng(7);
  std::string text;
  int64_t tokens = 0;
  static const char* kSyllables[] = {"ka", "lo", "mer", "tin", "sa",
                                     "vo", "ri", "den", "pa",  "gul"};
  while (tokens < tokens_wanted) {
    for (int i = 0; i < 64; ++i) {
      text += " ";
      text += kSyllables[rng() % 10];
      text += kSyllables[rng() % 10];
    }
    auto ids = (*tokenizer)->Encode(text, BosPolicy::kOn);
    if (!ids.ok()) return fail(ids.status());
    tokens = static_cast<int64_t>(ids->size());
  }
  // Trim to about --tokens (whole words).
  while (true) {
    const size_t cut = text.rfind(' ');
    if (cut == std::string::npos || cut == 0) break;
    auto ids = (*tokenizer)->Encode(text.substr(0, cut), BosPolicy::kOn);
    if (!ids.ok()) return fail(ids.status());
    if (static_cast<int64_t>(ids->size()) < tokens_wanted) break;
    text.resize(cut);
    tokens = static_cast<int64_t>(ids->size());
  }
  std::ofstream(dir + "/shard.txt") << text << "\n";
  window = std::min(window, tokens);
  const int64_t windows = (tokens + window - 1) / window;

  LmBackendOptions bo;
  bo.engine = model.engine;
  bo.engine.model_dir = *model_dir;
  bo.engine.config_path.clear();
  bo.engine.prefix_device_budget_bytes = int64_t{16} << 30;
  auto backend = LmBackend::Create(bo);
  if (!backend.ok()) return fail(backend.status());

  HeadImportanceJobSpec job;
  job.model.path = *model_dir;
  job.dataset_name = "bench";
  job.data.path = dir + "/shard.txt";
  job.data.split = TextSplit::kFile;
  job.windowing.context_length = static_cast<int>(window);
  job.windowing.stride = static_cast<int>(window);
  auto selected =
      ParseLayerSelector(layers, cfg->num_hidden_layers, "--layers");
  if (!selected.ok()) return fail(selected.status());
  job.layers = *selected;
  job.heads_per_forward = static_cast<int>(heads_per_forward);
  TaskInput task;
  task.task_key = "bench";
  task.kind = kHeadImportanceKind;
  task.job = job;

  const int N = cfg->num_hidden_layers, H = cfg->num_attention_heads;
  std::string layer_list;
  for (int L : job.layers) {
    absl::StrAppend(&layer_list, layer_list.empty() ? "" : ",", L);
  }
  std::printf(
      "model %s: %d layers x %d heads, %s %s; %lld tokens in %lld windows of "
      "<= %lld; heads_per_forward %lld, max_batch_tokens %lld\n",
      model.engine.config_path.empty() ? model_dir->c_str()
                                       : model.engine.config_path.c_str(),
      N, H, model.engine.device.c_str(), engine::DTypeName(model.engine.dtype),
      (long long)tokens, (long long)windows, (long long)window,
      (long long)heads_per_forward, (long long)max_batch_tokens);
  std::printf(
      "scored layers (%zu of %d): %s\n", job.layers.size(), N,
      job.layers.size() == static_cast<size_t>(N) ? "all" : layer_list.c_str());
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
  // Token-layers of the batched algorithm per token for a layer set: the
  // unablated pass (N) plus H copies of layers L..N-1 per scored layer.
  auto batched_units = [&](const std::vector<int>& ls) {
    double u = N;
    for (int L : ls) u += static_cast<double>(H) * (N - L);
    return u;
  };
  std::vector<int> all_layers(N);
  for (int L = 0; L < N; ++L) all_layers[L] = L;
  const double batched_all_s =
      batched.seconds * batched_units(all_layers) / batched_units(job.layers);
  if (job.layers.size() != static_cast<size_t>(N)) {
    std::printf(
        "batched, all %d layers: %.3f s (EXTRAPOLATED from the %zu scored "
        "layers by token-layers)\n",
        N, batched_all_s, job.layers.size());
  }

  if (naive_forwards > 0) {
    // The naive baseline's unit: one full forward of every window with one
    // head masked (all windows in one batch when they fit --max-batch-tokens,
    // else window by window).
    auto m = (*backend)->Acquire(job.model);
    if (!m.ok()) return fail(m.status());
    const int64_t per_batch =
        std::max<int64_t>(1, std::min(windows, max_batch_tokens / window));
    std::vector<double> times;
    for (int k = 0; k < naive_forwards; ++k) {
      const int L = job.layers[k % job.layers.size()];
      const int h = k % H;
      const auto t0 = std::chrono::steady_clock::now();
      for (int64_t w0 = 0; w0 < windows; w0 += per_batch) {
        engine::ForwardRequest req = bench::RandomRequest(
            std::min(per_batch, windows - w0), window, cfg->vocab_size,
            static_cast<uint32_t>(1000 + k));
        req.interventions = {engine::Intervention::MaskHeads(L, {h})};
        auto r = m->engine->Forward(req);
        if (!r.ok()) return fail(r.status());
      }
      times.push_back(bench::Seconds(t0));
    }
    std::sort(times.begin(), times.end());
    const double per = times[times.size() / 2];
    const double n_sel = 1.0 + static_cast<double>(job.layers.size()) * H;
    const double n_all = 1.0 + static_cast<double>(N) * H;
    std::printf(
        "naive one-head-masked full forward: median %.3f s of %d timed\n", per,
        naive_forwards);
    std::printf(
        "naive ESTIMATE (median x forwards), scored layers: %.0f forwards = "
        "%.1f s; batched/naive-estimate wall ratio %.3f (speed-up %.1fx)\n",
        n_sel, per * n_sel, batched.seconds / (per * n_sel),
        per * n_sel / batched.seconds);
    std::printf(
        "naive ESTIMATE, all %d layers: %.0f forwards = %.1f s; batched (all "
        "layers%s) %.1f s; ratio %.3f (speed-up %.1fx)\n",
        N, n_all, per * n_all,
        job.layers.size() == static_cast<size_t>(N) ? "" : ", extrapolated",
        batched_all_s, batched_all_s / (per * n_all),
        per * n_all / batched_all_s);
  }
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
  if (!temp_model.empty()) (void)RemoveAll(temp_model);
  return 0;
}

}  // namespace
}  // namespace sweepd

int main(int argc, char** argv) { return sweepd::Main(argc, argv); }
