// Regression test for tests/sanitizers/absl_tsan_annotations.cc: conditional
// waits on an absl::Mutex whose Condition is evaluated by another thread inside
// its Unlock. Before the annotations wrapped each Condition (WaitScope), TSan
// reported the waiter's next stack frame (a new Condition, a log line) as
// racing with the other thread's evaluation of the old one: 84 reports in
// agent_test. Under TSan a report fails this test (halt_on_error); elsewhere it
// checks the waits' results only.
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace {

struct Shared {
  absl::Mutex mu;
  int value ABSL_GUARDED_BY(mu) = 0;
};

// One wait per round with a fresh Condition on the stack, in each form the
// annotations wrap.
int WaitRound(Shared* s, int round) {
  const auto reached = [s, round]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) {
    return s->value >= round;
  };
  switch (round % 4) {
    case 0: {
      s->mu.LockWhen(absl::Condition(&reached));
      const int v = s->value;
      s->mu.Unlock();
      return v;
    }
    case 1: {
      absl::MutexLock lock(&s->mu);
      s->mu.Await(absl::Condition(&reached));
      return s->value;
    }
    case 2: {
      s->mu.LockWhenWithTimeout(absl::Condition(&reached), absl::Seconds(60));
      const int v = s->value;
      s->mu.Unlock();
      return v;
    }
    default: {
      absl::MutexLock lock(&s->mu);
      s->mu.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(60));
      return s->value;
    }
  }
}

TEST(AbslTsanAnnotationsTest, ConditionsEvaluatedByTheUnlockingThread) {
  Shared s;
  constexpr int kRounds = 200;
  std::thread producer([&s] {
    for (int i = 1; i <= kRounds; ++i) {
      // Lets the waiter block first, so that this thread's Unlock evaluates
      // the waiter's Condition.
      absl::SleepFor(absl::Milliseconds(1));
      absl::MutexLock lock(&s.mu);
      s.value = i;
    }
  });
  for (int round = 1; round <= kRounds; ++round) {
    EXPECT_GE(WaitRound(&s, round), round);
  }
  producer.join();
}

}  // namespace
