// The generate and canary job kinds (docs/GENERATION.md): each task samples
// N continuations of every prompt of its inline prompts and dataset shard on
// the engine (continuous batching, generator.h) under the task's
// interventions, keeps every sample (text, token count, finish reason, sum of
// log-probabilities) and scores it with the sweep's verifier; a canary task
// decodes its cases greedily and passes a case when every expected substring
// appears. Best-of-k curves are computed later from the kept samples
// (common/best_of_k.h), never by re-running.
//
// Shares the LmBackend (engine + tokenizers) of the eval and probe executors.
// Ownership and threads: as LmExecutor (lm_executor.h).
#ifndef SWEEPD_WORKER_JOBS_GENERATE_EXECUTOR_H_
#define SWEEPD_WORKER_JOBS_GENERATE_EXECUTOR_H_

#include <memory>
#include <string>
#include <vector>

#include "common/artifact_store.h"
#include "common/clock.h"
#include "worker/jobs/executor.h"
#include "worker/jobs/lm_executor.h"
#include "worker/jobs/worker_metrics.h"

namespace sweepd {

struct GenerateExecutorOptions {
  // Cache page size of the decode sessions (tokens).
  int page_size = 16;
  // Borrowed; Clock::Real() when null. Measures wall_seconds.
  Clock* clock = nullptr;
  // --data-root: a prompt dataset is read only when it resolves under one of
  // these (common/path_confinement.h); empty = any path.
  std::vector<std::string> data_roots;
  // The programs (argv[0], as written in the spec) a command verifier may
  // start: a sweep's submitter chooses the command, so a worker runs only
  // what its operator allowed (sweep-worker --verifier-command). Empty = none.
  std::vector<std::string> verifier_commands;
  // Borrowed; null = none. Prompt and generated tokens, time to first token,
  // inter-token and request latency (vLLM's names), engine forwards.
  WorkerMetrics* metrics = nullptr;
  // The worker's artifact store (steering vectors and replace_layer weights
  // are read through it); null = none.
  std::shared_ptr<ArtifactStore> artifacts;
};

class GenerateExecutor : public Executor {
 public:
  // `kind` is "generate" or "canary".
  static absl::StatusOr<std::unique_ptr<GenerateExecutor>> Create(
      const std::string& kind, std::shared_ptr<LmBackend> backend,
      const GenerateExecutorOptions& options);

  std::string kind() const override { return kind_; }
  void RunGroup(const std::vector<TaskInput>& tasks, TaskContext& ctx,
                const TaskSink& sink) override;

 private:
  GenerateExecutor(std::string kind, std::shared_ptr<LmBackend> backend,
                   const GenerateExecutorOptions& options);
  absl::StatusOr<TaskOutput> RunTask(const TaskInput& task, TaskContext& ctx,
                                     size_t index);

  const std::string kind_;
  const std::shared_ptr<LmBackend> backend_;
  const GenerateExecutorOptions options_;
  Clock* const clock_;
};

}  // namespace sweepd

#endif  // SWEEPD_WORKER_JOBS_GENERATE_EXECUTOR_H_
