// CPU reference of kernels/causal_softmax.h: the softmax over the allowed keys
// in double, rounded once to the dtype.
#include "kernels/causal_softmax.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace sweepd::kernels {

absl::Status CausalSoftmaxCpu(const CausalSoftmaxArgs& a) {
  if (a.scores == nullptr || a.batches < 0 || a.rows < 0 || a.keys < 1 ||
      a.group < 1 || a.q_start < 0 || a.key_start < 0 || a.window < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CausalSoftmaxCpu: batches ", a.batches, ", rows ", a.rows, ", keys ",
        a.keys, ", group ", a.group, ", q_start ", a.q_start, ", key_start ",
        a.key_start, ", window ", a.window));
  }
  if (a.rows > 0 &&
      (a.q_start < a.key_start ||
       a.q_start + (a.rows - 1) / a.group >= a.key_start + a.keys)) {
    return absl::InvalidArgumentError(
        "CausalSoftmaxCpu: a row's own position lies outside the key range");
  }
  const Dtype t = a.dtype;
  for (int64_t row = 0; row < a.batches * a.rows; ++row) {
    const int64_t pos = a.q_start + (row % a.rows) / a.group;
    int64_t lo = a.window > 0 ? pos - a.window + 1 : 0;
    lo = std::max<int64_t>(lo, 0);
    const int64_t c0 = std::max<int64_t>(lo - a.key_start, 0);
    const int64_t c1 = std::min<int64_t>(pos - a.key_start + 1, a.keys);
    const int64_t base = row * a.keys;
    double m = -INFINITY;
    for (int64_t j = c0; j < c1; ++j) {
      m = std::max(
          m, static_cast<double>(LoadAs(t, a.scores, base + j)) * a.scale);
    }
    double sum = 0;
    for (int64_t j = c0; j < c1; ++j) {
      sum += std::exp(
          static_cast<double>(LoadAs(t, a.scores, base + j)) * a.scale - m);
    }
    for (int64_t j = 0; j < a.keys; ++j) {
      double p = 0;
      if (j >= c0 && j < c1) {
        p = std::exp(static_cast<double>(LoadAs(t, a.scores, base + j)) *
                         a.scale -
                     m) /
            sum;
      }
      StoreAs(t, a.scores, base + j, static_cast<float>(p));
    }
  }
  return absl::OkStatus();
}

}  // namespace sweepd::kernels
