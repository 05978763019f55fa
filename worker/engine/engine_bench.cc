// engine_bench: forward throughput (tokens/s) of the engine for a model
// directory or a random-weight model built from a config, and
// (--ablation-sweep) the single-layer skip sweep over all layers with and
// without prefix reuse (layer-forwards and wall time).
//
//   engine_bench (--model DIR | --random-weights --config FILE [--seed N])
//   [--tp N]
//                [--dtype float32|bfloat16] [--device cpu|cuda] [--batch B]
//                [--seq S]
//                [--iters K] [--threads N (CPU intra-op threads per rank)]
//                [--ablation-sweep]
#include <chrono>
#include <cstdio>
#include <iostream>
#include <random>
#include <string>

#include "absl/strings/numbers.h"
#include "worker/engine/api.h"

namespace {

using sweepd::engine::Engine;
using sweepd::engine::EngineOptions;
using sweepd::engine::ForwardRequest;
using sweepd::engine::Intervention;

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

int Usage() {
  std::cerr << "usage: engine_bench (--model DIR | --random-weights --config "
               "FILE [--seed N]) "
               "[--tp N] [--dtype float32|bfloat16] [--device cpu|cuda] "
               "[--batch B] [--seq S] "
               "[--iters K] [--threads N] [--ablation-sweep]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  EngineOptions opts;
  int64_t batch = 1, seq = 128;
  int iters = 3;
  bool sweep = false;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    bool ok = true;
    if (flag == "--model") {
      opts.model_dir = value();
    } else if (flag == "--config") {
      opts.config_path = value();
    } else if (flag == "--random-weights") {
      opts.random_weights = true;
    } else if (flag == "--seed") {
      ok = absl::SimpleAtoi(value(), &opts.seed);
    } else if (flag == "--tp") {
      ok = absl::SimpleAtoi(value(), &opts.tp_size);
    } else if (flag == "--dtype") {
      auto d = sweepd::engine::ParseDType(value());
      ok = d.ok();
      if (ok) opts.dtype = *d;
    } else if (flag == "--device") {
      opts.device = value();
    } else if (flag == "--batch") {
      ok = absl::SimpleAtoi(value(), &batch);
    } else if (flag == "--seq") {
      ok = absl::SimpleAtoi(value(), &seq);
    } else if (flag == "--iters") {
      ok = absl::SimpleAtoi(value(), &iters);
    } else if (flag == "--threads") {
      ok = absl::SimpleAtoi(value(), &opts.cpu_threads_per_rank);
    } else if (flag == "--ablation-sweep") {
      sweep = true;
    } else {
      ok = false;
    }
    if (!ok) return Usage();
  }
  auto start = std::chrono::steady_clock::now();
  auto engine = Engine::Create(opts);
  if (!engine.ok()) {
    std::cerr << "engine_bench: " << engine.status() << "\n";
    return 1;
  }
  const double load_s = Seconds(start);
  const auto& cfg = (*engine)->config();
  std::mt19937 rng(1234);
  ForwardRequest req;
  req.batch = batch;
  req.seq = seq;
  req.tokens.resize(batch * seq);
  for (auto& t : req.tokens) t = static_cast<int32_t>(rng() % cfg.vocab_size);

  auto warm = (*engine)->Forward(req);
  if (!warm.ok()) {
    std::cerr << "engine_bench: " << warm.status() << "\n";
    return 1;
  }
  start = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) {
    auto r = (*engine)->Forward(req);
    if (!r.ok()) {
      std::cerr << "engine_bench: " << r.status() << "\n";
      return 1;
    }
  }
  const double fwd_s = Seconds(start) / iters;
  std::printf(
      "layers=%d hidden=%d vocab=%d tp=%d dtype=%s device=%s batch=%lld "
      "seq=%lld load_s=%.3f "
      "forward_s=%.4f tokens_per_s=%.1f\n",
      cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size, opts.tp_size,
      sweepd::engine::DTypeName(opts.dtype), opts.device.c_str(),
      static_cast<long long>(batch), static_cast<long long>(seq), load_s, fwd_s,
      batch * seq / fwd_s);

  if (sweep) {
    const int N = cfg.num_hidden_layers;
    int64_t naive_layers = 0, reuse_layers = 0;
    start = std::chrono::steady_clock::now();
    for (int L = 0; L < N; ++L) {
      ForwardRequest r = req;
      r.interventions = {Intervention::Skip(L)};
      auto res = (*engine)->Forward(r);
      if (!res.ok()) {
        std::cerr << "engine_bench: " << res.status() << "\n";
        return 1;
      }
      naive_layers += res->layer_forwards;
    }
    const double naive_s = Seconds(start);
    start = std::chrono::steady_clock::now();
    ForwardRequest base = req;
    base.keep_prefix_state = true;
    auto baseline = (*engine)->Forward(base);
    if (!baseline.ok()) {
      std::cerr << "engine_bench: " << baseline.status() << "\n";
      return 1;
    }
    reuse_layers += baseline->layer_forwards;
    for (int L = 0; L < N; ++L) {
      ForwardRequest r = req;
      r.interventions = {Intervention::Skip(L)};
      r.start_from = baseline->prefix_state;
      r.start_layer = L;
      auto res = (*engine)->Forward(r);
      if (!res.ok()) {
        std::cerr << "engine_bench: " << res.status() << "\n";
        return 1;
      }
      reuse_layers += res->layer_forwards;
    }
    const double reuse_s = Seconds(start);
    std::printf(
        "ablation-sweep layers=%d naive: layer_forwards=%lld wall_s=%.3f | "
        "prefix-reuse "
        "(incl. baseline pass): layer_forwards=%lld wall_s=%.3f "
        "prefix_device_bytes=%lld "
        "prefix_host_bytes=%lld\n",
        N, static_cast<long long>(naive_layers), naive_s,
        static_cast<long long>(reuse_layers), reuse_s,
        static_cast<long long>(baseline->prefix_state->device_bytes()),
        static_cast<long long>(baseline->prefix_state->host_bytes()));
  }
  return 0;
}
