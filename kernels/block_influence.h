// Block influence of a layer (1 − cos(resid_in, resid_out)) and ‖resid_out‖
// per token, the probe statistics. Moved from worker/engine/cuda_ops.h.
//
// Ownership: all pointers are borrowed; nothing is allocated. The CPU
// reference (`...Cpu`, always built) takes host pointers (bf16 as raw uint16_t
// bits, kernels/dtype.h) and returns INVALID_ARGUMENT naming what is wrong;
// the CUDA launcher (`...Cuda`, only when sweepd::kernels is built with CUDA:
// SWEEPD_KERNELS_CUDA) takes device pointers and a cudaStream_t passed as
// void* (nullptr = legacy default stream), enqueues asynchronously and returns
// 0 or a cudaError_t code (CudaErrorString, kernels/cuda_util.h, names it).
// Thread-safety: reentrant; concurrent calls must not share outputs.
#ifndef SWEEPD_KERNELS_BLOCK_INFLUENCE_H_
#define SWEEPD_KERNELS_BLOCK_INFLUENCE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/dtype.h"

namespace sweepd::kernels {

// Per row of a and b ([rows, dim] contiguous, dtype): float32
// block_influence = 1 − <a,b> / max(|a|·|b|, 1e-30) and norm_b = |b|.

absl::Status RowCosNormCpu(Dtype dtype, const void* a, const void* b,
                           int64_t rows, int64_t dim, float* block_influence,
                           float* norm_b);

#if SWEEPD_KERNELS_CUDA
int RowCosNormCuda(Dtype dtype, const void* a, const void* b, int64_t rows,
                   int64_t dim, float* block_influence, float* norm_b,
                   void* stream);
#endif  // SWEEPD_KERNELS_CUDA

}  // namespace sweepd::kernels

#endif  // SWEEPD_KERNELS_BLOCK_INFLUENCE_H_
