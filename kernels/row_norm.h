// RMSNorm of rows with the residual add, layer_scalar and the next norm folded
// in (the engine's input, post-attention + pre-feedforward, and
// post-feedforward norms). Moved from worker/engine/cuda_ops.h. Math in
// float32; rounding as the eager libtorch ops: one rounding to dtype wherever
// they materialise a tensor.
//
// Ownership: all pointers are borrowed; nothing is allocated. The CPU
// reference (`...Cpu`, always built) takes host pointers (bf16 as raw uint16_t
// bits, kernels/dtype.h) and returns INVALID_ARGUMENT naming what is wrong;
// the CUDA launcher (`...Cuda`, only when sweepd::kernels is built with CUDA:
// SWEEPD_KERNELS_CUDA) takes device pointers and a cudaStream_t passed as
// void* (nullptr = legacy default stream), enqueues asynchronously and returns
// 0 or a cudaError_t code (CudaErrorString, kernels/cuda_util.h, names it).
// Thread-safety: reentrant; concurrent calls must not share outputs.
#ifndef SWEEPD_KERNELS_ROW_NORM_H_
#define SWEEPD_KERNELS_ROW_NORM_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/dtype.h"

namespace sweepd::kernels {

// Per row r of x ([rows, dim], row stride x_stride elements):
//   n   = x · (mean(x²) + eps)^-0.5 · weight          (weight null: no scale)
//   out = n                                           (residual null)
//   out = residual + n                                (residual [rows, dim])
//   out = (residual + n) · scalar                     (scalar: [1])
// each step rounded to `dtype` as the eager code does. With weight2/out2 also
//   out2 = out · (mean(out²) + eps)^-0.5 · weight2    (the next layer norm).
// out/out2/residual are contiguous [rows, dim]. dim ≤ 12288.
struct RowNormArgs {
  Dtype dtype = Dtype::kBFloat16;
  const void* x = nullptr;
  int64_t x_stride = 0;
  int64_t rows = 0;
  int64_t dim = 0;
  const void* weight = nullptr;
  float eps = 1e-6f;
  const void* residual = nullptr;
  const void* scalar = nullptr;
  void* out = nullptr;
  const void* weight2 = nullptr;
  void* out2 = nullptr;
};

absl::Status RowNormCpu(const RowNormArgs& a);

#if SWEEPD_KERNELS_CUDA
int RowNormCuda(const RowNormArgs& a, void* stream);
#endif  // SWEEPD_KERNELS_CUDA

}  // namespace sweepd::kernels

#endif  // SWEEPD_KERNELS_ROW_NORM_H_
