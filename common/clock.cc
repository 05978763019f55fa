#include "common/clock.h"

#include "absl/time/clock.h"

namespace sweepd {
namespace {

class RealClock : public Clock {
 public:
  int64_t NowMs() override { return absl::ToUnixMillis(absl::Now()); }
  void SleepUntilMs(int64_t deadline_ms) override {
    int64_t now = NowMs();
    if (deadline_ms > now) absl::SleepFor(absl::Milliseconds(deadline_ms - now));
  }
};

}  // namespace

Clock* Clock::Real() {
  static Clock* const clock = new RealClock();
  return clock;
}

}  // namespace sweepd
