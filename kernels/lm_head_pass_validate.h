// Internal to sweepd::kernels: argument checks shared by the CPU reference and
// the CUDA launchers of lm_head_pass.h. Pure functions, thread-safe.
#ifndef SWEEPD_KERNELS_LM_HEAD_PASS_VALIDATE_H_
#define SWEEPD_KERNELS_LM_HEAD_PASS_VALIDATE_H_

#include <cmath>
#include <cstdint>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "kernels/lm_head_pass.h"

namespace sweepd::kernels::internal {

inline absl::Status ValidateShard(const LogitsShard& s, absl::string_view fn) {
  if (s.data == nullptr && s.num_rows > 0 && s.vocab_shard > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(fn, ": logits.data is null"));
  }
  if (s.num_rows < 0 || s.num_rows > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat(
        fn, ": logits.num_rows ", s.num_rows, " outside [0, 2^31)"));
  }
  if (s.vocab_shard < 1 ||
      s.vocab_shard > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat(
        fn, ": logits.vocab_shard ", s.vocab_shard, " outside [1, 2^31)"));
  }
  if (s.row_stride < s.vocab_shard) {
    return absl::InvalidArgumentError(
        absl::StrCat(fn, ": logits.row_stride ", s.row_stride,
                     " < vocab_shard ", s.vocab_shard));
  }
  if (s.vocab_offset < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        fn, ": logits.vocab_offset ", s.vocab_offset, " is negative"));
  }
  if (!std::isfinite(s.softcap)) {
    return absl::InvalidArgumentError(
        absl::StrCat(fn, ": logits.softcap ", s.softcap, " is not finite"));
  }
  const uintptr_t align = s.type == LogitsType::kBFloat16 ? 2 : 4;
  if (reinterpret_cast<uintptr_t>(s.data) % align != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        fn, ": logits.data is not aligned to its element size ", align));
  }
  return absl::OkStatus();
}

inline absl::Status ValidateTargets(const TargetIds& t, absl::string_view fn) {
  if (t.data == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(fn, ": targets.data is null"));
  }
  return absl::OkStatus();
}

}  // namespace sweepd::kernels::internal

#endif  // SWEEPD_KERNELS_LM_HEAD_PASS_VALIDATE_H_
