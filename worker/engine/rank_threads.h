// Internal to sweepd::engine: the engine's rank threads.
// One long-lived thread per rank that runs every forward's rank work.
// libtorch keeps per-thread state that a fresh thread per forward would lose
// and rebuild each time: cuDNN's fused attention caches its execution graphs
// per thread (building one costs milliseconds), and cuBLAS/cuDNN handles and
// workspaces are reserved per thread. Thread-safe; RunAll calls are
// serialised.
#ifndef SWEEPD_WORKER_ENGINE_RANK_THREADS_H_
#define SWEEPD_WORKER_ENGINE_RANK_THREADS_H_

#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace sweepd::engine::internal {

class RankThreads {
 public:
  explicit RankThreads(int ranks);
  RankThreads(const RankThreads&) = delete;
  RankThreads& operator=(const RankThreads&) = delete;
  ~RankThreads();

  // Runs fn(r) on rank r's thread for every rank; returns when all returned.
  // fn must not throw.
  void RunAll(const std::function<void(int)>& fn);

 private:
  void Loop(int r);

  absl::Mutex run_mu_;
  absl::Mutex mu_;
  const std::function<void(int)>* job_ ABSL_GUARDED_BY(mu_) = nullptr;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  int pending_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace sweepd::engine::internal

#endif  // SWEEPD_WORKER_ENGINE_RANK_THREADS_H_
