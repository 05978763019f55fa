// ProgressTracker: per-sweep completion rate and ETA for the dashboard. Each
// Observe() records a sweep's finished-task count (done + failed + cancelled)
// at the Clock's now; the rate is the count's increase over the samples within
// the last `window_ms`, the ETA the unfinished tasks at that rate.
//
// Ownership: borrows the Clock. Thread-safety: thread-safe (one mutex).
#ifndef SWEEPD_DASHBOARD_PROGRESS_TRACKER_H_
#define SWEEPD_DASHBOARD_PROGRESS_TRACKER_H_

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "common/clock.h"

namespace sweepd {

struct SweepProgress {
  double fraction = 0;  // finished / total, in [0, 1]; 1 for an empty sweep
  double tasks_per_second = 0;  // 0 until two samples span some time
  // Seconds until every task finished at the current rate; empty when the
  // rate is unknown or 0 and tasks remain. 0 when nothing remains.
  std::optional<double> eta_seconds;
};

class ProgressTracker {
 public:
  explicit ProgressTracker(Clock* clock, int64_t window_ms = 30'000)
      : clock_(clock), window_ms_(window_ms) {}

  // Records `finished` of `total` for `sweep_id` now and returns the progress.
  SweepProgress Observe(const std::string& sweep_id, int64_t finished,
                        int64_t total);

 private:
  Clock* const clock_;
  const int64_t window_ms_;
  absl::Mutex mu_;
  // sweep id -> (ms, finished) samples, oldest first, within the window (plus
  // the newest one before it).
  std::map<std::string, std::deque<std::pair<int64_t, int64_t>>> samples_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace sweepd

#endif  // SWEEPD_DASHBOARD_PROGRESS_TRACKER_H_
