// Tokenizer-internal normalizer (common/tokenizer.h's implementation only):
// the `normalizer` of a tokenizer.json -- Replace (String patterns), Prepend,
// and Sequence of those -- parsed once and applied to each piece of text that
// is not an added token, and to the content of added tokens marked
// "normalized".
//
// Owns its steps. Parse mutates (loading only); Apply is const and thread-safe.
#ifndef SWEEPD_COMMON_TOKENIZER_NORMALIZER_H_
#define SWEEPD_COMMON_TOKENIZER_NORMALIZER_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/tokenizer_json.h"

namespace sweepd::tokenizer_internal {

class Normalizer {
 public:
  // Appends the steps of `node` (null: none); `field` is its path for errors.
  // INVALID_ARGUMENT for an unsupported type or a malformed step.
  absl::Status Parse(const Json& node, const std::string& field,
                     const FieldReader& reader);

  // `text` after every step in order (no steps: `text` unchanged).
  std::string Apply(absl::string_view text) const;

 private:
  struct Step {
    enum class Kind { kReplace, kPrepend };
    Kind kind;
    std::string pattern;  // kReplace
    std::string content;  // replacement (kReplace) or prefix (kPrepend)
  };
  std::vector<Step> steps_;
};

}  // namespace sweepd::tokenizer_internal

#endif  // SWEEPD_COMMON_TOKENIZER_NORMALIZER_H_
