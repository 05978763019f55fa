// The banded attention's merge of two partial attention results by their
// log-sum-exps. Moved from worker/engine/cuda_ops.h.
//
// Ownership: all pointers are borrowed; nothing is allocated. The CPU
// reference (`...Cpu`, always built) takes host pointers (bf16 as raw uint16_t
// bits, kernels/dtype.h) and returns INVALID_ARGUMENT naming what is wrong;
// the CUDA launcher (`...Cuda`, only when sweepd::kernels is built with CUDA:
// SWEEPD_KERNELS_CUDA) takes device pointers and a cudaStream_t passed as
// void* (nullptr = legacy default stream), enqueues asynchronously and returns
// 0 or a cudaError_t code (CudaErrorString, kernels/cuda_util.h, names it).
// Thread-safety: reentrant; concurrent calls must not share outputs.
#ifndef SWEEPD_KERNELS_LSE_MERGE_H_
#define SWEEPD_KERNELS_LSE_MERGE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/dtype.h"

namespace sweepd::kernels {

// Merges two partial attention results over disjoint key sets into `out`, in
// place: per (batch b, row r, head h), with log-sum-exps l1 = out_lse and
// l2 = other_lse (natural log, float32) of the two softmax denominators,
//   out = (out · e^(l1 − m) + other · e^(l2 − m)) / (e^(l1 − m) + e^(l2 − m)),
// m = max(l1, l2), in float32, rounded once to dtype. out/other are
// [batch, rows, heads, head_dim] with the given element strides (head_dim
// contiguous); the lse arrays are [batch, heads, rows] with theirs. Used by the
// banded (sliding-window) attention, which computes a window as the causal
// block of its own key block plus the part of the previous key block.
struct LseMergeArgs {
  Dtype dtype = Dtype::kBFloat16;
  int64_t batch = 0;
  int64_t rows = 0;
  int64_t heads = 0;
  int64_t head_dim = 0;
  void* out = nullptr;
  int64_t out_stride[3] = {0, 0, 0};  // batch, row, head
  const float* out_lse = nullptr;
  int64_t out_lse_stride[3] = {0, 0, 0};  // batch, head, row
  const void* other = nullptr;
  int64_t other_stride[3] = {0, 0, 0};
  const float* other_lse = nullptr;
  int64_t other_lse_stride[3] = {0, 0, 0};
};

absl::Status LseMergeCpu(const LseMergeArgs& a);

#if SWEEPD_KERNELS_CUDA
int LseMergeCuda(const LseMergeArgs& a, void* stream);
#endif  // SWEEPD_KERNELS_CUDA

}  // namespace sweepd::kernels

#endif  // SWEEPD_KERNELS_LSE_MERGE_H_
