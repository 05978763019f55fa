// CPU reference of kernels/block_influence.h, sums accumulated in double.
#include "kernels/block_influence.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace sweepd::kernels {

absl::Status RowCosNormCpu(Dtype dtype, const void* a, const void* b,
                           int64_t rows, int64_t dim, float* block_influence,
                           float* norm_b) {
  if (rows < 0 || dim < 1 || a == nullptr || b == nullptr ||
      block_influence == nullptr || norm_b == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("RowCosNormCpu: rows ", rows, ", dim ", dim,
                     " (>= 1), every pointer must be set"));
  }
  for (int64_t r = 0; r < rows; ++r) {
    double dot = 0, aa = 0, bb = 0;
    for (int64_t i = 0; i < dim; ++i) {
      const double x = LoadAs(dtype, a, r * dim + i);
      const double y = LoadAs(dtype, b, r * dim + i);
      dot += x * y;
      aa += x * x;
      bb += y * y;
    }
    const double nb = std::sqrt(bb);
    block_influence[r] =
        static_cast<float>(1.0 - dot / std::max(std::sqrt(aa) * nb, 1e-30));
    norm_b[r] = static_cast<float>(nb);
  }
  return absl::OkStatus();
}

}  // namespace sweepd::kernels
