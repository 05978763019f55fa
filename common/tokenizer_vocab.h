// Tokenizer-internal vocabulary (common/tokenizer.h's implementation only):
// the id <-> text tables of the BPE model's vocab and the added tokens
// together, and which ids are special. The BPE model fills it first
// (tokenizer_bpe.h), the added tokens extend it (tokenizer_added_tokens.h);
// after loading it is read-only.
//
// A plain struct owned by the tokenizer; parts of the pipeline borrow it by
// const reference. Not synchronized: safe for concurrent readers once loading
// is done.
#ifndef SWEEPD_COMMON_TOKENIZER_VOCAB_H_
#define SWEEPD_COMMON_TOKENIZER_VOCAB_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace sweepd::tokenizer_internal {

// How far past the number of entries an id may lie: ids index dense tables
// (real files number their tokens 0..n-1), so a gap is allowed but bounded (an
// id far beyond the entry count would make a tiny file allocate gigabytes;
// found by tests/fuzz/tokenizer_fuzzer).
constexpr int64_t kIdSlack = 1 << 16;

struct Vocabulary {
  // One more than the largest id.
  int32_t size() const { return static_cast<int32_t>(id_to_token.size()); }
  // Whether `id` names a token (ids inside size() may be gaps).
  bool IsAssigned(int32_t id) const {
    return id >= 0 && id < size() && assigned[id];
  }

  absl::flat_hash_map<std::string, int32_t> token_to_id;
  // Indexed by id; the entries of unassigned ids are empty.
  std::vector<std::string> id_to_token;
  std::vector<bool> assigned;
  // Added tokens marked "special": true; sized when the added tokens are read.
  std::vector<bool> special;
};

}  // namespace sweepd::tokenizer_internal

#endif  // SWEEPD_COMMON_TOKENIZER_VOCAB_H_
