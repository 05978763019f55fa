#include "coordinator/task_states.h"

#include "gtest/gtest.h"

namespace sweepd {
namespace {

TEST(TaskStatesTest, TerminalAndActiveStatesPartitionTheRealStates) {
  for (v1::TaskState s :
       {v1::TASK_STATE_PENDING, v1::TASK_STATE_LEASED, v1::TASK_STATE_DONE,
        v1::TASK_STATE_FAILED, v1::TASK_STATE_CANCELLED}) {
    EXPECT_NE(IsTerminalTaskState(s), IsActiveTaskState(s))
        << v1::TaskState_Name(s);
  }
  EXPECT_TRUE(IsTerminalTaskState(v1::TASK_STATE_DONE));
  EXPECT_TRUE(IsActiveTaskState(v1::TASK_STATE_LEASED));
  EXPECT_FALSE(IsTerminalTaskState(v1::TASK_STATE_UNSPECIFIED));
  EXPECT_FALSE(IsActiveTaskState(v1::TASK_STATE_UNSPECIFIED));
}

TEST(TaskStatesTest, AdjustTaskCountMovesOnlyTheStateField) {
  v1::TaskCounts c;
  AdjustTaskCount(&c, v1::TASK_STATE_PENDING, 3);
  AdjustTaskCount(&c, v1::TASK_STATE_PENDING, -1);
  AdjustTaskCount(&c, v1::TASK_STATE_FAILED, 2);
  AdjustTaskCount(&c, v1::TASK_STATE_UNSPECIFIED, 5);
  EXPECT_EQ(c.pending(), 2);
  EXPECT_EQ(c.failed(), 2);
  EXPECT_EQ(c.total(), 0);
  EXPECT_EQ(c.done() + c.leased() + c.cancelled(), 0);
}

TEST(TaskStatesTest, SweepStateFollowsTheRule) {
  v1::TaskCounts c;
  c.set_done(2);
  EXPECT_EQ(SweepStateFromCounts(c, false, false), v1::SWEEP_STATE_DONE);
  EXPECT_EQ(SweepStateFromCounts(c, false, true), v1::SWEEP_STATE_RUNNING);
  c.set_failed(1);
  EXPECT_EQ(SweepStateFromCounts(c, false, false), v1::SWEEP_STATE_FAILED);
  c.set_leased(1);
  EXPECT_EQ(SweepStateFromCounts(c, false, false), v1::SWEEP_STATE_RUNNING);
  EXPECT_EQ(SweepStateFromCounts(c, true, false), v1::SWEEP_STATE_CANCELLED);
  EXPECT_TRUE(IsFinalSweepState(v1::SWEEP_STATE_FAILED));
  EXPECT_FALSE(IsFinalSweepState(v1::SWEEP_STATE_RUNNING));
}

}  // namespace
}  // namespace sweepd
