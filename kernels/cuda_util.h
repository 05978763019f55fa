// CUDA runtime helpers for code that must not include CUDA headers (the
// engine's CUDA backend): the current device, timing events, error names.
// Moved from worker/engine/cuda_ops.h. Only built with CUDA
// (SWEEPD_KERNELS_CUDA). Functions return 0 or a cudaError_t code. Thread-safe
// as the CUDA runtime is.
#ifndef SWEEPD_KERNELS_CUDA_UTIL_H_
#define SWEEPD_KERNELS_CUDA_UTIL_H_

namespace sweepd::kernels {

// Makes `device` current for this thread in the CUDA runtime these kernels
// (and sweepd::kernels) launch through; call once per rank thread.
int CudaSetDevice(int device);

// CUDA events (timing only) on the current device.
int CudaEventCreate(void** event);
int CudaEventRecord(void* event, void* stream);
// Milliseconds between two recorded events; waits for `end`.
int CudaEventElapsedMs(void* start, void* end, float* ms);
void CudaEventDestroy(void* event);

const char* CudaErrorString(int code);

}  // namespace sweepd::kernels

#endif  // SWEEPD_KERNELS_CUDA_UTIL_H_
