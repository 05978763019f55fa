#include "worker/jobs/determinism.h"

#include "common/version.h"

namespace sweepd {

DeterminismRecord ToDeterminismRecord(const engine::NumericsInfo& n) {
  DeterminismRecord r;
  r.dtype = n.dtype;
  r.device_kind = n.device_kind;
  r.tensor_parallel = n.tensor_parallel;
  r.attention_path = n.attention_path;
  r.gemm_tuning = n.gemm_tuning;
  r.libtorch_version = n.libtorch_version;
  r.cuda_version = n.cuda_version;
  r.cudnn_version = n.cudnn_version;
  r.nccl_version = n.nccl_version;
  r.code_version = BuildVersion();
  return r;
}

}  // namespace sweepd
