// Paged decode attention (docs/GENERATION.md, "KV cache"): R query rows, one
// new token each, attend over their cached keys read straight from a layer's
// KV pools through a per-row page list, in one launch (plus a merge launch
// when the keys are split across blocks, flash-decoding style). GQA: the
// `heads / kv_heads` query heads of a KV head share its keys. Every shape the
// launch depends on is a bound (rows, max_pages); the keys each row sees come
// from device memory (its query position and first cached position), so the
// launch can be captured in a CUDA graph and replayed at any length.
//
// Semantics: those of RankKvCache::Attend's flat plan (the ATen ops of
// worker/engine/kv_cache.cc), with float32 accumulation and an online softmax:
//   - row r's keys are the positions p with max(first_pos[r], q_pos[r] -
//     window + 1 (window > 0)) <= p <= q_pos[r]; position p sits in page
//     pages[r, (p - first_pos[r]) / page_size], slot (p - first_pos[r]) %
//     page_size, i.e. pool row page * page_size + slot; q_pos[r] < 0 is a
//     padding row (output zeros);
//   - K = V layers (k_pool null): kn = round(v · k_norm) (float32 product,
//     rounded to dtype), then RoPE at the key's position with cos/sin =
//     round(cos/sin(float(p) · inv_freq[i mod head_dim/2])):
//       k = round(round(kn · cos) + round(rotate_half(kn) · sin));
//   - score = round(q · k) · scale (the score rounded to dtype, as the ATen
//     matmul's output is; the engine passes scale 1: Gemma 4 has no
//     attention scaling nor attention softcap), softmax over the row's keys
//     in float32, out = Σ p · v rounded once to dtype.
// The CPU reference accumulates in double and takes the softmax in two passes;
// the kernel differs from it by float32 summation order only.
//
// Layouts (elements of dtype): q [rows, heads, head_dim] at q_row_stride;
// k_pool / v_pool [kv_heads, pool_rows, head_dim] contiguous; pages int64
// [rows, page_stride] (entries past a row's keys are never read); first_pos /
// q_pos int64 [rows]; k_norm [head_dim]; inv_freq float32 [head_dim / 2];
// out [rows, heads, head_dim] contiguous. head_dim a multiple of 8, at most
// 512; dtype bf16 or float32 (the engine has no float16). The CUDA launcher
// wants k_pool and v_pool 16-byte aligned (it copies rows in 16-byte chunks;
// q is copied so too when it and q_row_stride allow, else element-wise).
//
// Ownership: all pointers are borrowed; nothing is allocated (the split
// launch's workspace is the caller's). The CPU reference (`...Cpu`, always
// built) takes host pointers (bf16 as raw uint16_t bits, kernels/dtype.h) and
// returns INVALID_ARGUMENT naming what is wrong; the CUDA launcher (`...Cuda`,
// only with SWEEPD_KERNELS_CUDA) takes device pointers and a cudaStream_t
// passed as void*, enqueues asynchronously and returns 0 or a cudaError_t
// code. Thread-safety: reentrant; concurrent calls must not share outputs or
// workspaces.
#ifndef SWEEPD_KERNELS_PAGED_DECODE_ATTENTION_H_
#define SWEEPD_KERNELS_PAGED_DECODE_ATTENTION_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/dtype.h"

namespace sweepd::kernels {

struct PagedDecodeAttentionArgs {
  Dtype dtype = Dtype::kBFloat16;
  int64_t rows = 0;
  int heads = 0;  // query heads, a multiple of kv_heads
  int kv_heads = 0;
  int head_dim = 0;  // multiple of 8, <= 512
  const void* q = nullptr;
  int64_t q_row_stride = 0;      // elements between rows of q
  const void* k_pool = nullptr;  // null: K = V layer (k_norm, inv_freq)
  const void* v_pool = nullptr;
  int64_t pool_rows = 0;  // rows per KV head in the pools (pages * page_size)
  int page_size = 0;
  const int64_t* pages = nullptr;
  int64_t page_stride = 0;  // entries per row of `pages`
  int64_t max_pages = 0;    // entries a row may use (<= page_stride)
  const int64_t* first_pos = nullptr;
  const int64_t* q_pos = nullptr;
  int64_t window = 0;  // 0 = no window
  float scale = 1.0f;
  const void* k_norm = nullptr;     // K = V layers
  const float* inv_freq = nullptr;  // K = V layers
  void* out = nullptr;
  // Key splits per (row, KV head) (CUDA only; <= 1: none). With splits > 1
  // the launcher needs `workspace` of PagedDecodeAttentionWorkspaceBytes.
  int splits = 1;
  void* workspace = nullptr;
};

// Whether the kernel takes these shapes (else the caller keeps its own path):
// head_dim as above, and (heads / kv_heads) x head_dim <= 8192 (the block's
// query heads and accumulators live in shared memory).
bool PagedDecodeAttentionSupported(int heads, int kv_heads, int head_dim);

// Key splits for `rows` x `kv_heads` blocks of at most `max_keys` keys on a
// device of `sm_count` multiprocessors: enough blocks for about two waves,
// at least 32 keys per split, at most 64 splits.
int PagedDecodeAttentionSplits(int64_t rows, int kv_heads, int64_t max_keys,
                               int sm_count);

// Bytes of float32 workspace the split launch needs (0 when splits <= 1).
int64_t PagedDecodeAttentionWorkspaceBytes(const PagedDecodeAttentionArgs& a);

absl::Status PagedDecodeAttentionCpu(const PagedDecodeAttentionArgs& a);

#if SWEEPD_KERNELS_CUDA
int PagedDecodeAttentionCuda(const PagedDecodeAttentionArgs& a, void* stream);
// Multiprocessors of the current device (cached per device), or 0 on error.
int CudaMultiprocessorCount();
#endif  // SWEEPD_KERNELS_CUDA

}  // namespace sweepd::kernels

#endif  // SWEEPD_KERNELS_PAGED_DECODE_ATTENTION_H_
