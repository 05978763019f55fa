// Tokenizer-internal BPE model (common/tokenizer.h's implementation only): the
// `model` of a tokenizer.json (type BPE: vocab, merges in either format,
// unk_token, byte_fallback, fuse_unk, ignore_merges) and the encoding of one
// pre-tokenized word into ids -- merges applied by rank as in `tokenizers`
// (models/bpe/word.rs), characters outside the vocabulary falling back to
// <0xXX> byte tokens or the unk token.
//
// Owns its merge table and a word cache. Parse mutates (loading only).
// EncodeWord is const and safe to call from any number of threads: the cache
// is guarded by an absl::Mutex (lookups share it, inserts are exclusive) and
// stops growing at a fixed number of entries.
#ifndef SWEEPD_COMMON_TOKENIZER_BPE_H_
#define SWEEPD_COMMON_TOKENIZER_BPE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/tokenizer_json.h"
#include "common/tokenizer_vocab.h"

namespace sweepd::tokenizer_internal {

class BpeModel {
 public:
  // Reads the file's `model` object, filling *vocab (empty on entry) with the
  // model's vocab. INVALID_ARGUMENT names the field for an unsupported model
  // (not BPE, dropout, subword prefix/suffix), a bad id, or a merge of tokens
  // outside the vocab.
  absl::Status Parse(const Json& model, const FieldReader& reader,
                     Vocabulary* vocab);

  // Appends the ids of one pre-tokenized, valid UTF-8 `word` to *out. `vocab`
  // is the complete vocabulary (model and added tokens) the model was parsed
  // into. FAILED_PRECONDITION for a character outside the vocabulary when the
  // file has neither byte fallback tokens nor an unk token.
  absl::Status EncodeWord(absl::string_view word, const Vocabulary& vocab,
                          std::vector<int32_t>* out) const;

  // The unk_token's id, -1 if none.
  int32_t unk_id() const { return unk_id_; }

 private:
  struct MergeInfo {
    int32_t rank;
    int32_t new_id;
  };

  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) |
           static_cast<uint32_t>(b);
  }

  // BPE of `word` without the cache.
  absl::Status RunBpe(absl::string_view word, const Vocabulary& vocab,
                      std::vector<int32_t>* out) const;

  absl::flat_hash_map<uint64_t, MergeInfo> merges_;
  // Ids of the one-byte tokens and of the <0xXX> byte tokens in the model's
  // vocab, -1 where absent.
  int32_t ascii_ids_[128];
  int32_t byte_ids_[256];
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  int32_t unk_id_ = -1;

  mutable absl::Mutex cache_mu_;
  mutable absl::flat_hash_map<std::string, std::vector<int32_t>> cache_
      ABSL_GUARDED_BY(cache_mu_);
};

}  // namespace sweepd::tokenizer_internal

#endif  // SWEEPD_COMMON_TOKENIZER_BPE_H_
