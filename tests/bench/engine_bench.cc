// engine_bench: forward throughput of the engine for a model directory or a
// random-weight model built from a config: tokens/s, achieved TFLOP/s and MFU
// (FLOPs counted as ../shared/anchors/hf_gemma4_anchor.py's fwd_flops), peak
// device memory, a per-phase profile (CUDA events on GPU), and
// (--ablation-sweep) the single-layer skip sweep over all layers with the
// probe statistics (block influence, norms, logit-lens rank of one target per
// prompt), naively and with prefix reuse (layer-forwards and wall time).
// --compare-attention also times the forward with the attention path forced
// to sdpa and to chunked, and the full layers' chunked GEMM attention with
// query blocks of 512, 1024 and the whole sequence (same model, same run), and
// prints each one's attention phases (full layers split into QK^T, softmax,
// PV).
//
//   engine_bench (--model DIR | --random-weights --config FILE [--seed N])
//                [--tp N] [--dtype float32|bfloat16] [--device cpu|cuda]
//                [--batch B] [--seq S] [--iters K] [--threads N]
//                [--peak-tflops F (default 989)] [--no-profile]
//                [--attention auto|flash|sdpa|chunked] [--compare-attention]
//                [--gemm-tuning off|autotune] [--gemm-tuning-cache FILE]
//                [--ablation-sweep [--sweep-batch B] [--sweep-seq S]
//                 [--prefix-budget-mb M]]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "tests/bench/bench_model.h"
#include "worker/engine/device_stats.h"
#include "worker/engine/engine.h"

namespace {

using sweepd::LayerKind;
using sweepd::ModelConfig;
using sweepd::bench::RandomRequest;
using sweepd::bench::Seconds;
using sweepd::engine::Engine;
using sweepd::engine::EngineOptions;
using sweepd::engine::ForwardRequest;
using sweepd::engine::ForwardResult;
using sweepd::engine::Intervention;

constexpr char kUsage[] =
    "usage: engine_bench (--model DIR | --random-weights --config "
    "FILE [--seed N]) [--tp N] [--dtype float32|bfloat16] "
    "[--device cpu|cuda] [--batch B] [--seq S] [--iters K] "
    "[--threads N] [--peak-tflops F] [--no-profile] "
    "[--attention auto|flash|sdpa|chunked] [--compare-attention] "
    "[--gemm-tuning off|autotune] [--gemm-tuning-cache FILE] "
    "[--ablation-sweep [--sweep-batch B] [--sweep-seq S] "
    "[--prefix-budget-mb M]]\n";

// A usage error: the reason, the usage, exit status 2.
int Usage(const std::string& why) {
  std::cerr << "engine_bench: " << why << "\n" << kUsage;
  return 2;
}

// FLOPs of one teacher-forced forward of `batch` sequences of `seq` tokens,
// counted as the transformers anchor does: 2 · parameters (all linears and
// the tied LM head) per token, plus causal attention 4 · heads · head_dim ·
// context · seq per layer, context = seq / 2 (full) or min(seq / 2, window).
double ForwardFlops(const ModelConfig& cfg, int64_t batch, int64_t seq) {
  const double T = static_cast<double>(seq);
  double flops = 2.0 * static_cast<double>(cfg.NumParameters()) * T;
  for (const auto& l : cfg.layers) {
    double ctx = T / 2;
    if (l.kind == LayerKind::kSliding && l.sliding_window > 0) {
      ctx = std::min(ctx, static_cast<double>(l.sliding_window));
    }
    flops += 4.0 * cfg.num_attention_heads * l.head_dim * ctx * T;
  }
  return flops * static_cast<double>(batch);
}

bool Check(const absl::StatusOr<ForwardResult>& r) {
  if (!r.ok()) std::cerr << "engine_bench: " << r.status() << "\n";
  return r.ok();
}

void PrintPeak(const char* what, int device) {
  const int64_t peak = sweepd::engine::DevicePeakAllocatedBytes(device);
  if (peak >= 0) {
    std::printf("%s peak_device_GB=%.2f\n", what, peak / 1e9);
  }
}

}  // namespace

int main(int argc, char** argv) {
  sweepd::bench::ModelFlags model;
  EngineOptions& opts = model.engine;
  int64_t batch = 1, seq = 128, sweep_batch = -1, sweep_seq = -1;
  int64_t prefix_budget_mb = -1;
  int iters = 3;
  double peak_tflops = 989.0;
  bool sweep = false, profile = true, compare_attention = false;
  // The enum flags, parsed after CLI11 (defaults: EngineOptions').
  std::string attention =
      sweepd::engine::AttentionPathName(opts.attention_path);
  std::string gemm_tuning = sweepd::engine::GemmTuningName(opts.gemm_tuning);
  bool no_profile = false, help = false;
  CLI::App app{"engine_bench"};
  app.set_help_flag();
  // A repeated flag keeps its last value.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_flag("--help,-h", help);
  sweepd::bench::AddModelFlags(app, model);
  app.add_option("--batch", batch);
  app.add_option("--seq", seq);
  app.add_option("--iters", iters);
  app.add_option("--peak-tflops", peak_tflops);
  app.add_option("--attention", attention);
  app.add_option("--gemm-tuning", gemm_tuning);
  app.add_option("--gemm-tuning-cache", opts.gemm_tuning_cache);
  app.add_flag("--compare-attention", compare_attention);
  app.add_flag("--no-profile", no_profile);
  app.add_flag("--ablation-sweep", sweep);
  app.add_option("--sweep-batch", sweep_batch);
  app.add_option("--sweep-seq", sweep_seq);
  app.add_option("--prefix-budget-mb", prefix_budget_mb);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return Usage(e.what());
  }
  if (help) {
    std::cout << kUsage;
    return 0;
  }
  profile = !no_profile;
  if (iters < 1) return Usage("--iters must be at least 1");
  if (!(peak_tflops > 0)) return Usage("--peak-tflops must be positive");
  if (absl::Status s = sweepd::bench::FinishModelFlags(model); !s.ok()) {
    return Usage(std::string(s.message()));
  }
  if (auto p = sweepd::engine::ParseAttentionPath(attention); p.ok()) {
    opts.attention_path = *p;
  } else {
    return Usage(std::string(p.status().message()));
  }
  if (auto t = sweepd::engine::ParseGemmTuning(gemm_tuning); t.ok()) {
    opts.gemm_tuning = *t;
  } else {
    return Usage(std::string(t.status().message()));
  }
  if (prefix_budget_mb >= 0) {
    opts.prefix_device_budget_bytes = prefix_budget_mb << 20;
  }
  const int dev = opts.first_device;
  auto start = std::chrono::steady_clock::now();
  auto engine = Engine::Create(opts);
  if (!engine.ok()) {
    std::cerr << "engine_bench: " << engine.status() << "\n";
    return 1;
  }
  const double load_s = Seconds(start);
  const ModelConfig& cfg = (*engine)->config();
  std::printf("loaded layers=%d hidden=%d vocab=%d params=%.2fB load_s=%.1f\n",
              cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size,
              cfg.NumParameters() / 1e9, load_s);
  PrintPeak("after load:", dev);
  ForwardRequest req = RandomRequest(batch, seq, cfg.vocab_size, 1234);

  if (!Check((*engine)->Forward(req))) return 1;  // warm-up
  sweepd::engine::ResetDevicePeakAllocatedBytes(dev);
  std::vector<double> times;
  for (int i = 0; i < iters; ++i) {
    start = std::chrono::steady_clock::now();
    auto r = (*engine)->Forward(req);  // returns after the host copy of NLL
    if (!Check(r)) return 1;
    times.push_back(Seconds(start));
  }
  std::sort(times.begin(), times.end());
  const double fwd_s = times[times.size() / 2];
  const double flops = ForwardFlops(cfg, batch, seq);
  std::printf(
      "forward attention=%s gemm_tuning=%s tp=%d dtype=%s device=%s "
      "batch=%lld seq=%lld "
      "iters=%d "
      "median_s=%.4f min_s=%.4f max_s=%.4f tokens_per_s=%.1f TFLOP=%.2f "
      "TFLOP_per_s=%.1f MFU(%.0f)=%.1f%%\n",
      sweepd::engine::AttentionPathName(opts.attention_path),
      sweepd::engine::GemmTuningName(opts.gemm_tuning), opts.tp_size,
      sweepd::engine::DTypeName(opts.dtype), opts.device.c_str(),
      static_cast<long long>(batch), static_cast<long long>(seq), iters, fwd_s,
      times.front(), times.back(), batch * seq / fwd_s, flops / 1e12,
      flops / fwd_s / 1e12, peak_tflops,
      100.0 * flops / fwd_s / (peak_tflops * 1e12));
  PrintPeak("forward:", dev);
  for (const std::string& line : (*engine)->GemmTuningReport()) {
    std::printf("  gemm tuning: %s\n", line.c_str());
  }

  // Options of the loaded engine for later forwards (Engine::Reconfigure).
  auto reconfigure = [&](const EngineOptions& o) {
    const absl::Status s = (*engine)->Reconfigure(o);
    if (!s.ok()) std::cerr << "engine_bench: " << s << "\n";
    return s.ok();
  };
  // One forward with the phase profile on; its profile.
  auto profiled_forward = [&](sweepd::engine::PhaseTimes* p) -> bool {
    EngineOptions o = (*engine)->options();
    o.phase_profiling = true;
    if (!reconfigure(o)) return false;
    auto r = (*engine)->Forward(req);
    o.phase_profiling = false;
    if (!reconfigure(o) || !Check(r)) return false;
    *p = (*engine)->TakePhaseProfile();
    return true;
  };
  if (profile) {
    sweepd::engine::PhaseTimes p;
    if (!profiled_forward(&p)) return 1;
    double total = 0;
    for (const auto& [name, ms] : p.ms) total += ms;
    std::printf("profile (rank 0, one forward, %s): total_ms=%.2f\n",
                p.device_events ? "CUDA events" : "host clock", total);
    for (const auto& [name, ms] : p.ms) {
      std::printf("  %-14s %9.2f ms %5.1f%%\n", name.c_str(), ms,
                  total > 0 ? 100.0 * ms / total : 0.0);
    }
  }

  // Median seconds of `iters` forwards of req after one warm-up; -1 on error.
  auto median_forward_s = [&]() -> double {
    std::vector<double> t;
    for (int i = 0; i < iters + 1; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      if (!Check((*engine)->Forward(req))) return -1;
      if (i > 0) t.push_back(Seconds(t0));
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  };
  if (compare_attention) {
    // (path, query positions per chunked-attention block; 0 = its default):
    // the paths, then the chunked GEMM attention of the full layers (kAuto)
    // with larger query blocks.
    const std::vector<std::pair<sweepd::engine::AttentionPath, int64_t>>
        variants = {{sweepd::engine::AttentionPath::kFlash, 0},
                    {sweepd::engine::AttentionPath::kSdpa, 0},
                    {sweepd::engine::AttentionPath::kChunkedGemm, 0},
                    {sweepd::engine::AttentionPath::kAuto, 512},
                    {sweepd::engine::AttentionPath::kAuto, 1024},
                    {sweepd::engine::AttentionPath::kAuto, seq}};
    for (const auto& [path, block] : variants) {
      EngineOptions o = opts;
      o.attention_path = path;
      o.chunked_query_block = block;
      if (!reconfigure(o)) return 1;
      const double s = median_forward_s();
      if (s < 0) return 1;
      sweepd::engine::PhaseTimes p;
      if (!profiled_forward(&p)) return 1;
      // attention_full includes its sub-phases (attention_full.qk, ...).
      double full = 0, sliding = 0, qk = 0, softmax = 0, pv = 0;
      for (const auto& [name, ms] : p.ms) {
        if (name.rfind("attention_full", 0) == 0) full += ms;
        if (name == "attention_full.qk") qk = ms;
        if (name == "attention_full.softmax") softmax = ms;
        if (name == "attention_full.pv") pv = ms;
        if (name.rfind("attention_sliding", 0) == 0) sliding += ms;
      }
      std::printf(
          "compare attention=%s query_block=%lld batch=%lld seq=%lld "
          "median_s=%.4f tokens_per_s=%.1f MFU(%.0f)=%.1f%% "
          "attention_full_ms=%.2f (qk %.2f softmax %.2f pv %.2f) "
          "attention_sliding_ms=%.2f\n",
          sweepd::engine::AttentionPathName(path),
          static_cast<long long>(block), static_cast<long long>(batch),
          static_cast<long long>(seq), s, batch * seq / s, peak_tflops,
          100.0 * flops / s / (peak_tflops * 1e12), full, qk, softmax, pv,
          sliding);
    }
    if (!reconfigure(opts)) return 1;
    if (opts.gemm_tuning == sweepd::engine::GemmTuning::kAutotune) {
      // The same forward with cuBLAS's heuristic GEMMs, in the same run.
      EngineOptions o = opts;
      o.gemm_tuning = sweepd::engine::GemmTuning::kOff;
      if (!reconfigure(o)) return 1;
      const double s = median_forward_s();
      if (s < 0) return 1;
      std::printf(
          "compare gemm_tuning=off attention=%s batch=%lld seq=%lld "
          "median_s=%.4f tokens_per_s=%.1f MFU(%.0f)=%.1f%%\n",
          sweepd::engine::AttentionPathName(opts.attention_path),
          static_cast<long long>(batch), static_cast<long long>(seq), s,
          batch * seq / s, peak_tflops,
          100.0 * flops / s / (peak_tflops * 1e12));
      if (!reconfigure(opts)) return 1;
    }
  }

  if (sweep) {
    const int N = cfg.num_hidden_layers;
    const int64_t sb = sweep_batch > 0 ? sweep_batch : batch;
    const int64_t ss = sweep_seq > 0 ? sweep_seq : seq;
    // The probe job's shape: one scored target per prompt (its last position)
    // and the per-layer statistics on every forward.
    ForwardRequest base = RandomRequest(sb, ss, cfg.vocab_size, 99);
    base.targets.assign(sb * ss, -1);
    std::mt19937 rng(7);
    for (int64_t b = 0; b < sb; ++b) {
      base.targets[b * ss + ss - 1] =
          static_cast<int32_t>(rng() % cfg.vocab_size);
    }
    base.layer_stats = true;
    if (!Check((*engine)->Forward(base))) return 1;  // warm-up at this shape
    sweepd::engine::ResetDevicePeakAllocatedBytes(dev);
    int64_t naive_layers = 0, reuse_layers = 0;
    start = std::chrono::steady_clock::now();
    {
      auto res = (*engine)->Forward(base);  // the baseline pass
      if (!Check(res)) return 1;
      naive_layers += res->layer_forwards;
    }
    for (int L = 0; L < N; ++L) {
      ForwardRequest r = base;
      r.interventions = {Intervention::Skip(L)};
      auto res = (*engine)->Forward(r);
      if (!Check(res)) return 1;
      naive_layers += res->layer_forwards;
    }
    const double naive_s = Seconds(start);
    start = std::chrono::steady_clock::now();
    ForwardRequest keep = base;
    keep.keep_prefix_state = true;
    auto baseline = (*engine)->Forward(keep);
    if (!Check(baseline)) return 1;
    reuse_layers += baseline->layer_forwards;
    for (int L = 0; L < N; ++L) {
      ForwardRequest r = base;
      r.interventions = {Intervention::Skip(L)};
      r.start_from = baseline->prefix_state;
      r.start_layer = L;
      auto res = (*engine)->Forward(r);
      if (!Check(res)) return 1;
      reuse_layers += res->layer_forwards;
    }
    const double reuse_s = Seconds(start);
    std::printf(
        "ablation-sweep layers=%d batch=%lld seq=%lld probe-stats=on "
        "targets_per_prompt=1 | naive (baseline + %d skips): "
        "layer_forwards=%lld wall_s=%.3f | prefix-reuse (incl. baseline "
        "pass): layer_forwards=%lld wall_s=%.3f prefix_device_bytes=%lld "
        "prefix_host_bytes=%lld\n",
        N, static_cast<long long>(sb), static_cast<long long>(ss), N,
        static_cast<long long>(naive_layers), naive_s,
        static_cast<long long>(reuse_layers), reuse_s,
        static_cast<long long>(baseline->prefix_state->device_bytes()),
        static_cast<long long>(baseline->prefix_state->host_bytes()));
    PrintPeak("ablation-sweep:", dev);
  }
  return 0;
}
