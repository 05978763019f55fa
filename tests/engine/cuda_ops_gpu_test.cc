// GPU tests of the chunked attention's kernels in cuda_ops.h (label gpu):
// CausalSoftmax on every launch path (warp per row for rows up to 2048 keys,
// vectorised and element-wise; block per row above) against a float64 CPU
// reference of the same math, fp32 and bf16, causal and banded rows, GQA row
// groups and ragged key ranges; SwapMiddleDims against a host permutation,
// bit for bit, with each access width; LseMerge against the host formula
// (bf16 vector and element-wise paths, fp32, strided operands).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "worker/engine/cuda_ops.h"

namespace sweepd::engine::cuda_ops {
namespace {

uint16_t ToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return static_cast<uint16_t>(u >> 16);
}

float FromBf16(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

struct SoftmaxCase {
  int64_t batches, rows, keys;
  int group;
  int64_t q_start, key_start, window;
  int64_t offset_elems;  // scores start this many elements into the buffer
};

// Runs CausalSoftmax on random scores and checks every element against the
// float64 softmax of the (dtype-rounded) inputs over the allowed keys.
void CheckSoftmax(Dtype dtype, const SoftmaxCase& c) {
  SCOPED_TRACE(::testing::Message()
               << (dtype == Dtype::kBFloat16 ? "bf16" : "fp32") << " batches "
               << c.batches << " rows " << c.rows << " keys " << c.keys
               << " group " << c.group << " q_start " << c.q_start
               << " key_start " << c.key_start << " window " << c.window
               << " offset " << c.offset_elems);
  const int64_t n = c.batches * c.rows * c.keys;
  const size_t esize = dtype == Dtype::kBFloat16 ? 2 : 4;
  std::mt19937 rng(static_cast<uint32_t>(n + c.keys));
  std::normal_distribution<float> dist(0.0f, 6.0f);
  std::vector<float> in(n);
  std::vector<uint8_t> host((n + c.offset_elems) * esize, 0);
  for (int64_t i = 0; i < n; ++i) {
    const float f = dist(rng);
    uint8_t* dst = host.data() + (i + c.offset_elems) * esize;
    if (dtype == Dtype::kBFloat16) {
      const uint16_t h = ToBf16(f);
      std::memcpy(dst, &h, 2);
      in[i] = FromBf16(h);
    } else {
      std::memcpy(dst, &f, 4);
      in[i] = f;
    }
  }
  void* dev = nullptr;
  ASSERT_EQ(cudaMalloc(&dev, host.size()), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(dev, host.data(), host.size(), cudaMemcpyHostToDevice),
            cudaSuccess);
  CausalSoftmaxArgs a;
  a.dtype = dtype;
  a.scores = static_cast<uint8_t*>(dev) + c.offset_elems * esize;
  a.batches = c.batches;
  a.rows = c.rows;
  a.keys = c.keys;
  a.group = c.group;
  a.q_start = c.q_start;
  a.key_start = c.key_start;
  a.window = c.window;
  a.scale = 0.125f;
  ASSERT_EQ(CausalSoftmax(a, nullptr), 0);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(host.data(), dev, host.size(), cudaMemcpyDeviceToHost),
            cudaSuccess);
  ASSERT_EQ(cudaFree(dev), cudaSuccess);

  const double rel_tol = dtype == Dtype::kBFloat16 ? 4e-3 : 3e-5;
  int64_t bad = 0;
  for (int64_t b = 0; b < c.batches; ++b) {
    for (int64_t r = 0; r < c.rows; ++r) {
      const int64_t pos = c.q_start + r / c.group;
      const float* x = in.data() + (b * c.rows + r) * c.keys;
      auto allowed = [&](int64_t j) {
        const int64_t kp = c.key_start + j;
        return kp <= pos && (c.window == 0 || pos - kp < c.window);
      };
      double m = -INFINITY;
      for (int64_t j = 0; j < c.keys; ++j) {
        if (allowed(j)) m = std::max(m, 0.125 * x[j]);
      }
      double sum = 0;
      for (int64_t j = 0; j < c.keys; ++j) {
        if (allowed(j)) sum += std::exp(0.125 * x[j] - m);
      }
      for (int64_t j = 0; j < c.keys; ++j) {
        const uint8_t* src =
            host.data() +
            ((b * c.rows + r) * c.keys + j + c.offset_elems) * esize;
        float got;
        if (dtype == Dtype::kBFloat16) {
          uint16_t h;
          std::memcpy(&h, src, 2);
          got = FromBf16(h);
        } else {
          std::memcpy(&got, src, 4);
        }
        const double want = allowed(j) ? std::exp(0.125 * x[j] - m) / sum : 0.0;
        const bool ok = allowed(j)
                            ? std::abs(got - want) <= rel_tol * want + 1e-7
                            : got == 0.0f;
        if (!ok && ++bad <= 5) {
          ADD_FAILURE() << "batch " << b << " row " << r << " key " << j
                        << ": got " << got << ", want " << want;
        }
      }
    }
  }
  EXPECT_EQ(bad, 0);
}

const SoftmaxCase kCases[] = {
    // The 31B shape's chunks: 256-position query blocks, 8 heads per KV head.
    {2, 64, 256, 8, 248, 0, 0, 0},
    {2, 40, 2048, 8, 2043, 0, 0, 0},
    // One key; a row wider than its lane share (ragged causal rows).
    {1, 1, 1, 1, 0, 0, 0, 0},
    {3, 70, 600, 2, 565, 0, 0, 0},
    // Keys not a multiple of the vector width: element-wise warp kernel.
    {2, 33, 1001, 3, 990, 0, 0, 0},
    {1, 5, 37, 1, 32, 0, 0, 0},
    // Misaligned base: element-wise warp kernel.
    {2, 16, 512, 4, 508, 0, 0, 3},
    // Banded (sliding window) rows with a key offset.
    {2, 30, 700, 3, 990, 300, 100, 0},
    {1, 48, 2048, 1, 2000, 0, 1500, 0},
    // Longer than the warp kernel takes: block per row (bf16 single-pass up
    // to 4096 keys, two-pass beyond).
    {1, 12, 2056, 4, 2053, 0, 0, 0},
    {1, 6, 4100, 2, 4097, 0, 0, 0},
    {1, 6, 2049, 1, 2043, 0, 0, 1},
};

TEST(CudaOpsGpuTest, CausalSoftmaxFp32MatchesReference) {
  for (const SoftmaxCase& c : kCases) CheckSoftmax(Dtype::kFloat32, c);
}

TEST(CudaOpsGpuTest, CausalSoftmaxBf16MatchesReference) {
  for (const SoftmaxCase& c : kCases) CheckSoftmax(Dtype::kBFloat16, c);
}

TEST(CudaOpsGpuTest, CausalSoftmaxRejectsRowsWithoutAllowedKeys) {
  CausalSoftmaxArgs a;
  a.scores = reinterpret_cast<void*>(uintptr_t{256});
  a.batches = 1;
  a.rows = 4;
  a.keys = 8;
  a.q_start = 8;  // position 8 lies past keys [0, 8)
  EXPECT_EQ(CausalSoftmax(a, nullptr), static_cast<int>(cudaErrorInvalidValue));
}

void CheckSwap(int64_t outer, int64_t dim1, int64_t dim2, int64_t inner_bytes,
               int64_t offset) {
  SCOPED_TRACE(::testing::Message()
               << outer << "x" << dim1 << "x" << dim2 << "x" << inner_bytes
               << "B offset " << offset);
  const int64_t n = outer * dim1 * dim2 * inner_bytes;
  std::vector<uint8_t> src(n);
  std::mt19937 rng(static_cast<uint32_t>(n));
  for (auto& b : src) b = static_cast<uint8_t>(rng());
  uint8_t* d_src = nullptr;
  uint8_t* d_dst = nullptr;
  ASSERT_EQ(cudaMalloc(&d_src, n + offset), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_dst, n + offset), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(d_src + offset, src.data(), n, cudaMemcpyHostToDevice),
            cudaSuccess);
  ASSERT_EQ(SwapMiddleDims(d_src + offset, outer, dim1, dim2, inner_bytes,
                           d_dst + offset, nullptr),
            0);
  std::vector<uint8_t> got(n);
  ASSERT_EQ(cudaMemcpy(got.data(), d_dst + offset, n, cudaMemcpyDeviceToHost),
            cudaSuccess);
  ASSERT_EQ(cudaFree(d_src), cudaSuccess);
  ASSERT_EQ(cudaFree(d_dst), cudaSuccess);
  int64_t bad = 0;
  for (int64_t a = 0; a < outer; ++a) {
    for (int64_t y = 0; y < dim2; ++y) {
      for (int64_t x = 0; x < dim1; ++x) {
        const uint8_t* want =
            src.data() + ((a * dim1 + x) * dim2 + y) * inner_bytes;
        const uint8_t* have =
            got.data() + ((a * dim2 + y) * dim1 + x) * inner_bytes;
        if (std::memcmp(want, have, inner_bytes) != 0) ++bad;
      }
    }
  }
  EXPECT_EQ(bad, 0);
}

// LseMerge on [batch, rows, heads, head_dim] operands with padded (strided)
// rows and log-sum-exps stored [batch, heads, rows] with a row pitch, against
// the host formula from the same rounded inputs: one rounding of the result
// (bf16), float32 round-off (fp32).
void CheckLseMerge(Dtype dtype, int64_t head_dim, int64_t row_pad) {
  SCOPED_TRACE(::testing::Message()
               << (dtype == Dtype::kBFloat16 ? "bf16" : "fp32") << " head_dim "
               << head_dim << " row_pad " << row_pad);
  const int64_t B = 2, R = 5, H = 3, D = head_dim;
  const int64_t row = H * D + row_pad;  // elements per (batch, row)
  const int64_t n = B * R * row;
  const int64_t lse_pitch = R + 3;  // [B, H, lse_pitch]
  const size_t esize = dtype == Dtype::kBFloat16 ? 2 : 4;
  std::mt19937 rng(static_cast<uint32_t>(D + row_pad));
  std::normal_distribution<float> val(0.0f, 1.0f);
  std::normal_distribution<float> lse(0.0f, 3.0f);
  std::vector<float> x(n), y(n);
  std::vector<uint8_t> hx(n * esize), hy(n * esize);
  auto put = [&](std::vector<uint8_t>& buf, int64_t i, float f) {
    if (dtype == Dtype::kBFloat16) {
      const uint16_t h = ToBf16(f);
      std::memcpy(buf.data() + i * 2, &h, 2);
      return FromBf16(h);
    }
    std::memcpy(buf.data() + i * 4, &f, 4);
    return f;
  };
  for (int64_t i = 0; i < n; ++i) {
    x[i] = put(hx, i, val(rng));
    y[i] = put(hy, i, val(rng));
  }
  std::vector<float> l1(B * H * lse_pitch), l2(B * H * lse_pitch);
  for (size_t i = 0; i < l1.size(); ++i) {
    l1[i] = lse(rng);
    l2[i] = lse(rng);
  }
  void *dx = nullptr, *dy = nullptr, *dl1 = nullptr, *dl2 = nullptr;
  ASSERT_EQ(cudaMalloc(&dx, hx.size()), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dy, hy.size()), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dl1, l1.size() * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dl2, l2.size() * 4), cudaSuccess);
  cudaMemcpy(dx, hx.data(), hx.size(), cudaMemcpyHostToDevice);
  cudaMemcpy(dy, hy.data(), hy.size(), cudaMemcpyHostToDevice);
  cudaMemcpy(dl1, l1.data(), l1.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(dl2, l2.data(), l2.size() * 4, cudaMemcpyHostToDevice);
  LseMergeArgs a;
  a.dtype = dtype;
  a.batch = B;
  a.rows = R;
  a.heads = H;
  a.head_dim = D;
  a.out = dx;
  a.other = dy;
  a.out_lse = static_cast<const float*>(dl1);
  a.other_lse = static_cast<const float*>(dl2);
  const int64_t os[3] = {R * row, row, D};
  const int64_t ls[3] = {H * lse_pitch, lse_pitch, 1};
  for (int d = 0; d < 3; ++d) {
    a.out_stride[d] = a.other_stride[d] = os[d];
    a.out_lse_stride[d] = a.other_lse_stride[d] = ls[d];
  }
  ASSERT_EQ(LseMerge(a, nullptr), 0);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<uint8_t> got(hx.size());
  cudaMemcpy(got.data(), dx, got.size(), cudaMemcpyDeviceToHost);
  cudaFree(dx);
  cudaFree(dy);
  cudaFree(dl1);
  cudaFree(dl2);
  double worst = 0;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t r = 0; r < R; ++r) {
      for (int64_t h = 0; h < H; ++h) {
        const double e1 = l1[b * H * lse_pitch + h * lse_pitch + r];
        const double e2 = l2[b * H * lse_pitch + h * lse_pitch + r];
        const double m = std::max(e1, e2);
        const double w1 = std::exp(e1 - m), w2 = std::exp(e2 - m);
        for (int64_t d = 0; d < D; ++d) {
          const int64_t i = b * R * row + r * row + h * D + d;
          const double want = (x[i] * w1 + y[i] * w2) / (w1 + w2);
          float g;
          if (dtype == Dtype::kBFloat16) {
            uint16_t hv;
            std::memcpy(&hv, got.data() + i * 2, 2);
            g = FromBf16(hv);
          } else {
            std::memcpy(&g, got.data() + i * 4, 4);
          }
          const double tol =
              (dtype == Dtype::kBFloat16 ? 8e-3 : 1e-5) * std::abs(want) + 1e-6;
          worst = std::max(worst, std::abs(g - want) - tol);
        }
      }
    }
  }
  EXPECT_LE(worst, 0.0);
  // The padding between rows is left alone.
  if (row_pad > 0) {
    const int64_t i = H * D;  // first padding element of (0, 0)
    EXPECT_EQ(std::memcmp(got.data() + i * esize, hx.data() + i * esize, esize),
              0);
  }
}

TEST(CudaOpsGpuTest, LseMergeMatchesHostFormula) {
  CheckLseMerge(Dtype::kBFloat16, 256, 0);  // 16-byte vectors
  CheckLseMerge(Dtype::kBFloat16, 64, 8);   // vectors, padded rows
  CheckLseMerge(Dtype::kBFloat16, 36, 3);   // element-wise
  CheckLseMerge(Dtype::kFloat32, 40, 2);
}

TEST(CudaOpsGpuTest, LseMergeRejectsBadArguments) {
  LseMergeArgs a;
  EXPECT_NE(LseMerge(a, nullptr), 0);  // null pointers
}

TEST(CudaOpsGpuTest, SwapMiddleDimsMovesWholeRows) {
  CheckSwap(2, 5, 3, 8192, 0);  // 16-byte words, 512 per row
  CheckSwap(4, 7, 4, 64, 0);
  CheckSwap(2, 3, 4, 64, 4);  // misaligned: 4-byte words
  CheckSwap(2, 3, 4, 6, 0);   // 2-byte words
  CheckSwap(1, 4, 3, 7, 0);   // bytes
  CheckSwap(3, 1, 5, 32, 0);
}

TEST(CudaOpsGpuTest, SwapMiddleDimsRejectsBadArguments) {
  EXPECT_EQ(SwapMiddleDims(nullptr, 1, 1, 1, 16, nullptr, nullptr),
            static_cast<int>(cudaErrorInvalidValue));
  void* p = reinterpret_cast<void*>(uintptr_t{256});
  EXPECT_EQ(SwapMiddleDims(p, 1, 2, 2, 0, p, nullptr),
            static_cast<int>(cudaErrorInvalidValue));
  EXPECT_EQ(SwapMiddleDims(p, 0, 2, 2, 16, p, nullptr), 0);  // nothing to do
}

}  // namespace
}  // namespace sweepd::engine::cuda_ops
