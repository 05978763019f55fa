// The "capture" job executor (docs/CALIBRATION.md, "Capture"): runs a dataset
// shard through the engine and records activations at capture points, as
// raw safetensors shards ("raw/<point>/<dataset>/shard<i>": bf16 or f32
// "activations" [tokens, ...] and I64 "positions" [tokens, 2] = (document,
// position)) and/or Grams accumulated on the device in float64
// ("gram/<point>/<dataset>/shard<i>", worker/calib/gram_file.h), written to
// the artifact store. Positions: every token, the last token, or seed 003's
// sampler (k per document at or beyond min_position, a per-document RNG keyed
// by (seed, document)); each token of a document is taken once, from the
// first window that holds it. Deterministic: the same task on the same engine
// configuration writes bit-identical artifacts. Gram-only tasks checkpoint
// their sums in the store and resume from them when re-run
// (checkpoint_tokens).
//
// Ownership: shares the LmBackend (the engine) with the other language-model
// executors and the artifact store; borrows the clock and metrics.
// Thread-safety: RunGroup from one thread at a time.
#ifndef SWEEPD_WORKER_JOBS_CAPTURE_EXECUTOR_H_
#define SWEEPD_WORKER_JOBS_CAPTURE_EXECUTOR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/artifact_store.h"
#include "common/clock.h"
#include "worker/jobs/executor.h"
#include "worker/jobs/lm_executor.h"
#include "worker/jobs/task.h"
#include "worker/jobs/worker_metrics.h"

namespace sweepd {

struct CaptureExecutorOptions {
  // The store artifacts are written to; null: every capture task fails with
  // FAILED_PRECONDITION (the worker has no --artifact-root).
  std::shared_ptr<ArtifactStore> artifacts;
  // Windows of equal length are batched up to this many tokens per forward.
  int64_t max_batch_tokens = 4096;
  Clock* clock = nullptr;  // borrowed; Clock::Real() when null
  // --data-root: datasets are read only under these; empty = any path.
  std::vector<std::string> data_roots;
  WorkerMetrics* metrics = nullptr;  // borrowed; may be null
  // Gram-only tasks (gram without raw): every this many captured tokens (whole
  // batches) the device sums are added to float64 host sums, which are
  // checkpointed in the store under the task key; a re-run of the task (after
  // preemption) resumes from the last checkpoint. The segments are part of
  // the summation order, so an interrupted and an uninterrupted run write the
  // same bytes. 0 = one segment, no checkpoints.
  int64_t checkpoint_tokens = int64_t{1} << 22;
};

// The positions a capture keeps of one document of `num_tokens` tokens
// (ascending). kSample: min(k, eligible) distinct positions in
// [min_position, num_tokens), drawn by SplitMix64 keyed by SHA-256 of
// (seed, document) (Floyd's algorithm), so a document's positions do not
// depend on the shard split or on other documents.
std::vector<int64_t> CapturePositionsOf(const CapturePositionsSpec& spec,
                                        int64_t document, int64_t num_tokens);

class CaptureExecutor : public Executor {
 public:
  static absl::StatusOr<std::unique_ptr<CaptureExecutor>> Create(
      std::shared_ptr<LmBackend> backend,
      const CaptureExecutorOptions& options);

  std::string kind() const override { return kCaptureKind; }
  void RunGroup(const std::vector<TaskInput>& tasks, TaskContext& ctx,
                const TaskSink& sink) override;

 private:
  CaptureExecutor(std::shared_ptr<LmBackend> backend,
                  const CaptureExecutorOptions& options);
  absl::StatusOr<TaskOutput> RunTask(const TaskInput& task,
                                     const CaptureJobSpec& job,
                                     TaskContext& ctx, size_t index);

  const std::shared_ptr<LmBackend> backend_;
  const CaptureExecutorOptions options_;
  Clock* const clock_;
};

}  // namespace sweepd

#endif  // SWEEPD_WORKER_JOBS_CAPTURE_EXECUTOR_H_
