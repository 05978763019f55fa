#include "worker/engine/device_stats.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#if SWEEPD_ENGINE_TORCH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#endif

namespace sweepd::engine {

double MeasureCopyBandwidth(int device) {
#if SWEEPD_ENGINE_TORCH_CUDA
  if (device < 0 || device >= static_cast<int>(c10::cuda::device_count())) {
    return 0;
  }
  const int64_t bytes = int64_t{1} << 30;
  auto opts = at::TensorOptions().dtype(at::kByte).device(at::kCUDA, device);
  at::Tensor src = at::ones({bytes}, opts);
  at::Tensor dst = at::empty({bytes}, opts);
  dst.copy_(src);  // warm-up
  std::vector<double> s;
  for (int i = 0; i < 5; ++i) {
    cudaDeviceSynchronize();
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    cudaEventRecord(a, c10::cuda::getCurrentCUDAStream(
                           static_cast<c10::DeviceIndex>(device))
                           .stream());
    dst.copy_(src);
    cudaEventRecord(b, c10::cuda::getCurrentCUDAStream(
                           static_cast<c10::DeviceIndex>(device))
                           .stream());
    cudaEventSynchronize(b);
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    s.push_back(ms / 1e3);
  }
  std::sort(s.begin(), s.end());
  return 2.0 * bytes / s[2];
#else
  (void)device;
  return 0;
#endif
}

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

void ResetDevicePeakAllocatedBytes(int device) {
#if SWEEPD_ENGINE_TORCH_CUDA
  c10::cuda::CUDACachingAllocator::resetPeakStats(
      static_cast<c10::DeviceIndex>(device));
#else
  (void)device;
#endif
}

}  // namespace sweepd::engine
