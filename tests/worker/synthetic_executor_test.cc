#include "worker/jobs/synthetic_executor.h"

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/hash.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sweepd {
namespace {

using ::testing::HasSubstr;

// A clock that jumps to the deadline on every sleep, recording how long it
// slept. `on_sleep` runs after each jump (tests use it to cancel mid-task).
class SteppingClock : public Clock {
 public:
  int64_t NowMs() override { return now_ms_; }
  void SleepUntilMs(int64_t deadline_ms) override {
    ++sleeps_;
    if (deadline_ms > now_ms_) now_ms_ = deadline_ms;
    if (on_sleep_) on_sleep_(sleeps_);
  }
  int64_t now_ms_ = 1'000'000;
  int sleeps_ = 0;
  std::function<void(int)> on_sleep_;
};

class TestContext : public TaskContext {
 public:
  bool cancelled() const override { return group_cancelled_; }
  bool task_cancelled(size_t index) const override {
    return group_cancelled_ || cancelled_tasks_.count(index) > 0;
  }
  void SetProgress(double fraction) override { progress_.push_back(fraction); }

  bool group_cancelled_ = false;
  std::set<size_t> cancelled_tasks_;
  std::vector<double> progress_;
};

TaskInput MakeTask(const std::string& key, int64_t index, int min_ms,
                   int max_ms, double failure_rate = 0,
                   double permanent_rate = 0, int attempt = 1) {
  TaskInput t;
  t.task_key = key;
  t.sweep_id = "sw-test";
  t.group_key = "g-" + key;
  t.kind = "synthetic";
  t.attempt = attempt;
  t.index = index;
  t.job = SyntheticJobSpec{min_ms, max_ms, failure_rate, permanent_rate};
  return t;
}

struct Outcome {
  size_t index;
  absl::StatusOr<TaskOutput> result;
};

std::vector<Outcome> RunGroup(SyntheticExecutor& exec,
                              const std::vector<TaskInput>& tasks,
                              TestContext& ctx) {
  std::vector<Outcome> out;
  exec.RunGroup(tasks, ctx, [&](size_t i, absl::StatusOr<TaskOutput> r) {
    out.push_back(Outcome{i, std::move(r)});
  });
  return out;
}

double MetricValue(const TaskOutput& out, const std::string& name) {
  for (const MetricRow& m : out.metrics) {
    if (m.name == name) return m.value;
  }
  ADD_FAILURE() << "no metric " << name;
  return -1;
}

std::unique_ptr<SyntheticExecutor> MakeExecutor(Clock* clock,
                                                int64_t slice_ms = 50) {
  auto exec =
      SyntheticExecutor::Create(SyntheticExecutorOptions{clock, slice_ms});
  EXPECT_TRUE(exec.ok()) << exec.status();
  return std::move(*exec);
}

TEST(SyntheticExecutorTest, ValueIsTheDocumentedHashOfTheKey) {
  // docs/SYNTHETIC.md: value = (Hash64("synthetic/value/" + key) >> 11) / 2^53.
  const std::string key = "abc123";
  double expected =
      static_cast<double>(Hash64("synthetic/value/abc123") >> 11) /
      9007199254740992.0;
  EXPECT_DOUBLE_EQ(SyntheticValue(key), expected);
  EXPECT_GE(SyntheticValue(key), 0.0);
  EXPECT_LT(SyntheticValue(key), 1.0);
}

TEST(SyntheticExecutorTest, DeterministicMetricsAndDuration) {
  SteppingClock clock;
  auto exec = MakeExecutor(&clock);
  TestContext ctx;
  std::vector<TaskInput> tasks = {MakeTask("key-a", 7, 10, 500)};

  int64_t t0 = clock.now_ms_;
  auto first = RunGroup(*exec, tasks, ctx);
  int64_t elapsed_first = clock.now_ms_ - t0;
  t0 = clock.now_ms_;
  auto second = RunGroup(*exec, tasks, ctx);
  int64_t elapsed_second = clock.now_ms_ - t0;

  ASSERT_EQ(first.size(), 1u);
  ASSERT_TRUE(first[0].result.ok()) << first[0].result.status();
  ASSERT_TRUE(second[0].result.ok()) << second[0].result.status();
  SyntheticParams params{10, 500, 0, 0};
  int64_t expected_ms = SyntheticDurationMs("key-a", params);
  EXPECT_EQ(expected_ms, 10 + static_cast<int64_t>(
                                  Hash64("synthetic/duration/key-a") % 491));
  EXPECT_EQ(elapsed_first, expected_ms);
  EXPECT_EQ(elapsed_second, expected_ms);
  EXPECT_DOUBLE_EQ(MetricValue(*first[0].result, "value"),
                   SyntheticValue("key-a"));
  EXPECT_DOUBLE_EQ(MetricValue(*second[0].result, "value"),
                   SyntheticValue("key-a"));
  EXPECT_DOUBLE_EQ(MetricValue(*first[0].result, "index"), 7.0);
  EXPECT_DOUBLE_EQ(MetricValue(*first[0].result, "duration_ms"),
                   static_cast<double>(expected_ms));
  EXPECT_DOUBLE_EQ(first[0].result->wall_seconds, expected_ms / 1000.0);
  // The sleep is sliced so cancellation is noticed: at least ceil(duration /
  // slice) sleeps.
  EXPECT_EQ(clock.sleeps_, 2 * ((expected_ms + 49) / 50));
  EXPECT_DOUBLE_EQ(ctx.progress_.back(), 1.0);
}

TEST(SyntheticExecutorTest, DurationsSpanTheRange) {
  SyntheticParams params{100, 200, 0, 0};
  int64_t lo = 1000, hi = -1;
  std::set<int64_t> distinct;
  for (int i = 0; i < 500; ++i) {
    int64_t d = SyntheticDurationMs(absl::StrCat("task-", i), params);
    ASSERT_GE(d, 100);
    ASSERT_LE(d, 200);
    lo = std::min(lo, d);
    hi = std::max(hi, d);
    distinct.insert(d);
  }
  EXPECT_LE(lo, 105);
  EXPECT_GE(hi, 195);
  EXPECT_GT(distinct.size(), 80u);
  EXPECT_EQ(SyntheticDurationMs("x", SyntheticParams{0, 0, 0, 0}), 0);
}

TEST(SyntheticExecutorTest, FailureRatesMatchAndPermanentFailuresRepeat) {
  SteppingClock clock;
  auto exec = MakeExecutor(&clock);
  TestContext ctx;
  std::vector<TaskInput> attempt1, attempt2;
  const int n = 2000;
  for (int i = 0; i < n; ++i) {
    std::string key = absl::StrCat("k", i);
    attempt1.push_back(MakeTask(key, i, 0, 0, 0.2, 0.1, 1));
    attempt2.push_back(MakeTask(key, i, 0, 0, 0.2, 0.1, 2));
  }
  auto r1 = RunGroup(*exec, attempt1, ctx);
  auto r2 = RunGroup(*exec, attempt2, ctx);
  ASSERT_EQ(r1.size(), static_cast<size_t>(n));
  ASSERT_EQ(r2.size(), static_cast<size_t>(n));
  int permanent = 0, transient1 = 0, transient_differs = 0;
  for (int i = 0; i < n; ++i) {
    ASSERT_EQ(r1[i].index, static_cast<size_t>(i));
    const absl::Status s1 = r1[i].result.status();
    const absl::Status s2 = r2[i].result.status();
    if (s1.code() == absl::StatusCode::kFailedPrecondition) {
      ++permanent;
      EXPECT_THAT(std::string(s1.message()), HasSubstr("permanent"));
      EXPECT_TRUE(IsPermanentTaskError(s1));
      // Same decision on every attempt.
      EXPECT_EQ(s2.code(), absl::StatusCode::kFailedPrecondition);
      continue;
    }
    ASSERT_NE(s2.code(), absl::StatusCode::kFailedPrecondition);
    if (s1.code() == absl::StatusCode::kUnavailable) {
      ++transient1;
      EXPECT_THAT(std::string(s1.message()), HasSubstr("attempt 1"));
      EXPECT_FALSE(IsPermanentTaskError(s1));
    } else {
      ASSERT_TRUE(s1.ok()) << s1;
    }
    if ((s1.code() == absl::StatusCode::kUnavailable) !=
        (s2.code() == absl::StatusCode::kUnavailable)) {
      ++transient_differs;
    }
  }
  // permanent ~ 0.1 of all; transient ~ 0.2 of the rest. Binomial 4-sigma
  // bounds.
  EXPECT_NEAR(permanent, 200, 55);
  EXPECT_NEAR(transient1, 0.2 * (n - permanent), 75);
  // Transient failures are drawn per attempt: 2 * 0.2 * 0.8 = 32% of the rest
  // differ.
  EXPECT_NEAR(transient_differs, 0.32 * (n - permanent), 95);
}

TEST(SyntheticExecutorTest, CancellationMidTaskIsNoticedWithinASlice) {
  SteppingClock clock;
  auto exec = MakeExecutor(&clock, /*slice_ms=*/10);
  TestContext ctx;
  clock.on_sleep_ = [&](int sleeps) {
    if (sleeps == 3) ctx.cancelled_tasks_.insert(0);
  };
  int64_t t0 = clock.now_ms_;
  auto out = RunGroup(
      *exec, {MakeTask("slow", 0, 1000, 1000), MakeTask("next", 1, 0, 0)}, ctx);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].result.status().code(), absl::StatusCode::kCancelled);
  EXPECT_THAT(std::string(out[0].result.status().message()), HasSubstr("slow"));
  EXPECT_EQ(clock.now_ms_ - t0, 30);  // three 10 ms slices, then it stopped
  // The other task of the group still runs.
  EXPECT_TRUE(out[1].result.ok()) << out[1].result.status();
}

TEST(SyntheticExecutorTest, CancelledBeforeStartIsNotRun) {
  SteppingClock clock;
  auto exec = MakeExecutor(&clock);
  TestContext ctx;
  ctx.group_cancelled_ = true;
  auto out = RunGroup(
      *exec, {MakeTask("a", 0, 100, 100), MakeTask("b", 1, 100, 100)}, ctx);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].result.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(out[1].result.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(clock.sleeps_, 0);
}

TEST(SyntheticExecutorTest, InvalidParametersNameTheField) {
  SteppingClock clock;
  auto exec = MakeExecutor(&clock);
  TestContext ctx;
  auto out =
      RunGroup(*exec,
               {MakeTask("a", 0, 50, 10), MakeTask("b", 1, 0, 0, 1.5),
                MakeTask("c", 2, -1, 0), MakeTask("d", 3, 0, 0, 0, -0.1)},
               ctx);
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0].result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(out[0].result.status().message()),
              HasSubstr("synthetic.max_ms"));
  EXPECT_THAT(std::string(out[1].result.status().message()),
              HasSubstr("synthetic.failure_rate"));
  EXPECT_THAT(std::string(out[2].result.status().message()),
              HasSubstr("synthetic.min_ms"));
  EXPECT_THAT(std::string(out[3].result.status().message()),
              HasSubstr("synthetic.permanent_failure_rate"));

  TaskInput no_job = MakeTask("e", 0, 0, 0);
  no_job.job = std::monostate();
  auto r = RunGroup(*exec, {no_job}, ctx);
  EXPECT_EQ(r[0].result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r[0].result.status().message()), HasSubstr("job"));

  TaskInput wrong_kind = MakeTask("f", 0, 0, 0);
  wrong_kind.kind = "eval";
  r = RunGroup(*exec, {wrong_kind}, ctx);
  EXPECT_EQ(r[0].result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r[0].result.status().message()), HasSubstr("'eval'"));
}

TEST(ExecutorRegistryTest, RegisterFindAndDuplicates) {
  SteppingClock clock;
  ExecutorRegistry registry;
  ASSERT_TRUE(registry.Register(MakeExecutor(&clock)).ok());
  EXPECT_NE(registry.Find("synthetic"), nullptr);
  EXPECT_EQ(registry.Find("eval"), nullptr);
  EXPECT_EQ(registry.kinds(), std::vector<std::string>{"synthetic"});
  absl::Status dup = registry.Register(MakeExecutor(&clock));
  EXPECT_EQ(dup.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(dup.message()), HasSubstr("synthetic"));
  absl::Status null = registry.Register(nullptr);
  EXPECT_EQ(null.code(), absl::StatusCode::kInvalidArgument);
}

TEST(ExecutorRegistryTest, PermanentErrorCodes) {
  EXPECT_TRUE(IsPermanentTaskError(absl::InvalidArgumentError("x")));
  EXPECT_TRUE(IsPermanentTaskError(absl::FailedPreconditionError("x")));
  EXPECT_TRUE(IsPermanentTaskError(absl::NotFoundError("x")));
  EXPECT_FALSE(IsPermanentTaskError(absl::UnavailableError("x")));
  EXPECT_FALSE(IsPermanentTaskError(absl::InternalError("x")));
  EXPECT_FALSE(IsPermanentTaskError(absl::ResourceExhaustedError("x")));
}

}  // namespace
}  // namespace sweepd
