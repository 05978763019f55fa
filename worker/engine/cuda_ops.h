// Fused elementwise/row CUDA kernels of the engine's GPU forward: RMSNorm with
// the residual add, layer_scalar and the next norm folded in; per-head
// q/k/v norm + RoPE; GeGLU; block-influence statistics; the causal softmax
// of the chunked GEMM attention; the log-sum-exp merge of the banded attention;
// and CUDA events for the phase profile. Raw device pointers + a cudaStream_t
// passed as void* (nullptr = legacy default stream); no libtorch, no CUDA
// header, no allocation. Every function returns 0 or a cudaError_t code
// (ErrorString() names it) and enqueues asynchronously.
//
// Rounding matches the eager libtorch ops they replace (docs/ENGINE.md, "GPU
// path"): math in float32, one rounding to the compute dtype wherever the
// eager code materialises a tensor of that dtype.
//
// Ownership: all pointers are borrowed. Thread-safety: reentrant; concurrent
// calls must not share outputs. Only compiled with SWEEPD_ENABLE_CUDA (the
// engine then defines SWEEPD_ENGINE_CUDA_OPS=1).
#ifndef SWEEPD_WORKER_ENGINE_CUDA_OPS_H_
#define SWEEPD_WORKER_ENGINE_CUDA_OPS_H_

#include <cstdint>

namespace sweepd::engine::cuda_ops {

enum class Dtype { kFloat32 = 0, kBFloat16 = 1 };

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
int RowNorm(const RowNormArgs& a, void* stream);

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
int HeadNormRope(const HeadNormRopeArgs& a, void* stream);

// out[t, i] = act(gate_up[t, i]) · gate_up[t, inter + i] for gate_up
// [rows, 2·inter]; act = gelu with the tanh approximation (tanh_approx) or
// the exact erf form; act rounded to dtype before the product (eager order).
int Geglu(Dtype dtype, const void* gate_up, int64_t rows, int64_t inter,
          bool tanh_approx, void* out, void* stream);

// Per row of a and b ([rows, dim] contiguous, dtype): float32
// block_influence = 1 − <a,b> / max(|a|·|b|, 1e-30) and norm_b = |b|.
int RowCosNorm(Dtype dtype, const void* a, const void* b, int64_t rows,
               int64_t dim, float* block_influence, float* norm_b,
               void* stream);

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
int CausalSoftmax(const CausalSoftmaxArgs& a, void* stream);

// dst[a, y, x, :] = src[a, x, y, :]: swaps the two middle dimensions of a
// contiguous [outer, dim1, dim2, inner] array into a contiguous
// [outer, dim2, dim1, inner] one, `inner_bytes` bytes per innermost row (the
// chunked attention's layout changes: [B, S, KV, G·D] <-> [B, KV, S, G·D]).
// A bit-exact copy of whole rows, 16-byte accesses when inner_bytes and both
// pointers allow. src and dst must not overlap.
int SwapMiddleDims(const void* src, int64_t outer, int64_t dim1, int64_t dim2,
                   int64_t inner_bytes, void* dst, void* stream);

// dst[i0, i1, r, :] = src[i0, i1, rows − 1 − r, :]: copies rows of
// `row_bytes` bytes in reverse order within each (i0, i1), from a strided
// source (byte strides s0, s1, s_row) into a contiguous [n0, n1, rows,
// row_bytes] destination. The banded attention reverses a block's queries and
// the previous block's keys/values so that "keys after my offset" becomes a
// causal mask. 16-byte accesses when pointers, strides and row_bytes allow.
// src and dst must not overlap.
int ReverseRows(const void* src, int64_t n0, int64_t n1, int64_t rows,
                int64_t row_bytes, int64_t s0, int64_t s1, int64_t s_row,
                void* dst, void* stream);

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
int LseMerge(const LseMergeArgs& a, void* stream);

// Makes `device` current for this thread in the CUDA runtime these kernels
// (and sweepd::kernels) launch through; call once per rank thread.
int SetDevice(int device);

// CUDA events (timing only) on the current device.
int EventCreate(void** event);
int EventRecord(void* event, void* stream);
// Milliseconds between two recorded events; waits for `end`.
int EventElapsedMs(void* start, void* end, float* ms);
void EventDestroy(void* event);

const char* ErrorString(int code);

}  // namespace sweepd::engine::cuda_ops

#endif  // SWEEPD_WORKER_ENGINE_CUDA_OPS_H_
