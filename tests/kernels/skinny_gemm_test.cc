// CPU reference and shape helpers of kernels/skinny_gemm.h.
#include "kernels/skinny_gemm.h"

#include <cstdint>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/dtype.h"

namespace sweepd::kernels {
namespace {

using ::testing::HasSubstr;

TEST(SkinnyGemmCpuTest, ProductOfStridedRowsRoundedOnce) {
  // m 2, n 3, k 64, with padded rows: x row i = (i + 1) at k < 2, w row j =
  // 0.5 (j + 1) at k < 2 and 2^-9 at k = 63 (x 1 there): y = 2 (i + 1) · 0.5
  // (j + 1) + 2^-9, which bf16 keeps only where the product is small.
  const int64_t m = 2, n = 3, k = 64, ldx = 72, ldw = 80, ldy = 5;
  std::vector<uint16_t> x(m * ldx, Bf16FromFloat(-7.0f));  // padding
  std::vector<uint16_t> w(n * ldw, Bf16FromFloat(-7.0f));
  std::vector<uint16_t> y(m * ldy, Bf16FromFloat(-1.0f));
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t c = 0; c < k; ++c) x[i * ldx + c] = Bf16FromFloat(0.0f);
    x[i * ldx + 0] = x[i * ldx + 1] = Bf16FromFloat(i + 1.0f);
    x[i * ldx + 63] = Bf16FromFloat(1.0f);
  }
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t c = 0; c < k; ++c) w[j * ldw + c] = Bf16FromFloat(0.0f);
    w[j * ldw + 0] = w[j * ldw + 1] = Bf16FromFloat(0.5f * (j + 1));
    w[j * ldw + 63] = Bf16FromFloat(1.0f / 512);
  }
  SkinnyGemmArgs a;
  a.m = m;
  a.n = n;
  a.k = k;
  a.x = x.data();
  a.ldx = ldx;
  a.w = w.data();
  a.ldw = ldw;
  a.y = y.data();
  a.ldy = ldy;
  ASSERT_TRUE(SkinnyGemmCpu(a).ok());
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      const float exact = (i + 1.0f) * (j + 1.0f) + 1.0f / 512;
      EXPECT_EQ(y[i * ldy + j], Bf16FromFloat(exact)) << i << " " << j;
    }
    // Columns past n are not written.
    EXPECT_EQ(y[i * ldy + 3], Bf16FromFloat(-1.0f));
    EXPECT_EQ(y[i * ldy + 4], Bf16FromFloat(-1.0f));
  }
  // 1 + 2^-9 rounds to 1 in bf16 (8 bits of mantissa); 1/512 alone is exact.
  EXPECT_EQ(y[0], Bf16FromFloat(1.0f));
}

TEST(SkinnyGemmCpuTest, RejectsShapesAndArgumentsNamingThem) {
  std::vector<uint16_t> buf(64 * 64, 0);
  SkinnyGemmArgs a;
  a.m = 1;
  a.n = 1;
  a.k = 64;
  a.x = a.w = buf.data();
  a.y = buf.data();
  a.ldx = a.ldw = 64;
  a.ldy = 1;
  ASSERT_TRUE(SkinnyGemmCpu(a).ok());
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{0, 1, 64},
                         {33, 1, 64},
                         {1, 0, 64},
                         {1, 1, 48},
                         {1, 1, 0}}) {
    SkinnyGemmArgs b = a;
    b.m = m;
    b.n = n;
    b.k = k;
    const absl::Status st = SkinnyGemmCpu(b);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << m << n << k;
    EXPECT_THAT(st.message(), HasSubstr("a positive multiple of 64"));
  }
  SkinnyGemmArgs c = a;
  c.ldw = 32;
  EXPECT_THAT(SkinnyGemmCpu(c).message(), HasSubstr("ldw 32"));
  c = a;
  c.y = nullptr;
  EXPECT_THAT(SkinnyGemmCpu(c).message(), HasSubstr("must be set"));
}

TEST(SkinnyGemmTest, SplitsFillTheResidentBlocksOnce) {
  // 31B shapes on an H100 with two blocks per SM (264 resident blocks).
  EXPECT_EQ(SkinnyGemmSplits(32, 5376, 8192, 264), 6);   // 42 tiles
  EXPECT_EQ(SkinnyGemmSplits(8, 5376, 21504, 264), 6);   // 42 tiles
  EXPECT_EQ(SkinnyGemmSplits(1, 16384, 5376, 264), 2);   // 128 tiles
  EXPECT_EQ(SkinnyGemmSplits(32, 18432, 5376, 264), 1);  // 144 tiles
  EXPECT_EQ(SkinnyGemmSplits(32, 43008, 5376, 264), 1);  // 336 tiles
  EXPECT_EQ(SkinnyGemmSplits(1, 262144, 5376, 264), 1);  // LM head
  // Every split keeps at least 4 chunks of 64; short k is not split.
  EXPECT_EQ(SkinnyGemmSplits(1, 128, 1024, 264), 4);
  EXPECT_EQ(SkinnyGemmSplits(1, 128, 448, 264), 1);
  EXPECT_EQ(SkinnyGemmSplits(1, 128, 1 << 20, 264), 32);
  SkinnyGemmArgs a;
  a.m = 3;
  a.n = 300;
  a.splits = 4;
  EXPECT_EQ(SkinnyGemmWorkspaceBytes(a), 4 * 3 * 300 * 4);
  a.splits = 1;
  EXPECT_EQ(SkinnyGemmWorkspaceBytes(a), 0);
  EXPECT_EQ(SkinnyGemmCounters(300), 3);
  EXPECT_EQ(SkinnyGemmCounters(128), 1);
}

}  // namespace
}  // namespace sweepd::kernels
