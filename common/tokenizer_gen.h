// GenerateTokenizerJson: writes a small, valid Gemma-style tokenizer.json for
// tiny random models (`sweep-worker make-model`). Same structure as Gemma 3's
// file -- Replace " " -> "▁" normalizer, Split pre_tokenizer,
// TemplateProcessing BOS, Replace/ByteFallback/Fuse decoder, BPE with
// byte_fallback and fuse_unk -- with:
//   ids 0..5   <pad> <eos> <bos> <unk> <start_of_turn> <end_of_turn> (added,
//   special) id  6      "\n" (added, not special, as in Gemma) ids 7..262
//   <0x00>..<0xFF> byte-fallback tokens then the single characters of a
//   built-in English text (most frequent first), the tokens of BPE merges
//   learned deterministically from that text (so common words encode to one or
//   two tokens), and, when vocab_size asks for more than the text supports,
//   <unusedN> added tokens (not special) up to exactly vocab_size entries.
// Pure function of `vocab_size`: the same input always gives byte-identical
// output. Thread-safe (no shared state).
#ifndef SWEEPD_COMMON_TOKENIZER_GEN_H_
#define SWEEPD_COMMON_TOKENIZER_GEN_H_

#include <string>

#include "absl/status/statusor.h"

namespace sweepd {

// Smallest vocab_size accepted: the 7 added tokens, 256 byte tokens and "▁".
inline constexpr int kMinGeneratedVocabSize = 264;
// Largest vocab_size accepted (Gemma 3's 262144 fits; the rest is <unusedN>
// padding).
inline constexpr int kMaxGeneratedVocabSize = 1 << 20;

// INVALID_ARGUMENT (naming vocab_size and the bounds) outside
// [kMinGeneratedVocabSize, kMaxGeneratedVocabSize].
absl::StatusOr<std::string> GenerateTokenizerJson(int vocab_size);

}  // namespace sweepd

#endif  // SWEEPD_COMMON_TOKENIZER_GEN_H_
