// The language-model backend of the engine-backed executors: the engine of one
// model at a time (a task for another model or dtype loads that one on demand,
// in place of the current one) and the tokenizers. One backend is shared by
// the "eval" and "probe" executors of a worker (lm_executor.h) and by the
// other executors RegisterLmExecutors builds (register_executors.h).
//
// Ownership: executors share the backend (shared_ptr); the backend owns its
// engine and tokenizers and hands out shared handles, so a model that is
// replaced stays alive until the group using it finishes. Thread-safety:
// LmBackend is thread-safe (one mutex; the engine serialises forwards).
#ifndef SWEEPD_WORKER_JOBS_LM_BACKEND_H_
#define SWEEPD_WORKER_JOBS_LM_BACKEND_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/tokenizer.h"
#include "worker/engine/engine.h"
#include "worker/jobs/task.h"

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

}  // namespace sweepd

#endif  // SWEEPD_WORKER_JOBS_LM_BACKEND_H_
