// Kernels of kernels/block_influence.h (moved from worker/engine/cuda_ops.cu).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/block_influence.h"
#include "kernels/device_util.cuh"

namespace sweepd::kernels {
namespace {

template <typename T>
__global__ void RowCosNormKernel(const T* a, const T* b, int dim, float* bi,
                                 float* norm_b) {
  __shared__ float red[32];
  const int64_t r = blockIdx.x;
  const T* ar = a + r * dim;
  const T* br = b + r * dim;
  float dot = 0.0f, aa = 0.0f, bb = 0.0f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    const float x = Io<T>::Load(ar + i);
    const float y = Io<T>::Load(br + i);
    dot += x * y;
    aa += x * x;
    bb += y * y;
  }
  dot = BlockSum(dot, red);
  aa = BlockSum(aa, red);
  bb = BlockSum(bb, red);
  if (threadIdx.x == 0) {
    const float nb = sqrtf(bb);
    bi[r] = 1.0f - dot / fmaxf(sqrtf(aa) * nb, 1e-30f);
    norm_b[r] = nb;
  }
}

}  // namespace

int RowCosNormCuda(Dtype dtype, const void* a, const void* b, int64_t rows,
                   int64_t dim, float* block_influence, float* norm_b,
                   void* stream) {
  if (rows < 0 || rows > 0x7fffffff || dim < 1 || dim > 0x7fffffff ||
      a == nullptr || b == nullptr || block_influence == nullptr ||
      norm_b == nullptr) {
    return kInvalid;
  }
  if (rows == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  const unsigned grid = static_cast<unsigned>(rows);
  if (dtype == Dtype::kBFloat16) {
    RowCosNormKernel<__nv_bfloat16><<<grid, RowThreads(dim), 0, s>>>(
        static_cast<const __nv_bfloat16*>(a),
        static_cast<const __nv_bfloat16*>(b), static_cast<int>(dim),
        block_influence, norm_b);
  } else {
    RowCosNormKernel<float><<<grid, RowThreads(dim), 0, s>>>(
        static_cast<const float*>(a), static_cast<const float*>(b),
        static_cast<int>(dim), block_influence, norm_b);
  }
  return LastError();
}

}  // namespace sweepd::kernels
