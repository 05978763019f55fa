// CPU reference and shape helpers of kernels/skinny_gemm.h.
#include "kernels/skinny_gemm.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "kernels/dtype.h"

namespace sweepd::kernels {

bool SkinnyGemmSupported(int64_t m, int64_t n, int64_t k) {
  return m >= 1 && m <= kSkinnyGemmMaxRows && n >= 1 && k >= 64 && k % 64 == 0;
}

int SkinnyGemmSplits(int64_t m, int64_t n, int64_t k, int resident_blocks) {
  (void)m;
  const int64_t tiles = (n + kSkinnyGemmTileRows - 1) / kSkinnyGemmTileRows;
  const int64_t chunks = k / 64;
  if (tiles >= resident_blocks || chunks < 8) return 1;
  const int64_t fill = std::max<int64_t>(1, resident_blocks / tiles);
  return static_cast<int>(
      std::clamp<int64_t>(std::min<int64_t>(fill, chunks / 4), 1, 32));
}

int64_t SkinnyGemmWorkspaceBytes(const SkinnyGemmArgs& a) {
  if (a.splits <= 1) return 0;
  return int64_t{a.splits} * a.m * a.n * 4;
}

int64_t SkinnyGemmCounters(int64_t n) {
  return (n + kSkinnyGemmTileRows - 1) / kSkinnyGemmTileRows;
}

absl::Status SkinnyGemmCpu(const SkinnyGemmArgs& a) {
  if (!SkinnyGemmSupported(a.m, a.n, a.k)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SkinnyGemmCpu: m ", a.m, " (1..", kSkinnyGemmMaxRows, "), n ", a.n,
        " (>= 1), k ", a.k, " (a positive multiple of 64)"));
  }
  if (a.x == nullptr || a.w == nullptr || a.y == nullptr || a.ldx < a.k ||
      a.ldw < a.k || a.ldy < a.n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SkinnyGemmCpu: x, w and y must be set, ldx ", a.ldx, " and ldw ",
        a.ldw, " >= k ", a.k, ", ldy ", a.ldy, " >= n ", a.n));
  }
  const auto* x = static_cast<const uint16_t*>(a.x);
  const auto* w = static_cast<const uint16_t*>(a.w);
  auto* y = static_cast<uint16_t*>(a.y);
  for (int64_t i = 0; i < a.m; ++i) {
    for (int64_t j = 0; j < a.n; ++j) {
      double s = 0;
      for (int64_t k = 0; k < a.k; ++k) {
        s += static_cast<double>(FloatFromBf16(x[i * a.ldx + k])) *
             FloatFromBf16(w[j * a.ldw + k]);
      }
      y[i * a.ldy + j] = Bf16FromFloat(static_cast<float>(s));
    }
  }
  return absl::OkStatus();
}

}  // namespace sweepd::kernels
