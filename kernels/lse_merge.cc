// CPU reference of kernels/lse_merge.h: the merge weights in double, the result
// rounded once to the dtype.
#include "kernels/lse_merge.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace sweepd::kernels {

absl::Status LseMergeCpu(const LseMergeArgs& a) {
  if (a.out == nullptr || a.other == nullptr || a.out_lse == nullptr ||
      a.other_lse == nullptr || a.batch < 0 || a.rows < 0 || a.heads < 1 ||
      a.head_dim < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "LseMergeCpu: batch ", a.batch, ", rows ", a.rows, ", heads ", a.heads,
        ", head_dim ", a.head_dim, "; every pointer must be set"));
  }
  const Dtype t = a.dtype;
  for (int64_t b = 0; b < a.batch; ++b) {
    for (int64_t r = 0; r < a.rows; ++r) {
      for (int64_t h = 0; h < a.heads; ++h) {
        const double l1 =
            a.out_lse[b * a.out_lse_stride[0] + h * a.out_lse_stride[1] +
                      r * a.out_lse_stride[2]];
        const double l2 =
            a.other_lse[b * a.other_lse_stride[0] + h * a.other_lse_stride[1] +
                        r * a.other_lse_stride[2]];
        const double m = std::max(l1, l2);
        const double e1 = std::exp(l1 - m), e2 = std::exp(l2 - m);
        const double w1 = e1 / (e1 + e2), w2 = e2 / (e1 + e2);
        const int64_t o =
            b * a.out_stride[0] + r * a.out_stride[1] + h * a.out_stride[2];
        const int64_t p = b * a.other_stride[0] + r * a.other_stride[1] +
                          h * a.other_stride[2];
        for (int64_t i = 0; i < a.head_dim; ++i) {
          const double x = LoadAs(t, a.out, o + i);
          const double y = LoadAs(t, a.other, p + i);
          StoreAs(t, a.out, o + i, static_cast<float>(x * w1 + y * w2));
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace sweepd::kernels
