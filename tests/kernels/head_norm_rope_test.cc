// CPU reference of kernels/head_norm_rope.h against the formula written out.
#include "kernels/head_norm_rope.h"

#include <cmath>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sweepd::kernels {
namespace {

using ::testing::HasSubstr;

TEST(HeadNormRopeCpuTest, Fp32NormThenRotateHalfAtPositionTModSeq) {
  const int tokens = 3, heads = 2, hd = 4, seq = 2, stride = heads * hd + 3;
  std::vector<float> x(tokens * stride), w = {1, 2, 0.5f, 1};
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.7 * i + 0.1);
  std::vector<float> cs(seq * hd), sn(seq * hd);
  for (int i = 0; i < seq * hd; ++i) {
    cs[i] = std::cos(0.3 * i);
    sn[i] = std::sin(0.3 * i);
  }
  std::vector<float> out(tokens * heads * hd);
  HeadNormRopeArgs a;
  a.dtype = Dtype::kFloat32;
  a.x = x.data();
  a.x_stride = stride;
  a.tokens = tokens;
  a.seq = seq;
  a.heads = heads;
  a.head_dim = hd;
  a.weight = w.data();
  a.cos = cs.data();
  a.sin = sn.data();
  a.out = out.data();
  ASSERT_TRUE(HeadNormRopeCpu(a).ok());
  for (int t = 0; t < tokens; ++t) {
    for (int h = 0; h < heads; ++h) {
      const float* xr = &x[t * stride + h * hd];
      double ss = 0;
      for (int i = 0; i < hd; ++i) ss += xr[i] * xr[i];
      const double rstd = 1 / std::sqrt(ss / hd + 1e-6);
      double n[4];
      for (int i = 0; i < hd; ++i) n[i] = xr[i] * rstd * w[i];
      const int pos = t % seq;
      for (int i = 0; i < hd; ++i) {
        const double rot = i < 2 ? -n[i + 2] : n[i - 2];
        const double want = n[i] * cs[pos * hd + i] + rot * sn[pos * hd + i];
        EXPECT_NEAR(out[(t * heads + h) * hd + i], want, 1e-6)
            << t << " " << h << " " << i;
      }
    }
  }
}

TEST(HeadNormRopeCpuTest, WithoutRopeIsTheNormOnly) {
  std::vector<float> x = {3, 4}, out(2);
  HeadNormRopeArgs a;
  a.dtype = Dtype::kFloat32;
  a.x = x.data();
  a.x_stride = 2;
  a.tokens = 1;
  a.heads = 1;
  a.head_dim = 2;
  a.eps = 0;
  a.out = out.data();
  ASSERT_TRUE(HeadNormRopeCpu(a).ok());
  const double rms = std::sqrt(12.5);
  EXPECT_NEAR(out[0], 3 / rms, 1e-6);
  EXPECT_NEAR(out[1], 4 / rms, 1e-6);
}

TEST(HeadNormRopeCpuTest, RejectsOddHeadDimAndHalfRope) {
  std::vector<float> x(3), out(3);
  HeadNormRopeArgs a;
  a.dtype = Dtype::kFloat32;
  a.x = x.data();
  a.out = out.data();
  a.tokens = 1;
  a.heads = 1;
  a.head_dim = 3;
  a.x_stride = 3;
  EXPECT_THAT(HeadNormRopeCpu(a).message(), HasSubstr("head_dim 3"));
  a.head_dim = 2;
  a.cos = x.data();
  EXPECT_THAT(HeadNormRopeCpu(a).message(), HasSubstr("cos and sin"));
}

}  // namespace
}  // namespace sweepd::kernels
