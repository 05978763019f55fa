// Text windowing for eval (strided perplexity) and probe: the TextWindowing job
// parameters and the cut of one tokenised record into windows in which every
// token after the first is predicted exactly once. See docs/METRICS.md and
// docs/JOBS.md.
//
// Plain C++; value types and pure functions, thread-safe.
#ifndef SWEEPD_WORKER_JOBS_WINDOWING_H_
#define SWEEPD_WORKER_JOBS_WINDOWING_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tokenizer.h"

namespace sweepd {

inline constexpr int kDefaultContextLength = 512;

struct Windowing {
  int context_length = kDefaultContextLength;
  int stride = kDefaultContextLength;
  BosPolicy bos = BosPolicy::kOn;

  // "on" / "off", as recorded in results.
  const char* bos_name() const { return bos == BosPolicy::kOn ? "on" : "off"; }
  bool operator==(const Windowing& o) const {
    return context_length == o.context_length && stride == o.stride &&
           bos == o.bos;
  }
};

// Checks and completes TextWindowing values: 0 takes the planner's default
// (context_length 512, stride = context_length), an empty bos is "on".
// `field` prefixes errors ("eval.windowing"). INVALID_ARGUMENT for
// context_length outside [2, 2^20], stride outside [1, context_length] or bos
// other than "on"/"off".
absl::StatusOr<Windowing> ResolveWindowing(int64_t context_length,
                                           int64_t stride,
                                           const std::string& bos,
                                           const std::string& field);

// One window of a record: input tokens [begin, end); the tokens j in
// [score_begin, end) are scored, each predicted from position j - 1 - begin of
// the window.
struct TokenWindow {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t score_begin = 0;
  int64_t length() const { return end - begin; }
  int64_t scored() const { return end - score_begin; }
};

// Windows over a record of `num_tokens` tokens: the first starts at 0; each
// window holds min(context_length, rest) tokens; the next starts `stride`
// tokens later, but at most at the previous window's last token (consecutive
// windows overlap by at least one token, so every token j >= 1 is predicted in
// the first window that contains both j - 1 and j, where it has the most left
// context). Token 0 is never scored. Empty for records of fewer than 2 tokens.
std::vector<TokenWindow> MakeWindows(int64_t num_tokens,
                                     const Windowing& windowing);

}  // namespace sweepd

#endif  // SWEEPD_WORKER_JOBS_WINDOWING_H_
