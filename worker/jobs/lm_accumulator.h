// The results of one eval / probe task (lm_executor.h): running sums per
// category over the batches of its stream, added from the engine's forward
// results (NLLs; per-layer statistics), and the metric rows they become when
// the stream is done (names, labels and formulas: docs/METRICS.md).
//
// Internal to the executor (worker/jobs/lm_*.cc). Plain value types and
// functions; the accumulator is owned by its task's run. Thread-compatible.
#ifndef SWEEPD_WORKER_JOBS_LM_ACCUMULATOR_H_
#define SWEEPD_WORKER_JOBS_LM_ACCUMULATOR_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/tokenizer.h"
#include "worker/engine/engine.h"
#include "worker/jobs/executor.h"
#include "worker/jobs/lm_stream.h"

namespace sweepd {

// Running sums of one task, per category (index 0 = "all").
struct LmAccumulator {
  // eval
  std::vector<double> nll_sum;
  std::vector<int64_t> tokens;
  // probe: [category][layer]
  std::vector<std::vector<double>> bi_sum, norm_sum, rank_sum;
  std::vector<std::vector<int64_t>> top1;
  std::vector<double> decision_sum;
  std::vector<int64_t> prompts;

  void Init(size_t categories, int layers) {
    nll_sum.assign(categories, 0.0);
    tokens.assign(categories, 0);
    bi_sum.assign(categories, std::vector<double>(layers, 0.0));
    norm_sum = rank_sum = bi_sum;
    top1.assign(categories, std::vector<int64_t>(layers, 0));
    decision_sum.assign(categories, 0.0);
    prompts.assign(categories, 0);
  }
};

// Adds the NLLs of the scored positions of every sequence of `batch` (from
// `r`, the batch's forward) to "all" and to the sequence's category.
void AccumulateEval(const LmStream& data, const LmBatch& batch,
                    const engine::ForwardResult& r, LmAccumulator* acc);

// Adds, per layer, the block influence and residual norm summed over each
// sequence's positions, the logit-lens rank at its rank position, and its
// decision layer (the first layer ranking the target first; the layer count
// when none does).
//
// `stats[L]` points at layer L's statistics (from the task's own forward or,
// below its start layer, from the shared unablated pass). With `from_eval`
// the batch is an eval stream's: only windows carrying a probe record count,
// over their positions [0, probe_len), ranked at probe_rank_pos.
void AccumulateProbe(const LmStream& data, const LmBatch& batch,
                     const std::vector<const engine::LayerStats*>& stats,
                     bool from_eval, LmAccumulator* acc);

// The task's metric rows: "bos", then per category eval's nll_sum, tokens,
// nll_mean and ppl, or probe's tokens, prompts, per-layer bi, resid_norm,
// lens_rank and lens_top1, and decision_layer (means over the categories'
// tokens or prompts; rows of an empty mean are left out). `kind` is the
// task's (eval / probe), `categories` its stream's, `layers` the model's.
TaskOutput MakeLmTaskOutput(const std::string& kind, BosPolicy bos,
                            const LmAccumulator& acc,
                            const std::vector<std::string>& categories,
                            int layers, double wall_seconds);

}  // namespace sweepd

#endif  // SWEEPD_WORKER_JOBS_LM_ACCUMULATOR_H_
