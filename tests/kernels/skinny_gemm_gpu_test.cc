// GPU test of kernels/skinny_gemm.h (label gpu): the CUDA kernel against the
// CPU reference at every row-tile variant (m 1..32), with and without K
// splits, n tails (rows past the last 128-row tile), padded strides and a
// 31B-sized shape; the counters are zero again after every call; a CUDA graph
// of split launches replays to the same bits; bad arguments are refused.
//
// Tolerance: the reference sums in double and rounds once; the kernel sums in
// float32 in its own order, so an element may land one bf16 step away where
// the sum sits near a rounding boundary (about one element in 4,000 here):
// |got - ref| <= one bf16 step at |ref| + 1e-5 · Σ_k |x_k w_k|.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/dtype.h"
#include "kernels/skinny_gemm.h"

namespace sweepd::kernels {
namespace {

void* ToDevice(const void* host, size_t bytes) {
  void* d = nullptr;
  EXPECT_EQ(cudaMalloc(&d, std::max<size_t>(16, bytes)), cudaSuccess);
  if (host != nullptr) {
    EXPECT_EQ(cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice), cudaSuccess);
  } else {
    EXPECT_EQ(cudaMemset(d, 0, std::max<size_t>(16, bytes)), cudaSuccess);
  }
  return d;
}

struct Case {
  int64_t m, n, k, ldx, ldw, ldy;
  int splits;
};

class SkinnyGemmGpuTest : public ::testing::Test {
 protected:
  // Random bf16 operands for `c`, the reference, and device copies.
  void Build(const Case& c) {
    std::mt19937 rng(static_cast<uint32_t>(c.m * 131 + c.n * 7 + c.k));
    std::normal_distribution<float> dist(0.0f, 1.0f);
    x_.assign(c.m * c.ldx, 0);
    w_.assign(c.n * c.ldw, 0);
    for (auto& v : x_) v = Bf16FromFloat(dist(rng));
    for (auto& v : w_) v = Bf16FromFloat(dist(rng) * 0.05f);
    ref_.assign(c.m * c.ldy, 0);
    absdot_.assign(c.m * c.n, 0.0);
    SkinnyGemmArgs a = Args(c, x_.data(), w_.data(), ref_.data());
    ASSERT_TRUE(SkinnyGemmCpu(a).ok());
    for (int64_t i = 0; i < c.m; ++i) {
      for (int64_t j = 0; j < c.n; ++j) {
        double s = 0;
        for (int64_t q = 0; q < c.k; ++q) {
          s += std::fabs(FloatFromBf16(x_[i * c.ldx + q]) *
                         FloatFromBf16(w_[j * c.ldw + q]));
        }
        absdot_[i * c.n + j] = s;
      }
    }
    dx_ = ToDevice(x_.data(), x_.size() * 2);
    dw_ = ToDevice(w_.data(), w_.size() * 2);
    dy_ = ToDevice(nullptr, c.m * c.ldy * 2);
    SkinnyGemmArgs d = Args(c, dx_, dw_, dy_);
    dws_ =
        ToDevice(nullptr, std::max<int64_t>(16, SkinnyGemmWorkspaceBytes(d)));
    dcount_ = static_cast<int32_t*>(
        ToDevice(nullptr, SkinnyGemmCounters(c.n) * sizeof(int32_t)));
  }
  void TearDown() override {
    for (void* p : {dx_, dw_, dy_, dws_, static_cast<void*>(dcount_)}) {
      if (p != nullptr) cudaFree(p);
    }
  }
  SkinnyGemmArgs Args(const Case& c, const void* x, const void* w,
                      void* y) const {
    SkinnyGemmArgs a;
    a.m = c.m;
    a.n = c.n;
    a.k = c.k;
    a.x = x;
    a.ldx = c.ldx;
    a.w = w;
    a.ldw = c.ldw;
    a.y = y;
    a.ldy = c.ldy;
    a.splits = c.splits;
    a.workspace = dws_;
    a.counters = dcount_;
    return a;
  }
  std::vector<uint16_t> Result(const Case& c) {
    std::vector<uint16_t> y(c.m * c.ldy);
    EXPECT_EQ(cudaMemcpy(y.data(), dy_, y.size() * 2, cudaMemcpyDeviceToHost),
              cudaSuccess);
    return y;
  }
  void ExpectCountersZero(const Case& c) {
    std::vector<int32_t> cnt(SkinnyGemmCounters(c.n), -1);
    ASSERT_EQ(
        cudaMemcpy(cnt.data(), dcount_, cnt.size() * 4, cudaMemcpyDeviceToHost),
        cudaSuccess);
    for (int32_t v : cnt) EXPECT_EQ(v, 0);
  }
  void ExpectNearReference(const Case& c, const std::vector<uint16_t>& y) {
    int bad = 0;
    for (int64_t i = 0; i < c.m; ++i) {
      for (int64_t j = 0; j < c.n; ++j) {
        const float got = FloatFromBf16(y[i * c.ldy + j]);
        const float ref = FloatFromBf16(ref_[i * c.ldy + j]);
        // One bf16 step at |ref|: 2^(exponent - 7).
        int exponent = 0;
        std::frexp(ref, &exponent);
        const double tol =
            std::ldexp(1.0, exponent - 8) + 1e-5 * absdot_[i * c.n + j];
        if (!(std::fabs(got - ref) <= tol) && ++bad <= 5) {
          ADD_FAILURE() << "m " << c.m << " n " << c.n << " k " << c.k
                        << " splits " << c.splits << ": y[" << i << ", " << j
                        << "] = " << got << ", reference " << ref;
        }
      }
    }
    EXPECT_EQ(bad, 0);
  }

  std::vector<uint16_t> x_, w_, ref_;
  std::vector<double> absdot_;
  void *dx_ = nullptr, *dw_ = nullptr, *dy_ = nullptr, *dws_ = nullptr;
  int32_t* dcount_ = nullptr;
};

TEST_F(SkinnyGemmGpuTest, MatchesTheReferenceAcrossVariantsSplitsAndTails) {
  std::vector<Case> cases;
  for (int64_t m : {1, 3, 8, 9, 16, 17, 24, 25, 32}) {
    for (int splits : {1, 3, 7}) {
      // n 300: two full tiles and a tail of 44 rows; k 1024: 16 chunks.
      cases.push_back({m, 300, 1024, 1024, 1024, 300, splits});
    }
  }
  // Padded strides, a one-row n, k of one chunk, uneven split ranges.
  cases.push_back({5, 1, 64, 72, 128, 8, 1});
  cases.push_back({32, 129, 640, 648, 704, 136, 3});
  cases.push_back({2, 16, 64 * 37, 64 * 37 + 8, 64 * 37, 16, 5});
  // 31B: o_proj of a sliding layer at 8 rows, the splits an H100 takes.
  cases.push_back({8, 5376, 8192, 8192, 8192, 5376, 6});
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << "m " << c.m << " n " << c.n << " k "
                                    << c.k << " splits " << c.splits);
    Build(c);
    ASSERT_EQ(SkinnyGemmCuda(Args(c, dx_, dw_, dy_), nullptr), 0);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    ExpectNearReference(c, Result(c));
    ExpectCountersZero(c);
    // Columns past n (padding of y) are not written.
    const std::vector<uint16_t> y = Result(c);
    for (int64_t i = 0; i < c.m; ++i) {
      for (int64_t j = c.n; j < c.ldy; ++j) EXPECT_EQ(y[i * c.ldy + j], 0);
    }
    TearDown();
    dx_ = dw_ = dy_ = dws_ = nullptr;
    dcount_ = nullptr;
  }
}

TEST_F(SkinnyGemmGpuTest, GraphOfSplitLaunchesReplaysToTheSameBits) {
  const Case c{24, 1000, 2048, 2048, 2048, 1000, 5};
  Build(c);
  ASSERT_EQ(SkinnyGemmCuda(Args(c, dx_, dw_, dy_), nullptr), 0);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<uint16_t> eager = Result(c);
  ExpectNearReference(c, eager);
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  cudaGraph_t graph;
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal),
            cudaSuccess);
  // Two launches in one graph: the second finds the counters reset.
  ASSERT_EQ(SkinnyGemmCuda(Args(c, dx_, dw_, dy_), s), 0);
  ASSERT_EQ(SkinnyGemmCuda(Args(c, dx_, dw_, dy_), s), 0);
  ASSERT_EQ(cudaStreamEndCapture(s, &graph), cudaSuccess);
  cudaGraphExec_t exec;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  for (int r = 0; r < 2; ++r) {
    ASSERT_EQ(cudaMemset(dy_, 0, c.m * c.ldy * 2), cudaSuccess);
    ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    EXPECT_EQ(Result(c), eager) << "replay " << r;
    ExpectCountersZero(c);
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(s);
}

TEST_F(SkinnyGemmGpuTest, RefusesBadArguments) {
  const Case c{4, 256, 256, 256, 256, 256, 2};
  Build(c);
  const SkinnyGemmArgs good = Args(c, dx_, dw_, dy_);
  ASSERT_EQ(SkinnyGemmCuda(good, nullptr), 0);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const int invalid = static_cast<int>(cudaErrorInvalidValue);
  SkinnyGemmArgs a = good;
  a.m = 33;
  EXPECT_EQ(SkinnyGemmCuda(a, nullptr), invalid);
  a = good;
  a.k = 200;
  EXPECT_EQ(SkinnyGemmCuda(a, nullptr), invalid);
  a = good;
  a.counters = nullptr;  // splits 2 need counters
  EXPECT_EQ(SkinnyGemmCuda(a, nullptr), invalid);
  a = good;
  a.x = static_cast<const char*>(dx_) + 2;  // not 16-byte aligned
  EXPECT_EQ(SkinnyGemmCuda(a, nullptr), invalid);
  a = good;
  a.ldw = 260;  // not a multiple of 8
  EXPECT_EQ(SkinnyGemmCuda(a, nullptr), invalid);
  EXPECT_GT(SkinnyGemmResidentBlocks(32), 0);
}

}  // namespace
}  // namespace sweepd::kernels
