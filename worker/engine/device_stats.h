// libtorch's CUDA device statistics for benchmarks (allocator peak), the
// device's name and memory (what a worker advertises), and,
// internal to sweepd::engine, the current CUDA stream of a device. Compiled
// against c10_cuda only when the linked libtorch has CUDA
// (SWEEPD_ENGINE_TORCH_CUDA); otherwise no statistics (-1) and the legacy
// default stream (nullptr). Plain C++ interface; thread-safe.
#ifndef SWEEPD_WORKER_ENGINE_DEVICE_STATS_H_
#define SWEEPD_WORKER_ENGINE_DEVICE_STATS_H_

#include <cstdint>
#include <string>

namespace sweepd::engine {

// A CUDA device as the worker advertises it: its name ("NVIDIA H100 80GB
// HBM3") and total memory. Empty name and 0 bytes when the build has no
// libtorch CUDA support or the device does not exist.
struct CudaDeviceInfo {
  std::string name;
  int64_t total_memory_bytes = 0;
};
CudaDeviceInfo DescribeCudaDevice(int device);

// Peak bytes allocated by libtorch's CUDA caching allocator on `device` since
// the last reset; -1 when the build has no libtorch CUDA support.
int64_t DevicePeakAllocatedBytes(int device);
void ResetDevicePeakAllocatedBytes(int device);

// Device-to-device copy bandwidth of `device` in bytes/s (read + write of a
// 1 GiB buffer counted once each, median of 5 copies): the memory roofline
// decode steps are measured against. 0 when the build has no libtorch CUDA
// support.
double MeasureCopyBandwidth(int device);

namespace internal {

// cudaStream_t of libtorch's current stream on `device` (nullptr = legacy
// default stream, which is libtorch's default).
void* CurrentCudaStream(int device);

}  // namespace internal
}  // namespace sweepd::engine

#endif  // SWEEPD_WORKER_ENGINE_DEVICE_STATS_H_
