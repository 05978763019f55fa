// Internal to sweepd::engine: CUDA graphs of a decode step's decoder layers
// (with DecodeOptions::fused_sampler also its final norm, LM head and fused
// sampler), one per batch-size bucket (DecodeOptions::cuda_graphs;
// docs/GENERATION.md, "CUDA graphs"). A step of R rows runs as a step of the
// bucket's B >= R rows (powers of two up to the session's max_sequences): the
// rows' inputs are copied into the bucket's static buffers (padding rows:
// position -1, which the fused attention reads as "no keys", cache writes to
// a trash slot, greedy sampling), the bucket's graph replays, and the first R
// rows go on: the layers' static output to the eager final norm and sampler,
// or the fused sampler's static tokens (fused_sampler.h). A bucket
// is captured on its first step, after one eager warm-up run of the same
// step (GEMM autotuning, library handles and the allocator must not act
// inside a capture). The whole forward of a graph step runs on a side stream
// (a capture needs a stream other than the legacy default one), ordered after
// and before the rank's previous current stream by events.
//
// Only in builds whose libtorch has CUDA (SWEEPD_ENGINE_TORCH_CUDA);
// elsewhere Available() is false and the session never asks for a graph.
//
// Ownership: one per rank, owned by the session; used on the rank's thread.
#ifndef SWEEPD_WORKER_ENGINE_DECODE_GRAPH_H_
#define SWEEPD_WORKER_ENGINE_DECODE_GRAPH_H_

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <vector>

namespace sweepd::engine::internal {

class DecodeGraphs {
 public:
  // A bucket's static inputs; per layer group g: write_rows (0..B-1),
  // write_slots [B], pages [B, max_pages[g]], first_pos [B]; positions [B]
  // (the query positions, -1 = padding); h_in [1, B, hidden].
  struct Buffers {
    at::Tensor h_in, positions;
    std::vector<at::Tensor> write_rows, write_slots, pages, first_pos;
  };
  using Layers = std::function<at::Tensor(const at::Tensor&)>;

  // Whether this build can capture CUDA graphs.
  static bool Available();

  // max_pages[g]: the page-list bound of group g (the static width of
  // `pages`); max_rows: the largest bucket's rows.
  DecodeGraphs(at::Device device, at::ScalarType dtype, int64_t hidden,
               std::vector<int64_t> max_pages, int max_rows);
  ~DecodeGraphs();

  // The smallest bucket holding `rows` rows (0 when rows > max_rows).
  int Bucket(int64_t rows) const;
  int64_t max_pages(int g) const { return max_pages_[g]; }
  // The bucket's buffers, allocated (zeros) on first use.
  Buffers& buffers(int bucket);

  // While alive, a side stream is the device's current stream, ordered after
  // the work queued before it; on destruction the previous stream is current
  // again and ordered after the step.
  class StepStream {
   public:
    virtual ~StepStream() = default;
  };
  std::unique_ptr<StepStream> EnterStep();

  // The bucket's step (`layers`: residual in -> residual out, with the head
  // queued inside) on its h_in: replays the bucket's graph, capturing it
  // first (after one eager run of `layers`). Returns the static output
  // [1, bucket, hidden]. A failed capture disables graphs for the session
  // (broken()) and returns an eager run's output.
  at::Tensor Run(int bucket, const Layers& layers);
  bool broken() const { return broken_; }
  // Drops the captured graphs (a static input they read was reallocated);
  // each bucket is captured again on its next step.
  void Reset();

 private:
  struct Impl;
  at::Device device_;
  at::ScalarType dtype_;
  int64_t hidden_;
  std::vector<int64_t> max_pages_;
  int max_rows_;
  bool broken_ = false;
  std::map<int, Buffers> buffers_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sweepd::engine::internal

#endif  // SWEEPD_WORKER_ENGINE_DECODE_GRAPH_H_
