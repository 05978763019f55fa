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
// LmBackend holds the engine (one model at a time; a task for another model or
// dtype loads that one on demand) and the tokenizers. One backend is shared by
// the "eval" and "probe" executors of a worker.
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
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/artifact_store.h"
#include "common/clock.h"
#include "common/tokenizer.h"
#include "worker/engine/engine.h"
#include "worker/jobs/executor.h"
#include "worker/jobs/task.h"
#include "worker/jobs/worker_metrics.h"

namespace sweepd {

struct LmBackendOptions {
  // The worker's model (engine.model_dir), loaded at Create, and the template
  // for models loaded on demand: dtype is the default compute dtype (tasks may
  // ask for another), tp_size / device / prefix_device_budget_bytes apply to
  // every model.
  engine::EngineOptions engine;
  // Fingerprint of engine.model_dir as the coordinator computes it ("" =
  // unknown: tasks are then matched by model path).
  std::string model_fingerprint;
  // Tokenizer of the worker's model; "" = <model_dir>/tokenizer.json.
  std::string tokenizer_path;
  // --model-root: a model a task names is loaded only when its directory and
  // every file of it that is read resolve under one of these
  // (common/path_confinement.h); empty = any path.
  std::vector<std::string> model_roots;
};

class LmBackend {
 public:
  // Loads the worker's model and its tokenizer; errors name the directory or
  // file.
  static absl::StatusOr<std::shared_ptr<LmBackend>> Create(
      const LmBackendOptions& options);

  struct Model {
    std::shared_ptr<engine::Engine> engine;
    std::shared_ptr<const Tokenizer> tokenizer;
    // The directory the engine was loaded from.
    std::string model_dir;
  };

  // The engine and tokenizer for a task's model reference: the loaded model
  // when the fingerprint (else the path) and dtype match, otherwise the model
  // at ref.path, loaded now in place of the current one. UNAVAILABLE
  // (retryable: another worker may hold the model) when it cannot be loaded;
  // FAILED_PRECONDITION for a dtype name that is not float32/bfloat16.
  absl::StatusOr<Model> Acquire(const ModelRefSpec& ref);

  // Layer-forwards executed by every engine this backend has loaded.
  int64_t total_layer_forwards() const;

 private:
  explicit LmBackend(const LmBackendOptions& options);
  absl::Status LoadLocked(const std::string& model_dir,
                          const std::string& fingerprint, engine::DType dtype,
                          const std::string& tokenizer_path)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::shared_ptr<const Tokenizer>> TokenizerLocked(
      const std::string& path) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const LmBackendOptions options_;
  mutable absl::Mutex mu_;
  std::shared_ptr<engine::Engine> engine_ ABSL_GUARDED_BY(mu_);
  std::string model_dir_ ABSL_GUARDED_BY(mu_);
  std::string fingerprint_ ABSL_GUARDED_BY(mu_);
  engine::DType dtype_ ABSL_GUARDED_BY(mu_) = engine::DType::kFloat32;
  std::shared_ptr<const Tokenizer> tokenizer_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<const Tokenizer>> tokenizers_
      ABSL_GUARDED_BY(mu_);
  int64_t retired_layer_forwards_ ABSL_GUARDED_BY(mu_) = 0;
};

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
