// The phase clock (profile.h) with a fake device timer, and an engine's
// diagnostics (diagnostics.h): phases accumulate per name in first-seen order,
// TakePhases resets, attention checks run once per (kernel, device).
#include "worker/engine/profile.h"

#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/engine/diagnostics.h"

namespace sweepd::engine::internal {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

// Event i is recorded at time times[i] ms; counts live events.
class FakeTimer : public DeviceEventTimer {
 public:
  explicit FakeTimer(std::vector<double> times) : times_(std::move(times)) {}
  void* Record() override {
    ++live_;
    return reinterpret_cast<void*>(++recorded_);
  }
  double ElapsedMs(void* start, void* end) override {
    return times_[reinterpret_cast<intptr_t>(end) - 1] -
           times_[reinterpret_cast<intptr_t>(start) - 1];
  }
  void Destroy(void* event) override { --live_; }
  int live() const { return live_; }

 private:
  std::vector<double> times_;
  intptr_t recorded_ = 0;
  int live_ = 0;
};

TEST(PhaseClockTest, DeviceEventsAccumulatePerPhase) {
  EngineDiagnostics diag;
  // Marks: embed@0, layer@1, attention@3, layer@6, attention@7, end@10.
  FakeTimer timer({0, 1, 3, 6, 7, 10});
  {
    PhaseClock clock(true, &timer, &diag);
    clock.Mark("embed");
    clock.Mark("layer");
    clock.Mark("attention");
    clock.Mark("layer");
    clock.Mark("attention");
    clock.Finish();
  }
  EXPECT_EQ(timer.live(), 0);  // every event destroyed with the clock
  const PhaseTimes p = diag.TakePhases();
  EXPECT_EQ(p.forwards, 1);
  EXPECT_TRUE(p.device_events);
  EXPECT_THAT(p.ms, ElementsAre(Pair("embed", 1.0), Pair("layer", 3.0),
                                Pair("attention", 6.0)));
  const PhaseTimes empty = diag.TakePhases();
  EXPECT_EQ(empty.forwards, 0);
  EXPECT_TRUE(empty.ms.empty());
}

TEST(PhaseClockTest, DisabledClockRecordsNothing) {
  EngineDiagnostics diag;
  FakeTimer timer({0, 1});
  PhaseClock clock(false, &timer, &diag);
  clock.Mark("embed");
  clock.Finish();
  EXPECT_EQ(timer.live(), 0);
  EXPECT_EQ(diag.TakePhases().forwards, 0);
}

TEST(EngineDiagnosticsTest, ChecksRunOncePerKernelAndDevice) {
  EngineDiagnostics diag;
  int runs = 0;
  auto fails = [&] {
    ++runs;
    return false;
  };
  auto passes = [&] {
    ++runs;
    return true;
  };
  EXPECT_FALSE(diag.CheckOnce("flash", 0, fails));
  EXPECT_FALSE(diag.CheckOnce("flash", 0, passes));  // cached verdict
  EXPECT_TRUE(diag.CheckOnce("flash", 1, passes));
  EXPECT_TRUE(diag.CheckOnce("cudnn", 0, passes));
  EXPECT_EQ(runs, 3);
  EXPECT_THAT(diag.Checks(), ElementsAre(Pair("cudnn on device 0", true),
                                         Pair("flash on device 0", false),
                                         Pair("flash on device 1", true)));
  diag.AddGemmLine("a");
  diag.AddGemmLine("b");
  EXPECT_THAT(diag.GemmLines(), ElementsAre("a", "b"));
}

}  // namespace
}  // namespace sweepd::engine::internal
