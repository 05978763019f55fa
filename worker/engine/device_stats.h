// Internal to sweepd::engine: the libtorch CUDA pieces the engine needs (the
// current CUDA stream of a device, caching-allocator statistics), compiled
// against c10_cuda only when the linked libtorch has CUDA
// (SWEEPD_ENGINE_TORCH_CUDA); otherwise the legacy default stream (nullptr)
// and no statistics. Plain C++ interface; thread-safe.
#ifndef SWEEPD_WORKER_ENGINE_DEVICE_STATS_H_
#define SWEEPD_WORKER_ENGINE_DEVICE_STATS_H_

namespace sweepd::engine::internal {

// cudaStream_t of libtorch's current stream on `device` (nullptr = legacy
// default stream, which is libtorch's default).
void* CurrentCudaStream(int device);

}  // namespace sweepd::engine::internal

#endif  // SWEEPD_WORKER_ENGINE_DEVICE_STATS_H_
