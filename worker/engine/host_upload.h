// Internal to sweepd::engine: host-to-device uploads of the small per-step
// inputs of a decode step and the sampler (positions, page lists, cache slots,
// temperatures, uniforms, bans) without synchronising the host with the
// device. A plain `from_blob(...).to(cuda)` copies from pageable memory, which
// waits until the stream has drained: the host then cannot queue the rest of
// the step while the GPU runs the previous part. On CUDA the values are staged
// in pinned memory from libtorch's caching host allocator, which keeps the
// block until the copy that reads it has run, and copied with non_blocking on
// the current stream; on other devices the copy is the plain one.
//
// Thread-safety: as libtorch's copies (any thread, the current stream of that
// thread). The host data may be freed as soon as a call returns.
#ifndef SWEEPD_WORKER_ENGINE_HOST_UPLOAD_H_
#define SWEEPD_WORKER_ENGINE_HOST_UPLOAD_H_

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace sweepd::engine::internal {

// A new device tensor [n] of `type` holding the n values at `data` (host
// memory of `type`).
at::Tensor Upload(const void* data, int64_t n, at::ScalarType type,
                  const at::Device& device);

// dst (a contiguous device tensor) <- the dst.numel() values at `data` (host
// memory of dst's dtype).
void UploadInto(const at::Tensor& dst, const void* data);

template <typename T>
at::Tensor Upload(const std::vector<T>& v, at::ScalarType type,
                  const at::Device& device) {
  return Upload(v.data(), static_cast<int64_t>(v.size()), type, device);
}

}  // namespace sweepd::engine::internal

#endif  // SWEEPD_WORKER_ENGINE_HOST_UPLOAD_H_
