// Kernels of kernels/geglu.h (moved from worker/engine/cuda_ops.cu).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "kernels/device_util.cuh"
#include "kernels/geglu.h"

namespace sweepd::kernels {
namespace {

template <typename T>
__global__ void GegluKernel(const T* gate_up, int64_t rows, int64_t inter,
                            bool tanh_approx, T* out) {
  const int64_t total = rows * inter;
  for (int64_t idx =
           static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       idx < total; idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = idx / inter;
    const int64_t i = idx - t * inter;
    const T* g_row = gate_up + t * 2 * inter;
    const float g = Io<T>::Load(g_row + i);
    const float u = Io<T>::Load(g_row + inter + i);
    float a;
    if (tanh_approx) {
      const float kBeta = static_cast<float>(M_SQRT2 * M_2_SQRTPI * 0.5);
      const float kKappa = 0.044715f;
      const float inner = kBeta * (g + kKappa * (g * g * g));
      a = 0.5f * g * (1.0f + tanhf(inner));
    } else {
      a = g * 0.5f * (1.0f + erff(g * static_cast<float>(M_SQRT1_2)));
    }
    Io<T>::Store(out + idx, Io<T>::Round(a) * u);
  }
}

__global__ void GegluVecKernel(const Bf* gate_up, int64_t rows, int64_t inter,
                               bool tanh_approx, Bf* out) {
  const int64_t total = rows * inter / 8;
  for (int64_t vi = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       vi < total; vi += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t e = vi * 8;
    const int64_t t = e / inter;
    const int64_t i = e - t * inter;
    const Bf* g_row = gate_up + t * 2 * inter;
    float g[8], u[8], o[8];
    Load8(g_row + i, g);
    Load8(g_row + inter + i, u);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      float a;
      if (tanh_approx) {
        const float kBeta = static_cast<float>(M_SQRT2 * M_2_SQRTPI * 0.5);
        const float kKappa = 0.044715f;
        const float inner = kBeta * (g[j] + kKappa * (g[j] * g[j] * g[j]));
        a = 0.5f * g[j] * (1.0f + tanhf(inner));
      } else {
        a = g[j] * 0.5f * (1.0f + erff(g[j] * static_cast<float>(M_SQRT1_2)));
      }
      o[j] = Io<Bf>::Round(a) * u[j];
    }
    Store8(out + e, o);
  }
}

}  // namespace

int GegluCuda(Dtype dtype, const void* gate_up, int64_t rows, int64_t inter,
              bool tanh_approx, void* out, void* stream) {
  if (rows < 0 || inter < 1 || gate_up == nullptr || out == nullptr) {
    return kInvalid;
  }
  const int64_t total = rows * inter;
  if (total == 0) return 0;
  const int threads = 256;
  int64_t blocks = (total + threads - 1) / threads;
  if (blocks > 132 * 64) blocks = 132 * 64;  // grid-stride beyond a few waves
  auto s = static_cast<cudaStream_t>(stream);
  if (dtype == Dtype::kBFloat16 && inter % 8 == 0 && Aligned16(gate_up) &&
      Aligned16(out)) {
    GegluVecKernel<<<static_cast<unsigned>(std::min<int64_t>(
                         blocks, (total / 8 + threads - 1) / threads)),
                     threads, 0, s>>>(static_cast<const Bf*>(gate_up), rows,
                                      inter, tanh_approx,
                                      static_cast<Bf*>(out));
  } else if (dtype == Dtype::kBFloat16) {
    GegluKernel<__nv_bfloat16>
        <<<static_cast<unsigned>(blocks), threads, 0, s>>>(
            static_cast<const __nv_bfloat16*>(gate_up), rows, inter,
            tanh_approx, static_cast<__nv_bfloat16*>(out));
  } else {
    GegluKernel<float><<<static_cast<unsigned>(blocks), threads, 0, s>>>(
        static_cast<const float*>(gate_up), rows, inter, tanh_approx,
        static_cast<float*>(out));
  }
  return LastError();
}

}  // namespace sweepd::kernels
