// CPU reference of kernels/geglu.h against the GELU definitions.
#include "kernels/geglu.h"

#include <cmath>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sweepd::kernels {
namespace {

TEST(GegluCpuTest, Fp32TanhAndErfForms) {
  // rows 2, inter 3: gate_up rows are [gate (3) | up (3)].
  const std::vector<float> gu = {-2, 0, 1, 1, 2, 3, 0.5f, 3, -1, -1, 1, 0.25f};
  for (bool tanh_form : {true, false}) {
    std::vector<float> out(6);
    ASSERT_TRUE(
        GegluCpu(Dtype::kFloat32, gu.data(), 2, 3, tanh_form, out.data()).ok());
    for (int t = 0; t < 2; ++t) {
      for (int i = 0; i < 3; ++i) {
        const double g = gu[t * 6 + i], u = gu[t * 6 + 3 + i];
        const double act = tanh_form
                               ? 0.5 * g *
                                     (1 + std::tanh(std::sqrt(2 / M_PI) *
                                                    (g + 0.044715 * g * g * g)))
                               : 0.5 * g * (1 + std::erf(g / std::sqrt(2.0)));
        EXPECT_NEAR(out[t * 3 + i], act * u, 1e-5) << tanh_form << t << i;
      }
    }
  }
  // Known value: gelu(1) = 0.8413447 (erf form).
  const std::vector<float> one = {1, 1};
  float o = 0;
  ASSERT_TRUE(GegluCpu(Dtype::kFloat32, one.data(), 1, 1, false, &o).ok());
  EXPECT_NEAR(o, 0.8413447, 1e-6);
}

TEST(GegluCpuTest, Bf16RoundsTheActivationBeforeTheProduct) {
  std::vector<uint16_t> gu = {Bf16FromFloat(0.7f), Bf16FromFloat(3.3f)};
  uint16_t out = 0;
  ASSERT_TRUE(GegluCpu(Dtype::kBFloat16, gu.data(), 1, 1, true, &out).ok());
  const float g = FloatFromBf16(gu[0]), u = FloatFromBf16(gu[1]);
  const float act =
      0.5f * g *
      (1.0f + std::tanh(static_cast<float>(M_SQRT2 * M_2_SQRTPI * 0.5) *
                        (g + 0.044715f * g * g * g)));
  EXPECT_EQ(FloatFromBf16(out),
            RoundTo(Dtype::kBFloat16, RoundTo(Dtype::kBFloat16, act) * u));
}

TEST(GegluCpuTest, RejectsEmptyInter) {
  float x = 0;
  EXPECT_EQ(GegluCpu(Dtype::kFloat32, &x, 1, 0, true, &x).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sweepd::kernels
