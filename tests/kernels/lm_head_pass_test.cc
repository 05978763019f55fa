// CPU reference of the fused LM-head logits pass against a naive float64
// computation, the sharded (TP > 1) sequence against the single-shard pass, and
// the exact-softcap / threshold definitions the CUDA kernels share bit for bit.
#include "kernels/lm_head_pass.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/softcap_math.h"

namespace sweepd::kernels {
namespace {

using ::testing::HasSubstr;

constexpr float kInf = std::numeric_limits<float>::infinity();

uint16_t ToBf16(float f) {  // round to nearest even
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
float FromBf16(uint16_t b) { return internal::Bf16BitsToFloat(b); }

struct Naive {
  double lse;
  double target_z;
  int32_t count;
};

// Float64 definition: z = c tanh(x / c); lse over the row; count of z strictly
// above the target.
Naive NaiveRow(const std::vector<float>& x, int64_t target, double c) {
  std::vector<double> z(x.size());
  double m = -INFINITY;
  for (size_t v = 0; v < x.size(); ++v) {
    z[v] = c > 0 ? c * std::tanh(x[v] / c) : x[v];
    m = std::max(m, z[v]);
  }
  double s = 0;
  for (double zv : z) s += std::exp(zv - m);
  Naive n{m + std::log(s), target >= 0 ? z[target] : -INFINITY, 0};
  if (target >= 0) {
    for (double zv : z) n.count += zv > n.target_z ? 1 : 0;
  }
  return n;
}

struct Problem {
  int64_t rows, vocab, stride;
  std::vector<float> values;  // [rows][stride], what the logits hold as float
  std::vector<uint16_t> bf16;
  std::vector<int64_t> targets;
};

// Random logits ~ N(0, sigma), bf16-representable; a few ties of the target
// planted per row.
Problem MakeProblem(int64_t rows, int64_t vocab, int64_t stride, float sigma,
                    uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, sigma);
  std::uniform_int_distribution<int64_t> pick(0, vocab - 1);
  Problem p{rows,
            vocab,
            stride,
            std::vector<float>(rows * stride, 1e30f),
            std::vector<uint16_t>(rows * stride, 0x7FC0),
            std::vector<int64_t>(rows)};
  for (int64_t t = 0; t < rows; ++t) {
    for (int64_t v = 0; v < vocab; ++v) {
      const uint16_t b = ToBf16(normal(rng));
      p.bf16[t * stride + v] = b;
      p.values[t * stride + v] = FromBf16(b);
    }
    p.targets[t] = t % 5 == 4 ? -1 : pick(rng);
    if (p.targets[t] >= 0) {
      for (int k = 0; k < 3; ++k) {  // ties with the target: not counted
        const int64_t v = pick(rng);
        p.bf16[t * stride + v] = p.bf16[t * stride + p.targets[t]];
        p.values[t * stride + v] = p.values[t * stride + p.targets[t]];
      }
    }
  }
  return p;
}

std::vector<float> Row(const Problem& p, int64_t t) {
  return std::vector<float>(p.values.begin() + t * p.stride,
                            p.values.begin() + t * p.stride + p.vocab);
}

class ReferenceVsNaive
    : public ::testing::TestWithParam<std::tuple<bool, float>> {};

TEST_P(ReferenceVsNaive, LseTargetAndRankMatchFloat64) {
  const auto [bf16, softcap] = GetParam();
  Problem p = MakeProblem(/*rows=*/11, /*vocab=*/1003, /*stride=*/1010,
                          /*sigma=*/6.0f, 7);
  LogitsShard s;
  s.data = bf16 ? static_cast<const void*>(p.bf16.data()) : p.values.data();
  s.type = bf16 ? LogitsType::kBFloat16 : LogitsType::kFloat32;
  s.num_rows = p.rows;
  s.vocab_shard = p.vocab;
  s.row_stride = p.stride;
  s.softcap = softcap;
  TargetIds ids{p.targets.data(), TargetIdType::kInt64};
  std::vector<float> mx(p.rows), se(p.rows), tl(p.rows), lse(p.rows);
  std::vector<int32_t> cnt(p.rows, -7);
  ASSERT_TRUE(
      ShardStatsAndRankCpu(
          s, ids, {mx.data(), se.data(), tl.data(), cnt.data(), lse.data()})
          .ok());
  for (int64_t t = 0; t < p.rows; ++t) {
    const Naive n = NaiveRow(Row(p, t), p.targets[t], softcap);
    EXPECT_NEAR(lse[t], n.lse, 1e-5 * std::abs(n.lse)) << "row " << t;
    EXPECT_NEAR(mx[t] + std::log(se[t]), n.lse, 1e-5 * std::abs(n.lse))
        << "row " << t;
    if (p.targets[t] < 0) {
      EXPECT_EQ(tl[t], -kInf);
      EXPECT_EQ(cnt[t], 0);
    } else {
      EXPECT_FLOAT_EQ(tl[t], static_cast<float>(n.target_z)) << "row " << t;
      EXPECT_EQ(cnt[t], n.count) << "row " << t;
      EXPECT_GT(cnt[t], 0) << "row " << t
                           << ": a random target should rarely be top-1";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(TypesAndSoftcaps, ReferenceVsNaive,
                         ::testing::Combine(::testing::Bool(),
                                            ::testing::Values(0.0f, 30.0f)));

TEST(LmHeadPassCpu, ShardedSequenceEqualsSingleShard) {
  const int64_t vocab = 2051;
  Problem p = MakeProblem(9, vocab, vocab, 5.0f, 11);
  LogitsShard full{
      p.bf16.data(), LogitsType::kBFloat16, p.rows, vocab, vocab, 0, 30.0f};
  std::vector<int32_t> tid(p.targets.begin(), p.targets.end());
  TargetIds ids{tid.data(), TargetIdType::kInt32};
  std::vector<float> mx(p.rows), se(p.rows), tl(p.rows), lse(p.rows);
  std::vector<int32_t> cnt(p.rows);
  ASSERT_TRUE(
      ShardStatsAndRankCpu(
          full, ids, {mx.data(), se.data(), tl.data(), cnt.data(), lse.data()})
          .ok());

  // Three uneven shards, each a column block of the same rows (row_stride =
  // vocab).
  const int64_t bounds[4] = {0, 700, 1401, vocab};
  const int kShards = 3;
  std::vector<float> smax(kShards * p.rows), ssum(kShards * p.rows),
      stl(kShards * p.rows);
  for (int k = 0; k < kShards; ++k) {
    LogitsShard sh{p.bf16.data() + bounds[k],
                   LogitsType::kBFloat16,
                   p.rows,
                   bounds[k + 1] - bounds[k],
                   vocab,
                   bounds[k],
                   30.0f};
    ASSERT_TRUE(
        ShardStatsCpu(sh, ids,
                      {&smax[k * p.rows], &ssum[k * p.rows], &stl[k * p.rows]})
            .ok());
  }
  // "All-reduce MAX" of max and target logit, rescale + "all-reduce SUM", count
  // + SUM.
  std::vector<float> gmax(p.rows, -kInf), gtl(p.rows, -kInf),
      gsum(p.rows, 0.0f), glse(p.rows);
  std::vector<int32_t> gcnt(p.rows, 0);
  for (int k = 0; k < kShards; ++k) {
    for (int64_t t = 0; t < p.rows; ++t) {
      gmax[t] = std::max(gmax[t], smax[k * p.rows + t]);
      gtl[t] = std::max(gtl[t], stl[k * p.rows + t]);
    }
  }
  for (int k = 0; k < kShards; ++k) {
    LogitsShard sh{p.bf16.data() + bounds[k],
                   LogitsType::kBFloat16,
                   p.rows,
                   bounds[k + 1] - bounds[k],
                   vocab,
                   bounds[k],
                   30.0f};
    std::vector<float> resc(p.rows);
    std::vector<int32_t> c(p.rows, -1);
    ASSERT_TRUE(RescaleSumExpCpu(&smax[k * p.rows], &ssum[k * p.rows],
                                 gmax.data(), p.rows, resc.data())
                    .ok());
    ASSERT_TRUE(ShardCountAboveCpu(sh, ids, gtl.data(), c.data()).ok());
    for (int64_t t = 0; t < p.rows; ++t) {
      gsum[t] += resc[t];
      gcnt[t] += c[t];
    }
  }
  ASSERT_TRUE(
      LseFromMaxSumCpu(gmax.data(), gsum.data(), p.rows, glse.data()).ok());
  std::vector<float> clse(p.rows);
  ASSERT_TRUE(CombineShardStatsCpu(smax.data(), ssum.data(), kShards, p.rows,
                                   clse.data())
                  .ok());
  for (int64_t t = 0; t < p.rows; ++t) {
    EXPECT_EQ(gcnt[t], cnt[t]) << "row " << t;
    EXPECT_EQ(gtl[t], tl[t]) << "row " << t;
    EXPECT_NEAR(glse[t], lse[t], 2e-6 * std::abs(lse[t])) << "row " << t;
    EXPECT_NEAR(clse[t], lse[t], 2e-6 * std::abs(lse[t])) << "row " << t;
  }
}

TEST(LmHeadPassCpu, SaturatedSoftcapTiesAreNotCounted) {
  // With c = 30, bf16 logits 400, 448 and 512 all softcap to exactly 30.0f:
  // ties, not counted.
  std::vector<uint16_t> row = {ToBf16(1.0f),   ToBf16(400.0f), ToBf16(448.0f),
                               ToBf16(512.0f), ToBf16(-3.0f),  ToBf16(29.0f)};
  ASSERT_EQ(SoftcapExactF32(400.0f, 30.0f), SoftcapExactF32(512.0f, 30.0f));
  LogitsShard s{row.data(), LogitsType::kBFloat16, 1, 6, 6, 0, 30.0f};
  int64_t target = 1;  // x = 400
  float mx, se, tl;
  int32_t cnt = -1;
  ASSERT_TRUE(ShardStatsAndRankCpu(s, {&target, TargetIdType::kInt64},
                                   {&mx, &se, &tl, &cnt, nullptr})
                  .ok());
  EXPECT_EQ(cnt, 0);
  EXPECT_EQ(tl, 30.0f);
  target = 5;  // x = 29: 400, 448, 512 are strictly above
  ASSERT_TRUE(ShardStatsAndRankCpu(s, {&target, TargetIdType::kInt64},
                                   {&mx, &se, &tl, &cnt, nullptr})
                  .ok());
  EXPECT_EQ(cnt, 3);
}

TEST(SoftcapExact, MonotoneOverAllBf16Values) {
  for (float c : {30.0f, 50.0f, 7.5f, 0.0f}) {
    float prev = -kInf;
    for (uint32_t key = internal::OrderedKey(0xFF80u, 16);
         key <= internal::OrderedKey(0x7F80u, 16); ++key) {
      const float z = SoftcapExactF32(internal::KeyToFloat(key, 16), c);
      ASSERT_GE(z, prev) << "c=" << c << " key=" << key;
      prev = z;
    }
  }
}

TEST(SoftcapExact, MonotoneOnDenseFloat32Ranges) {
  // Consecutive floats around 0, around |x| = c (steepest curvature change),
  // and deep in the saturation region, for the production softcap.
  const float c = 30.0f;
  for (float center : {0.0f, 1.0f, -1.0f, 30.0f, -30.0f, 120.0f, 260.0f}) {
    const uint32_t k0 = internal::OrderedKey(internal::FloatToBits(center), 32);
    float prev = -kInf;
    for (uint32_t key = k0 - 200000; key < k0 + 200000; ++key) {
      const float z = SoftcapExactF32(internal::KeyToFloat(key, 32), c);
      ASSERT_GE(z, prev) << "center " << center << " key " << key;
      prev = z;
    }
  }
}

TEST(SoftcapExact, WithinOneUlpOfFloat64Tanh) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-400.0f, 400.0f);
  for (int i = 0; i < 200000; ++i) {
    const float x = i % 2 ? u(rng) : u(rng) * 1e-3f;
    const float got = SoftcapExactF32(x, 30.0f);
    const float want =
        static_cast<float>(30.0 * std::tanh(static_cast<double>(x) / 30.0));
    ASSERT_LE(std::abs(got - want),
              std::nextafter(std::abs(want), kInf) - std::abs(want))
        << "x=" << x;
  }
  EXPECT_EQ(SoftcapExactF32(2.5f, 0.0f), 2.5f);
  EXPECT_EQ(SoftcapExactF32(kInf, 30.0f), 30.0f);
  EXPECT_EQ(SoftcapExactF32(-kInf, 30.0f), -30.0f);
}

TEST(SoftcapThreshold, IsTheSmallestValueAboveZ) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-31.0f, 31.0f);
  for (LogitsType type : {LogitsType::kBFloat16, LogitsType::kFloat32}) {
    const int width = type == LogitsType::kBFloat16 ? 16 : 32;
    for (int i = 0; i < 2000; ++i) {
      const float z = u(rng);
      const float th = SoftcapThreshold(z, 30.0f, type);
      if (z >= 30.0f) {
        EXPECT_TRUE(std::isnan(th)) << z;
        continue;
      }
      ASSERT_GT(SoftcapExactF32(th, 30.0f), z);
      if (z < -30.0f) {  // every value, -inf included, softcaps above z
        EXPECT_EQ(th, -kInf);
        continue;
      }
      const uint32_t bits = width == 16 ? internal::FloatToBits(th) >> 16
                                        : internal::FloatToBits(th);
      const float below =
          internal::KeyToFloat(internal::OrderedKey(bits, width) - 1, width);
      ASSERT_LE(SoftcapExactF32(below, 30.0f), z) << "z=" << z << " th=" << th;
    }
  }
  EXPECT_EQ(SoftcapThreshold(-kInf, 30.0f, LogitsType::kBFloat16), -kInf);
  EXPECT_TRUE(std::isnan(SoftcapThreshold(NAN, 30.0f, LogitsType::kFloat32)));
  EXPECT_EQ(SoftcapThreshold(1.0f, 0.0f, LogitsType::kFloat32),
            std::nextafter(1.0f, 2.0f));
}

TEST(LmHeadPassCpu, CombineSkipsEmptyShards) {
  const float mx[2] = {-kInf, 2.0f};
  const float se[2] = {0.0f, 3.0f};
  float lse = 0;
  ASSERT_TRUE(CombineShardStatsCpu(mx, se, 2, 1, &lse).ok());
  EXPECT_FLOAT_EQ(lse, 2.0f + std::log(3.0f));
}

TEST(LmHeadPassCpu, RejectsBadArguments) {
  std::vector<float> x(12, 1.0f);
  int64_t target = 0;
  float a, b, c;
  int32_t n;
  LogitsShard s{x.data(), LogitsType::kFloat32, 2, 6, 5, 0, 30.0f};
  EXPECT_THAT(
      ShardStatsCpu(s, {&target, TargetIdType::kInt64}, {&a, &b, &c}).message(),
      HasSubstr("row_stride"));
  EXPECT_EQ(
      ShardStatsCpu(s, {&target, TargetIdType::kInt64}, {&a, &b, &c}).code(),
      absl::StatusCode::kInvalidArgument);
  s.row_stride = 6;
  s.vocab_shard = 0;
  EXPECT_THAT(
      ShardStatsCpu(s, {&target, TargetIdType::kInt64}, {&a, &b, &c}).message(),
      HasSubstr("vocab_shard"));
  s.vocab_shard = 6;
  EXPECT_THAT(ShardStatsAndRankCpu(s, {&target, TargetIdType::kInt64},
                                   {&a, &b, &c, nullptr, nullptr})
                  .message(),
              HasSubstr("count"));
  EXPECT_THAT(
      ShardCountAboveCpu(s, {nullptr, TargetIdType::kInt64}, &a, &n).message(),
      HasSubstr("targets.data"));
  s.softcap = NAN;
  EXPECT_THAT(
      ShardStatsCpu(s, {&target, TargetIdType::kInt64}, {&a, &b, &c}).message(),
      HasSubstr("softcap"));
}

}  // namespace
}  // namespace sweepd::kernels
