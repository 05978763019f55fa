// GPU tests of GemmTuner (label gpu): the tuned cuBLASLt GEMM equals a float64
// host product of the same bf16 operands to bf16 rounding (float32
// accumulation), with padded leading dimensions; a shape is tuned once and
// reused; a tuning cache file makes a second tuner take the first one's
// choice without timing, ignores other devices' lines and rejects malformed
// ones; bad arguments are rejected.
#include <cuda_runtime.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/engine/gemm_tuner.h"

namespace sweepd::engine {
namespace {

uint16_t ToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float FromBf16(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

TEST(GemmTunerGpuTest, TunedGemmMatchesHostProduct) {
  auto tuner = GemmTuner::Create(0);
  ASSERT_TRUE(tuner.ok()) << tuner.status();
  const int64_t M = 96, N = 200, K = 264;
  const int64_t ldx = K + 8, ldw = K + 16, ldy = N + 8;
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<uint16_t> x(M * ldx), w(N * ldw);
  for (auto& v : x) v = ToBf16(dist(rng));
  for (auto& v : w) v = ToBf16(dist(rng));
  void *dx, *dw, *dy;
  ASSERT_EQ(cudaMalloc(&dx, x.size() * 2), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dw, w.size() * 2), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dy, M * ldy * 2), cudaSuccess);
  cudaMemcpy(dx, x.data(), x.size() * 2, cudaMemcpyHostToDevice);
  cudaMemcpy(dw, w.data(), w.size() * 2, cudaMemcpyHostToDevice);
  GemmArgs a;
  a.shape = {M, N, K};
  a.x = dx;
  a.ldx = ldx;
  a.w = dw;
  a.ldw = ldw;
  a.y = dy;
  a.ldy = ldy;
  absl::StatusOr<bool> first = (*tuner)->Run(a, nullptr);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(*first);  // tuned the new shape
  absl::StatusOr<bool> again = (*tuner)->Run(a, nullptr);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(*again);  // the tuned plan again
  std::vector<uint16_t> y(M * ldy);
  ASSERT_EQ(cudaMemcpy(y.data(), dy, y.size() * 2, cudaMemcpyDeviceToHost),
            cudaSuccess);
  int bad = 0;
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double want = 0;
      for (int64_t k = 0; k < K; ++k) {
        want += double(FromBf16(x[i * ldx + k])) * FromBf16(w[j * ldw + k]);
      }
      const double got = FromBf16(y[i * ldy + j]);
      // One bf16 rounding of the result plus float32 accumulation.
      if (std::abs(got - want) > std::abs(want) / 128.0 + 1e-3) ++bad;
    }
  }
  EXPECT_EQ(bad, 0);
  const std::vector<GemmTuner::Choice> c = (*tuner)->Choices();
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(GemmShapeName(c[0].shape), "96x200x264");
  EXPECT_GE(c[0].candidates, 1);
  EXPECT_LT(c[0].chosen, c[0].candidates);
  EXPECT_LE(c[0].chosen_ms, c[0].heuristic_ms);
  cudaFree(dx);
  cudaFree(dw);
  cudaFree(dy);
}

// Device buffers for one GEMM shape with arbitrary bf16 contents.
struct Operands {
  Operands(int64_t m, int64_t n, int64_t k) {
    EXPECT_EQ(cudaMalloc(&x, m * k * 2), cudaSuccess);
    EXPECT_EQ(cudaMalloc(&w, n * k * 2), cudaSuccess);
    EXPECT_EQ(cudaMalloc(&y, m * n * 2), cudaSuccess);
    cudaMemset(x, 0x3c, m * k * 2);
    cudaMemset(w, 0x3c, n * k * 2);
    args.shape = {m, n, k};
    args.x = x;
    args.ldx = k;
    args.w = w;
    args.ldw = k;
    args.y = y;
    args.ldy = n;
  }
  ~Operands() {
    cudaFree(x);
    cudaFree(w);
    cudaFree(y);
  }
  void *x = nullptr, *w = nullptr, *y = nullptr;
  GemmArgs args;
};

std::string TempFile(const char* name) {
  std::string dir = ::testing::TempDir();
  if (!dir.empty() && dir.back() != '/') dir += '/';
  return dir + name + std::to_string(::getpid());
}

std::vector<std::string> Lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

TEST(GemmTunerGpuTest, CacheFileRepeatsChoicesAcrossTuners) {
  const std::string cache = TempFile("gemm_cache_");
  std::remove(cache.c_str());
  // A line of another GPU model is kept and ignored.
  std::ofstream(cache)
      << "Other GPU cublasLt 1\t256\t512\t1024\t1024\t1024\t512\t3\n";
  Operands ops(256, 512, 1024);
  int first_choice = -1;
  {
    auto a = GemmTuner::Create(0, cache);
    ASSERT_TRUE(a.ok()) << a.status();
    absl::StatusOr<bool> tuned = (*a)->Run(ops.args, nullptr);
    ASSERT_TRUE(tuned.ok()) << tuned.status();
    EXPECT_TRUE(*tuned);
    const GemmTuner::Choice c = (*a)->Choices().back();
    EXPECT_FALSE(c.from_cache);
    first_choice = c.chosen;
  }
  const std::vector<std::string> lines = Lines(cache);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[1],
              ::testing::HasSubstr("\t256\t512\t1024\t1024\t1024\t512\t" +
                                   std::to_string(first_choice)));
  auto b = GemmTuner::Create(0, cache);
  ASSERT_TRUE(b.ok()) << b.status();
  absl::StatusOr<bool> tuned = (*b)->Run(ops.args, nullptr);
  ASSERT_TRUE(tuned.ok()) << tuned.status();
  const GemmTuner::Choice c = (*b)->Choices().back();
  EXPECT_TRUE(c.from_cache);
  EXPECT_EQ(c.chosen, first_choice);
  EXPECT_EQ(Lines(cache).size(), 2u);  // nothing appended for a cached shape
  std::remove(cache.c_str());
}

TEST(GemmTunerGpuTest, MalformedCacheLineIsRejected) {
  const std::string cache = TempFile("gemm_bad_cache_");
  std::ofstream(cache) << "NVIDIA H200 cublasLt 1\t256\tx\n";
  auto t = GemmTuner::Create(0, cache);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(t.status().message()),
              ::testing::HasSubstr(cache + " line 1"));
  std::remove(cache.c_str());
}

TEST(GemmTunerGpuTest, RejectsBadArguments) {
  auto tuner = GemmTuner::Create(0);
  ASSERT_TRUE(tuner.ok()) << tuner.status();
  GemmArgs a;
  a.shape = {4, 4, 4};
  absl::Status st = (*tuner)->Run(a, nullptr).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("4x4x4"));
  int dummy = 0;
  a.x = a.w = a.y = &dummy;
  a.ldx = 2;  // smaller than k
  a.ldw = 4;
  a.ldy = 4;
  EXPECT_EQ((*tuner)->Run(a, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sweepd::engine
