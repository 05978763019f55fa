// DescribeNumerics (engine.h): the facts of a build and an engine's options
// that decide its numbers, for every result's determinism record.
#include <ATen/detail/CUDAHooksInterface.h>
#include <torch/version.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "worker/engine/comm_factory.h"
#include "worker/engine/device_stats.h"
#include "worker/engine/engine.h"
#include "worker/engine/torch_compat.h"

namespace sweepd::engine {
namespace {

// Version codes: the CUDA runtime's is major * 1000 + minor * 10; cuDNN 8's
// major * 1000 + minor * 100 + patch, cuDNN 9's major * 10000 + minor * 100 +
// patch.
std::string CudaRuntimeVersion(long code) {
  return absl::StrCat(code / 1000, ".", (code % 1000) / 10);
}

std::string CudnnVersion(long code) {
  const long major = code >= 90000 ? code / 10000 : code / 1000;
  const long rest = code >= 90000 ? code % 10000 : code % 1000;
  return absl::StrCat(major, ".", rest / 100, ".", rest % 100);
}

}  // namespace

NumericsInfo DescribeNumerics(const EngineOptions& options) {
  NumericsInfo info;
  info.dtype = DTypeName(options.dtype);
  info.tensor_parallel = options.tp_size;
  const bool cuda = options.device == "cuda";
  if (cuda) {
    info.device_kind = DescribeCudaDevice(options.first_device).name;
    if (info.device_kind.empty()) info.device_kind = "cuda";
    info.attention_path = AttentionPathName(options.attention_path);
    info.gemm_tuning = GemmTuningName(options.gemm_tuning);
    info.nccl_version = NcclVersion();
  } else {
    info.device_kind = "cpu";
    // SDPA only where libtorch has it with a scale (torch_compat.h).
    info.attention_path =
        options.use_sdpa && SWEEPD_TORCH_HAS_SDPA_SCALE ? "sdpa" : "eager";
    info.gemm_tuning = GemmTuningName(GemmTuning::kOff);
  }
  info.libtorch_version = TORCH_VERSION;
  const at::CUDAHooksInterface& hooks = at::detail::getCUDAHooks();
  if (cuda && hooks.hasCUDA()) {
    info.cuda_version = CudaRuntimeVersion(hooks.versionCUDART());
    if (hooks.hasCuDNN())
      info.cudnn_version = CudnnVersion(hooks.versionCuDNN());
  }
  return info;
}

}  // namespace sweepd::engine
