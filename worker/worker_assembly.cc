// Worker assembly. See worker_assembly.h.
#include "worker/worker_assembly.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/model_fingerprint.h"
#include "common/path_confinement.h"
#include "common/status.h"
#include "worker/engine/device_stats.h"
#include "worker/engine/engine.h"
#include "worker/jobs/register_executors.h"
#include "worker/jobs/synthetic_executor.h"

namespace sweepd {
namespace {

std::string EffectiveDType(const WorkerOptions& options) {
  if (!options.dtype.empty()) return options.dtype;
  return options.device == "cuda" ? "bfloat16" : "float32";
}

absl::Status BadModelFlags(const WorkerOptions& options) {
  return absl::InvalidArgumentError(absl::StrFormat(
      "bad --dtype '%s', --gemm-tuning '%s' (off|autotune), --prefix-reuse "
      "'%s' (on|off) or --prefix-budget-mb %lld",
      options.dtype, options.gemm_tuning, options.prefix_reuse,
      static_cast<long long>(options.prefix_budget_mb)));
}

}  // namespace

absl::Status ValidateWorkerOptions(const WorkerOptions& options) {
  if (options.drain_grace_s < 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--drain-grace-s must be >= 0, got %g", options.drain_grace_s));
  }
  if (options.model_dir.empty()) return absl::OkStatus();
  return LmBackendOptionsFor(options, "").status();
}

absl::StatusOr<LmBackendOptions> LmBackendOptionsFor(
    const WorkerOptions& options, const std::string& model_fingerprint) {
  auto dtype = engine::ParseDType(EffectiveDType(options));
  auto tuning = engine::ParseGemmTuning(options.gemm_tuning);
  if (!dtype.ok() || !tuning.ok() ||
      (options.prefix_reuse != "on" && options.prefix_reuse != "off") ||
      options.prefix_budget_mb < 0) {
    return BadModelFlags(options);
  }
  LmBackendOptions backend;
  backend.engine.model_dir = options.model_dir;
  backend.engine.device = options.device;
  backend.engine.tp_size =
      std::max(1, options.agent.capabilities.tensor_parallel);
  backend.engine.prefix_device_budget_bytes = options.prefix_budget_mb << 20;
  backend.engine.cpu_threads_per_rank = options.cpu_threads;
  backend.engine.dtype = *dtype;
  backend.engine.gemm_tuning = *tuning;
  backend.engine.gemm_tuning_cache = options.gemm_tuning_cache;
  backend.model_fingerprint = model_fingerprint;
  backend.model_roots = options.model_roots;
  return backend;
}

LmExecutorOptions LmExecutorOptionsFor(const WorkerOptions& options) {
  LmExecutorOptions lm;
  lm.prefix_reuse = options.prefix_reuse == "on";
  lm.max_batch_tokens = options.max_batch_tokens;
  lm.data_roots = options.data_roots;
  lm.verifier_commands = options.verifier_commands;
  lm.metrics = options.agent.metrics;
  return lm;
}

std::function<std::vector<int64_t>()> GpuMemoryProviderFor(
    const WorkerOptions& options) {
  if (options.device != "cuda") return nullptr;
  const int devices = std::max(1, options.agent.capabilities.tensor_parallel);
  return [devices] {
    std::vector<int64_t> bytes(devices);
    for (int d = 0; d < devices; ++d)
      bytes[d] = engine::DeviceAllocatedBytes(d);
    return bytes;
  };
}

std::string MetricsModelName(const WorkerOptions& options) {
  std::string dir = options.model_dir;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  const size_t slash = dir.rfind('/');
  return slash == std::string::npos ? dir : dir.substr(slash + 1);
}

namespace {

void AdvertiseDevice(const WorkerOptions& options, WorkerCapabilityInfo* caps) {
  if (options.device != "cuda") return;
  // The real device, unless --device-kind / --gpu-* said otherwise (a CUDA
  // worker never advertises the CPU default).
  const engine::CudaDeviceInfo device = engine::DescribeCudaDevice(0);
  if (caps->device_kind.empty() || caps->device_kind == "cpu") {
    caps->device_kind = device.name.empty() ? "cuda" : device.name;
  }
  if (caps->gpu_count == 0)
    caps->gpu_count = std::max(1, caps->tensor_parallel);
  if (caps->gpu_memory_bytes == 0) {
    caps->gpu_memory_bytes = device.total_memory_bytes;
  }
}

}  // namespace

absl::StatusOr<WorkerAssembly> AssembleWorker(const WorkerOptions& options) {
  RETURN_IF_ERROR(ValidateWorkerOptions(options));
  WorkerAssembly out;
  out.agent_options = options.agent;
  out.agent_options.drain_grace_ms =
      static_cast<int64_t>(options.drain_grace_s * 1000);
  AdvertiseDevice(options, &out.agent_options.capabilities);
  ASSIGN_OR_RETURN(out.agent_options.credentials,
                   MakeChannelCredentials(options.tls));
  if (!options.artifact_root.empty()) {
    absl::StatusOr<std::unique_ptr<ArtifactStore>> store =
        ArtifactStore::Open(options.artifact_root);
    if (!store.ok()) {
      return absl::Status(
          store.status().code(),
          absl::StrCat("--artifact-root ", options.artifact_root, ": ",
                       store.status().message()));
    }
    out.artifacts = std::move(*store);
  }
  if (!options.model_dir.empty()) {
    absl::Status confined =
        CheckModelDirConfined(options.model_dir, options.model_roots);
    if (!confined.ok()) {
      return absl::Status(confined.code(),
                          absl::StrCat("--model ", options.model_dir, ": ",
                                       confined.message()));
    }
    auto fingerprint = ComputeModelFingerprint(
        options.model_dir, ModelFingerprintOptions::WithDefaultCache());
    if (!fingerprint.ok()) {
      return absl::Status(fingerprint.status().code(),
                          absl::StrCat("--model ", options.model_dir, ": ",
                                       fingerprint.status().ToString()));
    }
    out.agent_options.capabilities.model_fingerprint = *fingerprint;
  }

  out.registry = std::make_unique<ExecutorRegistry>();
  ASSIGN_OR_RETURN(std::unique_ptr<SyntheticExecutor> synthetic,
                   SyntheticExecutor::Create(SyntheticExecutorOptions{}));
  RETURN_IF_ERROR(out.registry->Register(std::move(synthetic)));
  if (!options.model_dir.empty()) {
    ASSIGN_OR_RETURN(
        LmBackendOptions backend,
        LmBackendOptionsFor(options,
                            out.agent_options.capabilities.model_fingerprint));
    LmExecutorOptions executor_options = LmExecutorOptionsFor(options);
    executor_options.artifacts = out.artifacts;
    absl::Status s =
        RegisterLmExecutors(backend, executor_options, out.registry.get());
    if (!s.ok()) {
      return absl::Status(s.code(), absl::StrCat("--model ", options.model_dir,
                                                 ": ", s.ToString()));
    }
  }
  out.agent_options.registry = out.registry.get();
  return out;
}

}  // namespace sweepd
