// CPU reference of kernels/block_influence.h on rows with known angles.
#include "kernels/block_influence.h"

#include <vector>

#include "gtest/gtest.h"

namespace sweepd::kernels {
namespace {

TEST(RowCosNormCpuTest, KnownAnglesAndNorms) {
  // Rows: same direction (cos 1), opposite (cos -1), orthogonal (cos 0),
  // a zero row (guarded denominator: influence 1).
  const std::vector<float> a = {1, 2, 2, 1, 2, 2, 1, 0, 0, 0, 0, 0};
  const std::vector<float> b = {2, 4, 4, -1, -2, -2, 0, 3, 4, 1, 1, 1};
  std::vector<float> bi(4), nb(4);
  ASSERT_TRUE(RowCosNormCpu(Dtype::kFloat32, a.data(), b.data(), 4, 3,
                            bi.data(), nb.data())
                  .ok());
  EXPECT_NEAR(bi[0], 0.0, 1e-7);
  EXPECT_NEAR(bi[1], 2.0, 1e-7);
  EXPECT_NEAR(bi[2], 1.0, 1e-7);
  EXPECT_NEAR(bi[3], 1.0, 1e-7);
  EXPECT_NEAR(nb[0], 6.0, 1e-6);
  EXPECT_NEAR(nb[1], 3.0, 1e-6);
  EXPECT_NEAR(nb[2], 5.0, 1e-6);
  EXPECT_NEAR(nb[3], 1.7320508, 1e-6);
}

TEST(RowCosNormCpuTest, RejectsNullOutputs) {
  float x = 1;
  EXPECT_EQ(RowCosNormCpu(Dtype::kFloat32, &x, &x, 1, 1, nullptr, &x).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sweepd::kernels
