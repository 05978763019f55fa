// jobs_bench: measures prefix reuse on the LM executor (the real job code:
// LmBackend + LmExecutor::RunGroup, as sweep-worker runs it). Runs one group of
// the unablated baseline plus the single-layer skip ablation of every layer,
// once with prefix reuse and once without, and prints layer-forwards executed,
// wall time, their ratios, and the largest relative difference between the
// two runs' metrics.
//
// Default (CPU): writes a random-weight model from a config (default
// configs/models/gemma4-tiny-60.json) and takes records of a text corpus until
// the shard holds --windows windows of --context tokens ("eval" tasks).
//
// --random-weights: the engine builds the weights directly on the device from
// the config (no checkpoint is written; the model directory holds only
// config.json and a generated tokenizer.json), e.g. the 31B shape on CUDA:
//   jobs_bench --random-weights --config configs/models/gemma4-31b.json
//     --device cuda --dtype bfloat16 --kind probe --seq 2048
// The shard is generated deterministically from --seed: for --kind probe one
// JSONL record whose prompt encodes to at least --seq tokens (the probe keeps
// the last --seq, BOS included) and a one-word target, so each task is one
// forward of 1 x --seq tokens with the probe statistics; for --kind eval a
// text of one --seq window.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/model_config.h"
#include "common/tokenizer.h"
#include "common/tokenizer_gen.h"
#include "nlohmann/json.hpp"
#include "tests/bench/bench_model.h"
#include "worker/engine/engine.h"
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
  --random-weights  build the weights on the device; generated shard (below)
  --kind K          eval | probe (default eval)
  --seq N           with --random-weights: tokens per sequence (default 2048)
  --device D        cpu | cuda (default cpu)
  --dtype T         float32 | bfloat16 (default float32)
  --gemm-tuning G   off | autotune: CUDA bf16 GEMM algorithms (default off)
  --prefix-budget-mb M  prefix states kept on the device (default 8192)
  --max-batch-tokens N  executor batching (default 4096)
)";

// A deterministic pseudo-English text of `words` words.
std::string GeneratedText(int64_t words, uint64_t seed) {
  static const char* kSyllables[] = {
      "ka",  "lo", "mer", "tin", "sa", "vo",  "ri",  "den", "pa", "gul",
      "est", "an", "or",  "bel", "cu", "dra", "fen", "hi",  "jo", "qua"};
  std::mt19937_64 rng(seed);
  std::string text;
  for (int64_t i = 0; i < words; ++i) {
    if (i > 0) text += (rng() % 12 == 0) ? ". " : " ";
    const int n = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < n; ++k) text += kSyllables[rng() % 20];
  }
  return text;
}

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
                  const std::vector<TaskInput>& tasks,
                  int64_t max_batch_tokens) {
  LmExecutorOptions opts;
  opts.prefix_reuse = reuse;
  opts.max_batch_tokens = max_batch_tokens;
  auto exec = LmExecutor::Create(tasks[0].kind, backend, opts);
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
  // Line-buffered, so the log keeps every line even if the process dies.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::string config = "configs/models/gemma4-tiny-60.json";
  std::string corpus = "configs/data/corpus_prose.txt";
  std::string kind = "eval", device = "cpu", dtype_name = "float32",
              tuning_name = "off";
  int64_t windows = 4, context = 128, seed = 1, threads = 0, seq = 2048;
  int64_t prefix_budget_mb = 8192, max_batch_tokens = 4096;
  bool random_weights = false;
  bool help = false;
  CLI::App app{"jobs_bench"};
  app.set_help_flag();
  app.allow_extras();
  // A repeated flag keeps its last value.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_flag("--help,-h", help);
  app.add_option("--config", config);
  app.add_option("--corpus", corpus);
  app.add_flag("--random-weights", random_weights);
  app.add_option("--kind", kind);
  app.add_option("--device", device);
  app.add_option("--dtype", dtype_name);
  app.add_option("--gemm-tuning", tuning_name);
  // The numeric flags are read as text and converted below, so a bad number
  // is reported as before.
  const std::vector<std::pair<const char*, int64_t*>> numbers = {
      {"--windows", &windows},
      {"--context", &context},
      {"--seed", &seed},
      {"--threads", &threads},
      {"--seq", &seq},
      {"--prefix-budget-mb", &prefix_budget_mb},
      {"--max-batch-tokens", &max_batch_tokens}};
  std::vector<std::string> number_text(numbers.size());
  std::vector<const CLI::Option*> number_flags;
  for (size_t k = 0; k < numbers.size(); ++k) {
    number_flags.push_back(app.add_option(numbers[k].first, number_text[k]));
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ArgumentMismatch& e) {
    // "--seq: 1 required TEXT missing": a flag without its value.
    const std::string what = e.what();
    std::fprintf(stderr, "jobs_bench: %s needs a value\n",
                 what.substr(0, what.find(':')).c_str());
    return 2;
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "jobs_bench: %s\n%s", e.what(), kUsage);
    return 2;
  }
  if (help) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (!app.remaining().empty()) {
    std::fprintf(stderr, "jobs_bench: unknown flag %s\n%s",
                 app.remaining().front().c_str(), kUsage);
    return 2;
  }
  for (size_t k = 0; k < numbers.size(); ++k) {
    if (number_flags[k]->count() > 0 &&
        !absl::SimpleAtoi(number_text[k], numbers[k].second)) {
      std::fprintf(stderr, "jobs_bench: %s: '%s' is not a number\n",
                   numbers[k].first, number_text[k].c_str());
      return 2;
    }
  }
  if (kind != "eval" && kind != "probe") {
    std::fprintf(stderr, "jobs_bench: --kind must be eval or probe, got %s\n",
                 kind.c_str());
    return 2;
  }
  auto dtype = engine::ParseDType(dtype_name);
  if (!dtype.ok()) {
    std::fprintf(stderr, "jobs_bench: --dtype: %s\n",
                 dtype.status().ToString().c_str());
    return 2;
  }
  auto tuning = engine::ParseGemmTuning(tuning_name);
  if (!tuning.ok()) {
    std::fprintf(stderr, "jobs_bench: --gemm-tuning: %s\n",
                 tuning.status().ToString().c_str());
    return 2;
  }
  auto fail = [](const absl::Status& st) {
    std::fprintf(stderr, "jobs_bench: %s\n", st.ToString().c_str());
    return 1;
  };
  char tmpl[] = "/tmp/jobs_bench_XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::string dir = tmpl;
  const std::string model_dir = dir + "/model";
  auto cfg = ModelConfig::FromFile(config);
  if (!cfg.ok()) return fail(cfg.status());
  if (random_weights) {
    // config.json + tokenizer.json only: the engine builds the weights.
    if (absl::Status s = bench::WriteConfigAndTokenizer(config, model_dir);
        !s.ok()) {
      return fail(s);
    }
  } else {
    absl::Status s =
        engine::MakeRandomModel(config, static_cast<uint64_t>(seed), model_dir);
    if (!s.ok()) return fail(s);
  }
  auto tokenizer = Tokenizer::FromFile(model_dir + "/tokenizer.json");
  if (!tokenizer.ok()) return fail(tokenizer.status());
  int64_t have = 0, scored = 0, used = 0;
  if (random_weights) {
    context = seq;
    // Grow the generated text until it encodes to at least `seq` tokens.
    std::string text;
    for (int64_t words = seq;; words *= 2) {
      text = GeneratedText(words, static_cast<uint64_t>(seed));
      auto ids = (*tokenizer)->Encode(text, BosPolicy::kOn);
      if (!ids.ok()) return fail(ids.status());
      if (static_cast<int64_t>(ids->size()) >= seq) break;
    }
    if (kind == "probe") {
      corpus = dir + "/shard.jsonl";
      std::ofstream(corpus)
          << nlohmann::json{{"prompt", text}, {"target", " kalo"}}.dump()
          << "\n";
      have = 1;
      scored = 1;
    } else {
      // Exactly one window of `seq` tokens: cut the text by words.
      corpus = dir + "/shard.txt";
      std::string cut = text;
      while (true) {
        auto ids = (*tokenizer)->Encode(cut, BosPolicy::kOn);
        if (!ids.ok()) return fail(ids.status());
        if (static_cast<int64_t>(ids->size()) <= seq) break;
        cut = cut.substr(0, cut.find_last_of(' '));
      }
      std::ofstream(corpus) << cut << "\n";
      have = 1;
      scored = seq - 1;
    }
    used = 1;
  } else {
    auto records = ReadRecords(corpus, 0);
    if (!records.ok()) return fail(records.status());
    Windowing w;
    w.context_length = static_cast<int>(context);
    w.stride = static_cast<int>(context);
    w.bos = BosPolicy::kOn;
    // Take records until the shard holds `windows` windows.
    for (const TextRecord& r : *records) {
      if (have >= windows) break;
      auto ids = (*tokenizer)->Encode(r.text, BosPolicy::kOn);
      if (!ids.ok()) return fail(ids.status());
      for (const TokenWindow& win : MakeWindows(ids->size(), w)) {
        ++have;
        scored += win.scored();
      }
      ++used;
    }
  }
  const std::string config_text = absl::StrCat(
      cfg->num_hidden_layers, " layers, hidden ", cfg->hidden_size);
  const int N = cfg->num_hidden_layers;

  LmBackendOptions bo;
  bo.engine.model_dir = model_dir;
  bo.engine.cpu_threads_per_rank = static_cast<int>(threads);
  bo.engine.random_weights = random_weights;
  bo.engine.seed = static_cast<uint64_t>(seed);
  bo.engine.device = device;
  bo.engine.dtype = *dtype;
  bo.engine.gemm_tuning = *tuning;
  bo.engine.prefix_device_budget_bytes = prefix_budget_mb << 20;
  const auto load_start = std::chrono::steady_clock::now();
  auto backend = LmBackend::Create(bo);
  if (!backend.ok()) return fail(backend.status());
  const double load_s = std::chrono::duration<double>(
                            std::chrono::steady_clock::now() - load_start)
                            .count();
  LmJobSpec base;
  base.model.path = model_dir;
  base.dataset_name = "bench";
  base.data.path = corpus;
  base.data.max_records = used;
  base.windowing.context_length = static_cast<int>(context);
  base.windowing.stride = static_cast<int>(context);
  base.windowing.bos = BosPolicy::kOn;
  std::vector<TaskInput> tasks;
  for (int L = -1; L < N; ++L) {
    TaskInput t;
    t.kind = kind;
    t.task_key = L < 0 ? "baseline" : absl::StrCat("skip-", L);
    LmJobSpec job = base;
    if (L >= 0) {
      job.interventions.push_back(engine::Intervention::Skip(L));
      job.intervention_fields.push_back("interventions.interventions[0]");
    }
    t.job = std::move(job);
    tasks.push_back(std::move(t));
  }
  std::printf(
      "model: %s (%s), %s, device %s, dtype %s, load %.1f s; kind %s; shard: "
      "%lld records, %lld sequences, %lld scored tokens, context %lld; "
      "tasks: baseline + skip of each of %d layers = %zu\n",
      config.c_str(), config_text.c_str(),
      random_weights ? "random weights on the device" : "generated checkpoint",
      device.c_str(), dtype_name.c_str(), load_s, kind.c_str(), (long long)used,
      (long long)have, (long long)scored, (long long)context, N, tasks.size());
  // Warm-up (first-touch allocations) on the baseline only.
  RunOnce(*backend, false, {tasks[0]}, max_batch_tokens);
  RunResult off = RunOnce(*backend, false, tasks, max_batch_tokens);
  RunResult on = RunOnce(*backend, true, tasks, max_batch_tokens);
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
  std::printf(
      "max relative metric difference on vs off: %.3g; metrics per "
      "task: %zu; failures: %d\n",
      max_rel, on.outputs.empty() ? size_t{0} : on.outputs[0].metrics.size(),
      off.failures + on.failures);
  if (absl::Status removed = RemoveAll(dir); !removed.ok()) {
    std::fprintf(stderr, "jobs_bench: %s\n", removed.ToString().c_str());
  }
  return off.failures + on.failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace sweepd

int main(int argc, char** argv) { return sweepd::Main(argc, argv); }
