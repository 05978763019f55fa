// One decode step's token sampling from the LM head's raw logits, as a few
// fused kernels a CUDA graph can capture: the softcap, sparse logit edits
// (bias, bans), greedy or temperature / top-k / top-p / min-p sampling by
// inverse CDF, and the model log-probability of the drawn token. The semantics
// are those of the engine's ATen sampler (worker/engine/sampler.h, SampleRows)
// at tensor-parallel degree 1; docs/KERNELS.md ("Token sampler").
//
// Ownership: all pointers are borrowed; nothing is allocated. The CPU
// reference (`TokenSamplerCpu`, always built) takes host pointers (bf16 as raw
// uint16_t bits, kernels/dtype.h), ignores `workspace` and returns
// INVALID_ARGUMENT naming the bad field. The CUDA launcher
// (`TokenSamplerCuda`, only with SWEEPD_KERNELS_CUDA) takes device pointers and
// a cudaStream_t passed as void* (nullptr = legacy default stream), enqueues
// three kernels without host synchronisation, allocation or copies (so it can
// be captured in a CUDA graph: the edit count is read on the device) and
// returns 0 or a cudaError_t code (cudaErrorInvalidValue for bad host-side
// arguments; device-side values are not checked: out-of-range edits are
// skipped). Thread-safety: reentrant; concurrent calls must not share
// workspace or outputs.
#ifndef SWEEPD_KERNELS_TOKEN_SAMPLER_H_
#define SWEEPD_KERNELS_TOKEN_SAMPLER_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/dtype.h"

namespace sweepd::kernels {

// Per row r (every value in float unless said otherwise):
//  z[v]   the softcapped logit, rounded as the engine's eager ATen ops
//         (tanh(x / cap) * cap) round: a = R(x / cap), b = R(tanh(a)),
//         z = R(b * cap), R = rounding to `dtype` (identity for float32);
//         softcap 0: z = x. With `softcap_reciprocal`, a = R(x * (1 / cap))
//         instead: ATen's CUDA division by a host scalar multiplies by the
//         float reciprocal, its CPU division divides.
//  zb     z plus the edits of row r (edits i < *edit_count, in list order;
//         value -inf bans the token; several edits of one token add up).
//  Greedy (temperature <= 0): the smallest id with maximal zb.
//  Sampled: zt = zb / temperature; top-k (0 < k < vocab): keep zt >= the k-th
//         largest zt (ties at the threshold kept); m = max zt; e = exp(zt - m).
//         top-p (< 1): the nucleus is every kept token with zt >= s, s the
//         largest zt whose upper mass {zt >= s} reaches top_p * total (masses
//         in fixed point: round(e * 2^32) as uint64, so that device sums are
//         exact and order-independent). min-p (> 0): drop e < min_p. Then the
//         token is the first id whose inclusive double cumulative sum of the
//         kept e exceeds uniform * (their double sum); if rounding puts the
//         target past the end, the last id with e > 0.
//  token  -1 when no token has probability > 0 (every zb -inf); logprob then
//         -inf. Otherwise logprob = z[token] - logsumexp_v z[v] (the model's
//         distribution: before edits, temperature and filters), the sum
//         accumulated in double.
// A row's result depends only on that row's inputs (fixed reduction orders),
// bit for bit on every replay, except that duplicate FINITE edits of one
// (row, token) add up in an unspecified order on the device (bans are
// order-free). Device and host may differ by a float ulp of tanh/exp and in
// the double summation order of the inverse CDF.
struct TokenSamplerArgs {
  Dtype dtype = Dtype::kBFloat16;
  const void* logits = nullptr;  // [rows, vocab], row stride `row_stride`
  int64_t row_stride = 0;        // elements, >= vocab
  int64_t rows = 0;              // >= 1
  int64_t vocab = 0;             // 1 .. 2^30
  float softcap = 0.0f;          // 0 = none
  bool softcap_reciprocal = false;
  // Per row.
  const float* temperature = nullptr;  // <= 0: greedy
  const int32_t* top_k = nullptr;      // 0 = off (>= 0)
  const float* top_p = nullptr;        // 1 = off, in [0, 1]
  const float* min_p = nullptr;        // 0 = off, in [0, 1]
  const double* uniform = nullptr;     // in [0, 1)
  // Sparse edits; the count lives in memory (device memory for CUDA), at most
  // edit_capacity. With edit_capacity 0 the edit pointers may be null.
  const int32_t* edit_row = nullptr;
  const int32_t* edit_token = nullptr;
  const float* edit_value = nullptr;  // finite, or -inf for a ban
  const int32_t* edit_count = nullptr;
  int64_t edit_capacity = 0;
  // Scratch of TokenSamplerWorkspaceBytes(rows, vocab) bytes, 16-byte aligned
  // (CUDA only).
  void* workspace = nullptr;
  // Outputs, [rows].
  int64_t* token = nullptr;
  float* logprob = nullptr;
};

// Bytes of `workspace` the CUDA launcher needs: zb as float [rows, vocab] and
// one double per row.
int64_t TokenSamplerWorkspaceBytes(int64_t rows, int64_t vocab);

// The largest vocabulary the kernels take (int indexing with headroom).
inline constexpr int64_t kTokenSamplerMaxVocab = int64_t{1} << 30;

absl::Status TokenSamplerCpu(const TokenSamplerArgs& a);

#if SWEEPD_KERNELS_CUDA
int TokenSamplerCuda(const TokenSamplerArgs& a, void* stream);
#endif  // SWEEPD_KERNELS_CUDA

}  // namespace sweepd::kernels

#endif  // SWEEPD_KERNELS_TOKEN_SAMPLER_H_
