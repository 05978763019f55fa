// heal_bench: the heal's ridge solve per layer (worker/calib/ridge.h, the path
// the heal executor runs) at a model's real sizes, against the obvious
// baselines on the same system in the same run. For the first layer of each
// kind (full, sliding) of --config: a random symmetric positive definite Gram
// XᵀX of d = num_attention_heads · head_dim of that layer (X [d, d] Gaussian,
// float64, built on the device), a random o_proj W [hidden, d], 12.5 % of the
// heads removed (seed 001); then, each from the host Gram and W as the
// executor has them (copy to the device included):
//   cholesky   calib::SolveRidge (Cholesky)
//   eigh       calib::SolveRidge with force_eigh (the fallback)
//   lu         baseline: the same system (G_kk + λI) Z = G_k,all Wᵀ by a plain
//              float64 at::linalg_solve (LU)
//   lstsq      baseline: at::linalg_lstsq of the same system (--lstsq off
//              skips it)
// and prints seconds per layer, the max |difference| of each baseline's
// solution from Cholesky's, and the all-layers estimate (Σ over the layers of
// the seconds of their kind).
//
//   heal_bench --config configs/models/gemma4-31b.json --device cuda
//              [--kinds full,sliding] [--iters K] [--lstsq on|off]
//              [--eigh on|off] [--threads N]
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_split.h"
#include "common/model_config.h"
#include "tests/bench/bench_model.h"
#include "worker/calib/gram_file.h"
#include "worker/calib/ridge.h"

namespace sweepd {
namespace {

using bench::Seconds;

std::vector<double> ToHost(const at::Tensor& t) {
  at::Tensor c = t.to(at::kCPU).to(at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(),
                             c.data_ptr<double>() + c.numel());
}

// Baseline: the executor's steps (host -> device, G_kk + λI, B = G_k,all Wᵀ,
// solve, back to the host) with the solve done by `method` ("lu" | "lstsq").
std::vector<double> SolveBaseline(const calib::Gram& g,
                                  const std::vector<double>& w, int64_t hidden,
                                  const std::vector<int64_t>& kept,
                                  double ridge_rel, at::Device device,
                                  const std::string& method) {
  const int64_t D = g.d;
  auto host = at::TensorOptions().dtype(at::kDouble);
  at::Tensor G =
      at::from_blob(const_cast<double*>(g.xtx.data()), {D, D}, host).to(device);
  at::Tensor W = at::from_blob(const_cast<double*>(w.data()), {hidden, D}, host)
                     .to(device);
  at::Tensor k = at::tensor(kept, at::kLong).to(device);
  at::Tensor Gk = G.index_select(0, k);
  at::Tensor A = Gk.index_select(1, k);
  A = (A + A.t()) * 0.5;
  at::Tensor B = Gk.mm(W.t());
  const double lambda = ridge_rel * A.diagonal().mean().item<double>();
  A.diagonal().add_(lambda);
  at::Tensor Z = method == "lu" ? at::linalg_solve(A, B)
                                : std::get<0>(at::linalg_lstsq(A, B));
  at::Tensor P = at::zeros({hidden, D}, host.device(device));
  P.index_copy_(1, k, Z.t().contiguous());
  return ToHost(P);
}

double MaxAbsDiff(const std::vector<double>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

int Main(int argc, char** argv) {
  CLI::App app("heal_bench");
  std::string config = "configs/models/gemma4-tiny.json";
  std::string device = "cpu", kinds = "full,sliding";
  int iters = 1, threads = 0;
  double ridge_rel = 0.01;
  bool lstsq = true, eigh = true;
  app.add_option("--config", config, "model config.json (sizes only)");
  app.add_option("--device", device, "cpu | cuda (the solve's device)");
  app.add_option("--kinds", kinds, "layer kinds to time: full,sliding");
  app.add_option("--iters", iters, "timed solves per method (median)");
  app.add_option("--ridge-rel", ridge_rel, "λ / mean(diag G_kk)");
  app.add_option("--lstsq", lstsq, "also time at::linalg_lstsq (on|off)");
  app.add_option("--eigh", eigh, "also time the eigh fallback (on|off)");
  app.add_option("--threads", threads, "CPU threads (0 = libtorch's)");
  CLI11_PARSE(app, argc, argv);
  if (iters < 1) {
    std::fprintf(stderr, "heal_bench: --iters must be >= 1\n");
    return 2;
  }
  if (threads > 0) at::set_num_threads(threads);
  auto cfg = ModelConfig::FromFile(config);
  if (!cfg.ok()) {
    std::fprintf(stderr, "heal_bench: %s\n", cfg.status().ToString().c_str());
    return 1;
  }
  const at::Device dev(device == "cuda" ? "cuda:0" : "cpu");
  const std::string ridge_device = device == "cuda" ? "cuda:0" : "";
  const int H = cfg->num_attention_heads;
  const int64_t hidden = cfg->hidden_size;
  std::printf("model %s: %d layers, hidden %lld, %d heads; device %s\n",
              config.c_str(), cfg->num_hidden_layers, (long long)hidden, H,
              device.c_str());
  std::printf("%-8s %5s %6s %6s %10s %10s %10s %10s %10s %12s %12s\n", "kind",
              "layer", "d", "kept", "gram_s", "cholesky_s", "eigh_s", "lu_s",
              "lstsq_s", "|lu-chol|", "|lstsq-chol|");
  // Warm-up: the device's solver libraries load on first use.
  {
    auto f64 = at::TensorOptions().dtype(at::kDouble).device(dev);
    at::Tensor a = at::randn({64, 64}, f64);
    a = a.mm(a.t()) + at::eye(64, f64);
    at::Tensor b = at::randn({64, 8}, f64);
    at::Tensor sum = at::cholesky_solve(b, at::linalg_cholesky(a)).sum() +
                     std::get<0>(at::linalg_eigh(a)).sum() +
                     at::linalg_solve(a, b).sum() +
                     std::get<0>(at::linalg_lstsq(a, b)).sum();
    (void)sum.item<double>();
  }
  std::map<LayerKind, double> seconds_of_kind;
  for (absl::string_view kind_name : absl::StrSplit(kinds, ',')) {
    const LayerKind kind =
        kind_name == "full" ? LayerKind::kFull : LayerKind::kSliding;
    int layer = -1;
    for (int L = 0; L < cfg->num_hidden_layers; ++L) {
      if (cfg->layers[L].kind == kind) {
        layer = L;
        break;
      }
    }
    if (layer < 0) {
      std::printf("%-8s (no such layer in this config)\n",
                  std::string(kind_name).c_str());
      continue;
    }
    const int64_t hd = cfg->layers[layer].head_dim;
    const int64_t d = H * hd;
    // The Gram of d tokens of a Gaussian X (SPD), and W.
    auto t0 = std::chrono::steady_clock::now();
    at::manual_seed(1234);
    auto f64 = at::TensorOptions().dtype(at::kDouble).device(dev);
    calib::Gram g;
    {
      at::Tensor X = at::randn({d, d}, f64);
      g.xtx = ToHost(X.t().mm(X));
    }
    g.d = d;
    g.count = d;
    const std::vector<double> w = ToHost(at::randn({hidden, d}, f64) * 0.02);
    const double gram_s = Seconds(t0);
    std::vector<int> removed;
    for (int h = 0; h < std::max(1, H / 8); ++h) removed.push_back(h);
    const std::vector<int64_t> kept = calib::KeptColumns(H, hd, removed);

    auto median = [&](auto fn) {
      std::vector<double> t;
      for (int i = 0; i < iters; ++i) {
        const auto s = std::chrono::steady_clock::now();
        if (!fn()) return -1.0;
        t.push_back(Seconds(s));
      }
      std::sort(t.begin(), t.end());
      return t[t.size() / 2];
    };
    calib::RidgeSolution chol;
    std::string solved_on;
    const double chol_s = median([&] {
      calib::RidgeOptions o;
      o.ridge_rel = ridge_rel;
      o.device = ridge_device;
      auto sol = calib::SolveRidge(g, w, hidden, kept, o);
      if (!sol.ok()) {
        std::fprintf(stderr, "heal_bench: %s\n",
                     sol.status().ToString().c_str());
        return false;
      }
      chol = std::move(*sol);
      return true;
    });
    if (chol_s < 0) return 1;
    double eigh_s = -1;
    if (eigh) {
      eigh_s = median([&] {
        calib::RidgeOptions o;
        o.ridge_rel = ridge_rel;
        o.device = ridge_device;
        o.force_eigh = true;
        auto sol = calib::SolveRidge(g, w, hidden, kept, o);
        if (!sol.ok()) {
          std::fprintf(stderr, "heal_bench: %s\n",
                       sol.status().ToString().c_str());
        }
        return sol.ok();
      });
    }
    std::vector<double> lu_w, lstsq_w;
    const double lu_s = median([&] {
      lu_w = SolveBaseline(g, w, hidden, kept, ridge_rel, dev, "lu");
      return true;
    });
    double lstsq_s = -1;
    if (lstsq) {
      lstsq_s = median([&] {
        lstsq_w = SolveBaseline(g, w, hidden, kept, ridge_rel, dev, "lstsq");
        return true;
      });
    }
    std::printf(
        "%-8s %5d %6lld %6zu %10.3f %10.3f %10.3f %10.3f %10.3f %12.3g "
        "%12.3g  (cholesky solved on %s)\n",
        std::string(kind_name).c_str(), layer, (long long)d, kept.size(),
        gram_s, chol_s, eigh_s, lu_s, lstsq_s, MaxAbsDiff(lu_w, chol.weight),
        lstsq ? MaxAbsDiff(lstsq_w, chol.weight) : -1.0, chol.device.c_str());
    seconds_of_kind[kind] = chol_s;
  }
  // All layers of the model at their kind's time.
  double total = 0;
  int counted = 0;
  for (int L = 0; L < cfg->num_hidden_layers; ++L) {
    auto it = seconds_of_kind.find(cfg->layers[L].kind);
    if (it == seconds_of_kind.end()) continue;
    total += it->second;
    ++counted;
  }
  std::printf("all %d layers of the timed kinds (cholesky): %.2f s\n", counted,
              total);
  return 0;
}

}  // namespace
}  // namespace sweepd

int main(int argc, char** argv) { return sweepd::Main(argc, argv); }
