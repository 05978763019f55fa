// Internal to sweepd::engine, CUDA builds only (SWEEPD_ENABLE_CUDA): turns a
// kernels/ CUDA return code into an exception that unwinds to the rank's edge,
// and maps the compute dtype to kernels::Dtype. Header-only, stateless.
#ifndef SWEEPD_WORKER_ENGINE_CUDA_CHECK_H_
#define SWEEPD_WORKER_ENGINE_CUDA_CHECK_H_

#include <ATen/ATen.h>

#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "kernels/cuda_util.h"
#include "kernels/dtype.h"

namespace sweepd::engine::internal {

inline void CudaCheck(int code, const char* what) {
  if (code != 0) {
    throw std::runtime_error(absl::StrCat(what, ": CUDA error ", code, " (",
                                          kernels::CudaErrorString(code), ")"));
  }
}

inline kernels::Dtype OpDtypeOf(at::ScalarType dtype) {
  return dtype == at::kBFloat16 ? kernels::Dtype::kBFloat16
                                : kernels::Dtype::kFloat32;
}

}  // namespace sweepd::engine::internal

#endif  // SWEEPD_WORKER_ENGINE_CUDA_CHECK_H_
