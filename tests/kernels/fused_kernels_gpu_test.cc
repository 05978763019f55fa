// GPU tests of the engine's fused kernels (label gpu; moved from
// tests/engine/cuda_ops_gpu_test.cc; the q/k/v norm + RoPE kernels have
// head_norm_rope_gpu_test.cc): each kernel against its CPU reference
// (kernels/*.cc), and the chunked attention's kernels against the formulas:
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
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/block_influence.h"
#include "kernels/causal_softmax.h"
#include "kernels/dtype.h"
#include "kernels/geglu.h"
#include "kernels/layout_copy.h"
#include "kernels/lse_merge.h"
#include "kernels/row_norm.h"
#include "tests/kernels/gpu_test_util.h"

namespace sweepd::kernels {
namespace {

using gpu_test::BeyondOneBf16Step;
using gpu_test::DevBf16;
using gpu_test::DevBytes;
using gpu_test::Mismatches;
using gpu_test::RandomBf16;
using gpu_test::RandomBytes;
using gpu_test::RelTol;
using gpu_test::RoundBf16;

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
      const uint16_t h = Bf16FromFloat(f);
      std::memcpy(dst, &h, 2);
      in[i] = FloatFromBf16(h);
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
  ASSERT_EQ(CausalSoftmaxCuda(a, nullptr), 0);
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
          got = FloatFromBf16(h);
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

TEST(FusedKernelsGpuTest, CausalSoftmaxFp32MatchesReference) {
  for (const SoftmaxCase& c : kCases) CheckSoftmax(Dtype::kFloat32, c);
}

TEST(FusedKernelsGpuTest, CausalSoftmaxBf16MatchesReference) {
  for (const SoftmaxCase& c : kCases) CheckSoftmax(Dtype::kBFloat16, c);
}

TEST(FusedKernelsGpuTest, CausalSoftmaxRejectsRowsWithoutAllowedKeys) {
  CausalSoftmaxArgs a;
  a.scores = reinterpret_cast<void*>(uintptr_t{256});
  a.batches = 1;
  a.rows = 4;
  a.keys = 8;
  a.q_start = 8;  // position 8 lies past keys [0, 8)
  EXPECT_EQ(CausalSoftmaxCuda(a, nullptr),
            static_cast<int>(cudaErrorInvalidValue));
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
  ASSERT_EQ(SwapMiddleDimsCuda(d_src + offset, outer, dim1, dim2, inner_bytes,
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
      const uint16_t h = Bf16FromFloat(f);
      std::memcpy(buf.data() + i * 2, &h, 2);
      return FloatFromBf16(h);
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
  ASSERT_EQ(LseMergeCuda(a, nullptr), 0);
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
            g = FloatFromBf16(hv);
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

TEST(FusedKernelsGpuTest, LseMergeMatchesHostFormula) {
  CheckLseMerge(Dtype::kBFloat16, 256, 0);  // 16-byte vectors
  CheckLseMerge(Dtype::kBFloat16, 64, 8);   // vectors, padded rows
  CheckLseMerge(Dtype::kBFloat16, 36, 3);   // element-wise
  CheckLseMerge(Dtype::kFloat32, 40, 2);
}

TEST(FusedKernelsGpuTest, LseMergeRejectsBadArguments) {
  LseMergeArgs a;
  EXPECT_NE(LseMergeCuda(a, nullptr), 0);  // null pointers
}

// RowNorm's bf16 vector path (dim 5376: 224 threads x 3 vectors; dim 96: one
// vector each) with the residual, the layer scalar and the next norm.
TEST(FusedKernelsGpuTest, RowNormBf16MatchesHostReference) {
  for (int64_t dim : {int64_t{5376}, int64_t{96}}) {
    SCOPED_TRACE(dim);
    const int64_t rows = 7, stride = dim + 16;
    std::vector<float> x, res, w, w2, sc;
    DevBf16 dx(RandomBf16(rows * stride, 2.0f, 1, &x));
    DevBf16 dres(RandomBf16(rows * dim, 1.0f, 2, &res));
    DevBf16 dw(RandomBf16(dim, 1.0f, 3, &w));
    DevBf16 dw2(RandomBf16(dim, 1.0f, 4, &w2));
    DevBf16 dsc(RandomBf16(1, 1.0f, 5, &sc));
    for (int variant = 0; variant < 3; ++variant) {
      SCOPED_TRACE(variant);  // 0 plain, 1 residual + next norm, 2 + scalar
      DevBf16 out(rows * dim), out2(rows * dim);
      RowNormArgs a;
      a.x = dx.p;
      a.x_stride = stride;
      a.rows = rows;
      a.dim = dim;
      a.weight = dw.p;
      a.out = out.p;
      if (variant >= 1) a.residual = dres.p;
      if (variant == 1) {
        a.weight2 = dw2.p;
        a.out2 = out2.p;
      }
      if (variant == 2) a.scalar = dsc.p;
      ASSERT_EQ(RowNormCuda(a, nullptr), 0);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const std::vector<float> got = out.Read(), got2 = out2.Read();
      std::vector<float> want(rows * dim), want2(rows * dim);
      for (int64_t r = 0; r < rows; ++r) {
        double ss = 0;
        for (int64_t i = 0; i < dim; ++i)
          ss += double(x[r * stride + i]) * x[r * stride + i];
        const double rstd = 1.0 / std::sqrt(ss / dim + 1e-6);
        for (int64_t i = 0; i < dim; ++i) {
          double o = RoundBf16(x[r * stride + i] * rstd * w[i]);
          if (variant >= 1) o = RoundBf16(res[r * dim + i] + o);
          if (variant == 2) o = RoundBf16(o * sc[0]);
          want[r * dim + i] = static_cast<float>(o);
        }
        // The next norm from the kernel's own (rounded) output.
        double ss2 = 0;
        for (int64_t i = 0; i < dim; ++i)
          ss2 += double(got[r * dim + i]) * got[r * dim + i];
        const double rstd2 = 1.0 / std::sqrt(ss2 / dim + 1e-6);
        for (int64_t i = 0; i < dim; ++i) {
          want2[r * dim + i] = RoundBf16(got[r * dim + i] * rstd2 * w2[i]);
        }
      }
      EXPECT_EQ(BeyondOneBf16Step(got, want), 0);
      if (variant == 1) {
        EXPECT_EQ(BeyondOneBf16Step(got2, want2), 0);
      }
    }
  }
}

// ReverseRows from a strided source (a block of every batch entry, as the
// banded attention takes them) matches a host copy bit for bit, with 16-byte
// and 2-byte accesses.
TEST(FusedKernelsGpuTest, ReverseRowsCopiesBlocksReversed) {
  for (int64_t row_bytes : {int64_t{64}, int64_t{6}}) {
    SCOPED_TRACE(row_bytes);
    const int64_t n0 = 3, n1 = 2, rows = 5, seq = 3 * rows;  // 3 blocks
    const int64_t s_row = row_bytes, s1 = rows * s_row, s0 = seq * s_row;
    std::vector<uint8_t> host(n0 * s0);
    for (size_t i = 0; i < host.size(); ++i)
      host[i] = static_cast<uint8_t>(i * 7 + 3);
    void *src = nullptr, *dst = nullptr;
    ASSERT_EQ(cudaMalloc(&src, host.size()), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&dst, n0 * n1 * rows * row_bytes), cudaSuccess);
    cudaMemcpy(src, host.data(), host.size(), cudaMemcpyHostToDevice);
    // Blocks 1 and 2 of each batch entry.
    ASSERT_EQ(ReverseRowsCuda(static_cast<uint8_t*>(src) + s1, n0, n1, rows,
                              row_bytes, s0, s1, s_row, dst, nullptr),
              0);
    std::vector<uint8_t> got(n0 * n1 * rows * row_bytes);
    cudaMemcpy(got.data(), dst, got.size(), cudaMemcpyDeviceToHost);
    cudaFree(src);
    cudaFree(dst);
    for (int64_t a = 0; a < n0; ++a) {
      for (int64_t b = 0; b < n1; ++b) {
        for (int64_t r = 0; r < rows; ++r) {
          const uint8_t* want =
              host.data() + a * s0 + (b + 1) * s1 + (rows - 1 - r) * s_row;
          const uint8_t* have =
              got.data() + ((a * n1 + b) * rows + r) * row_bytes;
          ASSERT_EQ(std::memcmp(want, have, row_bytes), 0)
              << a << " " << b << " " << r;
        }
      }
    }
  }
  EXPECT_NE(ReverseRowsCuda(nullptr, 1, 1, 1, 16, 16, 16, 16, nullptr, nullptr),
            0);
}

TEST(FusedKernelsGpuTest, SwapMiddleDimsMovesWholeRows) {
  CheckSwap(2, 5, 3, 8192, 0);  // 16-byte words, 512 per row
  CheckSwap(4, 7, 4, 64, 0);
  CheckSwap(2, 3, 4, 64, 4);  // misaligned: 4-byte words
  CheckSwap(2, 3, 4, 6, 0);   // 2-byte words
  CheckSwap(1, 4, 3, 7, 0);   // bytes
  CheckSwap(3, 1, 5, 32, 0);
}

TEST(FusedKernelsGpuTest, SwapMiddleDimsRejectsBadArguments) {
  EXPECT_EQ(SwapMiddleDimsCuda(nullptr, 1, 1, 1, 16, nullptr, nullptr),
            static_cast<int>(cudaErrorInvalidValue));
  void* p = reinterpret_cast<void*>(uintptr_t{256});
  EXPECT_EQ(SwapMiddleDimsCuda(p, 1, 2, 2, 0, p, nullptr),
            static_cast<int>(cudaErrorInvalidValue));
  EXPECT_EQ(SwapMiddleDimsCuda(p, 0, 2, 2, 16, p, nullptr),
            0);  // nothing to do
}

// ---- Each kernel against its CPU reference (kernels/*.cc) on the same
// inputs: float32 within float32 round-off, bf16 within one bf16 step (the
// reference accumulates in double, the kernel in float32).

TEST(FusedKernelsGpuTest, RowNormMatchesCpuReference) {
  for (Dtype dtype : {Dtype::kFloat32, Dtype::kBFloat16}) {
    for (int64_t dim : {int64_t{5376}, int64_t{100}}) {
      SCOPED_TRACE(::testing::Message()
                   << static_cast<int>(dtype) << " " << dim);
      const int64_t rows = 5, stride = dim + 8;
      const auto x = RandomBytes(dtype, rows * stride, 2.0f, 1);
      const auto res = RandomBytes(dtype, rows * dim, 1.0f, 2);
      const auto w = RandomBytes(dtype, dim, 1.0f, 3);
      const auto w2 = RandomBytes(dtype, dim, 1.0f, 4);
      std::vector<uint8_t> out(rows * dim * DtypeSize(dtype)), out2(out.size());
      DevBytes dx(x), dres(res), dw(w), dw2(w2), dout(out), dout2(out2);
      RowNormArgs a;
      a.dtype = dtype;
      a.x_stride = stride;
      a.rows = rows;
      a.dim = dim;
      a.x = dx.p;
      a.weight = dw.p;
      a.residual = dres.p;
      a.weight2 = dw2.p;
      a.out = dout.p;
      a.out2 = dout2.p;
      ASSERT_EQ(RowNormCuda(a, nullptr), 0);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      a.x = x.data();
      a.weight = w.data();
      a.residual = res.data();
      a.weight2 = w2.data();
      a.out = out.data();
      a.out2 = out2.data();
      ASSERT_TRUE(RowNormCpu(a).ok());
      EXPECT_EQ(Mismatches(dtype, dout.Read(), out, RelTol(dtype), 1e-6), 0);
      EXPECT_EQ(Mismatches(dtype, dout2.Read(), out2, 2 * RelTol(dtype), 1e-5),
                0);
    }
  }
}

TEST(FusedKernelsGpuTest, GegluMatchesCpuReference) {
  // inter 64: the bf16 vector path; 7: element-wise.
  for (Dtype dtype : {Dtype::kFloat32, Dtype::kBFloat16}) {
    for (int64_t inter : {int64_t{64}, int64_t{7}}) {
      for (bool tanh_form : {true, false}) {
        SCOPED_TRACE(::testing::Message() << static_cast<int>(dtype) << " "
                                          << inter << " " << tanh_form);
        const int64_t rows = 9;
        const auto gu = RandomBytes(dtype, rows * 2 * inter, 2.0f, 9);
        std::vector<uint8_t> out(rows * inter * DtypeSize(dtype));
        DevBytes dgu(gu), dout(out);
        ASSERT_EQ(
            GegluCuda(dtype, dgu.p, rows, inter, tanh_form, dout.p, nullptr),
            0);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        ASSERT_TRUE(
            GegluCpu(dtype, gu.data(), rows, inter, tanh_form, out.data())
                .ok());
        EXPECT_EQ(Mismatches(dtype, dout.Read(), out, 2 * RelTol(dtype), 1e-6),
                  0);
      }
    }
  }
}

TEST(FusedKernelsGpuTest, RowCosNormMatchesCpuReference) {
  for (Dtype dtype : {Dtype::kFloat32, Dtype::kBFloat16}) {
    SCOPED_TRACE(static_cast<int>(dtype));
    const int64_t rows = 7, dim = 5376;
    const auto a = RandomBytes(dtype, rows * dim, 1.0f, 10);
    auto b = a;  // b = a + small noise: block influence near 0
    const auto noise = RandomBytes(dtype, rows * dim, 0.05f, 11);
    for (int64_t i = 0; i < rows * dim; ++i) {
      StoreAs(dtype, b.data(), i,
              LoadAs(dtype, a.data(), i) + LoadAs(dtype, noise.data(), i));
    }
    std::vector<float> bi(rows), nb(rows), dbi(rows), dnb(rows);
    DevBytes da(a), db(b);
    float *d_bi = nullptr, *d_nb = nullptr;
    ASSERT_EQ(cudaMalloc(&d_bi, rows * 4), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&d_nb, rows * 4), cudaSuccess);
    ASSERT_EQ(RowCosNormCuda(dtype, da.p, db.p, rows, dim, d_bi, d_nb, nullptr),
              0);
    cudaMemcpy(dbi.data(), d_bi, rows * 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(dnb.data(), d_nb, rows * 4, cudaMemcpyDeviceToHost);
    cudaFree(d_bi);
    cudaFree(d_nb);
    ASSERT_TRUE(RowCosNormCpu(dtype, a.data(), b.data(), rows, dim, bi.data(),
                              nb.data())
                    .ok());
    for (int64_t r = 0; r < rows; ++r) {
      EXPECT_NEAR(dbi[r], bi[r], 1e-5) << r;
      EXPECT_NEAR(dnb[r], nb[r], 1e-5 * nb[r]) << r;
    }
  }
}

TEST(FusedKernelsGpuTest, CausalSoftmaxAndLseMergeMatchCpuReference) {
  for (Dtype dtype : {Dtype::kFloat32, Dtype::kBFloat16}) {
    SCOPED_TRACE(static_cast<int>(dtype));
    // Softmax: 2 batches of 24 rows (group 3) over 300 keys, banded.
    auto scores = RandomBytes(dtype, 2 * 24 * 300, 4.0f, 12);
    DevBytes ds(scores);
    CausalSoftmaxArgs c;
    c.dtype = dtype;
    c.batches = 2;
    c.rows = 24;
    c.keys = 300;
    c.group = 3;
    c.q_start = 290;
    c.key_start = 0;
    c.window = 100;
    c.scale = 0.5f;
    c.scores = ds.p;
    ASSERT_EQ(CausalSoftmaxCuda(c, nullptr), 0);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    c.scores = scores.data();
    ASSERT_TRUE(CausalSoftmaxCpu(c).ok());
    EXPECT_EQ(Mismatches(dtype, ds.Read(), scores, RelTol(dtype), 1e-7), 0);

    // LseMerge: [2, 5, 3, 64] contiguous, lse [2, 3, 5].
    auto out = RandomBytes(dtype, 2 * 5 * 3 * 64, 1.0f, 13);
    const auto other = RandomBytes(dtype, 2 * 5 * 3 * 64, 1.0f, 14);
    std::vector<float> l1(30), l2(30);
    std::mt19937 rng(15);
    std::normal_distribution<float> dist(0.0f, 3.0f);
    for (int i = 0; i < 30; ++i) {
      l1[i] = dist(rng);
      l2[i] = dist(rng);
    }
    DevBytes dout(out), dother(other);
    float *dl1 = nullptr, *dl2 = nullptr;
    ASSERT_EQ(cudaMalloc(&dl1, 120), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&dl2, 120), cudaSuccess);
    cudaMemcpy(dl1, l1.data(), 120, cudaMemcpyHostToDevice);
    cudaMemcpy(dl2, l2.data(), 120, cudaMemcpyHostToDevice);
    LseMergeArgs m;
    m.dtype = dtype;
    m.batch = 2;
    m.rows = 5;
    m.heads = 3;
    m.head_dim = 64;
    const int64_t os[3] = {5 * 3 * 64, 3 * 64, 64}, ls[3] = {15, 5, 1};
    for (int d = 0; d < 3; ++d) {
      m.out_stride[d] = m.other_stride[d] = os[d];
      m.out_lse_stride[d] = m.other_lse_stride[d] = ls[d];
    }
    m.out = dout.p;
    m.other = dother.p;
    m.out_lse = dl1;
    m.other_lse = dl2;
    ASSERT_EQ(LseMergeCuda(m, nullptr), 0);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    cudaFree(dl1);
    cudaFree(dl2);
    m.out = out.data();
    m.other = other.data();
    m.out_lse = l1.data();
    m.other_lse = l2.data();
    ASSERT_TRUE(LseMergeCpu(m).ok());
    EXPECT_EQ(Mismatches(dtype, dout.Read(), out, RelTol(dtype), 1e-6), 0);
  }
}

TEST(FusedKernelsGpuTest, LayoutCopiesMatchCpuReferenceBitForBit) {
  std::vector<uint8_t> src(2 * 5 * 3 * 48);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * 13);
  DevBytes dsrc(src);
  std::vector<uint8_t> want(src.size());
  DevBytes ddst(want);
  ASSERT_EQ(SwapMiddleDimsCuda(dsrc.p, 2, 5, 3, 48, ddst.p, nullptr), 0);
  ASSERT_TRUE(SwapMiddleDimsCpu(src.data(), 2, 5, 3, 48, want.data()).ok());
  EXPECT_EQ(ddst.Read(), want);
  // Reverse 2 rows of 48 bytes of blocks 1..2 of 2 entries of 3 blocks.
  std::vector<uint8_t> rev(2 * 2 * 2 * 48);
  DevBytes drev(rev);
  ASSERT_EQ(ReverseRowsCuda(static_cast<uint8_t*>(dsrc.p) + 96, 2, 2, 2, 48,
                            360, 96, 48, drev.p, nullptr),
            0);
  ASSERT_TRUE(
      ReverseRowsCpu(src.data() + 96, 2, 2, 2, 48, 360, 96, 48, rev.data())
          .ok());
  EXPECT_EQ(drev.Read(), rev);
}

}  // namespace
}  // namespace sweepd::kernels
