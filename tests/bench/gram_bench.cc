// gram_bench: the cost of Gram accumulation (docs/CALIBRATION.md, "Memory
// plan") against the obvious baseline, a plain forward of the same batch on
// the same loaded model in the same run: median forward seconds without and
// with float64 Grams of attn_heads[L] (optionally with the target
// attn_out[L]) for the chosen layers, the overhead in percent (issue 12's
// target: <= 15 % for the 31B full layers), the Grams' device memory per
// rank, peak device memory of both, the time to copy the Grams to the host
// (Engine::ReadGram), and (--heal) the heal's ridge solve per layer
// (worker/calib/ridge.h, float64 on the GPU for --device cuda and on the
// host, 12.5 % of the heads removed as in seed 001) on the accumulated Gram.
//
//   gram_bench (--model DIR | --random-weights --config FILE [--seed N])
//              [--tp N] [--dtype float32|bfloat16] [--device cpu|cuda]
//              [--batch B] [--seq S] [--iters K] [--threads N]
//              [--layers first-full|full|L1,L2,...] [--target] [--heal]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/bench/bench_model.h"
#include "worker/calib/gram_file.h"
#include "worker/calib/ridge.h"
#include "worker/engine/device_stats.h"
#include "worker/engine/engine.h"

namespace {

using sweepd::LayerKind;
using sweepd::ModelConfig;
using sweepd::engine::Engine;
using sweepd::engine::EngineOptions;
using sweepd::engine::ForwardRequest;
using sweepd::engine::GramAccumulator;

constexpr char kUsage[] =
    "usage: gram_bench (--model DIR | --random-weights --config FILE "
    "[--seed N]) [--tp N] [--dtype float32|bfloat16] [--device cpu|cuda] "
    "[--batch B] [--seq S] [--iters K] [--threads N] "
    "[--layers first-full|full|L1,L2,...] [--target] [--heal]\n";

int Usage(const std::string& why) {
  std::cerr << "gram_bench: " << why << "\n" << kUsage;
  return 2;
}

using sweepd::bench::PeakDeviceGb;
using sweepd::bench::Seconds;

// The layers named by --layers.
absl::StatusOr<std::vector<int>> ParseLayers(const std::string& spec,
                                             const ModelConfig& cfg) {
  std::vector<int> out;
  if (spec == "full" || spec == "first-full") {
    for (int L = 0; L < cfg.num_hidden_layers; ++L) {
      if (cfg.layers[L].kind != LayerKind::kFull) continue;
      out.push_back(L);
      if (spec == "first-full") break;
    }
    if (out.empty()) out.push_back(0);  // no full layer: layer 0
    return out;
  }
  for (absl::string_view part : absl::StrSplit(spec, ',')) {
    int L = 0;
    if (!absl::SimpleAtoi(part, &L) || L < 0 || L >= cfg.num_hidden_layers) {
      return absl::InvalidArgumentError(
          absl::StrCat("--layers: \"", part, "\" is not a layer in [0, ",
                       cfg.num_hidden_layers, ")"));
    }
    out.push_back(L);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  sweepd::bench::ModelFlags model;
  EngineOptions& opts = model.engine;
  int64_t batch = 4, seq = 2048;
  int iters = 5;
  std::string layers_spec = "first-full";
  bool target = false, heal = false, help = false;
  CLI::App app{"gram_bench"};
  app.set_help_flag();
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_flag("--help,-h", help);
  sweepd::bench::AddModelFlags(app, model);
  app.add_option("--batch", batch);
  app.add_option("--seq", seq);
  app.add_option("--iters", iters);
  app.add_option("--layers", layers_spec);
  app.add_flag("--target", target);
  app.add_flag("--heal", heal);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return Usage(e.what());
  }
  if (help) {
    std::cout << kUsage;
    return 0;
  }
  if (iters < 1) return Usage("--iters must be at least 1");
  if (batch < 1 || seq < 1) return Usage("--batch and --seq must be >= 1");
  if (absl::Status s = sweepd::bench::FinishModelFlags(model); !s.ok()) {
    return Usage(std::string(s.message()));
  }
  auto engine = Engine::Create(opts);
  if (!engine.ok()) {
    std::cerr << "gram_bench: " << engine.status() << "\n";
    return 1;
  }
  Engine& e = **engine;
  const ModelConfig& cfg = e.config();
  auto layers = ParseLayers(layers_spec, cfg);
  if (!layers.ok()) return Usage(std::string(layers.status().message()));
  const int dev = opts.first_device;

  ForwardRequest req =
      sweepd::bench::RandomRequest(batch, seq, cfg.vocab_size, 1234);
  std::mt19937 rng(1234);
  rng.discard(batch * seq);  // the draws of the tokens

  // Median of `iters` forwards after one warm-up; -1 on error.
  auto median_s = [&](const ForwardRequest& r) -> double {
    std::vector<double> t;
    for (int i = 0; i < iters + 1; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      auto out = e.Forward(r);
      if (!out.ok()) {
        std::cerr << "gram_bench: " << out.status() << "\n";
        return -1;
      }
      if (i > 0) t.push_back(Seconds(t0));
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  };

  sweepd::engine::ResetDevicePeakAllocatedBytes(dev);
  const double plain_s = median_s(req);
  if (plain_s < 0) return 1;
  const double plain_peak = PeakDeviceGb(dev);

  ForwardRequest greq = req;
  double gram_bytes_per_rank = 0;
  std::string names;
  for (int L : *layers) {
    const std::string point = absl::StrCat("attn_heads[", L, "]");
    auto g = e.NewGram(point, target ? absl::StrCat("attn_out[", L, "]") : "");
    if (!g.ok()) {
      std::cerr << "gram_bench: " << g.status() << "\n";
      return 1;
    }
    const double d = static_cast<double>((*g)->width());
    const double eW = static_cast<double>((*g)->target_width());
    gram_bytes_per_rank += (d * d + d * eW) * 8.0 / opts.tp_size;
    // The memory plan of this Gram (docs/CALIBRATION.md, "Memory plan"): the
    // float64 sums per rank (X_r^T X row block, X^T Y) and the float64 copies
    // of at most 2048 rows the products go through.
    std::printf(
        "memory_plan point=%s d=%.0f e=%.0f xtx_GB=%.3f xty_GB=%.3f "
        "per_rank_GB=%.3f f64_chunk_GB=%.3f\n",
        point.c_str(), d, eW, d * d * 8.0 / 1e9, d * eW * 8.0 / 1e9,
        (d * d + d * eW) * 8.0 / opts.tp_size / 1e9,
        2048.0 * (d + eW) * 8.0 / 1e9);
    absl::StrAppend(&names, names.empty() ? "" : ",", point);
    greq.grams.push_back(std::move(*g));
  }
  sweepd::engine::ResetDevicePeakAllocatedBytes(dev);
  const double gram_s = median_s(greq);
  if (gram_s < 0) return 1;
  const double gram_peak = PeakDeviceGb(dev);

  std::printf(
      "config tp=%d dtype=%s device=%s batch=%lld seq=%lld iters=%d "
      "grams=%s target=%s\n",
      opts.tp_size, sweepd::engine::DTypeName(opts.dtype), opts.device.c_str(),
      static_cast<long long>(batch), static_cast<long long>(seq), iters,
      names.c_str(), target ? "attn_out" : "none");
  std::printf(
      "forward plain_median_s=%.4f gram_median_s=%.4f overhead=%.1f%% "
      "tokens_per_s_plain=%.1f tokens_per_s_gram=%.1f\n",
      plain_s, gram_s, 100.0 * (gram_s - plain_s) / plain_s,
      batch * seq / plain_s, batch * seq / gram_s);
  std::printf(
      "memory gram_GB_per_rank=%.2f peak_device_GB_plain=%.2f "
      "peak_device_GB_gram=%.2f\n",
      gram_bytes_per_rank / 1e9, plain_peak, gram_peak);

  for (size_t i = 0; i < greq.grams.size(); ++i) {
    const int L = (*layers)[i];
    const auto t0 = std::chrono::steady_clock::now();
    auto sums = e.ReadGram(*greq.grams[i]);
    if (!sums.ok()) {
      std::cerr << "gram_bench: " << sums.status() << "\n";
      return 1;
    }
    const double read_s = Seconds(t0);
    std::printf("read layer=%d d=%lld tokens=%lld read_s=%.3f\n", L,
                static_cast<long long>(sums->d),
                static_cast<long long>(sums->count), read_s);
    if (!heal) continue;
    sweepd::calib::Gram g;
    g.d = sums->d;
    g.e = sums->e;
    g.xtx = std::move(sums->xtx);
    g.xty = std::move(sums->xty);
    g.yy = sums->yy;
    g.count = sums->count;
    const int H = cfg.num_attention_heads;
    const int64_t hd = cfg.layers[L].head_dim;
    // A random W (timing only) and the first 12.5 % of the heads removed.
    std::vector<double> w(static_cast<size_t>(cfg.hidden_size) * g.d);
    std::normal_distribution<double> normal(0.0, 0.02);
    for (double& v : w) v = normal(rng);
    std::vector<int> removed;
    for (int h = 0; h < std::max(1, H / 8); ++h) removed.push_back(h);
    // On the engine's GPU (as the heal executor runs it there), then on the
    // host.
    std::vector<std::string> devices = {""};
    if (opts.device == "cuda") {
      devices.insert(devices.begin(), absl::StrCat("cuda:", opts.first_device));
    }
    for (const std::string& device : devices) {
      sweepd::calib::RidgeOptions ropts;
      ropts.device = device;
      const auto t1 = std::chrono::steady_clock::now();
      auto sol = sweepd::calib::SolveRidge(
          g, w, cfg.hidden_size, sweepd::calib::KeptColumns(H, hd, removed),
          ropts);
      if (!sol.ok()) {
        std::cerr << "gram_bench: " << sol.status() << "\n";
        return 1;
      }
      const double solve_s = Seconds(t1);
      const auto t2 = std::chrono::steady_clock::now();
      auto rel = sweepd::calib::RelativeResidual(g, w, cfg.hidden_size,
                                                 sol->weight, device);
      if (!rel.ok()) {
        std::cerr << "gram_bench: " << rel.status() << "\n";
        return 1;
      }
      std::printf(
          "heal layer=%d kept_heads=%d solver=%s device=%s solve_s=%.3f "
          "residual_s=%.3f residual_rel=%.4g\n",
          L, H - static_cast<int>(removed.size()), sol->solver.c_str(),
          sol->device.c_str(), solve_s, Seconds(t2), *rel);
    }
  }
  return 0;
}
