// GeGLU of the fused gate_up GEMM output. Moved from worker/engine/cuda_ops.h.
//
// Ownership: all pointers are borrowed; nothing is allocated. The CPU
// reference (`...Cpu`, always built) takes host pointers (bf16 as raw uint16_t
// bits, kernels/dtype.h) and returns INVALID_ARGUMENT naming what is wrong;
// the CUDA launcher (`...Cuda`, only when sweepd::kernels is built with CUDA:
// SWEEPD_KERNELS_CUDA) takes device pointers and a cudaStream_t passed as
// void* (nullptr = legacy default stream), enqueues asynchronously and returns
// 0 or a cudaError_t code (CudaErrorString, kernels/cuda_util.h, names it).
// Thread-safety: reentrant; concurrent calls must not share outputs.
#ifndef SWEEPD_KERNELS_GEGLU_H_
#define SWEEPD_KERNELS_GEGLU_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/dtype.h"

namespace sweepd::kernels {

// out[t, i] = act(gate_up[t, i]) · gate_up[t, inter + i] for gate_up
// [rows, 2·inter]; act = gelu with the tanh approximation (tanh_approx) or
// the exact erf form; act rounded to dtype before the product (eager order).

absl::Status GegluCpu(Dtype dtype, const void* gate_up, int64_t rows,
                      int64_t inter, bool tanh_approx, void* out);

#if SWEEPD_KERNELS_CUDA
int GegluCuda(Dtype dtype, const void* gate_up, int64_t rows, int64_t inter,
              bool tanh_approx, void* out, void* stream);
#endif  // SWEEPD_KERNELS_CUDA

}  // namespace sweepd::kernels

#endif  // SWEEPD_KERNELS_GEGLU_H_
