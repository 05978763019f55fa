#include "worker/engine/prefix_state.h"

namespace sweepd::engine::internal {

void AccountPrefixState(PrefixStateImpl* st, bool on_cuda,
                        int64_t device_budget_bytes) {
  st->device_bytes_ = st->host_bytes_ = 0;
  for (const auto& rank_resid : st->resid) {
    int64_t on_device = 0;
    for (const at::Tensor& t : rank_resid) {
      if (!t.defined()) continue;
      const int64_t bytes = t.numel() * t.element_size();
      const bool device_resident =
          on_cuda ? !t.device().is_cpu()
                  : on_device + bytes <= device_budget_bytes;
      if (device_resident) {
        on_device += bytes;
        st->device_bytes_ += bytes;
      } else {
        st->host_bytes_ += bytes;
      }
    }
  }
}

}  // namespace sweepd::engine::internal
