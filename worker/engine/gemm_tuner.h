// GemmTuner: the GPU path's row-major GEMMs y = x · wᵀ (x [M, K], w [N, K],
// y [M, N], bf16 in and out, float32 accumulation) through cuBLASLt, with the
// algorithm of each shape chosen by timing instead of by cuBLAS's heuristic
// (EngineOptions::gemm_tuning = autotune; docs/ENGINE.md, "GPU path"). The
// first call with a new (M, N, K) times the heuristic's first choice and up to
// kCandidates more algorithms on that call's operands (kTimedRuns runs each
// after one warm-up, median) and keeps the fastest when it beats the first
// choice by more than kMinGain; later calls with the shape reuse it.
//
// Results are deterministic within a process (one algorithm per shape) but
// may differ at the compute dtype's rounding from another process that timed
// differently; gemm_tuning = off keeps cuBLAS's heuristic (at::mm). A tuning
// cache file makes them repeat across processes: a shape found there for this
// GPU model and cuBLASLt version takes the recorded candidate without timing,
// and a newly timed shape is appended (one line per shape, tab-separated:
// "<GPU name> cublasLt <version>", m, n, k, ldx, ldw, ldy, candidate index;
// the first line for a key wins, lines of other GPUs or versions are kept and
// ignored). Processes that share the file therefore pick the same algorithms.
//
// Plain C++ over raw device pointers and a cudaStream_t passed as void*: no
// libtorch, no CUDA headers here. One tuner per device; the caller owns it.
// Thread-safety: Run and Choices may be called concurrently (the cache is
// guarded); tuning a new shape synchronises the caller's stream.
#ifndef SWEEPD_WORKER_ENGINE_GEMM_TUNER_H_
#define SWEEPD_WORKER_ENGINE_GEMM_TUNER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sweepd::engine {

struct GemmShape {
  int64_t m = 0, n = 0, k = 0;
};

// y[i, j] = Σ_k x[i, k] · w[j, k]; rows of x, w, y are ldx, ldw, ldy elements
// apart (>= k, k, n); all bf16, 16-byte aligned.
struct GemmArgs {
  GemmShape shape;
  const void* x = nullptr;
  int64_t ldx = 0;
  const void* w = nullptr;
  int64_t ldw = 0;
  void* y = nullptr;
  int64_t ldy = 0;
};

class GemmTuner {
 public:
  static constexpr int kCandidates = 16;
  static constexpr int kTimedRuns = 3;
  static constexpr double kMinGain = 0.01;

  // What tuning chose for one shape.
  struct Choice {
    GemmShape shape;
    int candidates = 0;       // algorithms the heuristic offered and ran
    int chosen = 0;           // index among them; 0 = the heuristic's first
    double heuristic_ms = 0;  // median time of the heuristic's first choice
    double chosen_ms = 0;     // median time of the chosen algorithm
    bool from_cache = false;  // taken from the cache file, not timed (0 ms)
  };

  // A tuner for CUDA device `device` (creates a cuBLASLt handle and a
  // workspace there). `cache_path` (empty: none) is read now and appended to
  // as shapes are tuned; a malformed line is INVALID_ARGUMENT naming it.
  static absl::StatusOr<std::unique_ptr<GemmTuner>> Create(
      int device, const std::string& cache_path = "");
  virtual ~GemmTuner() = default;

  // Enqueues y = x · wᵀ on `stream`, tuning the shape first if it is new;
  // true when this call tuned it (Choices().back() then describes it).
  virtual absl::StatusOr<bool> Run(const GemmArgs& args, void* stream) = 0;
  // Every shape tuned so far, in the order first seen.
  virtual std::vector<Choice> Choices() const = 0;
};

std::string GemmShapeName(const GemmShape& s);  // "8192x43008x5376"

}  // namespace sweepd::engine

#endif  // SWEEPD_WORKER_ENGINE_GEMM_TUNER_H_
