// generate_bench: token generation throughput of the engine
// (docs/GENERATION.md, "Performance"): one prompt of --prompt-len random
// tokens, N samples each generating exactly --new-tokens tokens at
// --temperature, for each N in
// --samples. Prints, per N, the wall time and tokens/s (N × new tokens / wall,
// as the transformers anchor counts them), the time to first token (the
// prefill), the median decode step, and on CUDA the step's memory roofline
// fraction: bytes read per step (weights + the KV cache at mid-generation) ÷
// step time ÷ the measured device copy bandwidth.
#include <dlfcn.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/tokenizer.h"
#include "nlohmann/json.hpp"
#include "worker/engine/decode.h"
#include "worker/engine/device_stats.h"
#include "worker/engine/engine.h"
#include "worker/engine/generator.h"

namespace {

using sweepd::engine::DecodeOptions;
using sweepd::engine::Engine;
using sweepd::engine::EngineOptions;
using sweepd::engine::GenerationOptions;
using sweepd::engine::GenerationPrompt;

// KV cache bytes one decode step reads at `tokens` cached tokens per sequence.
double KvBytesPerToken(const sweepd::ModelConfig& cfg, int64_t tokens,
                       int dtype_bytes) {
  double total = 0;
  for (const sweepd::LayerConfig& lc : cfg.layers) {
    const int64_t seen = lc.sliding_window > 0
                             ? std::min<int64_t>(tokens, lc.sliding_window)
                             : tokens;
    const int tensors = lc.k_eq_v ? 1 : 2;
    total += static_cast<double>(seen) * lc.num_kv_heads * lc.head_dim *
             tensors * dtype_bytes;
  }
  return total;
}

// cuProfilerStart / cuProfilerStop of the CUDA driver, looked up at run time
// (no CUDA headers or link here): `ncu --profile-from-start off` profiles only
// the kernels between them. They act on the calling thread's current context,
// which the copy-bandwidth measurement made current on this (main) thread.
void CudaProfiler(bool start) {
  static void* const driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  const char* name = start ? "cuProfilerStart" : "cuProfilerStop";
  auto* fn = driver == nullptr
                 ? nullptr
                 : reinterpret_cast<int (*)()>(dlsym(driver, name));
  const int rc = fn == nullptr ? -1 : fn();
  if (rc != 0) {
    std::fprintf(stderr, "--cuda-profiler-range: %s failed (%s)\n", name,
                 fn == nullptr ? "no libcuda.so.1 or symbol"
                               : std::to_string(rc).c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  EngineOptions opts;
  std::string dtype = "bfloat16";
  std::string samples_list = "1,8,32";
  int prompt_len = 128, new_tokens = 64, page_size = 16;
  double temperature = 1.0;
  CLI::App app("generate_bench: token generation throughput");
  app.add_option("--model", opts.model_dir);
  app.add_option("--config", opts.config_path);
  app.add_flag("--random-weights", opts.random_weights);
  app.add_option("--seed", opts.seed);
  app.add_option("--tp", opts.tp_size);
  app.add_option("--dtype", dtype);
  app.add_option("--device", opts.device);
  app.add_option("--threads", opts.cpu_threads_per_rank);
  app.add_option("--samples", samples_list, "comma-separated N values");
  app.add_option("--prompt-len", prompt_len);
  app.add_option("--new-tokens", new_tokens);
  app.add_option("--temperature", temperature);
  app.add_option("--page-size", page_size);
  int64_t max_cached_tokens = 0;
  app.add_option("--max-cached-tokens", max_cached_tokens,
                 "DecodeOptions::max_cached_tokens (0 = room for every "
                 "sequence's own copy; shared prompt pages need less)");
  int64_t shared_min_keys = DecodeOptions().shared_attention_min_keys;
  app.add_option("--shared-attention-min-keys", shared_min_keys,
                 "DecodeOptions::shared_attention_min_keys (0 = always attend "
                 "to shared prompt pages once per prompt)");
  std::string decode_attention = "auto";
  app.add_option("--decode-attention", decode_attention,
                 "DecodeOptions::decode_attention: auto (default: the fused "
                 "paged kernel on CUDA), aten, fused");
  bool cuda_graphs = DecodeOptions{}.cuda_graphs;
  app.add_flag("--cuda-graphs,!--no-cuda-graphs", cuda_graphs,
               "DecodeOptions::cuda_graphs (default on): replay the decode "
               "step's layers as CUDA graphs per batch-size bucket");
  bool fused_sampler = DecodeOptions{}.fused_sampler;
  app.add_flag("--fused-sampler,!--no-fused-sampler", fused_sampler,
               "DecodeOptions::fused_sampler (default on): the LM head and "
               "sampler as fused kernels inside the step's CUDA graph (CUDA, "
               "TP 1)");
  int key_splits = 0;
  app.add_option("--attention-key-splits", key_splits,
                 "DecodeOptions::attention_key_splits (0 = automatic)");
  std::string gemm_tuning = "off";
  app.add_option("--gemm-tuning", gemm_tuning,
                 "EngineOptions::gemm_tuning: off (cuBLAS's heuristic) or "
                 "autotune (cuBLASLt algorithms timed per shape)");
  app.add_flag("--skinny-gemm,!--no-skinny-gemm", opts.skinny_gemm,
               "EngineOptions::skinny_gemm: GEMMs of <= 32 rows (decode "
               "steps, the LM head) through kernels/skinny_gemm.h");
  std::string prompts_jsonl;
  int max_batch = 64;
  app.add_option("--prompts-jsonl", prompts_jsonl,
                 "instead of one random prompt: every record's `prompt` of "
                 "this JSONL file, encoded with the model's tokenizer (<bos> "
                 "first), --samples N each (one value), through one decode "
                 "session of --max-batch sequences, as a generate task runs "
                 "them (scripts/generate_scale.sh)");
  app.add_option("--max-batch", max_batch);
  int passes = 1;
  app.add_option("--passes", passes,
                 "with --prompts-jsonl: run all prompts this many times, "
                 "each through a fresh decode session, printing each pass")
      ->check(CLI::Range(1, 100));
  bool profile = false;
  app.add_flag("--profile", profile,
               "print the engine's phase profile (ms per forward) of each "
               "timed run (EngineOptions::phase_profiling)");
  bool profiler_range = false;
  app.add_flag("--cuda-profiler-range", profiler_range,
               "bracket each timed run with the CUDA driver's "
               "cuProfilerStart/Stop, for `ncu --profile-from-start off`");
  CLI11_PARSE(app, argc, argv);
  if (passes != 1 && prompts_jsonl.empty()) {
    std::fprintf(stderr, "--passes %d needs --prompts-jsonl\n", passes);
    return 2;
  }
  if (auto t = sweepd::engine::ParseGemmTuning(gemm_tuning); t.ok()) {
    opts.gemm_tuning = *t;
  } else {
    std::fprintf(stderr, "--gemm-tuning: %s\n", t.status().ToString().c_str());
    return 2;
  }
  sweepd::engine::DecodeAttention attention_mode;
  if (decode_attention == "auto") {
    attention_mode = sweepd::engine::DecodeAttention::kAuto;
  } else if (decode_attention == "aten") {
    attention_mode = sweepd::engine::DecodeAttention::kAten;
  } else if (decode_attention == "fused") {
    attention_mode = sweepd::engine::DecodeAttention::kFused;
  } else {
    std::fprintf(stderr, "--decode-attention: '%s' is not auto|aten|fused\n",
                 decode_attention.c_str());
    return 2;
  }
  // The session options from the flags; each run sets its sizes.
  DecodeOptions flags;
  flags.page_size = page_size;
  flags.shared_attention_min_keys = shared_min_keys;
  flags.max_cached_tokens = max_cached_tokens;
  flags.decode_attention = attention_mode;
  flags.cuda_graphs = cuda_graphs;
  flags.fused_sampler = fused_sampler;
  flags.attention_key_splits = key_splits;
  auto parsed = sweepd::engine::ParseDType(dtype);
  if (!parsed.ok()) {
    std::fprintf(stderr, "%s\n",
                 std::string(parsed.status().message()).c_str());
    return 2;
  }
  opts.dtype = *parsed;
  opts.phase_profiling = profile;
  std::vector<int> ns;
  for (absl::string_view v : absl::StrSplit(samples_list, ',')) {
    int n = 0;
    if (!absl::SimpleAtoi(v, &n) || n < 1) {
      std::fprintf(stderr, "--samples: '%s' is not a positive integer\n",
                   std::string(v).c_str());
      return 2;
    }
    ns.push_back(n);
  }
  auto engine = Engine::Create(opts);
  if (!engine.ok()) {
    std::fprintf(stderr, "engine: %s\n", engine.status().ToString().c_str());
    return 1;
  }
  const sweepd::ModelConfig& cfg = (*engine)->config();
  const int dbytes = opts.dtype == sweepd::engine::DType::kBFloat16 ? 2 : 4;
  const double weight_bytes = static_cast<double>(cfg.NumParameters()) * dbytes;
  const double bandwidth =
      opts.device == "cuda"
          ? sweepd::engine::MeasureCopyBandwidth(opts.first_device)
          : 0;
  std::printf("model: %d layers, %.2f G parameters, %s, tp %d, %s\n",
              cfg.num_hidden_layers, cfg.NumParameters() / 1e9, dtype.c_str(),
              opts.tp_size, opts.device.c_str());
  if (bandwidth > 0) {
    std::printf(
        "device copy bandwidth: %.0f GB/s; weight read roofline: "
        "%.1f ms per step\n",
        bandwidth / 1e9, weight_bytes / opts.tp_size / bandwidth * 1e3);
  }
  if (!prompts_jsonl.empty()) {
    if (ns.size() != 1 || opts.model_dir.empty()) {
      std::fprintf(stderr,
                   "--prompts-jsonl needs --model (for its tokenizer) and one "
                   "--samples value\n");
      return 2;
    }
    auto tok = sweepd::Tokenizer::FromFile(opts.model_dir + "/tokenizer.json");
    if (!tok.ok()) {
      std::fprintf(stderr, "%s\n", tok.status().ToString().c_str());
      return 1;
    }
    std::vector<int32_t> stop;
    for (const char* name : {"<eos>", "<end_of_turn>"}) {
      if (auto id = (*tok)->TokenToId(name)) stop.push_back(*id);
    }
    std::ifstream in(prompts_jsonl);
    std::string line;
    std::vector<GenerationPrompt> prompts;
    int64_t longest = 0;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      const nlohmann::json j = nlohmann::json::parse(line);
      GenerationPrompt p;
      auto ids = (*tok)->Encode(j.at("prompt").get<std::string>(),
                                sweepd::BosPolicy::kOn);
      if (!ids.ok()) {
        std::fprintf(stderr, "%s\n", ids.status().ToString().c_str());
        return 1;
      }
      p.tokens = *ids;
      p.max_new_tokens = new_tokens;
      p.stop_tokens = stop;
      const int64_t index = static_cast<int64_t>(prompts.size());
      for (int i = 0; i < ns[0]; ++i) {
        sweepd::engine::SamplingParams sp;
        sp.temperature = temperature;
        sp.seed = sweepd::engine::SampleSeed(42, index, i);
        p.samples.push_back(sp);
      }
      longest = std::max<int64_t>(longest, p.tokens.size());
      prompts.push_back(std::move(p));
    }
    DecodeOptions d = flags;
    d.max_sequences = max_batch;
    d.max_sequence_tokens = longest + new_tokens + 1;
    // Each pass is a fresh session over all prompts, as a generate task
    // runs its shard; the first pass also pays the process's one-time
    // costs (library handles, kernel loading), which a worker has paid
    // before a sweep's later tasks.
    for (int pass = 1; pass <= passes; ++pass) {
      const absl::Time t0 = absl::Now();
      auto session = (*engine)->StartDecode(d);
      if (!session.ok()) {
        std::fprintf(stderr, "%s\n", session.status().ToString().c_str());
        return 1;
      }
      GenerationOptions g;
      g.max_batch = max_batch;
      if (profiler_range) CudaProfiler(true);
      auto st = Generate(session->get(), prompts, g);
      if (profiler_range) CudaProfiler(false);
      const double wall = absl::ToDoubleSeconds(absl::Now() - t0);
      if (!st.ok()) {
        std::fprintf(stderr, "%s\n", st.status().ToString().c_str());
        return 1;
      }
      std::printf(
          "engine alone (pass %d of %d): %zu prompts x %d samples, %lld "
          "tokens, %.3f s, %.1f tok/s, %lld steps, max live %d (prefill "
          "%.3f s, decode %.3f s)\n",
          pass, passes, prompts.size(), ns[0],
          static_cast<long long>(st->tokens), wall, st->tokens / wall,
          static_cast<long long>(st->steps), st->max_live,
          absl::ToDoubleSeconds(st->prefill_time),
          absl::ToDoubleSeconds(st->decode_time));
      std::fflush(stdout);
    }
    return 0;
  }
  std::mt19937 rng(1234);
  GenerationPrompt prompt;
  prompt.tokens.push_back(2);  // <bos>
  while (static_cast<int>(prompt.tokens.size()) < prompt_len) {
    prompt.tokens.push_back(
        static_cast<int32_t>(rng() % (cfg.vocab_size - 10) + 10));
  }
  for (int n : ns) {
    DecodeOptions d = flags;
    d.max_sequences = n;
    d.max_sequence_tokens = prompt_len + new_tokens + 1;
    auto session = (*engine)->StartDecode(d);
    if (!session.ok()) {
      std::fprintf(stderr, "session: %s\n",
                   session.status().ToString().c_str());
      return 1;
    }
    GenerationPrompt p = prompt;
    p.samples.resize(n);
    for (int i = 0; i < n; ++i) {
      p.samples[i].temperature = temperature;
      p.samples[i].seed = sweepd::engine::SampleSeed(42, 0, i);
    }
    GenerationOptions g;
    g.max_batch = n;
    // Warm-up: kernels, allocator, cuBLAS handles.
    p.max_new_tokens = 4;
    if (auto w = Generate(session->get(), {p}, g); !w.ok()) {
      std::fprintf(stderr, "warm-up: %s\n", w.status().ToString().c_str());
      return 1;
    }
    p.max_new_tokens = new_tokens;
    (*engine)->TakePhaseProfile();  // drop the warm-up's
    if (profiler_range) CudaProfiler(true);
    const absl::Time t0 = absl::Now();
    auto st = Generate(session->get(), {p}, g);
    const double wall = absl::ToDoubleSeconds(absl::Now() - t0);
    if (profiler_range) CudaProfiler(false);
    if (!st.ok()) {
      std::fprintf(stderr, "generate: %s\n", st.status().ToString().c_str());
      return 1;
    }
    const double step_s = absl::ToDoubleSeconds(st->decode_time) /
                          std::max<int64_t>(1, st->steps);
    const double kv =
        KvBytesPerToken(cfg, prompt_len + new_tokens / 2, dbytes) * n /
        opts.tp_size;
    std::printf(
        "generate N=%d new_tokens=%lld s=%.3f tok/s=%.1f ttft_ms=%.1f "
        "step_ms=%.2f",
        n, static_cast<long long>(st->tokens), wall, st->tokens / wall,
        absl::ToDoubleMilliseconds(st->mean_time_to_first_token), step_s * 1e3);
    if (bandwidth > 0) {
      std::printf(" roofline=%.3f (%.2f GB read per step)",
                  (weight_bytes / opts.tp_size + kv) / step_s / bandwidth,
                  (weight_bytes / opts.tp_size + kv) / 1e9);
    }
    std::printf("\n");
    if (profile) {
      const sweepd::engine::PhaseTimes t = (*engine)->TakePhaseProfile();
      std::printf("  phases over %lld forwards (%s), ms per forward:",
                  static_cast<long long>(t.forwards),
                  t.device_events ? "CUDA events" : "host clock");
      for (const auto& [phase, ms] : t.ms) {
        std::printf(" %s=%.2f", phase.c_str(),
                    ms / std::max<int64_t>(1, t.forwards));
      }
      std::printf("\n");
    }
    std::fflush(stdout);
  }
  return 0;
}
