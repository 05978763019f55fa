// dashboard/progress_tracker: rate and ETA over a sliding window of a fake
// clock.
#include "dashboard/progress_tracker.h"

#include "gtest/gtest.h"

namespace sweepd {
namespace {

TEST(ProgressTrackerTest, RateAndEtaComeFromTheWindowsSamples) {
  FakeClock clock;
  ProgressTracker tracker(&clock, /*window_ms=*/10'000);
  SweepProgress p = tracker.Observe("sw", 0, 100);
  EXPECT_DOUBLE_EQ(p.fraction, 0.0);
  EXPECT_DOUBLE_EQ(p.tasks_per_second, 0.0);
  EXPECT_FALSE(p.eta_seconds.has_value());  // no rate yet

  clock.AdvanceMs(5'000);
  p = tracker.Observe("sw", 10, 100);  // 10 tasks in 5 s
  EXPECT_DOUBLE_EQ(p.fraction, 0.1);
  EXPECT_DOUBLE_EQ(p.tasks_per_second, 2.0);
  ASSERT_TRUE(p.eta_seconds.has_value());
  EXPECT_DOUBLE_EQ(*p.eta_seconds, 45.0);  // 90 left at 2/s

  // 20 s later the first samples left the window: the rate is the recent one.
  clock.AdvanceMs(10'000);
  tracker.Observe("sw", 20, 100);
  clock.AdvanceMs(10'000);
  p = tracker.Observe("sw", 60, 100);  // 40 tasks in the last 10 s
  EXPECT_DOUBLE_EQ(p.tasks_per_second, 4.0);
  EXPECT_DOUBLE_EQ(*p.eta_seconds, 10.0);

  // Other sweeps are tracked apart; a finished sweep has ETA 0.
  EXPECT_DOUBLE_EQ(tracker.Observe("other", 0, 0).fraction, 1.0);
  EXPECT_DOUBLE_EQ(*tracker.Observe("other", 0, 0).eta_seconds, 0.0);
}

TEST(ProgressTrackerTest, NoProgressMeansNoEta) {
  FakeClock clock;
  ProgressTracker tracker(&clock);
  tracker.Observe("sw", 5, 10);
  clock.AdvanceMs(3'000);
  const SweepProgress p = tracker.Observe("sw", 5, 10);
  EXPECT_DOUBLE_EQ(p.tasks_per_second, 0.0);
  EXPECT_FALSE(p.eta_seconds.has_value());
}

}  // namespace
}  // namespace sweepd
