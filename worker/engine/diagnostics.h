// Internal to sweepd::engine: one engine's diagnostics, read through Engine's
// TakePhaseProfile / GemmTuningReport / CheckedAttentionKernels: the
// accumulated phase profile, the lines of its GEMM autotuning, and the
// verdicts of its fused-attention checks. Owned by the engine; written by its
// rank threads. Thread-safe. Plain C++.
#ifndef SWEEPD_WORKER_ENGINE_DIAGNOSTICS_H_
#define SWEEPD_WORKER_ENGINE_DIAGNOSTICS_H_

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "worker/engine/engine.h"

namespace sweepd::engine::internal {

class EngineDiagnostics {
 public:
  // Adds one forward's phase intervals (phase, ms) to the profile.
  void AddPhases(const std::vector<std::pair<std::string, double>>& phases,
                 bool device_events);
  // Returns the accumulated profile and resets it.
  PhaseTimes TakePhases();

  void AddGemmLine(std::string line);
  std::vector<std::string> GemmLines() const;

  // The verdict of check `name` on `device`: runs `check` the first time (with
  // the lock held, so concurrent callers wait for the one check) and caches
  // its result.
  bool CheckOnce(const std::string& name, int device,
                 const std::function<bool()>& check);
  // ("<name> on device <n>", usable), sorted by name.
  std::vector<std::pair<std::string, bool>> Checks() const;

 private:
  mutable absl::Mutex mu_;
  std::vector<std::pair<std::string, double>> phases_ ABSL_GUARDED_BY(mu_);
  int64_t forwards_ ABSL_GUARDED_BY(mu_) = 0;
  bool device_events_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::string> gemm_lines_ ABSL_GUARDED_BY(mu_);
  // Checks run under their own lock: a check takes device time while other
  // ranks may report phases.
  mutable absl::Mutex checks_mu_;
  std::map<std::pair<std::string, int>, bool> checks_
      ABSL_GUARDED_BY(checks_mu_);
};

}  // namespace sweepd::engine::internal

#endif  // SWEEPD_WORKER_ENGINE_DIAGNOSTICS_H_
