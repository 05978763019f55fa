// Tokenizer-internal pre-tokenizer (common/tokenizer.h's implementation only):
// the `pre_tokenizer` of a tokenizer.json -- Split on a String pattern with
// one of the five behaviors of `tokenizers` (Removed, Isolated,
// MergedWithPrevious, MergedWithNext, Contiguous), and Sequence of those --
// cutting normalized text into the words the BPE model encodes one by one.
//
// Owns its steps. Parse mutates (loading only); Split is const and
// thread-safe. Split's result views the text it was given.
#ifndef SWEEPD_COMMON_TOKENIZER_PRE_TOKENIZER_H_
#define SWEEPD_COMMON_TOKENIZER_PRE_TOKENIZER_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/tokenizer_json.h"

namespace sweepd::tokenizer_internal {

class PreTokenizer {
 public:
  // Appends the steps of `node` (null: none); `field` is its path for errors.
  // INVALID_ARGUMENT for an unsupported type, Regex pattern, invert=true or
  // unknown behavior.
  absl::Status Parse(const Json& node, const std::string& field,
                     const FieldReader& reader);

  // The non-empty words of `text`, in order, after every step (no steps:
  // `text` itself).
  std::vector<absl::string_view> Split(absl::string_view text) const;

 private:
  enum class Behavior {
    kRemoved,
    kIsolated,
    kMergedWithPrevious,
    kMergedWithNext,
    kContiguous
  };
  struct Step {
    std::string pattern;
    Behavior behavior;
  };
  std::vector<Step> steps_;
};

}  // namespace sweepd::tokenizer_internal

#endif  // SWEEPD_COMMON_TOKENIZER_PRE_TOKENIZER_H_
