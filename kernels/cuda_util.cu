// CUDA runtime helpers of kernels/cuda_util.h (moved from
// worker/engine/cuda_ops.cu).
#include <cuda_runtime.h>

#include "kernels/cuda_util.h"

namespace sweepd::kernels {

int CudaSetDevice(int device) {
  return static_cast<int>(cudaSetDevice(device));
}

int CudaEventCreate(void** event) {
  cudaEvent_t e = nullptr;
  const cudaError_t err = cudaEventCreate(&e);
  *event = e;
  return static_cast<int>(err);
}

int CudaEventRecord(void* event, void* stream) {
  return static_cast<int>(cudaEventRecord(static_cast<cudaEvent_t>(event),
                                          static_cast<cudaStream_t>(stream)));
}

int CudaEventElapsedMs(void* start, void* end, float* ms) {
  cudaError_t err = cudaEventSynchronize(static_cast<cudaEvent_t>(end));
  if (err != cudaSuccess) return static_cast<int>(err);
  return static_cast<int>(cudaEventElapsedTime(
      ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(end)));
}

void CudaEventDestroy(void* event) {
  if (event != nullptr) cudaEventDestroy(static_cast<cudaEvent_t>(event));
}

const char* CudaErrorString(int code) {
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}

}  // namespace sweepd::kernels
