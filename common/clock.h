// Clock: the one source of time for leases, heartbeats, backoff and progress rates, so tests
// drive time with FakeClock instead of sleeping. Times are milliseconds since the Unix epoch.
// Implementations are thread-safe. Clocks are borrowed by their users (raw pointer/reference);
// the process (main) or the test owns them.
#ifndef SWEEPD_COMMON_CLOCK_H_
#define SWEEPD_COMMON_CLOCK_H_

#include <cstdint>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace sweepd {

class Clock {
 public:
  virtual ~Clock() = default;
  // Current wall time, ms since the Unix epoch.
  virtual int64_t NowMs() = 0;
  // Blocks until NowMs() >= deadline_ms or `cv`-style wake-ups are not needed: used only by
  // background loops. FakeClock returns once the fake time has been advanced past deadline.
  virtual void SleepUntilMs(int64_t deadline_ms) = 0;

  // The process-wide real clock (never destroyed).
  static Clock* Real();
};

// A clock that moves only when told. Thread-safe.
class FakeClock : public Clock {
 public:
  explicit FakeClock(int64_t start_ms = 1'700'000'000'000) : now_ms_(start_ms) {}
  int64_t NowMs() override {
    absl::MutexLock lock(&mu_);
    return now_ms_;
  }
  void SleepUntilMs(int64_t deadline_ms) override {
    absl::MutexLock lock(&mu_);
    auto reached = [this, deadline_ms]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return now_ms_ >= deadline_ms;
    };
    mu_.Await(absl::Condition(&reached));
  }
  void AdvanceMs(int64_t delta_ms) {
    absl::MutexLock lock(&mu_);
    now_ms_ += delta_ms;
  }
  void SetMs(int64_t now_ms) {
    absl::MutexLock lock(&mu_);
    now_ms_ = now_ms;
  }

 private:
  absl::Mutex mu_;
  int64_t now_ms_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sweepd

#endif  // SWEEPD_COMMON_CLOCK_H_
