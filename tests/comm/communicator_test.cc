#include "worker/comm/communicator.h"

#include <chrono>
#include <cstring>
#include <functional>
#include <future>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sweepd::comm {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Runs fn(rank) on `size` threads and returns each rank's status.
std::vector<absl::Status> RunRanks(
    InProcessGroup* group,
    const std::function<absl::Status(Communicator*)>& fn) {
  std::vector<absl::Status> status(group->size());
  std::vector<std::thread> threads;
  for (int r = 0; r < group->size(); ++r) {
    threads.emplace_back([&, r] { status[r] = fn(group->rank(r)); });
  }
  for (auto& t : threads) t.join();
  return status;
}

TEST(InProcessCommunicatorTest, AllReduceSumAndMaxFloat32) {
  auto group = InProcessGroup::Create(4);
  ASSERT_TRUE(group.ok()) << group.status();
  std::vector<std::vector<float>> sum(4), mx(4);
  auto status = RunRanks(group->get(), [&](Communicator* c) {
    const int r = c->rank();
    sum[r] = {1.0f * r, 0.5f, -2.0f * r};
    mx[r] = {1.0f * r, -1.0f * r, r == 2 ? 7.0f : 0.0f};
    absl::Status s = c->AllReduceSum(sum[r].data(), 3, CommDtype::kFloat32);
    if (!s.ok()) return s;
    return c->AllReduceMax(mx[r].data(), 3, CommDtype::kFloat32);
  });
  for (int r = 0; r < 4; ++r) {
    ASSERT_TRUE(status[r].ok()) << status[r];
    EXPECT_THAT(sum[r], ElementsAre(6.0f, 2.0f, -12.0f));
    EXPECT_THAT(mx[r], ElementsAre(3.0f, 0.0f, 7.0f));
  }
}

TEST(InProcessCommunicatorTest, SumIsInRankOrderAndIdenticalOnEveryRank) {
  // Values whose float32 sum depends on the order: rank order 0..3 in float64
  // is the contract.
  const float v[4] = {1e8f, 1.0f, -1e8f, 1.0f};
  const float expected = static_cast<float>(((1e8 + 1.0) + -1e8) + 1.0);
  auto group = InProcessGroup::Create(4);
  ASSERT_TRUE(group.ok());
  for (int round = 0; round < 20; ++round) {
    std::vector<float> out(4);
    auto status = RunRanks(group->get(), [&](Communicator* c) {
      out[c->rank()] = v[c->rank()];
      return c->AllReduceSum(&out[c->rank()], 1, CommDtype::kFloat32);
    });
    for (int r = 0; r < 4; ++r) {
      ASSERT_TRUE(status[r].ok());
      EXPECT_EQ(out[r], expected);
    }
  }
}

TEST(InProcessCommunicatorTest, IntegerAndBfloat16) {
  auto group = InProcessGroup::Create(3);
  ASSERT_TRUE(group.ok());
  std::vector<int64_t> ints(3);
  std::vector<uint16_t> bf(3);
  auto status = RunRanks(group->get(), [&](Communicator* c) {
    ints[c->rank()] = int64_t{1} << (40 + c->rank());
    // bfloat16 of 1.0, 2.0, 4.0: 0x3f80, 0x4000, 0x4080.
    const uint16_t bits[3] = {0x3f80, 0x4000, 0x4080};
    bf[c->rank()] = bits[c->rank()];
    absl::Status s = c->AllReduceSum(&ints[c->rank()], 1, CommDtype::kInt64);
    if (!s.ok()) return s;
    return c->AllReduceSum(&bf[c->rank()], 1, CommDtype::kBFloat16);
  });
  for (int r = 0; r < 3; ++r) {
    ASSERT_TRUE(status[r].ok());
    EXPECT_EQ(ints[r],
              (int64_t{1} << 40) + (int64_t{1} << 41) + (int64_t{1} << 42));
    EXPECT_EQ(bf[r], 0x40e0);  // 7.0
  }
}

TEST(InProcessCommunicatorTest, AllGatherBroadcastBarrier) {
  auto group = InProcessGroup::Create(3);
  ASSERT_TRUE(group.ok());
  std::vector<std::vector<int32_t>> gathered(3, std::vector<int32_t>(6));
  std::vector<std::vector<double>> bcast(3);
  auto status = RunRanks(group->get(), [&](Communicator* c) {
    const int r = c->rank();
    int32_t mine[2] = {10 * r, 10 * r + 1};
    absl::Status s =
        c->AllGather(mine, gathered[r].data(), 2, CommDtype::kInt32);
    if (!s.ok()) return s;
    bcast[r] = {r + 0.25, r + 0.5};
    s = c->Broadcast(bcast[r].data(), 2, CommDtype::kFloat64, /*root=*/2);
    if (!s.ok()) return s;
    return c->Barrier();
  });
  for (int r = 0; r < 3; ++r) {
    ASSERT_TRUE(status[r].ok()) << status[r];
    EXPECT_THAT(gathered[r], ElementsAre(0, 1, 10, 11, 20, 21));
    EXPECT_THAT(bcast[r], ElementsAre(2.25, 2.5));
  }
}

TEST(InProcessCommunicatorTest, MismatchedCollectivesAreAnError) {
  auto group = InProcessGroup::Create(2);
  ASSERT_TRUE(group.ok());
  auto status = RunRanks(group->get(), [&](Communicator* c) {
    std::vector<float> buf(5, 1.0f);
    return c->AllReduceSum(buf.data(), c->rank() == 0 ? 4 : 5,
                           CommDtype::kFloat32);
  });
  for (const absl::Status& s : status) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
    EXPECT_THAT(s.message(), HasSubstr("mismatch"));
  }
}

TEST(InProcessCommunicatorTest, TimeoutReturnsDeadlineExceededAndAbortsGroup) {
  FakeClock clock;
  auto group = InProcessGroup::Create(2, absl::Seconds(30), &clock);
  ASSERT_TRUE(group.ok());
  // Only rank 0 enters the collective; rank 1 never comes.
  auto pending = std::async(std::launch::async, [&] {
    float x = 1.0f;
    return (*group)->rank(0)->AllReduceSum(&x, 1, CommDtype::kFloat32);
  });
  // The fake clock, not real time, decides when the deadline passes.
  while (pending.wait_for(std::chrono::milliseconds(1)) !=
         std::future_status::ready) {
    clock.AdvanceMs(1000);
  }
  absl::Status s = pending.get();
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_THAT(s.message(), HasSubstr("1 of 2 ranks arrived"));
  float y = 1.0f;
  absl::Status later =
      (*group)->rank(1)->AllReduceSum(&y, 1, CommDtype::kFloat32);
  EXPECT_EQ(later.code(), absl::StatusCode::kAborted) << later;
}

TEST(InProcessCommunicatorTest, AbortReleasesWaitingRanks) {
  auto group = InProcessGroup::Create(2, absl::Hours(1));
  ASSERT_TRUE(group.ok());
  auto pending = std::async(std::launch::async, [&] {
    float x = 1.0f;
    return (*group)->rank(0)->AllReduceSum(&x, 1, CommDtype::kFloat32);
  });
  (*group)->rank(1)->Abort();  // rank 1 failed locally and will never join
  absl::Status s = pending.get();
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_EQ((*group)->rank(1)->Barrier().code(), absl::StatusCode::kAborted);
}

TEST(InProcessCommunicatorTest, SynchronizeIsOkAfterCollectives) {
  auto group = InProcessGroup::Create(2);
  ASSERT_TRUE(group.ok());
  // Before any collective and after some: the host backend's results are in
  // place when a call returns, so there is nothing left to wait for.
  EXPECT_TRUE((*group)->rank(0)->Synchronize().ok());
  std::vector<int32_t> v(2);
  auto status = RunRanks(group->get(), [&](Communicator* c) {
    v[c->rank()] = c->rank() + 1;
    absl::Status s = c->AllReduceSum(&v[c->rank()], 1, CommDtype::kInt32);
    if (!s.ok()) return s;
    return c->Synchronize();
  });
  for (int r = 0; r < 2; ++r) {
    ASSERT_TRUE(status[r].ok()) << status[r];
    EXPECT_EQ(v[r], 3);
  }
}

TEST(InProcessCommunicatorTest, SynchronizeReturnsAbortedAfterAbort) {
  auto group = InProcessGroup::Create(2);
  ASSERT_TRUE(group.ok());
  (*group)->rank(0)->Abort();
  // The whole group is aborted, so both ranks report it.
  for (int r = 0; r < 2; ++r) {
    absl::Status s = (*group)->rank(r)->Synchronize();
    EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
    EXPECT_THAT(s.message(), HasSubstr("communicator group aborted"));
  }
}

TEST(InProcessCommunicatorTest, SynchronizeReturnsAbortedAfterTimeout) {
  FakeClock clock;
  auto group = InProcessGroup::Create(2, absl::Seconds(30), &clock);
  ASSERT_TRUE(group.ok());
  auto pending = std::async(std::launch::async,
                            [&] { return (*group)->rank(0)->Barrier(); });
  while (pending.wait_for(std::chrono::milliseconds(1)) !=
         std::future_status::ready) {
    clock.AdvanceMs(1000);
  }
  EXPECT_EQ(pending.get().code(), absl::StatusCode::kDeadlineExceeded);
  absl::Status s = (*group)->rank(1)->Synchronize();
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_THAT(s.message(), HasSubstr("earlier timeout"));
}

TEST(InProcessCommunicatorTest, CreateRejectsBadArguments) {
  EXPECT_EQ(InProcessGroup::Create(0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(InProcessGroup::Create(2, absl::ZeroDuration()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sweepd::comm
