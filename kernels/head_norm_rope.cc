// CPU reference of kernels/head_norm_rope.h: the kernel's math and rounding
// points, sums of squares accumulated in double.
#include "kernels/head_norm_rope.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"

namespace sweepd::kernels {

absl::Status HeadNormRopeCpu(const HeadNormRopeArgs& a) {
  if (a.tokens < 0 || a.heads < 1 || a.head_dim < 2 || a.head_dim % 2 != 0 ||
      a.head_dim > 512 || a.seq < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "HeadNormRopeCpu: tokens ", a.tokens, ", heads ", a.heads,
        ", head_dim ", a.head_dim, " (even, 2..512), seq ", a.seq));
  }
  if (a.x == nullptr || a.out == nullptr ||
      (a.cos == nullptr) != (a.sin == nullptr)) {
    return absl::InvalidArgumentError(
        "HeadNormRopeCpu: x and out must be set, cos and sin both or neither");
  }
  const Dtype t = a.dtype;
  const int hd = a.head_dim, half = hd / 2;
  std::vector<float> n(hd);
  for (int64_t tok = 0; tok < a.tokens; ++tok) {
    const int64_t pos = tok % a.seq;
    for (int h = 0; h < a.heads; ++h) {
      const int64_t x0 = tok * a.x_stride + static_cast<int64_t>(h) * hd;
      double ss = 0;
      for (int i = 0; i < hd; ++i) {
        const float v = LoadAs(t, a.x, x0 + i);
        ss += static_cast<double>(v) * v;
      }
      const float rstd = static_cast<float>(1.0 / std::sqrt(ss / hd + a.eps));
      for (int i = 0; i < hd; ++i) {
        float v = LoadAs(t, a.x, x0 + i) * rstd;
        if (a.weight != nullptr) v = v * LoadAs(t, a.weight, i);
        n[i] = RoundTo(t, v);
      }
      const int64_t o0 = (tok * a.heads + h) * static_cast<int64_t>(hd);
      for (int i = 0; i < hd; ++i) {
        if (a.cos == nullptr) {
          StoreAs(t, a.out, o0 + i, n[i]);
          continue;
        }
        const float rot = i < half ? -n[i + half] : n[i - half];
        const float a1 = RoundTo(t, n[i] * LoadAs(t, a.cos, pos * hd + i));
        const float a2 = RoundTo(t, rot * LoadAs(t, a.sin, pos * hd + i));
        StoreAs(t, a.out, o0 + i, a1 + a2);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace sweepd::kernels
