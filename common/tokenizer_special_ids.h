// Tokenizer-internal well-known ids (common/tokenizer.h's implementation
// only): the BOS token from a TemplateProcessing `post_processor` (one special
// token before the sequence), else the added token "<bos>" or "<s>"; EOS
// "<eos>" or "</s>"; PAD "<pad>".
//
// A pure function over a borrowed, fully loaded Vocabulary; the result is a
// value owned by the caller. Thread-safe.
#ifndef SWEEPD_COMMON_TOKENIZER_SPECIAL_IDS_H_
#define SWEEPD_COMMON_TOKENIZER_SPECIAL_IDS_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "common/tokenizer_json.h"
#include "common/tokenizer_vocab.h"

namespace sweepd::tokenizer_internal {

// -1 where the file has none.
struct SpecialIds {
  int32_t bos = -1;
  int32_t eos = -1;
  int32_t pad = -1;
};

// Reads root["post_processor"] (absent or null: none) and looks the names up
// in `vocab`. INVALID_ARGUMENT names the field for a post-processor other than
// TemplateProcessing, a template with more than a BOS before the sequence, or
// a BOS outside the vocabulary.
absl::StatusOr<SpecialIds> ParseSpecialIds(const Json& root,
                                           const FieldReader& reader,
                                           const Vocabulary& vocab);

}  // namespace sweepd::tokenizer_internal

#endif  // SWEEPD_COMMON_TOKENIZER_SPECIAL_IDS_H_
