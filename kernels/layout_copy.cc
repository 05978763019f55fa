// CPU reference of kernels/layout_copy.h: plain row copies.
#include "kernels/layout_copy.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace sweepd::kernels {

absl::Status SwapMiddleDimsCpu(const void* src, int64_t outer, int64_t dim1,
                               int64_t dim2, int64_t inner_bytes, void* dst) {
  if (src == nullptr || dst == nullptr || outer < 0 || dim1 < 0 || dim2 < 0 ||
      inner_bytes < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SwapMiddleDimsCpu: outer ", outer, ", dim1 ", dim1, ", dim2 ", dim2,
        ", inner_bytes ", inner_bytes, " (>= 1); src and dst must be set"));
  }
  const auto* in = static_cast<const char*>(src);
  auto* out = static_cast<char*>(dst);
  for (int64_t a = 0; a < outer; ++a) {
    for (int64_t y = 0; y < dim2; ++y) {
      for (int64_t x = 0; x < dim1; ++x) {
        std::memcpy(out + ((a * dim2 + y) * dim1 + x) * inner_bytes,
                    in + ((a * dim1 + x) * dim2 + y) * inner_bytes,
                    inner_bytes);
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ReverseRowsCpu(const void* src, int64_t n0, int64_t n1,
                            int64_t rows, int64_t row_bytes, int64_t s0,
                            int64_t s1, int64_t s_row, void* dst) {
  if (src == nullptr || dst == nullptr || n0 < 0 || n1 < 0 || rows < 0 ||
      row_bytes < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ReverseRowsCpu: n0 ", n0, ", n1 ", n1, ", rows ", rows, ", row_bytes ",
        row_bytes, " (>= 1); src and dst must be set"));
  }
  const auto* in = static_cast<const char*>(src);
  auto* out = static_cast<char*>(dst);
  for (int64_t i0 = 0; i0 < n0; ++i0) {
    for (int64_t i1 = 0; i1 < n1; ++i1) {
      for (int64_t r = 0; r < rows; ++r) {
        std::memcpy(out + ((i0 * n1 + i1) * rows + r) * row_bytes,
                    in + i0 * s0 + i1 * s1 + (rows - 1 - r) * s_row, row_bytes);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace sweepd::kernels
