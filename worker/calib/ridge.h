// The heal's math (docs/CALIBRATION.md, "Heal"): the ridge least-squares
// refit of a layer's o_proj for its kept heads, from Grams.
//
// X = attn_heads[L] flattened per token [n, D] (D = heads * head_dim,
// head-major), W the base o_proj weight [hidden, D], Y = X Wᵀ the unpruned
// layer's o_proj output [n, hidden] (or the target of the Gram when it has
// XᵀY). With k the kept columns (the kept heads' head_dim columns each):
//
//   O′_k = argmin ‖X_k O′_kᵀ − Y‖² + λ‖O′_k‖²
//   ⇔ (G_kk + λI) O′_kᵀ = (XᵀY)_k,  G = XᵀX,  (XᵀY)_k = G_k,all Wᵀ
//   λ = ridge_rel × mean(diag G_kk)   (the KEPT columns' mean square)
//
// solved in float64: Cholesky, or, when Cholesky fails (G_kk + λI not
// positive definite, e.g. λ = 0 with a zero column), the symmetric
// eigensolver's pseudo-inverse (eigenvalues ≤ D·ε·max|eigenvalue| dropped:
// the minimum-norm least-squares solution). O′ is returned at the full shape
// [hidden, D] with the removed heads' columns zero.
//
// Relative residual ‖X O′ᵀ − Y‖² / ‖Y‖² from a Gram alone:
//   without XᵀY: tr((O′−W) G (O′−W)ᵀ) / tr(W G Wᵀ)
//   with XᵀY:    (tr(O′ G O′ᵀ) − 2 tr(O′ XᵀY) + Σ‖y‖²) / Σ‖y‖²
//
// Plain C++ interface over ATen float64 on the host or on a CUDA device
// (RidgeOptions::device; a libtorch error there, e.g. out of memory, falls
// back to the host). Stateless, thread-safe.
#ifndef SWEEPD_WORKER_CALIB_RIDGE_H_
#define SWEEPD_WORKER_CALIB_RIDGE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/calib/gram_file.h"

namespace sweepd::calib {

struct RidgeOptions {
  double ridge_rel = 0.01;
  // Skip Cholesky (tests of the fallback).
  bool force_eigh = false;
  // Where the float64 algebra runs: "" / "cpu", or "cuda:<n>". A libtorch
  // error on the device (no CUDA, out of memory, no solver) retries on the
  // host.
  std::string device;
};

struct RidgeSolution {
  int64_t hidden = 0;
  int64_t width = 0;           // D
  std::vector<double> weight;  // O′ [hidden, D], removed columns zero
  double lambda = 0.0;
  std::string solver;  // "cholesky" or "eigh"
  std::string device;  // where it was solved ("cpu", "cuda:0")
};

// The columns of the heads not in `removed` (each head's head_dim columns,
// ascending).
std::vector<int64_t> KeptColumns(int num_heads, int64_t head_dim,
                                 const std::vector<int>& removed);

// Solves the ridge problem for `kept` columns. `w` is W [hidden, D] row-major.
// INVALID_ARGUMENT when the shapes disagree (naming them), `kept` is empty or
// out of range, or the Gram has XᵀY of another width than hidden.
absl::StatusOr<RidgeSolution> SolveRidge(const Gram& gram,
                                         const std::vector<double>& w,
                                         int64_t hidden,
                                         const std::vector<int64_t>& kept,
                                         const RidgeOptions& options);

// ‖X Pᵀ − Y‖² / ‖Y‖² for P = `weight` [hidden, D] from `gram` (Y = X Wᵀ
// without XᵀY). 0 when Y is zero and so is the residual.
absl::StatusOr<double> RelativeResidual(const Gram& gram,
                                        const std::vector<double>& w,
                                        int64_t hidden,
                                        const std::vector<double>& weight,
                                        const std::string& device = "");

}  // namespace sweepd::calib

#endif  // SWEEPD_WORKER_CALIB_RIDGE_H_
