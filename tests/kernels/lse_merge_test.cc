// CPU reference of kernels/lse_merge.h on hand-computed merges.
#include "kernels/lse_merge.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace sweepd::kernels {
namespace {

TEST(LseMergeCpuTest, WeightsByTheLogSumExps) {
  // batch 1, rows 2, heads 1, head_dim 2; lse [batch, heads, rows].
  std::vector<float> out = {1, 2, 10, 20}, other = {3, 4, 30, 40};
  const std::vector<float> l1 = {0.0f, 5.0f}, l2 = {0.0f, std::log(4.0f) + 5};
  LseMergeArgs a;
  a.dtype = Dtype::kFloat32;
  a.batch = 1;
  a.rows = 2;
  a.heads = 1;
  a.head_dim = 2;
  a.out = out.data();
  a.other = other.data();
  a.out_lse = l1.data();
  a.other_lse = l2.data();
  const int64_t os[3] = {4, 2, 2}, ls[3] = {2, 2, 1};
  for (int d = 0; d < 3; ++d) {
    a.out_stride[d] = a.other_stride[d] = os[d];
    a.out_lse_stride[d] = a.other_lse_stride[d] = ls[d];
  }
  ASSERT_TRUE(LseMergeCpu(a).ok());
  // Row 0: equal weights. Row 1: the other part has 4x the mass.
  EXPECT_NEAR(out[0], 2.0, 1e-6);
  EXPECT_NEAR(out[1], 3.0, 1e-6);
  EXPECT_NEAR(out[2], (10 + 4 * 30) / 5.0, 1e-5);
  EXPECT_NEAR(out[3], (20 + 4 * 40) / 5.0, 1e-5);
}

TEST(LseMergeCpuTest, RejectsNullOperands) {
  LseMergeArgs a;
  EXPECT_EQ(LseMergeCpu(a).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sweepd::kernels
