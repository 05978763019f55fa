// Per-head RMSNorm (q_norm / k_norm / v_norm) and rotate-half RoPE, reading
// the fused qkv GEMM output in place. Moved from worker/engine/cuda_ops.h.
// Math in float32, rounded as the eager ops round.
//
// Ownership: all pointers are borrowed; nothing is allocated. The CPU
// reference (`...Cpu`, always built) takes host pointers (bf16 as raw uint16_t
// bits, kernels/dtype.h) and returns INVALID_ARGUMENT naming what is wrong;
// the CUDA launcher (`...Cuda`, only when sweepd::kernels is built with CUDA:
// SWEEPD_KERNELS_CUDA) takes device pointers and a cudaStream_t passed as
// void* (nullptr = legacy default stream), enqueues asynchronously and returns
// 0 or a cudaError_t code (CudaErrorString, kernels/cuda_util.h, names it).
// Thread-safety: reentrant; concurrent calls must not share outputs.
#ifndef SWEEPD_KERNELS_HEAD_NORM_ROPE_H_
#define SWEEPD_KERNELS_HEAD_NORM_ROPE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/dtype.h"

namespace sweepd::kernels {

// Per token t (row t of x, stride x_stride; head h at column h·head_dim) and
// head h: n = RMSNorm(x[t, h, :]) · weight (weight null: none), then, when
// cos/sin ([seq, head_dim], position t % seq) are given,
//   out = n · cos + rotate_half(n) · sin   (each product and the sum rounded)
// into out, contiguous [tokens, heads, head_dim]. head_dim ≤ 512, even.
struct HeadNormRopeArgs {
  Dtype dtype = Dtype::kBFloat16;
  const void* x = nullptr;
  int64_t x_stride = 0;
  int64_t tokens = 0;
  int64_t seq = 1;
  int heads = 0;
  int head_dim = 0;
  const void* weight = nullptr;
  float eps = 1e-6f;
  const void* cos = nullptr;
  const void* sin = nullptr;
  void* out = nullptr;
};

absl::Status HeadNormRopeCpu(const HeadNormRopeArgs& a);

#if SWEEPD_KERNELS_CUDA
int HeadNormRopeCuda(const HeadNormRopeArgs& a, void* stream);
#endif  // SWEEPD_KERNELS_CUDA

}  // namespace sweepd::kernels

#endif  // SWEEPD_KERNELS_HEAD_NORM_ROPE_H_
