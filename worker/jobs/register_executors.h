// RegisterLmExecutors: the worker's executor set — every job kind that runs
// on the worker's model, registered over one shared LmBackend (one model in
// memory), each executor's options filled from the worker's LmExecutorOptions.
// Called once by the worker's assembly (worker/worker_assembly.cc).
#ifndef SWEEPD_WORKER_JOBS_REGISTER_EXECUTORS_H_
#define SWEEPD_WORKER_JOBS_REGISTER_EXECUTORS_H_

#include "absl/status/status.h"
#include "worker/jobs/executor.h"
#include "worker/jobs/lm_executor.h"

namespace sweepd {

// Creates one LmBackend (loading the worker's model) and registers executors
// sharing it: an LmExecutor for "eval" and "probe", a GenerateExecutor
// (generate_executor.h) for each of "generate" and "canary"; the
// engine-free MaterializeExecutor (materialize_executor.h) for "materialize";
// a HeadImportanceExecutor (head_importance_executor.h) for
// "head_importance"; a CaptureExecutor (capture_executor.h) for "capture"; a
// HealExecutor (heal_executor.h, no engine) for "heal"; a RetrainExecutor
// (retrain_executor.h) for "retrain". Every executor's options get
// executor_options.artifacts (the store, may be null).
absl::Status RegisterLmExecutors(const LmBackendOptions& backend_options,
                                 const LmExecutorOptions& executor_options,
                                 ExecutorRegistry* registry);

}  // namespace sweepd

#endif  // SWEEPD_WORKER_JOBS_REGISTER_EXECUTORS_H_
