// The head_importance job kind (docs/CALIBRATION.md, "Head importance"): the
// leave-one-out NLL delta of every attention head of the task's layers on one
// dataset shard, as in seed 001. Per window batch, one unablated forward keeps
// the residual entering every layer (prefix state); then, per layer L, the
// heads are evaluated heads_per_forward at a time in one forward that starts
// at L from that state: the batch holds the windows repeated once per head and
// each copy masks its own head (engine ForwardRequest::row_head_masks, masked
// by the rank that owns the head). Rows: "head_nll_delta" {layer, head,
// dataset} = masked NLL - baseline NLL (mean per scored token of the shard),
// "head_importance_baseline_nll" {dataset}, "head_importance_tokens"
// {dataset}, "head_importance_layer_forwards" (layer-forwards the task ran)
// and "head_importance_token_layers" (layers run x tokens of all batch rows:
// the compute, independent of how windows were batched).
//
// Shares the LmBackend (engine + tokenizers) of the eval and probe executors.
// Ownership and threads: as LmExecutor (lm_executor.h).
#ifndef SWEEPD_WORKER_JOBS_HEAD_IMPORTANCE_EXECUTOR_H_
#define SWEEPD_WORKER_JOBS_HEAD_IMPORTANCE_EXECUTOR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "worker/jobs/executor.h"
#include "worker/jobs/lm_executor.h"
#include "worker/jobs/worker_metrics.h"

namespace sweepd {

struct HeadImportanceExecutorOptions {
  // Tokens per forward: the unablated pass batches max(1, max_batch_tokens /
  // (window length * heads per forward)) windows, so the forward with every
  // head copy stays within the budget; with heads_per_forward 0 a window
  // batch gets as many head copies as the budget holds (at least 1, at most
  // all heads of the layer).
  int64_t max_batch_tokens = 4096;
  // The reference algorithm, for tests and benchmarks: one full forward per
  // head (MaskHeads intervention), no prefix state, no row masks.
  bool naive = false;
  // Borrowed; Clock::Real() when null. Measures wall_seconds.
  Clock* clock = nullptr;
  // --data-root: a dataset is read only when it resolves under one of these;
  // empty = any path.
  std::vector<std::string> data_roots;
  // Borrowed; null = none. Every engine forward is recorded.
  WorkerMetrics* metrics = nullptr;
};

class HeadImportanceExecutor : public Executor {
 public:
  static absl::StatusOr<std::unique_ptr<HeadImportanceExecutor>> Create(
      std::shared_ptr<LmBackend> backend,
      const HeadImportanceExecutorOptions& options);

  std::string kind() const override { return kHeadImportanceKind; }
  void RunGroup(const std::vector<TaskInput>& tasks, TaskContext& ctx,
                const TaskSink& sink) override;

 private:
  HeadImportanceExecutor(std::shared_ptr<LmBackend> backend,
                         const HeadImportanceExecutorOptions& options);
  absl::StatusOr<TaskOutput> RunTask(const TaskInput& task,
                                     const HeadImportanceJobSpec& job,
                                     TaskContext& ctx, size_t index,
                                     double progress_base,
                                     double progress_span);

  const std::shared_ptr<LmBackend> backend_;
  const HeadImportanceExecutorOptions options_;
  Clock* const clock_;
};

}  // namespace sweepd

#endif  // SWEEPD_WORKER_JOBS_HEAD_IMPORTANCE_EXECUTOR_H_
