// The "retrain" job executor (docs/CALIBRATION.md, "Retrain"; seed 002's
// "briefly retrained" layer): re-initialises decoder layer L from init_seed
// exactly as the reinit intervention does and trains only that layer's
// weights with AdamW (float32 master weights, whatever the compute dtype) so
// that its output reproduces the original layer's output — mean squared
// error on the residual leaving layer L, given the original model's residual
// entering it (a no-grad forward of layers < L, once per batch) — on windows
// of the task's dataset shard (its documents tokenised and concatenated into
// one stream, cut by the job's windowing, batch_windows windows per step in a
// seeded per-epoch order).
//
// Every checkpoint_every steps the layer, the AdamW state (exp_avg,
// exp_avg_sq, step), the data position and the RNG state are saved as one
// safetensors object and set as the checkpoint of key "<task_key>/retrain";
// a re-run of the task resumes from it and ends with the same bits as an
// uninterrupted run (CPU float32). Output: artifact "retrain/layer<L>"
// (safetensors, F32, tensors named relative to the layer at full shapes: a
// replace_layer intervention uses it as is) and metric rows retrain_loss
// {layer, step}, retrain_initial_loss, retrain_final_loss, retrain_seconds,
// retrain_tokens, retrain_steps.
//
// Tensor parallel 1 only (engine::LayerTrainer). Ownership: shares the
// LmBackend and the artifact store; borrows the clock and metrics.
// Thread-safety: RunGroup from one thread at a time.
#ifndef SWEEPD_WORKER_JOBS_RETRAIN_EXECUTOR_H_
#define SWEEPD_WORKER_JOBS_RETRAIN_EXECUTOR_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/artifact_store.h"
#include "common/clock.h"
#include "worker/jobs/executor.h"
#include "worker/jobs/lm_executor.h"
#include "worker/jobs/task.h"

namespace sweepd {

struct RetrainExecutorOptions {
  // Checkpoints and the trained layer go here; null: every retrain task fails
  // with FAILED_PRECONDITION (the worker has no --artifact-root).
  std::shared_ptr<ArtifactStore> artifacts;
  Clock* clock = nullptr;  // borrowed; Clock::Real() when null
  // --data-root: datasets are read only under these; empty = any path.
  std::vector<std::string> data_roots;
  // At most this many retrain_loss rows per task (every step when steps <=
  // max_loss_rows, else every ceil(steps / max_loss_rows)-th and the last).
  int max_loss_rows = 200;
  // Tests: called after every completed step (after its checkpoint, if any)
  // with the number of steps done; returning false stops the attempt there
  // as a preemption would (the task fails with ABORTED, retryable, and a
  // re-run resumes from the last checkpoint).
  std::function<bool(int steps_done)> after_step;
};

class RetrainExecutor : public Executor {
 public:
  static absl::StatusOr<std::unique_ptr<RetrainExecutor>> Create(
      std::shared_ptr<LmBackend> backend,
      const RetrainExecutorOptions& options);

  std::string kind() const override { return kRetrainKind; }
  void RunGroup(const std::vector<TaskInput>& tasks, TaskContext& ctx,
                const TaskSink& sink) override;

 private:
  RetrainExecutor(std::shared_ptr<LmBackend> backend,
                  const RetrainExecutorOptions& options);
  absl::StatusOr<TaskOutput> RunTask(const TaskInput& task,
                                     const RetrainJobSpec& job,
                                     TaskContext& ctx, size_t index);

  const std::shared_ptr<LmBackend> backend_;
  const RetrainExecutorOptions options_;
  Clock* const clock_;
};

}  // namespace sweepd

#endif  // SWEEPD_WORKER_JOBS_RETRAIN_EXECUTOR_H_
