// Kernels of kernels/lse_merge.h (moved from worker/engine/cuda_ops.cu).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/device_util.cuh"
#include "kernels/lse_merge.h"

namespace sweepd::kernels {
namespace {

// ---- LseMerge: one warp per (batch, row, head); lanes stride over head_dim
// (8 elements per access on the vector path).

template <typename T, bool kVec>
__global__ void LseMergeKernel(LseMergeArgs a, int64_t items) {
  const int64_t item =
      static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (item >= items) return;
  const int lane = threadIdx.x & 31;
  const int64_t h = item % a.heads;
  const int64_t r = (item / a.heads) % a.rows;
  const int64_t b = item / (a.heads * a.rows);
  const float l1 = a.out_lse[b * a.out_lse_stride[0] + h * a.out_lse_stride[1] +
                             r * a.out_lse_stride[2]];
  const float l2 =
      a.other_lse[b * a.other_lse_stride[0] + h * a.other_lse_stride[1] +
                  r * a.other_lse_stride[2]];
  const float m = fmaxf(l1, l2);
  const float e1 = expf(l1 - m), e2 = expf(l2 - m);
  const float w1 = e1 / (e1 + e2), w2 = e2 / (e1 + e2);
  T* out = static_cast<T*>(a.out) + b * a.out_stride[0] + r * a.out_stride[1] +
           h * a.out_stride[2];
  const T* other = static_cast<const T*>(a.other) + b * a.other_stride[0] +
                   r * a.other_stride[1] + h * a.other_stride[2];
  if constexpr (kVec) {
    for (int64_t i = 8 * lane; i < a.head_dim; i += 8 * 32) {
      float x[8], y[8];
      Load8(out + i, x);
      Load8(other + i, y);
#pragma unroll
      for (int j = 0; j < 8; ++j) x[j] = x[j] * w1 + y[j] * w2;
      Store8(out + i, x);
    }
  } else {
    for (int64_t i = lane; i < a.head_dim; i += 32) {
      Io<T>::Store(out + i,
                   Io<T>::Load(out + i) * w1 + Io<T>::Load(other + i) * w2);
    }
  }
}

}  // namespace

int LseMergeCuda(const LseMergeArgs& a, void* stream) {
  if (a.out == nullptr || a.other == nullptr || a.out_lse == nullptr ||
      a.other_lse == nullptr || a.batch < 0 || a.rows < 0 || a.heads < 1 ||
      a.head_dim < 1) {
    return kInvalid;
  }
  const int64_t items = a.batch * a.rows * a.heads;
  if (items == 0) return 0;
  constexpr int kWarps = 8;
  const int64_t blocks = (items + kWarps - 1) / kWarps;
  if (blocks > 0x7fffffff) return kInvalid;
  auto s = static_cast<cudaStream_t>(stream);
  const unsigned grid = static_cast<unsigned>(blocks);
  if (a.dtype == Dtype::kBFloat16) {
    bool vec = a.head_dim % 8 == 0 && Aligned16(a.out) && Aligned16(a.other);
    for (int d = 0; d < 3; ++d) {
      vec = vec && a.out_stride[d] % 8 == 0 && a.other_stride[d] % 8 == 0;
    }
    if (vec) {
      LseMergeKernel<Bf, true><<<grid, kWarps * 32, 0, s>>>(a, items);
    } else {
      LseMergeKernel<Bf, false><<<grid, kWarps * 32, 0, s>>>(a, items);
    }
  } else {
    LseMergeKernel<float, false><<<grid, kWarps * 32, 0, s>>>(a, items);
  }
  return LastError();
}

}  // namespace sweepd::kernels
