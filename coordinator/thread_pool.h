// ThreadPool: a fixed pool of threads running queued closures in FIFO order.
// The services run ledger reads and planning on it so no gRPC reaction blocks.
//
// Ownership: owns its threads; Stop() (or the destructor) runs what is queued
// and joins them. Thread-safety: Schedule is safe from any thread; Stop from
// any thread but never from a pool thread.
#ifndef SWEEPD_COORDINATOR_THREAD_POOL_H_
#define SWEEPD_COORDINATOR_THREAD_POOL_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace sweepd {

class ThreadPool {
 public:
  // Starts max(1, threads) threads.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  void Schedule(std::function<void()> fn);
  // Runs what is queued, then joins the threads. Idempotent.
  void Stop();

 private:
  void Loop();

  absl::Mutex mu_;
  absl::CondVar cv_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Started by the constructor, joined once by Stop (stopping_ decides who).
  std::vector<std::thread> threads_;
};

}  // namespace sweepd

#endif  // SWEEPD_COORDINATOR_THREAD_POOL_H_
