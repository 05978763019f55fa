// Internal to sweepd::engine, CUDA builds only (SWEEPD_ENABLE_CUDA): turns a
// cuda_ops return code into an exception that unwinds to the rank's edge, and
// maps the compute dtype to cuda_ops::Dtype. Header-only, stateless.
#ifndef SWEEPD_WORKER_ENGINE_CUDA_CHECK_H_
#define SWEEPD_WORKER_ENGINE_CUDA_CHECK_H_

#include <ATen/ATen.h>

#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "worker/engine/cuda_ops.h"

namespace sweepd::engine::internal {

inline void CudaCheck(int code, const char* what) {
  if (code != 0) {
    throw std::runtime_error(absl::StrCat(what, ": CUDA error ", code, " (",
                                          cuda_ops::ErrorString(code), ")"));
  }
}

inline cuda_ops::Dtype OpDtypeOf(at::ScalarType dtype) {
  return dtype == at::kBFloat16 ? cuda_ops::Dtype::kBFloat16
                                : cuda_ops::Dtype::kFloat32;
}

}  // namespace sweepd::engine::internal

#endif  // SWEEPD_WORKER_ENGINE_CUDA_CHECK_H_
