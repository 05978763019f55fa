// CPU reference of kernels/geglu.h: the kernel's float32 formulas.
#include "kernels/geglu.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace sweepd::kernels {

absl::Status GegluCpu(Dtype dtype, const void* gate_up, int64_t rows,
                      int64_t inter, bool tanh_approx, void* out) {
  if (rows < 0 || inter < 1 || gate_up == nullptr || out == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("GegluCpu: rows ", rows, ", inter ", inter,
                     " (>= 1), gate_up and out must be set"));
  }
  const float kBeta = static_cast<float>(M_SQRT2 * M_2_SQRTPI * 0.5);
  const float kKappa = 0.044715f;
  for (int64_t t = 0; t < rows; ++t) {
    for (int64_t i = 0; i < inter; ++i) {
      const float g = LoadAs(dtype, gate_up, t * 2 * inter + i);
      const float u = LoadAs(dtype, gate_up, t * 2 * inter + inter + i);
      float a;
      if (tanh_approx) {
        const float inner = kBeta * (g + kKappa * (g * g * g));
        a = 0.5f * g * (1.0f + std::tanh(inner));
      } else {
        a = g * 0.5f * (1.0f + std::erf(g * static_cast<float>(M_SQRT1_2)));
      }
      StoreAs(dtype, out, t * inter + i, RoundTo(dtype, a) * u);
    }
  }
  return absl::OkStatus();
}

}  // namespace sweepd::kernels
