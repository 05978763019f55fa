#include "worker/engine/skinny_linear.h"

#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/skinny_gemm.h"
#if SWEEPD_KERNELS_CUDA
#include "kernels/cuda_util.h"
#endif

namespace sweepd::engine::internal {
#if SWEEPD_KERNELS_CUDA
namespace {

bool RowsAligned(const at::Tensor& t) {
  return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0 &&
         t.stride(0) % 8 == 0 && t.stride(1) == 1;
}

}  // namespace
#endif

bool SkinnyLinear::Takes(const at::Tensor& x, const at::Tensor& w) {
#if SWEEPD_KERNELS_CUDA
  return x.is_cuda() && x.scalar_type() == at::kBFloat16 &&
         w.scalar_type() == at::kBFloat16 && x.dim() == 2 && w.dim() == 2 &&
         x.size(1) == w.size(1) &&
         kernels::SkinnyGemmSupported(x.size(0), w.size(0), x.size(1)) &&
         RowsAligned(x) && RowsAligned(w);
#else
  (void)x;
  (void)w;
  return false;
#endif
}

at::Tensor SkinnyLinear::Run(const at::Tensor& x, const at::Tensor& w,
                             void* stream) {
#if SWEEPD_KERNELS_CUDA
  const int64_t m = x.size(0), n = w.size(0), k = x.size(1);
  at::Tensor y = at::empty({m, n}, x.options());
  kernels::SkinnyGemmArgs a;
  a.m = m;
  a.n = n;
  a.k = k;
  a.x = x.data_ptr();
  a.ldx = x.stride(0);
  a.w = w.data_ptr();
  a.ldw = w.stride(0);
  a.y = y.data_ptr();
  a.ldy = n;
  a.splits = kernels::SkinnyGemmCounters(n) > kCounterSlots
                 ? 1
                 : kernels::SkinnyGemmSplits(
                       m, n, k, kernels::SkinnyGemmResidentBlocks(m));
  at::Tensor ws;
  if (a.splits > 1) {
    if (!counters_.defined()) {
      counters_ = at::zeros({kCounterSlots}, x.options().dtype(at::kInt));
    }
    a.counters = counters_.data_ptr<int32_t>();
    ws = at::empty({kernels::SkinnyGemmWorkspaceBytes(a)},
                   x.options().dtype(at::kByte));
    a.workspace = ws.data_ptr();
  }
  if (const int rc = kernels::SkinnyGemmCuda(a, stream); rc != 0) {
    throw std::runtime_error(std::string("SkinnyGemm: ") +
                             kernels::CudaErrorString(rc));
  }
  return y;
#else
  (void)x;
  (void)w;
  (void)stream;
  throw std::logic_error("SkinnyLinear::Run: a build without CUDA kernels");
#endif
}

}  // namespace sweepd::engine::internal
