// CPU reference of kernels/row_norm.h: the kernel's math (float32 rounding
// points, the same order of operations) with the sums of squares accumulated
// in double.
#include "kernels/row_norm.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"

namespace sweepd::kernels {

absl::Status RowNormCpu(const RowNormArgs& a) {
  if (a.rows < 0 || a.dim < 1 || a.dim > 12288 || a.x_stride < a.dim) {
    return absl::InvalidArgumentError(
        absl::StrCat("RowNormCpu: rows ", a.rows, ", dim ", a.dim,
                     " (1..12288), x_stride ", a.x_stride, " (>= dim)"));
  }
  if (a.x == nullptr || a.out == nullptr) {
    return absl::InvalidArgumentError("RowNormCpu: x and out must be set");
  }
  const Dtype t = a.dtype;
  const int64_t dim = a.dim;
  std::vector<float> row(dim);
  for (int64_t r = 0; r < a.rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) {
      row[i] = LoadAs(t, a.x, r * a.x_stride + i);
      ss += static_cast<double>(row[i]) * row[i];
    }
    const float rstd = static_cast<float>(1.0 / std::sqrt(ss / dim + a.eps));
    const float s = a.scalar != nullptr ? LoadAs(t, a.scalar, 0) : 1.0f;
    double ss2 = 0;
    for (int64_t i = 0; i < dim; ++i) {
      float n = row[i] * rstd;
      if (a.weight != nullptr) n = n * LoadAs(t, a.weight, i);
      float o = RoundTo(t, n);
      if (a.residual != nullptr) {
        o = RoundTo(t, LoadAs(t, a.residual, r * dim + i) + o);
        if (a.scalar != nullptr) o = RoundTo(t, o * s);
      }
      StoreAs(t, a.out, r * dim + i, o);
      row[i] = o;
      ss2 += static_cast<double>(o) * o;
    }
    if (a.out2 == nullptr) continue;
    const float rstd2 = static_cast<float>(1.0 / std::sqrt(ss2 / dim + a.eps));
    for (int64_t i = 0; i < dim; ++i) {
      float n = row[i] * rstd2;
      if (a.weight2 != nullptr) n = n * LoadAs(t, a.weight2, i);
      StoreAs(t, a.out2, r * dim + i, n);
    }
  }
  return absl::OkStatus();
}

}  // namespace sweepd::kernels
