#include "worker/engine/host_upload.h"

#include <cstring>

namespace sweepd::engine::internal {
namespace {

// The host staging tensor [n] of `type` with the values copied in: pinned
// where the copy goes to a CUDA device.
at::Tensor Stage(const void* data, int64_t n, at::ScalarType type,
                 const at::Device& device) {
  at::Tensor host = at::empty(
      {n}, at::TensorOptions().dtype(type).pinned_memory(device.is_cuda()));
  if (n > 0) std::memcpy(host.data_ptr(), data, n * host.element_size());
  return host;
}

}  // namespace

at::Tensor Upload(const void* data, int64_t n, at::ScalarType type,
                  const at::Device& device) {
  return Stage(data, n, type, device).to(device, /*non_blocking=*/true);
}

void UploadInto(const at::Tensor& dst, const void* data) {
  dst.copy_(Stage(data, dst.numel(), dst.scalar_type(), dst.device())
                .view(dst.sizes()),
            /*non_blocking=*/true);
}

}  // namespace sweepd::engine::internal
