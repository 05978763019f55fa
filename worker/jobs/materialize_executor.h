// The `materialize` executor (docs/CALIBRATION.md, "Materialize"): writes the
// task's model, edited as its MaterializeJobSpec says (pruned heads zeroed in
// mask mode, healed o_proj from the heal artifacts, restricted to a layer
// list), as a Hugging Face checkpoint under the worker's model root. The work
// is done by the engine-free checkpoint editor (worker/calib/
// checkpoint_editor.h); this file resolves the task's paths and artifacts and
// reports the result.
//
// Paths. out_dir is relative to the worker's first --model-root (or absolute
// inside it); it is resolved component by component so that neither ".." nor
// a symlinked directory can leave the root (PERMISSION_DENIED naming
// out_dir), and missing directories are created inside the root only. The
// base (the task's model.path, or the worker's model) and every file copied
// from it must resolve under a model root too. A worker without --model-root
// fails the task permanently (FAILED_PRECONDITION naming the flag), as does
// a task with heals on a worker without --artifact-root.
//
// Result rows: "materialized_model" value 1, labels {path: out_dir relative to
// the model root, fingerprint: the new checkpoint's model fingerprint} (what a
// later stage's model_from_stage runs on); "materialized_bytes_written",
// "materialized_tensors_changed", "materialized_tensors_total",
// "materialized_reused" (1 when a complete earlier result of the same edit was
// kept), "materialize_seconds" and "materialize_fingerprint_seconds".
//
// Ownership: the executor shares the artifact store; it owns nothing else.
// Thread-safety: RunGroup from one thread at a time (executor.h).
#ifndef SWEEPD_WORKER_JOBS_MATERIALIZE_EXECUTOR_H_
#define SWEEPD_WORKER_JOBS_MATERIALIZE_EXECUTOR_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/artifact_store.h"
#include "common/clock.h"
#include "worker/jobs/executor.h"
#include "worker/jobs/task.h"

namespace sweepd {

struct MaterializeExecutorOptions {
  // The worker's model: the base of a task without model.path.
  std::string model_dir;
  std::string model_fingerprint;  // "" = computed when needed
  // --model-root: out_dir lies under the first; the base under any.
  std::vector<std::string> model_roots;
  // The artifact store holding the heal artifacts; null = none.
  std::shared_ptr<ArtifactStore> artifacts;
  // Borrowed; Clock::Real() when null. Measures wall_seconds.
  Clock* clock = nullptr;
  // Jobs run at once by the checkpoint editor (edited layers, copies and
  // digest streams; checkpoint_editor.h); 0 = automatic.
  int threads = 0;
};

class MaterializeExecutor : public Executor {
 public:
  static absl::StatusOr<std::unique_ptr<MaterializeExecutor>> Create(
      const MaterializeExecutorOptions& options);

  std::string kind() const override { return kMaterializeKind; }
  void RunGroup(const std::vector<TaskInput>& tasks, TaskContext& ctx,
                const TaskSink& sink) override;

 private:
  explicit MaterializeExecutor(const MaterializeExecutorOptions& options);
  absl::StatusOr<TaskOutput> RunTask(const MaterializeJobSpec& job);

  const MaterializeExecutorOptions options_;
  Clock* const clock_;
};

// out_dir resolved under `root` (see the header comment): the absolute path
// (its parent exists afterwards, created inside the root if missing) and the
// path relative to the root. Exposed for tests.
struct ResolvedOutDir {
  std::string absolute;
  std::string relative;
};
absl::StatusOr<ResolvedOutDir> ResolveOutDirUnderRoot(
    const std::string& out_dir, const std::string& root);

}  // namespace sweepd

#endif  // SWEEPD_WORKER_JOBS_MATERIALIZE_EXECUTOR_H_
