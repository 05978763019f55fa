// CPU reference of kernels/row_norm.h against the formula written out.
#include "kernels/row_norm.h"

#include <cmath>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sweepd::kernels {
namespace {

using ::testing::HasSubstr;

TEST(RowNormCpuTest, Fp32NormResidualScalarAndNextNorm) {
  // Two rows of 4 in a row stride of 5.
  const std::vector<float> x = {1, 2, 3, 4, 99, -2, 0, 2, 1, 99};
  const std::vector<float> w = {1, 1, 2, 0.5f}, w2 = {2, 1, 1, 1};
  const std::vector<float> res = {1, 1, 1, 1, 0, 0, 0, 0};
  const float scalar = 0.5f, eps = 1e-6f;
  std::vector<float> out(8), out2(8);
  RowNormArgs a;
  a.dtype = Dtype::kFloat32;
  a.x = x.data();
  a.x_stride = 5;
  a.rows = 2;
  a.dim = 4;
  a.weight = w.data();
  a.eps = eps;
  a.residual = res.data();
  a.scalar = &scalar;
  a.out = out.data();
  a.weight2 = w2.data();
  a.out2 = out2.data();
  ASSERT_TRUE(RowNormCpu(a).ok());
  for (int r = 0; r < 2; ++r) {
    double ss = 0;
    for (int i = 0; i < 4; ++i) ss += x[r * 5 + i] * x[r * 5 + i];
    const double rstd = 1 / std::sqrt(ss / 4 + eps);
    std::vector<double> o(4);
    double ss2 = 0;
    for (int i = 0; i < 4; ++i) {
      o[i] = (res[r * 4 + i] + x[r * 5 + i] * rstd * w[i]) * scalar;
      ss2 += o[i] * o[i];
      EXPECT_NEAR(out[r * 4 + i], o[i], 1e-6) << r << " " << i;
    }
    const double rstd2 = 1 / std::sqrt(ss2 / 4 + eps);
    for (int i = 0; i < 4; ++i) {
      EXPECT_NEAR(out2[r * 4 + i], o[i] * rstd2 * w2[i], 1e-6) << r << " " << i;
    }
  }
}

TEST(RowNormCpuTest, Bf16RoundsWhereTheEagerOpsRound) {
  std::vector<uint16_t> x(3), res(3), out(3);
  const float xs[3] = {0.3f, -1.7f, 2.9f}, rs[3] = {100.0f, -3.0f, 0.01f};
  for (int i = 0; i < 3; ++i) {
    x[i] = Bf16FromFloat(xs[i]);
    res[i] = Bf16FromFloat(rs[i]);
  }
  RowNormArgs a;
  a.dtype = Dtype::kBFloat16;
  a.x = x.data();
  a.x_stride = 3;
  a.rows = 1;
  a.dim = 3;
  a.residual = res.data();
  a.out = out.data();
  ASSERT_TRUE(RowNormCpu(a).ok());
  double ss = 0;
  for (int i = 0; i < 3; ++i)
    ss += double(FloatFromBf16(x[i])) * FloatFromBf16(x[i]);
  const float rstd = static_cast<float>(1 / std::sqrt(ss / 3 + 1e-6));
  for (int i = 0; i < 3; ++i) {
    // n rounded to bf16 first, then the residual sum rounded again.
    const float n = RoundTo(Dtype::kBFloat16, FloatFromBf16(x[i]) * rstd);
    const float want = RoundTo(Dtype::kBFloat16, FloatFromBf16(res[i]) + n);
    EXPECT_EQ(FloatFromBf16(out[i]), want) << i;
  }
}

TEST(RowNormCpuTest, RejectsBadShapes) {
  float x = 1, out = 0;
  RowNormArgs a;
  a.dtype = Dtype::kFloat32;
  a.x = &x;
  a.out = &out;
  a.rows = 1;
  a.dim = 0;
  a.x_stride = 1;
  const absl::Status s = RowNormCpu(a);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("dim 0"));
}

}  // namespace
}  // namespace sweepd::kernels
