#include "worker/engine/rank_threads.h"

namespace sweepd::engine::internal {

RankThreads::RankThreads(int ranks) {
  for (int r = 0; r < ranks; ++r) threads_.emplace_back([this, r] { Loop(r); });
}

RankThreads::~RankThreads() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  for (auto& t : threads_) t.join();
}

void RankThreads::RunAll(const std::function<void(int)>& fn) {
  absl::MutexLock run(&run_mu_);
  absl::MutexLock lock(&mu_);
  job_ = &fn;
  pending_ = static_cast<int>(threads_.size());
  ++generation_;
  mu_.Await(absl::Condition(
      +[](int* pending) { return *pending == 0; }, &pending_));
  job_ = nullptr;
}

void RankThreads::Loop(int r) {
  uint64_t seen = 0;
  while (true) {
    const std::function<void(int)>* job = nullptr;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [&] { return stop_ || generation_ != seen; };
      mu_.Await(absl::Condition(&ready));
      if (stop_) return;
      seen = generation_;
      job = job_;
    }
    (*job)(r);
    absl::MutexLock lock(&mu_);
    --pending_;
  }
}

}  // namespace sweepd::engine::internal
