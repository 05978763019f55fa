// Worker assembly: the composition root of `sweep-worker run`. From the
// worker's options (what its flags say) it derives the engine and executor
// options, fingerprints the worker's model, builds the ExecutorRegistry
// (synthetic always; eval and probe on the --model engine) and fills the
// WorkerAgent's options. sweep_worker_main.cc only parses flags, calls
// AssembleWorker and runs the agent; tests can assemble a worker the same way.
//
// Ownership: WorkerAssembly owns the registry; agent_options.registry borrows
// it, so the assembly must outlive the agent made from agent_options.
// Stateless free functions; thread-safe. AssembleWorker reads the model
// directory and loads the model: not for latency-sensitive threads.
#ifndef SWEEPD_WORKER_WORKER_ASSEMBLY_H_
#define SWEEPD_WORKER_WORKER_ASSEMBLY_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/artifact_store.h"
#include "proto/tls_config.h"
#include "worker/agent/agent.h"
#include "worker/jobs/executor.h"
#include "worker/jobs/lm_executor.h"

namespace sweepd {

// Everything `sweep-worker run` can be told (docs: its --help text).
struct WorkerOptions {
  // Coordinator address, name, max_tasks, heartbeat, RPC deadline, advertised
  // capabilities, fault switch and seed. `registry` and `drain_grace_ms` are
  // set by AssembleWorker; capabilities.model_fingerprint too when model_dir is
  // set. agent.metrics (borrowed, may be null) also reaches the LM executors.
  WorkerAgentOptions agent;
  // How long a draining worker lets running tasks finish, seconds (>= 0).
  double drain_grace_s = 30;
  // The worker's model; empty = synthetic tasks only.
  std::string model_dir;
  // "float32" | "bfloat16"; empty = float32 on cpu, bfloat16 on cuda.
  std::string dtype;
  std::string device = "cpu";       // "cpu" | "cuda"
  std::string prefix_reuse = "on";  // "on" | "off"
  std::string gemm_tuning = "off";  // "off" | "autotune"
  std::string gemm_tuning_cache;    // with autotune: shared choices file
  int64_t prefix_budget_mb = 1024;  // per-rank device memory for prefixes
  int64_t max_batch_tokens = 4096;  // tokens per engine forward
  int cpu_threads = 0;              // 0 = the engine default
  // --model-root / --data-root (repeatable): models and datasets are read only
  // when they resolve under one of these, symlinks followed; the worker's own
  // --model too. Empty = any path.
  std::vector<std::string> model_roots;
  std::vector<std::string> data_roots;
  // --artifact-root: the artifact store's directory (common/artifact_store.h,
  // docs/ARTIFACTS.md), opened by AssembleWorker and handed to the executors
  // (LmExecutorOptions::artifacts); empty = none (jobs that need it fail with
  // FAILED_PRECONDITION). Not a model or data root: executors read only
  // object paths from it, through the store.
  std::string artifact_root;
  // --verifier-command (repeatable): the programs (argv[0]) a sweep's command
  // verifier may start on this worker; empty = command verifiers refused.
  std::vector<std::string> verifier_commands;
  // --tls-ca / --tls-cert / --tls-key and the bearer token (--token-file or
  // $SWEEPD_TOKEN): the credentials of the agent's channel.
  ClientTlsOptions tls;
};

// INVALID_ARGUMENT naming the flag for options no worker can run with (a usage
// error): --drain-grace-s < 0; with a model, a bad --dtype, --gemm-tuning,
// --prefix-reuse or a negative --prefix-budget-mb; a token without TLS or bad
// --tls-* files (tls_config.h).
absl::Status ValidateWorkerOptions(const WorkerOptions& options);

// The eval/probe engine and executor options for `options` (model_dir set),
// with the model's fingerprint. INVALID_ARGUMENT as ValidateWorkerOptions.
absl::StatusOr<LmBackendOptions> LmBackendOptionsFor(
    const WorkerOptions& options, const std::string& model_fingerprint);
LmExecutorOptions LmExecutorOptionsFor(const WorkerOptions& options);

// Device memory in use per rank's device for the worker's metrics
// (prometheus_worker_metrics.h): libtorch's CUDA allocator with --device cuda,
// null (no samples) on CPU.
std::function<std::vector<int64_t>()> GpuMemoryProviderFor(
    const WorkerOptions& options);

// The `model_name` label of the worker's metrics: the --model directory's
// name, empty without a model.
std::string MetricsModelName(const WorkerOptions& options);

struct WorkerAssembly {
  std::unique_ptr<ExecutorRegistry> registry;
  // The store of --artifact-root (shared with the executors); null without.
  std::shared_ptr<ArtifactStore> artifacts;
  // options.agent with registry (borrowing `registry`), drain_grace_ms and the
  // model fingerprint filled in: what WorkerAgent::Create takes.
  WorkerAgentOptions agent_options;
};

// Validates `options`, opens the artifact store (errors name
// "--artifact-root DIR"), checks the model against --model-root
// (PERMISSION_DENIED naming "--model DIR" and the file that leaves the roots),
// fingerprints it (errors name "--model DIR"), loads it, registers the
// executors (with the store) and builds the channel credentials.
absl::StatusOr<WorkerAssembly> AssembleWorker(const WorkerOptions& options);

}  // namespace sweepd

#endif  // SWEEPD_WORKER_WORKER_ASSEMBLY_H_
