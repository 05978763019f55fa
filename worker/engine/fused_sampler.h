// Internal to sweepd::engine: a decode session's LM head and token sampling on
// one CUDA rank as fused kernels (kernels/token_sampler.h): the LM-head GEMM
// into raw logits, then one kernel family that softcaps, applies bias and
// bans, and draws each row's token with the semantics of SampleRows
// (sampler.h) at tensor-parallel degree 1. Its inputs live in static device
// buffers sized for the session's largest step, so that a decode step's CUDA
// graph (decode_graph.h) can capture the head with the layers: Fill uploads a
// step's parameters before the graph replays, Sample is what the graph
// captures, CopyOut reads the tokens afterwards.
//
// Only in builds with the CUDA kernels (SWEEPD_KERNELS_CUDA), on a CUDA
// shard at TP 1 (Available); elsewhere the session samples with SampleRows.
//
// Ownership: one per rank, owned by the session; used on the rank's thread
// (the buffers are the device's current stream's).
#ifndef SWEEPD_WORKER_ENGINE_FUSED_SAMPLER_H_
#define SWEEPD_WORKER_ENGINE_FUSED_SAMPLER_H_

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "worker/engine/decode.h"
#include "worker/engine/sampler.h"
#include "worker/engine/skinny_linear.h"
#include "worker/engine/weights.h"

namespace sweepd::engine::internal {

class FusedSampler {
 public:
  // Whether this build and `shard` (its device, at TP `tp`) can use it.
  static bool Available(const RankShard& shard, int tp);

  // softcap: the model's final_logit_softcapping (0 = none); max_rows: the
  // most rows one step samples; skinny_gemm: the LM head through the skinny
  // GEMM kernel where it takes the shape (EngineOptions::skinny_gemm).
  FusedSampler(const RankShard& shard, float softcap, int64_t max_rows,
               bool skinny_gemm);

  // Uploads the parameters of `batch` (its rows first, then greedy rows
  // without edits up to `rows`) without a host synchronisation. Returns true
  // when the edit buffer had to grow: a graph captured before reads the old
  // one and must be captured again.
  bool Fill(const SamplerBatch& batch, int64_t rows);

  // The tokens of the rows of x [rows, hidden] (final-norm outputs; rows as
  // filled): the LM head and the sampler, queued on the current stream.
  void Sample(const at::Tensor& x);

  // The first n rows' tokens and log-probabilities (synchronises).
  void CopyOut(int64_t n, std::vector<DecodedToken>* out) const;

 private:
  const RankShard& s_;
  const float softcap_;
  const int64_t max_rows_;
  const bool skinny_gemm_;
  SkinnyLinear skinny_;
  at::Tensor temperature_, top_k_, top_p_, min_p_, uniform_;  // [max_rows]
  at::Tensor edit_row_, edit_token_, edit_value_;             // [capacity]
  at::Tensor edit_count_;                                     // [1] int32
  at::Tensor workspace_;                                      // bytes
  at::Tensor token_, logprob_;                                // [max_rows]
};

}  // namespace sweepd::engine::internal

#endif  // SWEEPD_WORKER_ENGINE_FUSED_SAMPLER_H_
