// Internal to sweepd::engine: vocab-parallel token sampling for a batch of
// decode rows (docs/GENERATION.md, "Sampling"). Each rank holds the logits of
// its vocabulary shard; the ranks agree on every row's token through small
// collectives over [rows] or [rows, k] tensors, never a gather of the logits.
// The draw of a row is inverse-CDF sampling over the global vocabulary in id
// order from one uniform per row, so the token depends only on the row's
// logits, parameters and uniform: not on the other rows, the batch order or
// the tensor-parallel degree (up to the summation order of floats).
//
// Stateless; called on each rank's thread with the same batch.
#ifndef SWEEPD_WORKER_ENGINE_SAMPLER_H_
#define SWEEPD_WORKER_ENGINE_SAMPLER_H_

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "worker/comm/communicator.h"

namespace sweepd::engine::internal {

// One step's rows, host side (the same on every rank).
struct SamplerBatch {
  std::vector<float> temperature;  // per row; 0 = greedy
  std::vector<int64_t> top_k;      // per row; 0 = off
  std::vector<float> top_p;        // per row; 1 = off
  std::vector<float> min_p;        // per row; 0 = off
  std::vector<double> uniform;     // per row, in (0, 1)
  // Sparse per-row edits with global token ids.
  std::vector<int64_t> bias_row, bias_token;
  std::vector<float> bias_value;
  std::vector<int64_t> ban_row, ban_token;
  int64_t rows() const { return static_cast<int64_t>(temperature.size()); }
};

struct SampledRows {
  at::Tensor token;    // [rows] int64, global ids (the same on every rank)
  at::Tensor logprob;  // [rows] float32: log softmax(z)[token]
};

// z: this rank's softcapped logits [rows, vocab_shard] float32 (padding
// columns -inf); the shard holds global ids [vocab_start, vocab_start +
// vocab_len).
SampledRows SampleRows(comm::Communicator* comm, const at::Tensor& z,
                       int64_t vocab_start, int64_t vocab_len,
                       const SamplerBatch& batch);

}  // namespace sweepd::engine::internal

#endif  // SWEEPD_WORKER_ENGINE_SAMPLER_H_
