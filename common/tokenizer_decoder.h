// Tokenizer-internal decoder chain (common/tokenizer.h's implementation only):
// the `decoder` of a tokenizer.json -- Replace (String patterns),
// ByteFallback (runs of <0xXX> tokens reassembled into UTF-8, one U+FFFD per
// byte of an invalid run, as in `tokenizers`), Fuse, Strip, and Sequence of
// those -- turning the texts of decoded tokens into one string.
//
// Owns its steps. Parse mutates (loading only); Decode is const and
// thread-safe.
#ifndef SWEEPD_COMMON_TOKENIZER_DECODER_H_
#define SWEEPD_COMMON_TOKENIZER_DECODER_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/tokenizer_json.h"

namespace sweepd::tokenizer_internal {

class DecoderChain {
 public:
  // Reads the file's non-null `decoder` node; `field` is its path for errors.
  // INVALID_ARGUMENT for an unsupported type or a malformed step. Not called
  // for a file without a decoder.
  absl::Status Parse(const Json& node, const std::string& field,
                     const FieldReader& reader);

  // The text of `tokens` (token texts in order): joined with spaces when the
  // file has no decoder, else every step applied in order and the results
  // concatenated.
  std::string Decode(std::vector<std::string> tokens) const;

 private:
  struct Step {
    enum class Kind { kReplace, kByteFallback, kFuse, kStrip };
    Kind kind;
    std::string pattern;
    std::string content;
    char32_t strip_char = 0;
    int strip_start = 0;
    int strip_stop = 0;
  };

  absl::Status ParseStep(const Json& node, const std::string& field,
                         const FieldReader& reader);
  static std::string StripToken(const std::string& token, const Step& step);

  bool present_ = false;
  std::vector<Step> steps_;
};

}  // namespace sweepd::tokenizer_internal

#endif  // SWEEPD_COMMON_TOKENIZER_DECODER_H_
