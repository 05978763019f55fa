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

// One segment of a multi-segment call: `heads` heads of x starting at column
// `col`, normed with `weight` (per-head [head_dim], null: none), rotated with
// the call's cos/sin when `rope`. Element i of (token t, head h) goes to
//   out[h · head_stride + row(t) · row_stride + i],  row(t) = rows ? rows[t] :
//   t
// (elements; >= 0). A stride of 0 takes its default, which together describe
// contiguous [tokens, heads, head_dim]: head_stride head_dim, row_stride
// heads · head_dim. A KV pool
// [kv_heads, pool_rows, head_dim] written at per-token slots is head_stride
// pool_rows · head_dim, row_stride head_dim, rows = the slots (int64, on the
// device of the launch; each token its own row, or the last write is any).
// Segments may read the same columns (K = V layers' k and v); their outputs
// must not overlap.
struct HeadNormRopeSegment {
  int64_t col = 0;
  int heads = 0;
  const void* weight = nullptr;
  bool rope = false;
  void* out = nullptr;
  int64_t head_stride = 0;
  int64_t row_stride = 0;
  const int64_t* rows = nullptr;
};

// q, k and v of a layer (or any 1..3 segments of one x) in one call: the
// fields as HeadNormRopeArgs', shared by the segments.
struct HeadNormRopeMultiArgs {
  static constexpr int kMaxSegments = 3;
  Dtype dtype = Dtype::kBFloat16;
  const void* x = nullptr;
  int64_t x_stride = 0;
  int64_t tokens = 0;
  int64_t seq = 1;
  int head_dim = 0;
  float eps = 1e-6f;
  const void* cos = nullptr;  // needed when a segment has rope
  const void* sin = nullptr;
  HeadNormRopeSegment seg[kMaxSegments];
  int segments = 0;
};

// Each segment's outputs are those of a HeadNormRope*(…) call of it (the
// same per-row code; on CUDA the launch path — rows per warp — is chosen once
// for all segments); the CUDA launcher runs all segments in one kernel
// launch, with no synchronisation or allocation (capturable in a CUDA graph).
absl::Status HeadNormRopeMultiCpu(const HeadNormRopeMultiArgs& a);

#if SWEEPD_KERNELS_CUDA
int HeadNormRopeCuda(const HeadNormRopeArgs& a, void* stream);
int HeadNormRopeMultiCuda(const HeadNormRopeMultiArgs& a, void* stream);
#endif  // SWEEPD_KERNELS_CUDA

}  // namespace sweepd::kernels

#endif  // SWEEPD_KERNELS_HEAD_NORM_ROPE_H_
