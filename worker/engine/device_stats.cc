#include "worker/engine/device_stats.h"

#include <cstdint>

#if SWEEPD_ENGINE_TORCH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#endif

namespace sweepd::engine {

namespace internal {

void* CurrentCudaStream(int device) {
#if SWEEPD_ENGINE_TORCH_CUDA
  return static_cast<void*>(
      c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device))
          .stream());
#else
  (void)device;
  return nullptr;
#endif
}

}  // namespace internal

CudaDeviceInfo DescribeCudaDevice(int device) {
  CudaDeviceInfo info;
#if SWEEPD_ENGINE_TORCH_CUDA
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, device) == cudaSuccess) {
    info.name = prop.name;
    info.total_memory_bytes = static_cast<int64_t>(prop.totalGlobalMem);
  } else {
    cudaGetLastError();  // clear the sticky-free error of a bad index
  }
#else
  (void)device;
#endif
  return info;
}

int64_t DevicePeakAllocatedBytes(int device) {
#if SWEEPD_ENGINE_TORCH_CUDA
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(
      static_cast<c10::DeviceIndex>(device));
  // Index 0 is the aggregate over small and large pools.
  return static_cast<int64_t>(stats.allocated_bytes[0].peak);
#else
  (void)device;
  return -1;
#endif
}

int64_t DeviceAllocatedBytes(int device) {
#if SWEEPD_ENGINE_TORCH_CUDA
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(
      static_cast<c10::DeviceIndex>(device));
  return static_cast<int64_t>(stats.allocated_bytes[0].current);
#else
  (void)device;
  return -1;
#endif
}

void ResetDevicePeakAllocatedBytes(int device) {
#if SWEEPD_ENGINE_TORCH_CUDA
  c10::cuda::CUDACachingAllocator::resetPeakStats(
      static_cast<c10::DeviceIndex>(device));
#else
  (void)device;
#endif
}

}  // namespace sweepd::engine
