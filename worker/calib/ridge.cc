#include "worker/calib/ridge.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <tuple>

#include "absl/strings/str_cat.h"

namespace sweepd::calib {
namespace {

at::Tensor Borrow(const std::vector<double>& v, int64_t rows, int64_t cols) {
  return at::from_blob(const_cast<double*>(v.data()), {rows, cols},
                       at::TensorOptions().dtype(at::kDouble));
}

std::vector<double> ToVector(const at::Tensor& t) {
  at::Tensor c = t.to(at::kCPU, at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(),
                             c.data_ptr<double>() + c.numel());
}

absl::Status CheckShapes(const Gram& g, const std::vector<double>& w,
                         int64_t hidden) {
  if (hidden < 1 || static_cast<int64_t>(w.size()) != hidden * g.d) {
    return absl::InvalidArgumentError(absl::StrCat(
        "o_proj weight has ", w.size(), " values, expected hidden ", hidden,
        " x Gram width ", g.d));
  }
  if (static_cast<int64_t>(g.xtx.size()) != g.d * g.d) {
    return absl::InvalidArgumentError("Gram xtx is not [d, d]");
  }
  if (g.e != 0 && g.e != hidden) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Gram xty has width ", g.e, ", o_proj's output is ", hidden, " wide"));
  }
  return absl::OkStatus();
}

// `device` parsed ("" = cpu); INVALID_ARGUMENT naming it otherwise.
absl::StatusOr<at::Device> ParseDevice(const std::string& device) {
  if (device.empty()) return at::Device(at::kCPU);
  try {
    return at::Device(device);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("device \"", device, "\": ", e.what()));
  }
}

// Runs `fn(device)`; a libtorch error on a non-host device retries on the
// host, one on the host is INTERNAL naming `what`.
template <typename T, typename Fn>
absl::StatusOr<T> OnDevice(const std::string& device, const char* what, Fn fn) {
  absl::StatusOr<at::Device> dev = ParseDevice(device);
  if (!dev.ok()) return dev.status();
  if (!dev->is_cpu()) {
    try {
      return fn(*dev);
    } catch (const std::exception&) {
      // Falls through to the host.
    }
  }
  try {
    return fn(at::Device(at::kCPU));
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat(what, ": libtorch error: ", e.what()));
  }
}

RidgeSolution Solve(const Gram& gram, const std::vector<double>& w,
                    int64_t hidden, const std::vector<int64_t>& kept,
                    const RidgeOptions& options, at::Device device) {
  const int64_t D = gram.d;
  at::Tensor G = Borrow(gram.xtx, D, D).to(device);
  at::Tensor W = Borrow(w, hidden, D).to(device);
  at::Tensor k = at::tensor(kept, at::kLong).to(device);
  at::Tensor Gk = G.index_select(0, k);  // [|k|, D]
  at::Tensor A = Gk.index_select(1, k);  // G_kk
  // Per-rank row blocks are separate GEMMs: symmetrise the rounding.
  A = (A + A.t()) * 0.5;
  at::Tensor B = gram.e > 0
                     ? Borrow(gram.xty, D, hidden).to(device).index_select(0, k)
                     : Gk.mm(W.t());  // [|k|, hidden]
  RidgeSolution out;
  out.hidden = hidden;
  out.width = D;
  out.device = device.str();
  out.lambda = options.ridge_rel * A.diagonal().mean().item<double>();
  A.diagonal().add_(out.lambda);
  at::Tensor Z;  // O′_kᵀ [|k|, hidden]
  if (!options.force_eigh) {
    at::Tensor L, info;
    std::tie(L, info) = at::linalg_cholesky_ex(A);
    if (info.item<int64_t>() == 0) {
      Z = at::cholesky_solve(B, L);
      if (!at::isfinite(Z).all().item<bool>()) Z = at::Tensor();
    }
    if (Z.defined()) out.solver = "cholesky";
  }
  if (!Z.defined()) {
    at::Tensor evals, V;
    std::tie(evals, V) = at::linalg_eigh(A);
    const double tol = evals.abs().max().item<double>() *
                       static_cast<double>(A.size(0)) *
                       std::numeric_limits<double>::epsilon();
    at::Tensor inv =
        at::where(evals.gt(tol), evals.reciprocal(), at::zeros_like(evals));
    Z = V.mm((inv.unsqueeze(1) * V.t()).mm(B));
    out.solver = "eigh";
  }
  at::Tensor P = at::zeros(
      {hidden, D}, at::TensorOptions().dtype(at::kDouble).device(device));
  P.index_copy_(1, k, Z.t().contiguous());
  out.weight = ToVector(P);
  return out;
}

double Residual(const Gram& gram, const std::vector<double>& w, int64_t hidden,
                const std::vector<double>& weight, at::Device device) {
  const int64_t D = gram.d;
  at::Tensor G = Borrow(gram.xtx, D, D).to(device);
  at::Tensor W = Borrow(w, hidden, D).to(device);
  at::Tensor P = Borrow(weight, hidden, D).to(device);
  double num, den;
  if (gram.e == 0) {
    // Y = X Wᵀ: the residual is X (P − W)ᵀ, without cancellation.
    at::Tensor diff = P - W;
    num = (diff.mm(G) * diff).sum().item<double>();
    den = (W.mm(G) * W).sum().item<double>();
  } else {
    at::Tensor XtY = Borrow(gram.xty, D, hidden).to(device);
    num = (P.mm(G) * P).sum().item<double>() -
          2.0 * (P * XtY.t()).sum().item<double>() + gram.yy;
    den = gram.yy;
  }
  num = std::max(num, 0.0);
  if (den <= 0) return num == 0 ? 0.0 : std::numeric_limits<double>::infinity();
  return num / den;
}

}  // namespace

std::vector<int64_t> KeptColumns(int num_heads, int64_t head_dim,
                                 const std::vector<int>& removed) {
  std::vector<int64_t> kept;
  for (int h = 0; h < num_heads; ++h) {
    if (std::find(removed.begin(), removed.end(), h) != removed.end()) continue;
    for (int64_t c = 0; c < head_dim; ++c) kept.push_back(h * head_dim + c);
  }
  return kept;
}

absl::StatusOr<RidgeSolution> SolveRidge(const Gram& gram,
                                         const std::vector<double>& w,
                                         int64_t hidden,
                                         const std::vector<int64_t>& kept,
                                         const RidgeOptions& options) {
  if (absl::Status s = CheckShapes(gram, w, hidden); !s.ok()) return s;
  if (kept.empty()) {
    return absl::InvalidArgumentError("no kept columns: every head is removed");
  }
  for (int64_t c : kept) {
    if (c < 0 || c >= gram.d) {
      return absl::InvalidArgumentError(absl::StrCat(
          "kept column ", c, " outside the Gram's width ", gram.d));
    }
  }
  if (!(options.ridge_rel >= 0) || !std::isfinite(options.ridge_rel)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ridge_rel ", options.ridge_rel, " must be finite and >= 0"));
  }
  return OnDevice<RidgeSolution>(
      options.device, "ridge solve", [&](at::Device device) {
        return Solve(gram, w, hidden, kept, options, device);
      });
}

absl::StatusOr<double> RelativeResidual(const Gram& gram,
                                        const std::vector<double>& w,
                                        int64_t hidden,
                                        const std::vector<double>& weight,
                                        const std::string& device) {
  if (absl::Status s = CheckShapes(gram, w, hidden); !s.ok()) return s;
  if (weight.size() != w.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "healed weight has ", weight.size(), " values, expected ", w.size()));
  }
  return OnDevice<double>(device, "heal residual", [&](at::Device dev) {
    return Residual(gram, w, hidden, weight, dev);
  });
}

}  // namespace sweepd::calib
