// Internal to sweepd::engine: the prefix state of a forward
// (ForwardRequest::keep_prefix_state): per rank, the residual entering every
// layer, and how its bytes are split between device and host memory
// (docs/ENGINE.md, "Prefix reuse"). Each rank fills its own slot of `resid`
// during the forward; the engine accounts the bytes afterwards. Immutable once
// returned to the caller, so shared handles may be read from any thread.
#ifndef SWEEPD_WORKER_ENGINE_PREFIX_STATE_H_
#define SWEEPD_WORKER_ENGINE_PREFIX_STATE_H_

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "worker/engine/engine.h"

namespace sweepd::engine::internal {

class PrefixStateImpl : public PrefixState {
 public:
  int64_t device_bytes() const override { return device_bytes_; }
  int64_t host_bytes() const override { return host_bytes_; }
  int valid_until() const override { return valid_until_; }

  const void* owner = nullptr;
  std::vector<int32_t> tokens;
  int64_t batch = 0, seq = 0;
  int valid_until_ = 0;
  // [rank][layer 0..N]: the residual entering layer L (entry N: after the last
  // layer).
  std::vector<std::vector<at::Tensor>> resid;
  int64_t device_bytes_ = 0;
  int64_t host_bytes_ = 0;
};

// Sums the state's bytes into device_bytes_ / host_bytes_: on CUDA by where
// each tensor lives, on CPU by the per-rank device budget (on CPU the split is
// bookkeeping only).
void AccountPrefixState(PrefixStateImpl* st, bool on_cuda,
                        int64_t device_budget_bytes);

}  // namespace sweepd::engine::internal

#endif  // SWEEPD_WORKER_ENGINE_PREFIX_STATE_H_
