// Tokenizer-internal added vocabulary (common/tokenizer.h's implementation
// only): the `added_tokens` of a tokenizer.json (special or not, with
// single_word, lstrip, rstrip and normalized), and splitting text on them the
// way `tokenizers` does (tokenizer/added_vocabulary.rs, find_matches):
// leftmost-longest matches on a byte trie, tokens with normalized == false
// matched on the input text, those with normalized == true on normalized text.
//
// Owns its tokens and tries; Parse extends a borrowed Vocabulary. Parse and
// Index mutate (loading only); the Split methods are const and thread-safe.
#ifndef SWEEPD_COMMON_TOKENIZER_ADDED_TOKENS_H_
#define SWEEPD_COMMON_TOKENIZER_ADDED_TOKENS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/tokenizer_json.h"
#include "common/tokenizer_normalizer.h"
#include "common/tokenizer_vocab.h"

namespace sweepd::tokenizer_internal {

struct AddedToken {
  int32_t id;
  std::string content;
  bool single_word;
  bool lstrip;
  bool rstrip;
  bool normalized;
  bool special;
};

// A piece of input: text to tokenize further (token_id < 0) or an added token.
// `text` views the string that was split.
struct Segment {
  absl::string_view text;
  int32_t token_id;
};

// Byte trie over added-token contents, scanned leftmost-longest like
// aho-corasick's MatchKind::LeftmostLongest in `tokenizers`.
class AddedTokenTrie {
 public:
  AddedTokenTrie() : terminal_(1, -1) {}

  // Ties (the same content twice) keep the first token.
  void Insert(absl::string_view content, int token_index);

  bool empty() const { return edges_.empty(); }

  // Longest token starting at `pos`: returns its index and sets *end, or -1.
  int LongestAt(absl::string_view text, size_t pos, size_t* end) const;

 private:
  absl::flat_hash_map<uint64_t, int> edges_;
  std::vector<int> terminal_;
};

class AddedVocabulary {
 public:
  // Reads root["added_tokens"] (absent or null: none) into *vocab, which holds
  // the BPE model's vocab; sizes vocab->special. INVALID_ARGUMENT names the
  // entry for a malformed token, an id out of range, or an id or content that
  // clashes with an existing token.
  absl::Status Parse(const Json& root, const FieldReader& reader,
                     Vocabulary* vocab);

  // Builds the tries after the normalizer is known: normalized tokens are
  // matched by their content passed through `normalizer`.
  void Index(const Normalizer& normalizer);

  // Appends the segments of `text`, split on the tokens matched on the input
  // text (normalized == false).
  void SplitRaw(absl::string_view text, std::vector<Segment>* out) const {
    Split(raw_trie_, text, out);
  }
  // Appends the segments of normalized `text`, split on the tokens matched on
  // normalized text (normalized == true).
  void SplitNormalized(absl::string_view text,
                       std::vector<Segment>* out) const {
    Split(normalized_trie_, text, out);
  }

 private:
  // Splits `text` on the tokens of `trie` exactly as
  // AddedVocabulary::find_matches does.
  void Split(const AddedTokenTrie& trie, absl::string_view text,
             std::vector<Segment>* out) const;

  std::vector<AddedToken> tokens_;
  AddedTokenTrie raw_trie_;         // normalized == false
  AddedTokenTrie normalized_trie_;  // normalized == true
};

}  // namespace sweepd::tokenizer_internal

#endif  // SWEEPD_COMMON_TOKENIZER_ADDED_TOKENS_H_
