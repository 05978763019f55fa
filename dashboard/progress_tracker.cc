// ProgressTracker. See progress_tracker.h.
#include "dashboard/progress_tracker.h"

namespace sweepd {

SweepProgress ProgressTracker::Observe(const std::string& sweep_id,
                                       int64_t finished, int64_t total) {
  const int64_t now = clock_->NowMs();
  SweepProgress out;
  out.fraction =
      total > 0 ? std::min(1.0, static_cast<double>(finished) / total) : 1.0;
  absl::MutexLock lock(&mu_);
  auto& samples = samples_[sweep_id];
  if (samples.empty() || samples.back().first != now) {
    samples.emplace_back(now, finished);
  } else {
    samples.back().second = finished;
  }
  // Keep one sample at or before the window's start, so the rate spans it.
  while (samples.size() > 2 && samples[1].first <= now - window_ms_) {
    samples.pop_front();
  }
  const auto& [t0, f0] = samples.front();
  if (now > t0 && finished >= f0) {
    out.tasks_per_second = (finished - f0) * 1000.0 / (now - t0);
  }
  const int64_t remaining = std::max<int64_t>(0, total - finished);
  if (remaining == 0) {
    out.eta_seconds = 0.0;
  } else if (out.tasks_per_second > 0) {
    out.eta_seconds = remaining / out.tasks_per_second;
  }
  return out;
}

}  // namespace sweepd
