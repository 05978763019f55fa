// CPU reference of kernels/layout_copy.h against explicit index arithmetic.
#include "kernels/layout_copy.h"

#include <cstdint>
#include <vector>

#include "gtest/gtest.h"

namespace sweepd::kernels {
namespace {

TEST(LayoutCopyCpuTest, SwapMiddleDimsPermutesWholeRows) {
  const int outer = 2, d1 = 3, d2 = 4, inner = 2;  // int16 elements
  std::vector<int16_t> src(outer * d1 * d2 * inner), dst(src.size());
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<int16_t>(i);
  ASSERT_TRUE(
      SwapMiddleDimsCpu(src.data(), outer, d1, d2, inner * 2, dst.data()).ok());
  for (int a = 0; a < outer; ++a)
    for (int x = 0; x < d1; ++x)
      for (int y = 0; y < d2; ++y)
        for (int e = 0; e < inner; ++e)
          EXPECT_EQ(dst[((a * d2 + y) * d1 + x) * inner + e],
                    src[((a * d1 + x) * d2 + y) * inner + e]);
}

TEST(LayoutCopyCpuTest, ReverseRowsFromAStridedSource) {
  // n0 = 2 entries of 3 blocks of 2 rows of 3 bytes; copy blocks 1 and 2.
  const int64_t n0 = 2, n1 = 2, rows = 2, rb = 3;
  const int64_t s_row = rb, s1 = rows * s_row, s0 = 3 * s1;
  std::vector<uint8_t> src(n0 * s0), dst(n0 * n1 * rows * rb);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i);
  ASSERT_TRUE(ReverseRowsCpu(src.data() + s1, n0, n1, rows, rb, s0, s1, s_row,
                             dst.data())
                  .ok());
  for (int64_t a = 0; a < n0; ++a)
    for (int64_t b = 0; b < n1; ++b)
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t e = 0; e < rb; ++e)
          EXPECT_EQ(dst[((a * n1 + b) * rows + r) * rb + e],
                    src[a * s0 + (b + 1) * s1 + (rows - 1 - r) * s_row + e]);
  EXPECT_EQ(ReverseRowsCpu(nullptr, 1, 1, 1, 1, 1, 1, 1, dst.data()).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sweepd::kernels
