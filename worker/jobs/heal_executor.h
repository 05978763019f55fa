// The "heal" job executor (docs/CALIBRATION.md, "Heal"): the ridge refit of
// one layer's o_proj for the heads a prune keeps, from the capture Grams of
// attn_heads[layer] (summed in the order given, float64) and the base
// checkpoint's o_proj weight; the math is worker/calib/ridge.h. Writes the
// healed weight as the artifact "heal/o_proj/layer<L>" (safetensors, tensor
// "self_attn.o_proj.weight" F32 at the full shape [hidden, heads*head_dim]
// with the removed heads' columns zero, usable by a replace_layer
// intervention and by materialize) and reports heal_residual_rel
// {layer, split: calibration|heldout}, heal_lambda, heal_kept_heads,
// heal_solver {solver} and heal_seconds.
//
// Needs no engine: it reads config.json and the one o_proj tensor of the
// checkpoint; the solve runs on the host or the worker's GPU (device).
// Ownership: shares the artifact store; borrows the clock. Thread-safety:
// RunGroup from one thread at a time.
#ifndef SWEEPD_WORKER_JOBS_HEAL_EXECUTOR_H_
#define SWEEPD_WORKER_JOBS_HEAL_EXECUTOR_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/artifact_store.h"
#include "common/clock.h"
#include "worker/jobs/executor.h"
#include "worker/jobs/task.h"

namespace sweepd {

struct HealExecutorOptions {
  // Where Grams are read and the healed weight is written; null: every heal
  // task fails with FAILED_PRECONDITION (no --artifact-root).
  std::shared_ptr<ArtifactStore> artifacts;
  // The worker's model, for tasks whose model.path is empty or whose
  // model.fingerprint is the worker's (as LmBackend::Acquire decides: the
  // coordinator's path may not exist on this worker).
  std::string model_dir;
  std::string model_fingerprint;
  // --model-root: a task's model is read only under these; empty = any.
  std::vector<std::string> model_roots;
  Clock* clock = nullptr;  // borrowed; Clock::Real() when null
  // Where the float64 solve runs: "" (host) or "cuda:<n>" (the worker's
  // first GPU; a libtorch error there, e.g. out of memory, retries on the
  // host).
  std::string device;
};

class HealExecutor : public Executor {
 public:
  static absl::StatusOr<std::unique_ptr<HealExecutor>> Create(
      const HealExecutorOptions& options);

  std::string kind() const override { return kHealKind; }
  void RunGroup(const std::vector<TaskInput>& tasks, TaskContext& ctx,
                const TaskSink& sink) override;

 private:
  explicit HealExecutor(const HealExecutorOptions& options);
  absl::StatusOr<TaskOutput> RunTask(const HealJobSpec& job);

  const HealExecutorOptions options_;
  Clock* const clock_;
};

}  // namespace sweepd

#endif  // SWEEPD_WORKER_JOBS_HEAL_EXECUTOR_H_
