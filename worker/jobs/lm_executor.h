// Language-model job executors on the engine: kinds "eval" (NLL / perplexity
// of a text shard under an intervention set, strided windows, BOS policy,
// per-category rows) and "probe" (per-layer block influence, residual norm and
// logit-lens target rank, decision layer, per category), with prefix reuse
// inside a group: one unablated pass per window batch keeps the residual
// entering every layer, and each intervention task starts from its first
// touched layer; baseline probe tasks of an eval task's shard take their
// statistics from the eval stream's unablated pass when that is exact.
// Metrics follow docs/METRICS.md; the algorithm is described in docs/JOBS.md.
//
// The executor runs on an LmBackend (lm_backend.h: the engine of one model at
// a time and the tokenizers), shared with the worker's other engine-backed
// executors. Its parts: lm_stream.h (tokenised, batched streams and the probe
// records an eval stream carries), lm_accumulator.h (per-task sums and metric
// rows); RunGroup here plans the group's streams and shared passes.
//
// Ownership: executors share the backend (shared_ptr); the backend owns its
// engine and tokenizers and hands out shared handles, so a model that is
// replaced stays alive until the group using it finishes. Thread-safety:
// LmBackend is thread-safe; RunGroup may be called from one thread at a time
// per executor (calls on the two executors may overlap: the engine serialises
// forwards).
#ifndef SWEEPD_WORKER_JOBS_LM_EXECUTOR_H_
#define SWEEPD_WORKER_JOBS_LM_EXECUTOR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/artifact_store.h"
#include "common/clock.h"
#include "worker/jobs/executor.h"
#include "worker/jobs/lm_backend.h"
#include "worker/jobs/task.h"
#include "worker/jobs/worker_metrics.h"

namespace sweepd {

struct LmExecutorOptions {
  // Share one unablated pass per window batch among the group's tasks
  // (`--prefix-reuse on`); false runs every task with full forwards.
  bool prefix_reuse = true;
  // Windows of equal length are batched up to this many tokens per forward.
  int64_t max_batch_tokens = 4096;
  // Borrowed; Clock::Real() when null. Measures wall_seconds.
  Clock* clock = nullptr;
  // --data-root: a dataset is read only when it resolves under one of these;
  // empty = any path.
  std::vector<std::string> data_roots;
  // Programs a generate task's command verifier may start (GenerateExecutor).
  std::vector<std::string> verifier_commands;
  // Borrowed; null = none. Every engine forward is recorded (layer-forwards,
  // seconds).
  WorkerMetrics* metrics = nullptr;
  // The worker's artifact store (sweep-worker --artifact-root); null = none.
  // RegisterLmExecutors (register_executors.h) hands it to every executor it
  // builds; a job that
  // needs it fails with FAILED_PRECONDITION "... needs --artifact-root on the
  // worker" when it is null (RequireArtifactStore, job_artifacts.h).
  std::shared_ptr<ArtifactStore> artifacts;
};

// Runs groups of eval and/or probe tasks (a group may mix both; each task is
// run as its own kind). kind() is the kind it is registered for.
class LmExecutor : public Executor {
 public:
  // `kind` is "eval" or "probe".
  static absl::StatusOr<std::unique_ptr<LmExecutor>> Create(
      const std::string& kind, std::shared_ptr<LmBackend> backend,
      const LmExecutorOptions& options);

  std::string kind() const override { return kind_; }
  void RunGroup(const std::vector<TaskInput>& tasks, TaskContext& ctx,
                const TaskSink& sink) override;

 private:
  LmExecutor(std::string kind, std::shared_ptr<LmBackend> backend,
             const LmExecutorOptions& options);

  const std::string kind_;
  const std::shared_ptr<LmBackend> backend_;
  const LmExecutorOptions options_;
  Clock* const clock_;
};

}  // namespace sweepd

#endif  // SWEEPD_WORKER_JOBS_LM_EXECUTOR_H_
