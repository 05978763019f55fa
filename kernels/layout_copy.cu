// Kernels of kernels/layout_copy.h (moved from worker/engine/cuda_ops.cu).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/device_util.cuh"
#include "kernels/layout_copy.h"

namespace sweepd::kernels {
namespace {

// ---- SwapMiddleDims: one block per destination row (a, y, x), copying
// `words` Word-sized pieces of it from source row (a, x, y).
template <typename Word>
__global__ void SwapMiddleDimsKernel(const Word* __restrict__ src, int64_t dim1,
                                     int64_t dim2, int64_t words,
                                     Word* __restrict__ dst) {
  const int64_t r = blockIdx.x;  // over outer · dim2 · dim1, dst order
  const int64_t x = r % dim1;
  const int64_t ay = r / dim1;
  const int64_t y = ay % dim2;
  const int64_t a = ay / dim2;
  const Word* in = src + ((a * dim1 + x) * dim2 + y) * words;
  Word* out = dst + r * words;
  for (int64_t i = threadIdx.x; i < words; i += blockDim.x) out[i] = in[i];
}

template <typename Word>
int LaunchSwapMiddleDims(const void* src, int64_t rows, int64_t dim1,
                         int64_t dim2, int64_t inner_bytes, void* dst,
                         cudaStream_t stream) {
  const int64_t words = inner_bytes / static_cast<int64_t>(sizeof(Word));
  SwapMiddleDimsKernel<Word>
      <<<static_cast<unsigned>(rows), RowThreads(words), 0, stream>>>(
          static_cast<const Word*>(src), dim1, dim2, words,
          static_cast<Word*>(dst));
  return LastError();
}

template <typename Word>
__global__ void ReverseRowsKernel(const char* __restrict__ src, int64_t n1,
                                  int64_t rows, int64_t words, int64_t s0,
                                  int64_t s1, int64_t s_row,
                                  Word* __restrict__ dst) {
  const int64_t r = blockIdx.x;  // destination row, over n0 · n1 · rows
  const int64_t i = r % rows;
  const int64_t j = (r / rows) % n1;
  const int64_t k = r / (rows * n1);
  const Word* in = reinterpret_cast<const Word*>(src + k * s0 + j * s1 +
                                                 (rows - 1 - i) * s_row);
  Word* out = dst + r * words;
  for (int64_t w = threadIdx.x; w < words; w += blockDim.x) out[w] = in[w];
}

template <typename Word>
int LaunchReverseRows(const void* src, int64_t n0, int64_t n1, int64_t rows,
                      int64_t row_bytes, int64_t s0, int64_t s1, int64_t s_row,
                      void* dst, cudaStream_t stream) {
  const int64_t words = row_bytes / static_cast<int64_t>(sizeof(Word));
  ReverseRowsKernel<Word>
      <<<static_cast<unsigned>(n0 * n1 * rows), RowThreads(words), 0, stream>>>(
          static_cast<const char*>(src), n1, rows, words, s0, s1, s_row,
          static_cast<Word*>(dst));
  return LastError();
}

// Calls launch(Word{}) with the widest copy word (uint4, uint32_t, uint16_t,
// uint8_t) that divides `bits`: the addresses, sizes and strides of a row copy
// OR-ed together.
template <typename Launch>
int ByCopyWord(uint64_t bits, Launch launch) {
  if (bits % 16 == 0) return launch(uint4{});
  if (bits % 4 == 0) return launch(uint32_t{});
  if (bits % 2 == 0) return launch(uint16_t{});
  return launch(uint8_t{});
}

}  // namespace

int SwapMiddleDimsCuda(const void* src, int64_t outer, int64_t dim1,
                       int64_t dim2, int64_t inner_bytes, void* dst,
                       void* stream) {
  if (src == nullptr || dst == nullptr || outer < 0 || dim1 < 0 || dim2 < 0 ||
      inner_bytes < 1) {
    return kInvalid;
  }
  const int64_t rows = outer * dim1 * dim2;
  if (rows > 0x7fffffff) return kInvalid;
  if (rows == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  const auto bits = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(src) |
                                          reinterpret_cast<uintptr_t>(dst)) |
                    static_cast<uint64_t>(inner_bytes);
  return ByCopyWord(bits, [&](auto word) {
    return LaunchSwapMiddleDims<decltype(word)>(src, rows, dim1, dim2,
                                                inner_bytes, dst, s);
  });
}

int ReverseRowsCuda(const void* src, int64_t n0, int64_t n1, int64_t rows,
                    int64_t row_bytes, int64_t s0, int64_t s1, int64_t s_row,
                    void* dst, void* stream) {
  if (src == nullptr || dst == nullptr || n0 < 0 || n1 < 0 || rows < 0 ||
      row_bytes < 1) {
    return kInvalid;
  }
  const int64_t total = n0 * n1 * rows;
  if (total > 0x7fffffff) return kInvalid;
  if (total == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  const auto bits = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(src) |
                                          reinterpret_cast<uintptr_t>(dst)) |
                    static_cast<uint64_t>(row_bytes | s0 | s1 | s_row);
  return ByCopyWord(bits, [&](auto word) {
    return LaunchReverseRows<decltype(word)>(src, n0, n1, rows, row_bytes, s0,
                                             s1, s_row, dst, s);
  });
}

}  // namespace sweepd::kernels
