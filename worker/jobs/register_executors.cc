#include "worker/jobs/register_executors.h"

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "worker/jobs/capture_executor.h"
#include "worker/jobs/generate_executor.h"
#include "worker/jobs/head_importance_executor.h"
#include "worker/jobs/heal_executor.h"
#include "worker/jobs/materialize_executor.h"
#include "worker/jobs/retrain_executor.h"

namespace sweepd {

absl::Status RegisterLmExecutors(const LmBackendOptions& backend_options,
                                 const LmExecutorOptions& executor_options,
                                 ExecutorRegistry* registry) {
  ASSIGN_OR_RETURN(std::shared_ptr<LmBackend> backend,
                   LmBackend::Create(backend_options));
  // One executor for both kinds: eval and probe tasks of one shard share a
  // prefix group (coordinator/planner.h), which RunGroup splits into streams.
  ASSIGN_OR_RETURN(std::unique_ptr<LmExecutor> executor,
                   LmExecutor::Create(kEvalKind, backend, executor_options));
  RETURN_IF_ERROR(
      registry->RegisterFor({kEvalKind, kProbeKind}, std::move(executor)));
  // generate and canary share the backend (one model in memory).
  GenerateExecutorOptions gen;
  gen.clock = executor_options.clock;
  gen.metrics = executor_options.metrics;
  gen.data_roots = executor_options.data_roots;
  gen.verifier_commands = executor_options.verifier_commands;
  gen.artifacts = executor_options.artifacts;
  for (const char* kind : {kGenerateKind, kCanaryKind}) {
    ASSIGN_OR_RETURN(std::unique_ptr<GenerateExecutor> g,
                     GenerateExecutor::Create(kind, backend, gen));
    RETURN_IF_ERROR(registry->Register(std::move(g)));
  }
  // head_importance shares it too (docs/CALIBRATION.md).
  HeadImportanceExecutorOptions importance;
  importance.max_batch_tokens = executor_options.max_batch_tokens;
  importance.clock = executor_options.clock;
  importance.data_roots = executor_options.data_roots;
  importance.metrics = executor_options.metrics;
  ASSIGN_OR_RETURN(std::unique_ptr<HeadImportanceExecutor> hi,
                   HeadImportanceExecutor::Create(backend, importance));
  RETURN_IF_ERROR(registry->Register(std::move(hi)));
  // materialize: no engine, the worker's model as the default base; heal
  // artifacts come from the store of --artifact-root.
  MaterializeExecutorOptions mat;
  mat.model_dir = backend_options.engine.model_dir;
  mat.model_fingerprint = backend_options.model_fingerprint;
  mat.model_roots = backend_options.model_roots;
  mat.clock = executor_options.clock;
  mat.artifacts = executor_options.artifacts;
  ASSIGN_OR_RETURN(std::unique_ptr<MaterializeExecutor> m,
                   MaterializeExecutor::Create(mat));
  RETURN_IF_ERROR(registry->Register(std::move(m)));
  // Calibration (docs/CALIBRATION.md): capture shares the engine; heal reads
  // the checkpoint's o_proj only.
  CaptureExecutorOptions capture;
  capture.artifacts = executor_options.artifacts;
  capture.max_batch_tokens = executor_options.max_batch_tokens;
  capture.clock = executor_options.clock;
  capture.data_roots = executor_options.data_roots;
  capture.metrics = executor_options.metrics;
  ASSIGN_OR_RETURN(std::unique_ptr<CaptureExecutor> c,
                   CaptureExecutor::Create(backend, capture));
  RETURN_IF_ERROR(registry->Register(std::move(c)));
  HealExecutorOptions heal;
  heal.artifacts = executor_options.artifacts;
  heal.model_dir = backend_options.engine.model_dir;
  heal.model_fingerprint = backend_options.model_fingerprint;
  if (backend_options.engine.device == "cuda") {
    heal.device = absl::StrCat("cuda:", backend_options.engine.first_device);
  }
  heal.model_roots = backend_options.model_roots;
  heal.clock = executor_options.clock;
  ASSIGN_OR_RETURN(std::unique_ptr<HealExecutor> h, HealExecutor::Create(heal));
  RETURN_IF_ERROR(registry->Register(std::move(h)));
  // retrain trains one layer of the shared engine (TP 1).
  RetrainExecutorOptions retrain;
  retrain.artifacts = executor_options.artifacts;
  retrain.clock = executor_options.clock;
  retrain.data_roots = executor_options.data_roots;
  ASSIGN_OR_RETURN(std::unique_ptr<RetrainExecutor> rt,
                   RetrainExecutor::Create(backend, retrain));
  RETURN_IF_ERROR(registry->Register(std::move(rt)));
  return absl::OkStatus();
}

}  // namespace sweepd
