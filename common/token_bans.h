// Token-family bans: the set of token ids whose decoded text contains any of
// a list of strings (e.g. every token containing a `"`), for the sampler's
// banned-id list or a -inf logit bias. Seed 003 bans the `"` family and then
// the `"` + `'` families of Gemma 3's vocabulary (docs/GENERATION.md,
// "Token-family bans", has the sizes and how they were computed).
//
// A token's text is Tokenizer::Decode({id}, skip_special=false): "▁" becomes a
// space, a byte-fallback token <0xXX> decodes to that byte when it is ASCII
// and to U+FFFD when it is a lone byte of a multi-byte character. So a lone
// byte never matches a non-ASCII needle: banning "“" does not ban <0xE2>,
// <0x80>, <0x9C>, which the model could still emit in sequence. Byte tokens
// cannot be banned per character without also banning every other character
// sharing that lead byte; callers that need it list the byte tokens
// explicitly.
//
// Pure function of its arguments; thread-safe (Tokenizer is); the result is
// owned by the caller.
#ifndef SWEEPD_COMMON_TOKEN_BANS_H_
#define SWEEPD_COMMON_TOKEN_BANS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/tokenizer.h"

namespace sweepd {

struct TokenFamilyOptions {
  // Special tokens (<eos>, <end_of_turn>, <bos>, ...) are control tokens, not
  // text: by default they are never banned, so a ban on "<" or "_" cannot
  // stop generation from ending. Non-special added tokens are always checked.
  bool include_special = false;
};

struct TokenFamily {
  std::vector<int32_t> ids;            // ascending, no duplicates
  std::vector<int64_t> needle_counts;  // per needle, tokens containing it
  int64_t size() const { return static_cast<int64_t>(ids.size()); }
};

// Every assigned id in [0, vocab_size()) whose single-token decoded text
// contains at least one of `needles` (byte-wise substring of UTF-8).
// INVALID_ARGUMENT for an empty needle list, an empty needle or a needle that
// is not valid UTF-8 (each names the needle's index).
absl::StatusOr<TokenFamily> FindTokenFamily(
    const Tokenizer& tokenizer, absl::Span<const std::string> needles,
    const TokenFamilyOptions& options = {});

}  // namespace sweepd

#endif  // SWEEPD_COMMON_TOKEN_BANS_H_
