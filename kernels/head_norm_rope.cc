// CPU reference of kernels/head_norm_rope.h: the kernel's math and rounding
// points, sums of squares accumulated in double.
#include "kernels/head_norm_rope.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace sweepd::kernels {
namespace {

// One (token, head) row: x[x0, x0 + hd) normed (and rotated at cos/sin row
// `pos` when cos is set) into out[o0, o0 + hd). n: scratch of hd floats.
void NormRopeRow(Dtype t, const void* x, int64_t x0, int hd, const void* weight,
                 float eps, const void* cos, const void* sin, int64_t pos,
                 void* out, int64_t o0, float* n) {
  const int half = hd / 2;
  double ss = 0;
  for (int i = 0; i < hd; ++i) {
    const float v = LoadAs(t, x, x0 + i);
    ss += static_cast<double>(v) * v;
  }
  const float rstd = static_cast<float>(1.0 / std::sqrt(ss / hd + eps));
  for (int i = 0; i < hd; ++i) {
    float v = LoadAs(t, x, x0 + i) * rstd;
    if (weight != nullptr) v = v * LoadAs(t, weight, i);
    n[i] = RoundTo(t, v);
  }
  for (int i = 0; i < hd; ++i) {
    if (cos == nullptr) {
      StoreAs(t, out, o0 + i, n[i]);
      continue;
    }
    const float rot = i < half ? -n[i + half] : n[i - half];
    const float a1 = RoundTo(t, n[i] * LoadAs(t, cos, pos * hd + i));
    const float a2 = RoundTo(t, rot * LoadAs(t, sin, pos * hd + i));
    StoreAs(t, out, o0 + i, a1 + a2);
  }
}

absl::Status CheckShape(const char* fn, int64_t tokens, int heads, int head_dim,
                        int64_t seq) {
  if (tokens < 0 || heads < 1 || head_dim < 2 || head_dim % 2 != 0 ||
      head_dim > 512 || seq < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(fn, ": tokens ", tokens, ", heads ", heads, ", head_dim ",
                     head_dim, " (even, 2..512), seq ", seq));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status HeadNormRopeCpu(const HeadNormRopeArgs& a) {
  absl::Status st =
      CheckShape("HeadNormRopeCpu", a.tokens, a.heads, a.head_dim, a.seq);
  if (!st.ok()) return st;
  if (a.x == nullptr || a.out == nullptr ||
      (a.cos == nullptr) != (a.sin == nullptr)) {
    return absl::InvalidArgumentError(
        "HeadNormRopeCpu: x and out must be set, cos and sin both or neither");
  }
  const int hd = a.head_dim;
  std::vector<float> n(hd);
  for (int64_t tok = 0; tok < a.tokens; ++tok) {
    for (int h = 0; h < a.heads; ++h) {
      NormRopeRow(a.dtype, a.x, tok * a.x_stride + static_cast<int64_t>(h) * hd,
                  hd, a.weight, a.eps, a.cos, a.sin, tok % a.seq, a.out,
                  (tok * a.heads + h) * static_cast<int64_t>(hd), n.data());
    }
  }
  return absl::OkStatus();
}

absl::Status HeadNormRopeMultiCpu(const HeadNormRopeMultiArgs& a) {
  constexpr const char* kFn = "HeadNormRopeMultiCpu";
  if (a.segments < 1 || a.segments > HeadNormRopeMultiArgs::kMaxSegments) {
    return absl::InvalidArgumentError(
        absl::StrCat(kFn, ": segments ", a.segments, " (1..",
                     HeadNormRopeMultiArgs::kMaxSegments, ")"));
  }
  for (int s = 0; s < a.segments; ++s) {
    absl::Status st =
        CheckShape(kFn, a.tokens, a.seg[s].heads, a.head_dim, a.seq);
    if (!st.ok()) return st;
  }
  if (a.x == nullptr || (a.cos == nullptr) != (a.sin == nullptr)) {
    return absl::InvalidArgumentError(
        absl::StrCat(kFn, ": x must be set, cos and sin both or neither"));
  }
  for (int s = 0; s < a.segments; ++s) {
    const HeadNormRopeSegment& g = a.seg[s];
    const std::string name = absl::StrCat(kFn, ": seg[", s, "].");
    if (g.out == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(name, "out must be set"));
    }
    if (g.col < 0 || g.head_stride < 0 || g.row_stride < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, "col ", g.col, ", head_stride ", g.head_stride,
                       ", row_stride ", g.row_stride, " must be >= 0"));
    }
    if (g.rope && a.cos == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, "rope needs the call's cos and sin"));
    }
  }
  const int hd = a.head_dim;
  std::vector<float> n(hd);
  for (int s = 0; s < a.segments; ++s) {
    const HeadNormRopeSegment& g = a.seg[s];
    const int64_t head_stride = g.head_stride > 0 ? g.head_stride : hd;
    const int64_t row_stride =
        g.row_stride > 0 ? g.row_stride : static_cast<int64_t>(g.heads) * hd;
    for (int64_t tok = 0; tok < a.tokens; ++tok) {
      const int64_t row = g.rows != nullptr ? g.rows[tok] : tok;
      for (int h = 0; h < g.heads; ++h) {
        NormRopeRow(a.dtype, a.x,
                    tok * a.x_stride + g.col + static_cast<int64_t>(h) * hd, hd,
                    g.weight, a.eps, g.rope ? a.cos : nullptr,
                    g.rope ? a.sin : nullptr, tok % a.seq, g.out,
                    h * head_stride + row * row_stride, n.data());
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace sweepd::kernels
