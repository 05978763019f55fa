// libtorch's CUDA device statistics for benchmarks (allocator peak), and,
// internal to sweepd::engine, the current CUDA stream of a device. Compiled
// against c10_cuda only when the linked libtorch has CUDA
// (SWEEPD_ENGINE_TORCH_CUDA); otherwise no statistics (-1) and the legacy
// default stream (nullptr). Plain C++ interface; thread-safe.
#ifndef SWEEPD_WORKER_ENGINE_DEVICE_STATS_H_
#define SWEEPD_WORKER_ENGINE_DEVICE_STATS_H_

#include <cstdint>

namespace sweepd::engine {

// Peak bytes allocated by libtorch's CUDA caching allocator on `device` since
// the last reset; -1 when the build has no libtorch CUDA support.
int64_t DevicePeakAllocatedBytes(int device);
void ResetDevicePeakAllocatedBytes(int device);

namespace internal {

// cudaStream_t of libtorch's current stream on `device` (nullptr = legacy
// default stream, which is libtorch's default).
void* CurrentCudaStream(int device);

}  // namespace internal
}  // namespace sweepd::engine

#endif  // SWEEPD_WORKER_ENGINE_DEVICE_STATS_H_
