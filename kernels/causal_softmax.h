// The chunked GEMM attention's causal (optionally banded) softmax, in place.
// Moved from worker/engine/cuda_ops.h.
//
// Ownership: all pointers are borrowed; nothing is allocated. The CPU
// reference (`...Cpu`, always built) takes host pointers (bf16 as raw uint16_t
// bits, kernels/dtype.h) and returns INVALID_ARGUMENT naming what is wrong;
// the CUDA launcher (`...Cuda`, only when sweepd::kernels is built with CUDA:
// SWEEPD_KERNELS_CUDA) takes device pointers and a cudaStream_t passed as
// void* (nullptr = legacy default stream), enqueues asynchronously and returns
// 0 or a cudaError_t code (CudaErrorString, kernels/cuda_util.h, names it).
// Thread-safety: reentrant; concurrent calls must not share outputs.
#ifndef SWEEPD_KERNELS_CAUSAL_SOFTMAX_H_
#define SWEEPD_KERNELS_CAUSAL_SOFTMAX_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/dtype.h"

namespace sweepd::kernels {

// Causal (optionally banded) softmax over the rows of one query chunk of the
// chunked GEMM attention, in place. scores is [batches, rows, keys] contiguous
// in `dtype` (the Q·Kᵀ GEMM output, as the eager path's scores); row r of a
// batch is query position q_start + r / group (GQA: `group` query heads per
// KV head, rows ordered (position, head)), column j is key position
// key_start + j. Key j is allowed when j ≤ position and, with window > 0,
// position − j < window. Per row, in float32: x = score · scale,
// p = exp(x − max) / Σ exp(x − max) over the allowed keys, 0 elsewhere,
// rounded once to dtype (the eager softmax(float32).to(dtype)). Every row must
// allow at least one key. Rows of up to 4096 bf16 / 2048 fp32 keys (16-byte
// aligned) take one read and one write of the row (held in registers): rows
// of up to 2048 keys one warp per row (shuffle reductions, 8 rows per block),
// longer ones one block per row; rows over 4096 bf16 / 2048 fp32 keys one
// more read.
struct CausalSoftmaxArgs {
  Dtype dtype = Dtype::kBFloat16;
  void* scores = nullptr;
  int64_t batches = 0;
  int64_t rows = 0;
  int64_t keys = 0;
  int group = 1;
  int64_t q_start = 0;
  int64_t key_start = 0;
  int64_t window = 0;
  float scale = 1.0f;
};

absl::Status CausalSoftmaxCpu(const CausalSoftmaxArgs& a);

#if SWEEPD_KERNELS_CUDA
int CausalSoftmaxCuda(const CausalSoftmaxArgs& a, void* stream);
#endif  // SWEEPD_KERNELS_CUDA

}  // namespace sweepd::kernels

#endif  // SWEEPD_KERNELS_CAUSAL_SOFTMAX_H_
