#include "worker/jobs/windowing.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace sweepd {
absl::StatusOr<Windowing> ResolveWindowing(int64_t context_length,
                                           int64_t stride,
                                           const std::string& bos,
                                           const std::string& field) {
  Windowing w;
  if (context_length == 0) context_length = kDefaultContextLength;
  if (stride == 0) stride = context_length;
  if (context_length < 2 || context_length > (int64_t{1} << 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".context_length must be in [2, 1048576], got ",
                     context_length));
  }
  if (stride < 1 || stride > context_length) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".stride must be in [1, context_length=", context_length,
        "], got ", stride));
  }
  w.context_length = static_cast<int>(context_length);
  w.stride = static_cast<int>(stride);
  if (bos.empty() || bos == "on") {
    w.bos = BosPolicy::kOn;
  } else if (bos == "off") {
    w.bos = BosPolicy::kOff;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".bos must be \"on\" or \"off\", got \"", bos, "\""));
  }
  return w;
}

std::vector<TokenWindow> MakeWindows(int64_t num_tokens,
                                     const Windowing& windowing) {
  std::vector<TokenWindow> windows;
  if (num_tokens < 2) return windows;
  int64_t begin = 0;
  int64_t scored_until = 1;  // token 0 is never scored
  while (true) {
    TokenWindow w;
    w.begin = begin;
    w.end = std::min<int64_t>(begin + windowing.context_length, num_tokens);
    w.score_begin = scored_until;
    windows.push_back(w);
    scored_until = w.end;
    if (w.end == num_tokens) break;
    begin = std::min<int64_t>(begin + windowing.stride, w.end - 1);
  }
  return windows;
}

}  // namespace sweepd
