// GPU tests of the NCCL communicator backend (label gpu; built with
// SWEEPD_ENABLE_NCCL): a world of one rank on device 0 enqueues every
// collective on device buffers on its own stream (the calls return at once;
// results are read after Synchronize()), stream-ordered after work queued
// before the call and before work queued after it; 1000 collectives enqueued
// back to back all run, in order; the watchdog turns a collective that cannot
// complete (its stream held by a host function) into DEADLINE_EXCEEDED from
// Synchronize() and aborts the communicator; two ranks on one device are either
// refused by NCCL at creation or, where NCCL accepts them, a collective only
// one of them calls times out.
#include "worker/comm/nccl_communicator.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sweepd::comm {
namespace {

using ::testing::HasSubstr;

// A device buffer of n elements of T.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) {
    EXPECT_EQ(cudaMalloc(&ptr_, n * sizeof(T)), cudaSuccess);
  }
  ~DeviceBuffer() { cudaFree(ptr_); }
  T* get() { return static_cast<T*>(ptr_); }
  // Copies `v` in, ordered on `stream` without waiting.
  void CopyInAsync(const std::vector<T>& v, cudaStream_t stream) {
    ASSERT_EQ(v.size(), n_);
    staging_ = v;
    ASSERT_EQ(cudaMemcpyAsync(ptr_, staging_.data(), n_ * sizeof(T),
                              cudaMemcpyHostToDevice, stream),
              cudaSuccess);
  }
  std::vector<T> Read() {
    std::vector<T> out(n_);
    EXPECT_EQ(
        cudaMemcpy(out.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost),
        cudaSuccess);
    return out;
  }

 private:
  size_t n_;
  void* ptr_ = nullptr;
  std::vector<T> staging_;
};

class NcclCommunicatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int n = 0;
    ASSERT_EQ(cudaGetDeviceCount(&n), cudaSuccess) << "needs a CUDA device";
    ASSERT_GE(n, 1);
    ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
    ASSERT_EQ(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking),
              cudaSuccess);
  }
  void TearDown() override {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  std::unique_ptr<Communicator> MakeWorldOfOne(absl::Duration timeout) {
    absl::StatusOr<std::string> id = NewNcclUniqueId();
    EXPECT_TRUE(id.ok()) << id.status();
    if (!id.ok()) return nullptr;
    auto c = CreateNcclCommunicator(*id, 0, 1, 0, stream_, timeout);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  cudaStream_t stream_ = nullptr;
};

TEST_F(NcclCommunicatorTest, WorldOfOneRunsEveryCollectiveOnDeviceBuffers) {
  auto c = MakeWorldOfOne(absl::Seconds(60));
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->rank(), 0);
  EXPECT_EQ(c->size(), 1);
  EXPECT_TRUE(c->on_device());
  EXPECT_TRUE(c->Synchronize().ok());  // nothing issued yet

  // The input is copied in on the stream without waiting: the collective is
  // ordered after it; the result is read after Synchronize().
  const std::vector<float> f = {1.5f, -2.0f, 3.25f, 1e30f, -0.0f};
  DeviceBuffer<float> fb(f.size());
  fb.CopyInAsync(f, stream_);
  ASSERT_TRUE(c->AllReduceSum(fb.get(), f.size(), CommDtype::kFloat32).ok());
  ASSERT_TRUE(c->Synchronize().ok());
  EXPECT_EQ(fb.Read(), f);
  ASSERT_TRUE(c->AllReduceMax(fb.get(), f.size(), CommDtype::kFloat32).ok());
  ASSERT_TRUE(c->Synchronize().ok());
  EXPECT_EQ(fb.Read(), f);

  const std::vector<int64_t> i64 = {int64_t{1} << 40, -7, 0};
  DeviceBuffer<int64_t> ib(i64.size());
  ib.CopyInAsync(i64, stream_);
  ASSERT_TRUE(c->AllReduceSum(ib.get(), i64.size(), CommDtype::kInt64).ok());
  const std::vector<int32_t> i32 = {5, -9, 1 << 30};
  DeviceBuffer<int32_t> jb(i32.size());
  jb.CopyInAsync(i32, stream_);
  ASSERT_TRUE(c->AllReduceMax(jb.get(), i32.size(), CommDtype::kInt32).ok());
  // bf16 as raw bits: 1.0, -2.5, 0.1015625.
  const std::vector<uint16_t> bf = {0x3f80, 0xc020, 0x3dd0};
  DeviceBuffer<uint16_t> bb(bf.size());
  bb.CopyInAsync(bf, stream_);
  ASSERT_TRUE(c->AllReduceSum(bb.get(), bf.size(), CommDtype::kBFloat16).ok());
  // All-gather of one rank: recv (pre-filled with other values) = send.
  const std::vector<double> send = {0.25, -8.0, 1e-300};
  DeviceBuffer<double> sb(send.size()), rb(send.size());
  sb.CopyInAsync(send, stream_);
  rb.CopyInAsync({9.0, 9.0, 9.0}, stream_);
  ASSERT_TRUE(
      c->AllGather(sb.get(), rb.get(), send.size(), CommDtype::kFloat64).ok());
  ASSERT_TRUE(c->Broadcast(fb.get(), f.size(), CommDtype::kFloat32, 0).ok());
  // One Synchronize() covers every collective issued before it.
  ASSERT_TRUE(c->Synchronize().ok());
  EXPECT_EQ(ib.Read(), i64);
  EXPECT_EQ(jb.Read(), i32);
  EXPECT_EQ(bb.Read(), bf);
  EXPECT_EQ(rb.Read(), send);
  EXPECT_EQ(fb.Read(), f);

  absl::Status bad = c->Broadcast(fb.get(), f.size(), CommDtype::kFloat32, 1);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.message(), HasSubstr("root 1"));

  EXPECT_TRUE(c->Barrier().ok());
  EXPECT_TRUE(c->Synchronize().ok());
}

TEST_F(NcclCommunicatorTest, CreateRejectsBadIdRankAndTimeout) {
  auto short_id = CreateNcclCommunicator("abc", 0, 1, 0, stream_);
  EXPECT_EQ(short_id.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(short_id.status().message(), HasSubstr("unique id"));
  absl::StatusOr<std::string> id = NewNcclUniqueId();
  ASSERT_TRUE(id.ok()) << id.status();
  auto bad_rank = CreateNcclCommunicator(*id, 1, 1, 0, stream_);
  EXPECT_EQ(bad_rank.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_rank.status().message(), HasSubstr("rank 1 outside [0, 1)"));
  auto bad_timeout =
      CreateNcclCommunicator(*id, 0, 1, 0, stream_, absl::ZeroDuration());
  EXPECT_EQ(bad_timeout.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_timeout.status().message(), HasSubstr("timeout"));
}

// Holds a stream in a host function until released, at most 3 s (NCCL 2.28's
// ncclCommAbort waits for the held stream, so the cap bounds the test).
// `finished` tells whether the stream has moved past the gate.
struct StreamGate {
  std::atomic<bool> release{false};
  std::atomic<bool> finished{false};
  static void CUDART_CB Hold(void* arg) {
    auto* gate = static_cast<StreamGate*>(arg);
    const auto start = std::chrono::steady_clock::now();
    while (!gate->release.load() &&
           std::chrono::steady_clock::now() - start < std::chrono::seconds(3)) {
      std::this_thread::yield();
    }
    gate->finished.store(true);
  }
};

// Pinned host memory, so that device-to-host copies are truly asynchronous.
template <typename T>
class PinnedBuffer {
 public:
  explicit PinnedBuffer(size_t n) : n_(n) {
    EXPECT_EQ(cudaMallocHost(&ptr_, n * sizeof(T)), cudaSuccess);
  }
  ~PinnedBuffer() { cudaFreeHost(ptr_); }
  T* get() { return static_cast<T*>(ptr_); }
  std::vector<T> Values() const {
    const T* p = static_cast<const T*>(ptr_);
    return std::vector<T>(p, p + n_);
  }

 private:
  size_t n_;
  void* ptr_ = nullptr;
};

TEST_F(NcclCommunicatorTest, CollectivesAreStreamOrderedWithLaterWork) {
  auto c = MakeWorldOfOne(absl::Seconds(60));
  ASSERT_NE(c, nullptr);
  const std::vector<double> send = {0.5, -3.0, 1e10};
  DeviceBuffer<double> sb(send.size()), rb(send.size());
  sb.CopyInAsync(send, stream_);
  rb.CopyInAsync({9.0, 9.0, 9.0}, stream_);
  PinnedBuffer<double> host(send.size());
  std::fill(host.get(), host.get() + send.size(), -1.0);

  // Hold the stream: the collectives and the copy back queue up behind it.
  StreamGate gate;
  ASSERT_EQ(cudaLaunchHostFunc(stream_, &StreamGate::Hold, &gate), cudaSuccess);
  // With one rank an all-reduce is the identity; the out-of-place all-gather
  // makes the order observable: recv holds send only after it ran.
  ASSERT_TRUE(
      c->AllGather(sb.get(), rb.get(), send.size(), CommDtype::kFloat64).ok());
  ASSERT_TRUE(c->AllReduceSum(rb.get(), send.size(), CommDtype::kFloat64).ok());
  ASSERT_EQ(cudaMemcpyAsync(host.get(), rb.get(), send.size() * sizeof(double),
                            cudaMemcpyDeviceToHost, stream_),
            cudaSuccess);
  // The calls returned without waiting for the stream.
  EXPECT_FALSE(gate.finished.load());
  EXPECT_EQ(host.Values(), std::vector<double>(send.size(), -1.0));

  gate.release.store(true);
  ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
  EXPECT_EQ(host.Values(), send);
  EXPECT_TRUE(c->Synchronize().ok());
}

TEST_F(NcclCommunicatorTest, ThousandCollectivesBackToBackAllRunInOrder) {
  auto c = MakeWorldOfOne(absl::Seconds(60));
  ASSERT_NE(c, nullptr);
  const std::vector<float> x = {1.5f,  -2.25f, 3.0f,  1e-3f,
                                -7.0f, 0.1f,   42.0f, -0.5f};
  const size_t n = x.size();
  DeviceBuffer<float> a(n), b(n);
  a.CopyInAsync(x, stream_);
  // Ping-pong between a and b. Each step first overwrites its destination
  // (the previous step's source) with a byte pattern, then gathers into it:
  // the final buffer holds x only if every gather ran, after the memset before
  // it and before the memset after it. The in-place all-reduce (identity at
  // one rank) doubles the number of queued collectives.
  constexpr int kSteps = 500;
  float* src = a.get();
  float* dst = b.get();
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kSteps; ++i) {
    ASSERT_EQ(cudaMemsetAsync(dst, 1 + i % 200, n * sizeof(float), stream_),
              cudaSuccess);
    ASSERT_TRUE(c->AllGather(src, dst, n, CommDtype::kFloat32).ok())
        << "step " << i;
    ASSERT_TRUE(c->AllReduceSum(dst, n, CommDtype::kFloat32).ok())
        << "step " << i;
    std::swap(src, dst);
  }
  const auto enqueued = std::chrono::steady_clock::now();
  ASSERT_TRUE(c->Synchronize().ok());
  const auto synced = std::chrono::steady_clock::now();
  auto us = [](auto d) {
    return std::chrono::duration<double, std::micro>(d).count();
  };
  // Informational (host timing depends on the machine): what the calls cost
  // the host now that they do not wait.
  std::printf(
      "[nccl] %d collectives + %d memsets enqueued in %.0f us (%.1f us per "
      "step), Synchronize() %.0f us\n",
      2 * kSteps, kSteps, us(enqueued - start), us(enqueued - start) / kSteps,
      us(synced - enqueued));
  DeviceBuffer<float>& last = kSteps % 2 == 0 ? a : b;
  EXPECT_EQ(last.get(), src);
  EXPECT_EQ(last.Read(), x);
}

TEST_F(NcclCommunicatorTest, WatchdogTurnsAStuckCollectiveIntoDeadline) {
  auto c = MakeWorldOfOne(absl::Milliseconds(300));
  ASSERT_NE(c, nullptr);
  DeviceBuffer<float> buf(16);
  buf.CopyInAsync(std::vector<float>(16, 1.0f), stream_);
  ASSERT_TRUE(c->AllReduceSum(buf.get(), 16, CommDtype::kFloat32).ok());
  ASSERT_TRUE(c->Synchronize().ok());
  StreamGate gate;
  ASSERT_EQ(cudaLaunchHostFunc(stream_, &StreamGate::Hold, &gate), cudaSuccess);
  // Enqueued behind the gate: the call returns at once.
  absl::Status s = c->AllReduceSum(buf.get(), 16, CommDtype::kFloat32);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_FALSE(gate.finished.load());
  // The watchdog gives up after 300 ms, long before the gate's 3 s cap.
  absl::Status sync = c->Synchronize();
  EXPECT_EQ(sync.code(), absl::StatusCode::kDeadlineExceeded) << sync;
  EXPECT_THAT(sync.message(),
              HasSubstr("AllReduceSum on rank 0 of 1 did not complete within "
                        "300ms"));
  EXPECT_THAT(sync.message(), HasSubstr("communicator aborted"));
  EXPECT_FALSE(gate.finished.load());
  // The communicator is ended: Synchronize keeps the original error, every
  // later collective returns ABORTED naming it.
  EXPECT_EQ(c->Synchronize().code(), absl::StatusCode::kDeadlineExceeded);
  absl::Status later = c->AllReduceMax(buf.get(), 16, CommDtype::kFloat32);
  EXPECT_EQ(later.code(), absl::StatusCode::kAborted) << later;
  EXPECT_THAT(later.message(),
              HasSubstr("NCCL communicator aborted: AllReduceSum on rank 0 of "
                        "1 did not complete within 300ms"));
  absl::Status barrier = c->Barrier();
  EXPECT_EQ(barrier.code(), absl::StatusCode::kAborted) << barrier;
  EXPECT_THAT(barrier.message(), HasSubstr("AllReduceSum on rank 0 of 1"));
  c->Abort();  // idempotent: the first cause stays
  EXPECT_EQ(c->Synchronize().code(), absl::StatusCode::kDeadlineExceeded);
  gate.release.store(true);
  EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
  c.reset();
  // A fresh communicator works after the aborted one.
  auto fresh = MakeWorldOfOne(absl::Seconds(60));
  ASSERT_NE(fresh, nullptr);
  EXPECT_TRUE(fresh->AllReduceSum(buf.get(), 16, CommDtype::kFloat32).ok());
  EXPECT_TRUE(fresh->Synchronize().ok());
  EXPECT_EQ(buf.Read(), std::vector<float>(16, 1.0f));
}

TEST_F(NcclCommunicatorTest, AbortFromAnotherThreadEndsPendingCollectives) {
  auto c = MakeWorldOfOne(absl::Seconds(60));
  ASSERT_NE(c, nullptr);
  DeviceBuffer<float> buf(4);
  buf.CopyInAsync(std::vector<float>(4, 2.0f), stream_);
  StreamGate gate;
  ASSERT_EQ(cudaLaunchHostFunc(stream_, &StreamGate::Hold, &gate), cudaSuccess);
  ASSERT_TRUE(c->AllReduceSum(buf.get(), 4, CommDtype::kFloat32).ok());
  // Another thread aborts (NCCL may wait in ncclCommAbort for the held stream;
  // the error is recorded before that, so Synchronize returns at once).
  auto aborter = std::async(std::launch::async, [&] { c->Abort(); });
  absl::Status sync = c->Synchronize();
  EXPECT_EQ(sync.code(), absl::StatusCode::kAborted) << sync;
  EXPECT_THAT(sync.message(), HasSubstr("Abort() called on rank 0 of 1"));
  EXPECT_FALSE(gate.finished.load());
  absl::Status later =
      c->AllGather(buf.get(), buf.get(), 4, CommDtype::kFloat32);
  EXPECT_EQ(later.code(), absl::StatusCode::kAborted) << later;
  EXPECT_THAT(later.message(),
              HasSubstr("NCCL communicator aborted: Abort() called on rank 0"));
  gate.release.store(true);
  aborter.get();
  EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
}

// Two ranks on one device: NCCL refuses duplicate GPUs in a communicator
// (ncclInvalidUsage at init) in the versions we build against; where it
// accepts them, a collective that only rank 0 calls cannot complete and the
// watchdog makes Synchronize() return DEADLINE_EXCEEDED.
TEST_F(NcclCommunicatorTest, TwoRanksOnOneDevice) {
  absl::StatusOr<std::string> id = NewNcclUniqueId();
  ASSERT_TRUE(id.ok()) << id.status();
  std::vector<absl::StatusOr<std::unique_ptr<Communicator>>> made(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      cudaSetDevice(0);
      made[r] = CreateNcclCommunicator(*id, r, 2, 0, nullptr,
                                       absl::Milliseconds(500));
    });
  }
  for (auto& t : threads) t.join();
  if (!made[0].ok() || !made[1].ok()) {
    for (int r = 0; r < 2; ++r) {
      ASSERT_FALSE(made[r].ok()) << "rank " << r << " joined alone";
      EXPECT_EQ(made[r].status().code(), absl::StatusCode::kInternal);
      EXPECT_THAT(made[r].status().message(), HasSubstr("ncclCommInitRank"));
    }
    std::printf("[nccl] two ranks on one device refused: %s\n",
                made[0].status().ToString().c_str());
    return;
  }
  DeviceBuffer<float> buf(8);
  absl::Status s = (*made[0])->AllReduceSum(buf.get(), 8, CommDtype::kFloat32);
  EXPECT_TRUE(s.ok()) << s;
  absl::Status sync = (*made[0])->Synchronize();
  EXPECT_EQ(sync.code(), absl::StatusCode::kDeadlineExceeded) << sync;
  EXPECT_THAT(sync.message(), HasSubstr("AllReduceSum on rank 0 of 2"));
  std::printf("[nccl] two ranks on one device accepted; lone collective: %s\n",
              sync.ToString().c_str());
  (*made[1])->Abort();  // rank 1 never joined the collective
}

}  // namespace
}  // namespace sweepd::comm
