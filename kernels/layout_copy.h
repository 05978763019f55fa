// Bit-exact row copies that change a layout: SwapMiddleDims (the chunked
// attention's [B, S, KV, G·D] <-> [B, KV, S, G·D]) and ReverseRows (the banded
// attention's reversed blocks). Moved from worker/engine/cuda_ops.h.
//
// Ownership: all pointers are borrowed; nothing is allocated. The CPU
// reference (`...Cpu`, always built) takes host pointers (bf16 as raw uint16_t
// bits, kernels/dtype.h) and returns INVALID_ARGUMENT naming what is wrong;
// the CUDA launcher (`...Cuda`, only when sweepd::kernels is built with CUDA:
// SWEEPD_KERNELS_CUDA) takes device pointers and a cudaStream_t passed as
// void* (nullptr = legacy default stream), enqueues asynchronously and returns
// 0 or a cudaError_t code (CudaErrorString, kernels/cuda_util.h, names it).
// Thread-safety: reentrant; concurrent calls must not share outputs.
#ifndef SWEEPD_KERNELS_LAYOUT_COPY_H_
#define SWEEPD_KERNELS_LAYOUT_COPY_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/dtype.h"

namespace sweepd::kernels {

// dst[a, y, x, :] = src[a, x, y, :]: swaps the two middle dimensions of a
// contiguous [outer, dim1, dim2, inner] array into a contiguous
// [outer, dim2, dim1, inner] one, `inner_bytes` bytes per innermost row (the
// chunked attention's layout changes: [B, S, KV, G·D] <-> [B, KV, S, G·D]).
// A bit-exact copy of whole rows, 16-byte accesses when inner_bytes and both
// pointers allow. src and dst must not overlap.
absl::Status SwapMiddleDimsCpu(const void* src, int64_t outer, int64_t dim1,
                               int64_t dim2, int64_t inner_bytes, void* dst);

// dst[i0, i1, r, :] = src[i0, i1, rows − 1 − r, :]: copies rows of
// `row_bytes` bytes in reverse order within each (i0, i1), from a strided
// source (byte strides s0, s1, s_row) into a contiguous [n0, n1, rows,
// row_bytes] destination. The banded attention reverses a block's queries and
// the previous block's keys/values so that "keys after my offset" becomes a
// causal mask. 16-byte accesses when pointers, strides and row_bytes allow.
// src and dst must not overlap.

absl::Status ReverseRowsCpu(const void* src, int64_t n0, int64_t n1,
                            int64_t rows, int64_t row_bytes, int64_t s0,
                            int64_t s1, int64_t s_row, void* dst);

#if SWEEPD_KERNELS_CUDA
int SwapMiddleDimsCuda(const void* src, int64_t outer, int64_t dim1,
                       int64_t dim2, int64_t inner_bytes, void* dst,
                       void* stream);
int ReverseRowsCuda(const void* src, int64_t n0, int64_t n1, int64_t rows,
                    int64_t row_bytes, int64_t s0, int64_t s1, int64_t s_row,
                    void* dst, void* stream);
#endif  // SWEEPD_KERNELS_CUDA

}  // namespace sweepd::kernels

#endif  // SWEEPD_KERNELS_LAYOUT_COPY_H_
