// CPU reference of kernels/causal_softmax.h on hand-computed rows.
#include "kernels/causal_softmax.h"

#include <cmath>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sweepd::kernels {
namespace {

using ::testing::HasSubstr;

TEST(CausalSoftmaxCpuTest, CausalBandedAndGroupedRows) {
  // 4 rows = 2 positions x group 2, keys 0..3, positions 2 and 3.
  std::vector<float> s(16, 0.0f);
  for (int k = 0; k < 4; ++k) s[12 + k] = static_cast<float>(k);  // last row
  CausalSoftmaxArgs a;
  a.dtype = Dtype::kFloat32;
  a.scores = s.data();
  a.batches = 1;
  a.rows = 4;
  a.keys = 4;
  a.group = 2;
  a.q_start = 2;
  a.scale = 1.0f;
  ASSERT_TRUE(CausalSoftmaxCpu(a).ok());
  // Rows 0, 1 (position 2): keys 0..2 uniform, key 3 masked.
  for (int r = 0; r < 2; ++r) {
    for (int k = 0; k < 3; ++k) EXPECT_NEAR(s[r * 4 + k], 1.0 / 3, 1e-7);
    EXPECT_EQ(s[r * 4 + 3], 0.0f);
  }
  // Row 2 (position 3, zeros): uniform over 4 keys.
  for (int k = 0; k < 4; ++k) EXPECT_NEAR(s[8 + k], 0.25, 1e-7);
  // Row 3 (position 3, scores 0..3): softmax of 0, 1, 2, 3.
  const double z = 1 + std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  for (int k = 0; k < 4; ++k) EXPECT_NEAR(s[12 + k], std::exp(k) / z, 1e-7);

  // Window 2 at position 3 with keys starting at 1: keys 2, 3 only.
  std::vector<float> w(3, 1.0f);
  a.scores = w.data();
  a.rows = 1;
  a.keys = 3;
  a.group = 1;
  a.q_start = 3;
  a.key_start = 1;
  a.window = 2;
  ASSERT_TRUE(CausalSoftmaxCpu(a).ok());
  EXPECT_EQ(w[0], 0.0f);
  EXPECT_NEAR(w[1], 0.5, 1e-7);
  EXPECT_NEAR(w[2], 0.5, 1e-7);
}

TEST(CausalSoftmaxCpuTest, RejectsRowsWithoutAllowedKeys) {
  std::vector<float> s(8);
  CausalSoftmaxArgs a;
  a.dtype = Dtype::kFloat32;
  a.scores = s.data();
  a.batches = 1;
  a.rows = 1;
  a.keys = 8;
  a.q_start = 8;  // position 8 lies past keys [0, 8)
  EXPECT_THAT(CausalSoftmaxCpu(a).message(), HasSubstr("key range"));
}

}  // namespace
}  // namespace sweepd::kernels
