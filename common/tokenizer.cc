// Implementation of common/tokenizer.h. The pipeline mirrors the `tokenizers`
// library (huggingface/tokenizers, tokenizer/added_vocabulary.rs and
// models/bpe/word.rs):
//   text -> split on non-normalized added tokens -> normalize each remaining
//   piece -> split on normalized added tokens -> pre-tokenize -> BPE per word
//   (+ byte fallback) -> optional BOS.
#include "common/tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <queue>
#include <sstream>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace sweepd {
namespace {

// How far past the number of entries an id may lie: ids index dense tables
// (real files number their tokens 0..n-1), so a gap is allowed but bounded.
constexpr int64_t kIdSlack = 1 << 16;

using Json = nlohmann::json;

// Words at least this long (bytes) are not cached: they rarely repeat and would
// crowd out the short ones. The cache stops growing at kCacheCapacity entries
// (as `tokenizers` does).
constexpr size_t kMaxCachedWordBytes = 64;
constexpr size_t kCacheCapacity = 100000;

// ---------------------------------------------------------------------------------------------
// UTF-8 and character classes.

// Length of the well-formed UTF-8 sequence starting at s[i] (1..4), writing its
// code point to *cp; 0 if the bytes there are not well-formed UTF-8 (overlong,
// surrogate, truncated, > 10FFFF).
int DecodeUtf8(absl::string_view s, size_t i, char32_t* cp) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b0 = byte(i);
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  int len;
  char32_t c;
  char32_t min;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2, c = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, c = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, c = b0 & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (int k = 1; k < len; ++k) {
    const unsigned char b = byte(i + k);
    if ((b & 0xC0) != 0x80) return 0;
    c = (c << 6) | (b & 0x3F);
  }
  if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
  *cp = c;
  return len;
}

// Byte offset of the first ill-formed sequence, or npos.
size_t FindInvalidUtf8(absl::string_view s) {
  char32_t cp;
  for (size_t i = 0; i < s.size();) {
    const int len = DecodeUtf8(s, i, &cp);
    if (len == 0) return i;
    i += len;
  }
  return absl::string_view::npos;
}

std::vector<char32_t> ToCodePoints(absl::string_view s) {
  std::vector<char32_t> out;
  char32_t cp;
  for (size_t i = 0; i < s.size();) {
    const int len = DecodeUtf8(s, i, &cp);
    if (len == 0) {  // only reached for our own (validated) strings
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    out.push_back(cp);
    i += len;
  }
  return out;
}

// Unicode White_Space (what `\s` matches in Rust's regex and
// char::is_whitespace).
bool IsWhitespace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// `\w` for single_word added tokens: exact for ASCII; outside ASCII every
// non-space character except the common punctuation and symbol blocks counts as
// a word character (an approximation of Unicode
// Alphabetic|Mark|Digit|Connector_Punctuation).
bool IsWordChar(char32_t c) {
  if (c < 0x80) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
           (c >= 'a' && c <= 'z') || c == '_';
  }
  if (IsWhitespace(c)) return false;
  if (c >= 0xA1 && c <= 0xBF && c != 0xAA && c != 0xB5 && c != 0xBA)
    return false;
  if (c == 0xD7 || c == 0xF7) return false;
  if (c >= 0x2010 && c <= 0x2BFF)
    return false;  // punctuation, arrows, math, symbols
  if (c >= 0x3001 && c <= 0x3003) return false;  // CJK punctuation
  if (c >= 0x3008 && c <= 0x3011) return false;
  if (c >= 0xFF01 && c <= 0xFF0F) return false;    // full-width punctuation
  if (c >= 0x1F000 && c <= 0x1FAFF) return false;  // emoji and pictographs
  return true;
}

char32_t LastCodePoint(absl::string_view s) {
  if (s.empty()) return 0;
  size_t i = s.size() - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  char32_t cp = 0;
  return DecodeUtf8(s, i, &cp) ? cp : 0;
}

char32_t FirstCodePoint(absl::string_view s) {
  char32_t cp = 0;
  return (!s.empty() && DecodeUtf8(s, 0, &cp)) ? cp : 0;
}

// Start of the run of whitespace that ends `s` (s.size() if none).
size_t LeadingOffsetOfTrailingSpace(absl::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t i = end - 1;
    while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
    char32_t cp;
    if (!DecodeUtf8(s, i, &cp) || !IsWhitespace(cp)) break;
    end = i;
  }
  return end;
}

// Length of the run of whitespace that starts `s`.
size_t LengthOfLeadingSpace(absl::string_view s) {
  size_t i = 0;
  char32_t cp;
  while (i < s.size()) {
    const int len = DecodeUtf8(s, i, &cp);
    if (len == 0 || !IsWhitespace(cp)) break;
    i += len;
  }
  return i;
}

bool IsValidUtf8(absl::string_view s) {
  return FindInvalidUtf8(s) == absl::string_view::npos;
}

// ---------------------------------------------------------------------------------------------
// JSON field access with errors that name the file and the field.

class FieldReader {
 public:
  explicit FieldReader(std::string source) : source_(std::move(source)) {}

  absl::Status Error(absl::string_view field, absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(
        "tokenizer file ", source_, ": field '", field, "': ", what));
  }

  absl::StatusOr<std::string> String(const Json& obj, absl::string_view field,
                                     absl::string_view key) const {
    auto it = obj.find(std::string(key));
    if (it == obj.end()) return Error(Path(field, key), "missing");
    if (!it->is_string()) return Error(Path(field, key), "expected a string");
    return it->get<std::string>();
  }

  absl::StatusOr<bool> Bool(const Json& obj, absl::string_view field,
                            absl::string_view key, bool default_value) const {
    auto it = obj.find(std::string(key));
    if (it == obj.end() || it->is_null()) return default_value;
    if (!it->is_boolean())
      return Error(Path(field, key), "expected true or false");
    return it->get<bool>();
  }

  absl::StatusOr<int64_t> Int(const Json& obj, absl::string_view field,
                              absl::string_view key) const {
    auto it = obj.find(std::string(key));
    if (it == obj.end()) return Error(Path(field, key), "missing");
    if (!it->is_number_integer())
      return Error(Path(field, key), "expected an integer");
    return it->get<int64_t>();
  }

  static std::string Path(absl::string_view field, absl::string_view key) {
    return field.empty() ? std::string(key) : absl::StrCat(field, ".", key);
  }

  // The String pattern of a Replace/Split `pattern` object; Regex patterns are
  // refused.
  absl::StatusOr<std::string> StringPattern(const Json& obj,
                                            absl::string_view field) const {
    const std::string path = Path(field, "pattern");
    auto it = obj.find("pattern");
    if (it == obj.end() || !it->is_object())
      return Error(path, "expected an object");
    if (it->contains("Regex")) {
      return Error(path,
                   "Regex patterns are not supported (only {\"String\": ...})");
    }
    ASSIGN_OR_RETURN(std::string s, String(*it, path, "String"));
    if (s.empty()) return Error(Path(path, "String"), "must not be empty");
    return s;
  }

 private:
  std::string source_;
};

// ---------------------------------------------------------------------------------------------
// Pipeline pieces.

struct NormalizerStep {
  enum class Kind { kReplace, kPrepend };
  Kind kind;
  std::string pattern;  // kReplace
  std::string content;  // replacement (kReplace) or prefix (kPrepend)
};

enum class SplitBehavior {
  kRemoved,
  kIsolated,
  kMergedWithPrevious,
  kMergedWithNext,
  kContiguous
};

struct SplitStep {
  std::string pattern;
  SplitBehavior behavior;
};

struct DecoderStep {
  enum class Kind { kReplace, kByteFallback, kFuse, kStrip };
  Kind kind;
  std::string pattern;
  std::string content;
  char32_t strip_char = 0;
  int strip_start = 0;
  int strip_stop = 0;
};

struct AddedToken {
  int32_t id;
  std::string content;
  bool single_word;
  bool lstrip;
  bool rstrip;
  bool normalized;
  bool special;
};

// Byte trie over added-token contents, scanned leftmost-longest like
// aho-corasick's MatchKind::LeftmostLongest in `tokenizers`.
class AddedTokenTrie {
 public:
  AddedTokenTrie() : terminal_(1, -1) {}

  // Ties (the same content twice) keep the first token.
  void Insert(absl::string_view content, int token_index) {
    int node = 0;
    for (unsigned char b : content) {
      const uint64_t key = (static_cast<uint64_t>(node) << 8) | b;
      auto it = edges_.find(key);
      if (it == edges_.end()) {
        terminal_.push_back(-1);
        it = edges_.emplace(key, static_cast<int>(terminal_.size()) - 1).first;
      }
      node = it->second;
    }
    if (terminal_[node] < 0) terminal_[node] = token_index;
  }

  bool empty() const { return edges_.empty(); }

  // Longest token starting at `pos`: returns its index and sets *end, or -1.
  int LongestAt(absl::string_view text, size_t pos, size_t* end) const {
    int node = 0;
    int best = -1;
    for (size_t i = pos; i < text.size(); ++i) {
      const uint64_t key = (static_cast<uint64_t>(node) << 8) |
                           static_cast<unsigned char>(text[i]);
      auto it = edges_.find(key);
      if (it == edges_.end()) break;
      node = it->second;
      if (terminal_[node] >= 0) {
        best = terminal_[node];
        *end = i + 1;
      }
    }
    return best;
  }

 private:
  absl::flat_hash_map<uint64_t, int> edges_;
  std::vector<int> terminal_;
};

// A piece of input: text to tokenize further (token_id < 0) or an added token.
struct Segment {
  absl::string_view text;
  int32_t token_id;
};

struct MergeInfo {
  int32_t rank;
  int32_t new_id;
};

inline uint64_t PairKey(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) |
         static_cast<uint32_t>(b);
}

class TokenizerImpl final : public Tokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Build(
      const Json& root, const std::string& source);

  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text,
                                              BosPolicy bos) const override;
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                     bool skip_special) const override;

  int32_t vocab_size() const override {
    return static_cast<int32_t>(id_to_token_.size());
  }
  std::optional<int32_t> TokenToId(absl::string_view token) const override {
    auto it = token_to_id_.find(token);
    if (it == token_to_id_.end()) return std::nullopt;
    return it->second;
  }
  std::optional<std::string> IdToToken(int32_t id) const override {
    if (id < 0 || id >= vocab_size() || !assigned_[id]) return std::nullopt;
    return id_to_token_[id];
  }
  bool IsSpecial(int32_t id) const override {
    return id >= 0 && id < vocab_size() && special_[id];
  }
  int32_t bos_id() const override { return bos_id_; }
  int32_t eos_id() const override { return eos_id_; }
  int32_t pad_id() const override { return pad_id_; }
  int32_t unk_id() const override { return unk_id_; }

 private:
  absl::Status ParseNormalizer(const Json& node, const std::string& field,
                               const FieldReader& reader);
  absl::Status ParsePreTokenizer(const Json& node, const std::string& field,
                                 const FieldReader& reader);
  absl::Status ParseDecoder(const Json& node, const std::string& field,
                            const FieldReader& reader);
  absl::Status ParseModel(const Json& model, const FieldReader& reader);
  absl::Status ParseAddedTokens(const Json& root, const FieldReader& reader);
  absl::Status ParsePostProcessor(const Json& root, const FieldReader& reader);

  std::string Normalize(absl::string_view text) const;
  // Splits `text` on the tokens of `trie` exactly as
  // AddedVocabulary::find_matches does.
  void SplitOnAddedTokens(const AddedTokenTrie& trie, absl::string_view text,
                          std::vector<Segment>* out) const;
  std::vector<absl::string_view> PreTokenize(absl::string_view text) const;
  absl::Status EncodeWord(absl::string_view word,
                          std::vector<int32_t>* out) const;
  absl::Status RunBpe(absl::string_view word, std::vector<int32_t>* out) const;

  // Vocabulary (model vocab plus added tokens).
  absl::flat_hash_map<std::string, int32_t> token_to_id_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> assigned_;
  std::vector<bool> special_;

  // BPE model.
  absl::flat_hash_map<uint64_t, MergeInfo> merges_;
  int32_t ascii_ids_[128];
  int32_t byte_ids_[256];
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  int32_t unk_id_ = -1;

  // Pipeline.
  std::vector<NormalizerStep> normalizer_;
  std::vector<SplitStep> pre_tokenizer_;
  bool has_decoder_ = false;
  std::vector<DecoderStep> decoder_;

  std::vector<AddedToken> added_;
  AddedTokenTrie raw_trie_;  // normalized == false: matched on the input text
  AddedTokenTrie
      normalized_trie_;  // normalized == true: matched on normalized text
  std::vector<std::string> normalized_contents_;  // indexed like added_

  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  int32_t pad_id_ = -1;

  mutable absl::Mutex cache_mu_;
  mutable absl::flat_hash_map<std::string, std::vector<int32_t>> cache_
      ABSL_GUARDED_BY(cache_mu_);
};

// ---------------------------------------------------------------------------------------------
// Loading.

absl::Status TokenizerImpl::ParseNormalizer(const Json& node,
                                            const std::string& field,
                                            const FieldReader& reader) {
  if (node.is_null()) return absl::OkStatus();
  if (!node.is_object())
    return reader.Error(field, "expected an object or null");
  ASSIGN_OR_RETURN(std::string type, reader.String(node, field, "type"));
  if (type == "Sequence") {
    auto it = node.find("normalizers");
    if (it == node.end() || !it->is_array()) {
      return reader.Error(field + ".normalizers", "expected an array");
    }
    for (size_t i = 0; i < it->size(); ++i) {
      RETURN_IF_ERROR(ParseNormalizer(
          (*it)[i], absl::StrCat(field, ".normalizers[", i, "]"), reader));
    }
    return absl::OkStatus();
  }
  if (type == "Replace") {
    NormalizerStep step{NormalizerStep::Kind::kReplace, "", ""};
    ASSIGN_OR_RETURN(step.pattern, reader.StringPattern(node, field));
    ASSIGN_OR_RETURN(step.content, reader.String(node, field, "content"));
    normalizer_.push_back(std::move(step));
    return absl::OkStatus();
  }
  if (type == "Prepend") {
    NormalizerStep step{NormalizerStep::Kind::kPrepend, "", ""};
    ASSIGN_OR_RETURN(step.content, reader.String(node, field, "prepend"));
    normalizer_.push_back(std::move(step));
    return absl::OkStatus();
  }
  return reader.Error(field + ".type",
                      absl::StrCat("normalizer type '", type,
                                   "' is not supported (supported: "
                                   "Replace, Prepend, Sequence)"));
}

absl::Status TokenizerImpl::ParsePreTokenizer(const Json& node,
                                              const std::string& field,
                                              const FieldReader& reader) {
  if (node.is_null()) return absl::OkStatus();
  if (!node.is_object())
    return reader.Error(field, "expected an object or null");
  ASSIGN_OR_RETURN(std::string type, reader.String(node, field, "type"));
  if (type == "Sequence") {
    auto it = node.find("pretokenizers");
    if (it == node.end() || !it->is_array()) {
      return reader.Error(field + ".pretokenizers", "expected an array");
    }
    for (size_t i = 0; i < it->size(); ++i) {
      RETURN_IF_ERROR(ParsePreTokenizer(
          (*it)[i], absl::StrCat(field, ".pretokenizers[", i, "]"), reader));
    }
    return absl::OkStatus();
  }
  if (type != "Split") {
    return reader.Error(
        field + ".type",
        absl::StrCat("pre_tokenizer type '", type,
                     "' is not supported (supported: Split, Sequence)"));
  }
  SplitStep step;
  ASSIGN_OR_RETURN(step.pattern, reader.StringPattern(node, field));
  ASSIGN_OR_RETURN(bool invert, reader.Bool(node, field, "invert", false));
  if (invert)
    return reader.Error(field + ".invert", "invert=true is not supported");
  ASSIGN_OR_RETURN(std::string behavior,
                   reader.String(node, field, "behavior"));
  if (behavior == "Removed") {
    step.behavior = SplitBehavior::kRemoved;
  } else if (behavior == "Isolated") {
    step.behavior = SplitBehavior::kIsolated;
  } else if (behavior == "MergedWithPrevious") {
    step.behavior = SplitBehavior::kMergedWithPrevious;
  } else if (behavior == "MergedWithNext") {
    step.behavior = SplitBehavior::kMergedWithNext;
  } else if (behavior == "Contiguous") {
    step.behavior = SplitBehavior::kContiguous;
  } else {
    return reader.Error(field + ".behavior",
                        absl::StrCat("unknown behavior '", behavior, "'"));
  }
  pre_tokenizer_.push_back(std::move(step));
  return absl::OkStatus();
}

absl::Status TokenizerImpl::ParseDecoder(const Json& node,
                                         const std::string& field,
                                         const FieldReader& reader) {
  if (!node.is_object())
    return reader.Error(field, "expected an object or null");
  ASSIGN_OR_RETURN(std::string type, reader.String(node, field, "type"));
  DecoderStep step;
  if (type == "Sequence") {
    auto it = node.find("decoders");
    if (it == node.end() || !it->is_array()) {
      return reader.Error(field + ".decoders", "expected an array");
    }
    for (size_t i = 0; i < it->size(); ++i) {
      RETURN_IF_ERROR(ParseDecoder(
          (*it)[i], absl::StrCat(field, ".decoders[", i, "]"), reader));
    }
    return absl::OkStatus();
  } else if (type == "Replace") {
    step.kind = DecoderStep::Kind::kReplace;
    ASSIGN_OR_RETURN(step.pattern, reader.StringPattern(node, field));
    ASSIGN_OR_RETURN(step.content, reader.String(node, field, "content"));
  } else if (type == "ByteFallback") {
    step.kind = DecoderStep::Kind::kByteFallback;
  } else if (type == "Fuse") {
    step.kind = DecoderStep::Kind::kFuse;
  } else if (type == "Strip") {
    step.kind = DecoderStep::Kind::kStrip;
    ASSIGN_OR_RETURN(std::string content,
                     reader.String(node, field, "content"));
    const std::vector<char32_t> cps = ToCodePoints(content);
    if (cps.size() != 1)
      return reader.Error(field + ".content", "expected one character");
    step.strip_char = cps[0];
    ASSIGN_OR_RETURN(int64_t start, reader.Int(node, field, "start"));
    ASSIGN_OR_RETURN(int64_t stop, reader.Int(node, field, "stop"));
    if (start < 0 || stop < 0)
      return reader.Error(field, "start and stop must be >= 0");
    step.strip_start = static_cast<int>(start);
    step.strip_stop = static_cast<int>(stop);
  } else {
    return reader.Error(
        field + ".type",
        absl::StrCat("decoder type '", type,
                     "' is not supported (supported: Replace, ByteFallback, "
                     "Fuse, Strip, Sequence)"));
  }
  decoder_.push_back(std::move(step));
  return absl::OkStatus();
}

absl::Status TokenizerImpl::ParseModel(const Json& model,
                                       const FieldReader& reader) {
  if (!model.is_object()) return reader.Error("model", "expected an object");
  if (model.contains("type")) {
    ASSIGN_OR_RETURN(std::string type, reader.String(model, "model", "type"));
    if (type != "BPE") {
      return reader.Error(
          "model.type",
          absl::StrCat("model type '", type, "' is not supported (only BPE)"));
    }
  }
  auto dropout = model.find("dropout");
  if (dropout != model.end() && !dropout->is_null() &&
      !(dropout->is_number() && dropout->get<double>() == 0.0)) {
    return reader.Error("model.dropout",
                        "BPE dropout is not supported (must be null)");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = model.find(key);
    if (it != model.end() && !it->is_null() &&
        !(it->is_string() && it->get<std::string>().empty())) {
      return reader.Error(absl::StrCat("model.", key),
                          "is not supported (must be null)");
    }
  }
  ASSIGN_OR_RETURN(byte_fallback_,
                   reader.Bool(model, "model", "byte_fallback", false));
  ASSIGN_OR_RETURN(fuse_unk_, reader.Bool(model, "model", "fuse_unk", false));
  ASSIGN_OR_RETURN(ignore_merges_,
                   reader.Bool(model, "model", "ignore_merges", false));

  auto vocab = model.find("vocab");
  if (vocab == model.end() || !vocab->is_object()) {
    return reader.Error("model.vocab", "expected an object of token -> id");
  }
  int64_t max_id = -1;
  // Ids index dense tables: an id far beyond the entry count would make a tiny
  // file allocate gigabytes (found by tests/fuzz/tokenizer_fuzzer).
  const int64_t id_limit = static_cast<int64_t>(vocab->size()) + kIdSlack;
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
        it.value().get<int64_t>() > (1LL << 30)) {
      return reader.Error(absl::StrCat("model.vocab[\"", it.key(), "\"]"),
                          "expected a non-negative integer id");
    }
    if (it.value().get<int64_t>() >= id_limit) {
      return reader.Error(
          absl::StrCat("model.vocab[\"", it.key(), "\"]"),
          absl::StrCat("id ", it.value().get<int64_t>(), " is not below ",
                       id_limit, " (the entry count + ", kIdSlack, ")"));
    }
    max_id = std::max(max_id, it.value().get<int64_t>());
  }
  id_to_token_.assign(max_id + 1, std::string());
  assigned_.assign(max_id + 1, false);
  token_to_id_.reserve(vocab->size());
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    const int32_t id = static_cast<int32_t>(it.value().get<int64_t>());
    if (assigned_[id]) {
      return reader.Error(
          absl::StrCat("model.vocab[\"", it.key(), "\"]"),
          absl::StrCat("id ", id, " is also used by '", id_to_token_[id], "'"));
    }
    assigned_[id] = true;
    id_to_token_[id] = it.key();
    token_to_id_.emplace(it.key(), id);
  }

  auto merges = model.find("merges");
  if (merges == model.end() || !merges->is_array()) {
    return reader.Error("model.merges", "expected an array");
  }
  merges_.reserve(merges->size());
  std::string left, right;
  for (size_t i = 0; i < merges->size(); ++i) {
    const Json& m = (*merges)[i];
    const std::string field = absl::StrCat("model.merges[", i, "]");
    if (m.is_string()) {
      // Legacy format "a b": exactly one space separates the two parts.
      std::vector<std::string> parts =
          absl::StrSplit(m.get<std::string>(), ' ');
      if (parts.size() != 2) {
        return reader.Error(field,
                            "expected \"left right\" with exactly one space");
      }
      left = std::move(parts[0]);
      right = std::move(parts[1]);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() &&
               m[1].is_string()) {
      left = m[0].get<std::string>();
      right = m[1].get<std::string>();
    } else {
      return reader.Error(field,
                          "expected a string \"a b\" or a pair [\"a\", \"b\"]");
    }
    auto l = token_to_id_.find(left);
    auto r = token_to_id_.find(right);
    auto merged = token_to_id_.find(left + right);
    if (l == token_to_id_.end()) {
      return reader.Error(field,
                          absl::StrCat("'", left, "' is not in model.vocab"));
    }
    if (r == token_to_id_.end()) {
      return reader.Error(field,
                          absl::StrCat("'", right, "' is not in model.vocab"));
    }
    if (merged == token_to_id_.end()) {
      return reader.Error(field, absl::StrCat("merged token '", left, right,
                                              "' is not in model.vocab"));
    }
    // A repeated pair takes its last rank, as in `tokenizers` and
    // transformers.js.
    merges_[PairKey(l->second, r->second)] =
        MergeInfo{static_cast<int32_t>(i), merged->second};
  }

  auto unk = model.find("unk_token");
  if (unk != model.end() && !unk->is_null()) {
    if (!unk->is_string())
      return reader.Error("model.unk_token", "expected a string or null");
    auto it = token_to_id_.find(unk->get<std::string>());
    if (it == token_to_id_.end()) {
      return reader.Error("model.unk_token",
                          absl::StrCat("'", unk->get<std::string>(),
                                       "' is not in model.vocab"));
    }
    unk_id_ = it->second;
  }

  for (int c = 0; c < 128; ++c) {
    const char ch = static_cast<char>(c);
    auto it = token_to_id_.find(absl::string_view(&ch, 1));
    ascii_ids_[c] = it == token_to_id_.end() ? -1 : it->second;
  }
  for (int b = 0; b < 256; ++b) {
    auto it = token_to_id_.find(absl::StrFormat("<0x%02X>", b));
    byte_ids_[b] = it == token_to_id_.end() ? -1 : it->second;
  }
  return absl::OkStatus();
}

absl::Status TokenizerImpl::ParseAddedTokens(const Json& root,
                                             const FieldReader& reader) {
  special_.assign(id_to_token_.size(), false);
  auto list = root.find("added_tokens");
  if (list == root.end() || list->is_null()) return absl::OkStatus();
  if (!list->is_array())
    return reader.Error("added_tokens", "expected an array");
  for (size_t i = 0; i < list->size(); ++i) {
    const Json& t = (*list)[i];
    const std::string field = absl::StrCat("added_tokens[", i, "]");
    if (!t.is_object()) return reader.Error(field, "expected an object");
    AddedToken token;
    ASSIGN_OR_RETURN(int64_t id, reader.Int(t, field, "id"));
    if (id < 0 || id > (1LL << 30))
      return reader.Error(field + ".id", "out of range");
    const int64_t id_limit = static_cast<int64_t>(id_to_token_.size()) +
                             static_cast<int64_t>(list->size()) + kIdSlack;
    if (id >= id_limit) {
      return reader.Error(
          field + ".id",
          absl::StrCat("id ", id, " is not below ", id_limit,
                       " (the vocabulary and added token count + ", kIdSlack,
                       ")"));
    }
    token.id = static_cast<int32_t>(id);
    ASSIGN_OR_RETURN(token.content, reader.String(t, field, "content"));
    if (token.content.empty())
      return reader.Error(field + ".content", "must not be empty");
    ASSIGN_OR_RETURN(token.special, reader.Bool(t, field, "special", false));
    ASSIGN_OR_RETURN(token.single_word,
                     reader.Bool(t, field, "single_word", false));
    ASSIGN_OR_RETURN(token.lstrip, reader.Bool(t, field, "lstrip", false));
    ASSIGN_OR_RETURN(token.rstrip, reader.Bool(t, field, "rstrip", false));
    ASSIGN_OR_RETURN(token.normalized,
                     reader.Bool(t, field, "normalized", !token.special));
    if (token.id >= static_cast<int32_t>(id_to_token_.size())) {
      id_to_token_.resize(token.id + 1);
      assigned_.resize(token.id + 1, false);
      special_.resize(token.id + 1, false);
    }
    if (assigned_[token.id] && id_to_token_[token.id] != token.content) {
      return reader.Error(
          field + ".id",
          absl::StrCat("id ", token.id, " is already the token '",
                       id_to_token_[token.id], "'"));
    }
    auto existing = token_to_id_.find(token.content);
    if (existing != token_to_id_.end() && existing->second != token.id) {
      return reader.Error(field + ".content",
                          absl::StrCat("'", token.content, "' already has id ",
                                       existing->second));
    }
    assigned_[token.id] = true;
    id_to_token_[token.id] = token.content;
    special_[token.id] = token.special;
    token_to_id_[token.content] = token.id;
    added_.push_back(std::move(token));
  }
  return absl::OkStatus();
}

absl::Status TokenizerImpl::ParsePostProcessor(const Json& root,
                                               const FieldReader& reader) {
  auto pp = root.find("post_processor");
  if (pp != root.end() && !pp->is_null()) {
    if (!pp->is_object())
      return reader.Error("post_processor", "expected an object or null");
    ASSIGN_OR_RETURN(std::string type,
                     reader.String(*pp, "post_processor", "type"));
    if (type != "TemplateProcessing") {
      return reader.Error(
          "post_processor.type",
          absl::StrCat("post_processor type '", type,
                       "' is not supported (only TemplateProcessing)"));
    }
    auto single = pp->find("single");
    if (single == pp->end() || !single->is_array()) {
      return reader.Error("post_processor.single", "expected an array");
    }
    bool seen_sequence = false;
    for (size_t i = 0; i < single->size(); ++i) {
      const Json& item = (*single)[i];
      const std::string field = absl::StrCat("post_processor.single[", i, "]");
      if (item.contains("Sequence")) {
        if (seen_sequence) return reader.Error(field, "more than one Sequence");
        seen_sequence = true;
        continue;
      }
      auto special = item.find("SpecialToken");
      if (special == item.end() || !special->is_object()) {
        return reader.Error(
            field, "expected {\"SpecialToken\": ...} or {\"Sequence\": ...}");
      }
      if (seen_sequence || bos_id_ >= 0) {
        return reader.Error(
            field,
            "only one special token before the sequence (a BOS) is supported");
      }
      ASSIGN_OR_RETURN(std::string name,
                       reader.String(*special, field + ".SpecialToken", "id"));
      // The template names an entry of post_processor.special_tokens, which
      // lists its ids.
      auto table = pp->find("special_tokens");
      const Json* entry = nullptr;
      if (table != pp->end() && table->is_object() && table->contains(name)) {
        entry = &(*table)[name];
      }
      if (entry != nullptr && entry->contains("ids") &&
          (*entry)["ids"].is_array() && (*entry)["ids"].size() == 1 &&
          (*entry)["ids"][0].is_number_integer()) {
        bos_id_ = (*entry)["ids"][0].get<int32_t>();
      } else {
        auto it = token_to_id_.find(name);
        if (it == token_to_id_.end()) {
          return reader.Error(
              field, absl::StrCat("special token '", name, "' is unknown"));
        }
        bos_id_ = it->second;
      }
      if (bos_id_ < 0 || bos_id_ >= static_cast<int32_t>(id_to_token_.size()) ||
          !assigned_[bos_id_]) {
        return reader.Error(field, absl::StrCat("BOS id ", bos_id_,
                                                " is not in the vocabulary"));
      }
    }
  }
  const auto find_first =
      [&](std::initializer_list<const char*> names) -> int32_t {
    for (const char* name : names) {
      auto it = token_to_id_.find(name);
      if (it != token_to_id_.end()) return it->second;
    }
    return -1;
  };
  if (bos_id_ < 0) bos_id_ = find_first({"<bos>", "<s>"});
  eos_id_ = find_first({"<eos>", "</s>"});
  pad_id_ = find_first({"<pad>"});
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Tokenizer>> TokenizerImpl::Build(
    const Json& root, const std::string& source) {
  FieldReader reader(source);
  if (!root.is_object())
    return reader.Error("(top level)", "expected a JSON object");
  auto impl = std::make_unique<TokenizerImpl>();
  auto model = root.find("model");
  if (model == root.end()) return reader.Error("model", "missing");
  RETURN_IF_ERROR(impl->ParseModel(*model, reader));
  RETURN_IF_ERROR(impl->ParseAddedTokens(root, reader));
  auto normalizer = root.find("normalizer");
  if (normalizer != root.end()) {
    RETURN_IF_ERROR(impl->ParseNormalizer(*normalizer, "normalizer", reader));
  }
  auto pre = root.find("pre_tokenizer");
  if (pre != root.end()) {
    RETURN_IF_ERROR(impl->ParsePreTokenizer(*pre, "pre_tokenizer", reader));
  }
  auto decoder = root.find("decoder");
  if (decoder != root.end() && !decoder->is_null()) {
    impl->has_decoder_ = true;
    RETURN_IF_ERROR(impl->ParseDecoder(*decoder, "decoder", reader));
  }
  RETURN_IF_ERROR(impl->ParsePostProcessor(root, reader));

  impl->normalized_contents_.resize(impl->added_.size());
  for (size_t i = 0; i < impl->added_.size(); ++i) {
    const AddedToken& t = impl->added_[i];
    if (t.normalized) {
      impl->normalized_contents_[i] = impl->Normalize(t.content);
      impl->normalized_trie_.Insert(impl->normalized_contents_[i],
                                    static_cast<int>(i));
    } else {
      impl->raw_trie_.Insert(t.content, static_cast<int>(i));
    }
  }
  return std::unique_ptr<Tokenizer>(std::move(impl));
}

// ---------------------------------------------------------------------------------------------
// Encoding.

std::string TokenizerImpl::Normalize(absl::string_view text) const {
  std::string s(text);
  for (const NormalizerStep& step : normalizer_) {
    switch (step.kind) {
      case NormalizerStep::Kind::kReplace:
        s = absl::StrReplaceAll(s, {{step.pattern, step.content}});
        break;
      case NormalizerStep::Kind::kPrepend:
        if (!s.empty()) s = absl::StrCat(step.content, s);
        break;
    }
  }
  return s;
}

void TokenizerImpl::SplitOnAddedTokens(const AddedTokenTrie& trie,
                                       absl::string_view text,
                                       std::vector<Segment>* out) const {
  if (trie.empty()) {
    if (!text.empty()) out->push_back({text, -1});
    return;
  }
  size_t start_offset = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = 0;
    const int index = trie.LongestAt(text, pos, &end);
    if (index < 0) {
      ++pos;
      continue;
    }
    // Matches are found on the original text and never overlap each other;
    // lstrip/rstrip only widen what the token swallows (find_matches in
    // added_vocabulary.rs).
    const size_t match_start = pos;
    pos = end;
    const AddedToken& token = added_[index];
    size_t start = match_start;
    size_t stop = end;
    if (token.single_word) {
      const bool start_ok =
          start == 0 || !IsWordChar(LastCodePoint(text.substr(0, start)));
      const bool stop_ok =
          stop == text.size() || !IsWordChar(FirstCodePoint(text.substr(stop)));
      if (!start_ok || !stop_ok) continue;
    }
    if (token.lstrip) {
      start = std::max(LeadingOffsetOfTrailingSpace(text.substr(0, start)),
                       start_offset);
    }
    if (token.rstrip) stop += LengthOfLeadingSpace(text.substr(stop));
    if (start_offset < start) {
      out->push_back({text.substr(start_offset, start - start_offset), -1});
    }
    out->push_back({text.substr(start, stop - start), token.id});
    start_offset = stop;
  }
  if (start_offset < text.size())
    out->push_back({text.substr(start_offset), -1});
}

std::vector<absl::string_view> TokenizerImpl::PreTokenize(
    absl::string_view text) const {
  std::vector<absl::string_view> pieces = {text};
  for (const SplitStep& step : pre_tokenizer_) {
    std::vector<absl::string_view> next;
    for (absl::string_view piece : pieces) {
      // Delimiter occurrences, left to right, non-overlapping.
      std::vector<std::pair<size_t, size_t>>
          parts;  // (offset, length), is_delim = odd/even
      std::vector<bool> is_delim;
      size_t from = 0;
      while (true) {
        const size_t hit = piece.find(step.pattern, from);
        if (hit == absl::string_view::npos) break;
        if (hit > from) {
          parts.push_back({from, hit - from});
          is_delim.push_back(false);
        }
        parts.push_back({hit, step.pattern.size()});
        is_delim.push_back(true);
        from = hit + step.pattern.size();
      }
      if (from < piece.size()) {
        parts.push_back({from, piece.size() - from});
        is_delim.push_back(false);
      }
      // Group parts into output pieces according to the behavior.
      std::vector<std::pair<size_t, size_t>> spans;  // (begin, end)
      bool last_was_delim = false;
      for (size_t k = 0; k < parts.size(); ++k) {
        const size_t b = parts[k].first;
        const size_t e = parts[k].first + parts[k].second;
        switch (step.behavior) {
          case SplitBehavior::kRemoved:
            if (!is_delim[k]) spans.push_back({b, e});
            break;
          case SplitBehavior::kIsolated:
            spans.push_back({b, e});
            break;
          case SplitBehavior::kContiguous:
            if (is_delim[k] && last_was_delim && !spans.empty()) {
              spans.back().second = e;
            } else {
              spans.push_back({b, e});
            }
            break;
          case SplitBehavior::kMergedWithPrevious:
            if (is_delim[k] && !spans.empty() && !last_was_delim) {
              spans.back().second = e;
            } else {
              spans.push_back({b, e});
            }
            break;
          case SplitBehavior::kMergedWithNext:
            if (!is_delim[k] && last_was_delim && !spans.empty()) {
              spans.back().second = e;
            } else {
              spans.push_back({b, e});
            }
            break;
        }
        last_was_delim = is_delim[k];
      }
      for (const auto& [b, e] : spans) {
        if (e > b) next.push_back(piece.substr(b, e - b));
      }
    }
    pieces = std::move(next);
  }
  return pieces;
}

absl::Status TokenizerImpl::EncodeWord(absl::string_view word,
                                       std::vector<int32_t>* out) const {
  if (word.empty()) return absl::OkStatus();
  if (ignore_merges_) {
    auto it = token_to_id_.find(word);
    if (it != token_to_id_.end()) {
      out->push_back(it->second);
      return absl::OkStatus();
    }
  }
  const bool cacheable = word.size() < kMaxCachedWordBytes;
  if (cacheable) {
    absl::ReaderMutexLock lock(&cache_mu_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return absl::OkStatus();
    }
  }
  std::vector<int32_t> ids;
  RETURN_IF_ERROR(RunBpe(word, &ids));
  out->insert(out->end(), ids.begin(), ids.end());
  if (cacheable) {
    absl::MutexLock lock(&cache_mu_);
    if (cache_.size() < kCacheCapacity)
      cache_.emplace(std::string(word), std::move(ids));
  }
  return absl::OkStatus();
}

// O(n log n) BPE: a doubly linked list of symbols and a min-heap of candidate
// merges ordered by (rank, position of the left symbol); stale heap entries are
// detected on pop.
absl::Status TokenizerImpl::RunBpe(absl::string_view word,
                                   std::vector<int32_t>* out) const {
  struct Symbol {
    int32_t id;  // -1: character outside the vocabulary (never merged)
    int32_t prev;
    int32_t next;
    uint32_t begin;
    uint32_t len;
  };
  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t next;
    int32_t left_id;
    int32_t right_id;
    int32_t new_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };

  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  char32_t cp;
  for (size_t i = 0; i < word.size();) {
    const int len = DecodeUtf8(word, i, &cp);
    if (len == 0) {
      return absl::InternalError(
          "tokenizer: ill-formed UTF-8 reached the BPE model");
    }
    int32_t id;
    if (cp < 128) {
      id = ascii_ids_[cp];
    } else {
      auto it = token_to_id_.find(word.substr(i, len));
      id = it == token_to_id_.end() ? -1 : it->second;
    }
    const int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, index - 1, index + 1, static_cast<uint32_t>(i),
                       static_cast<uint32_t>(len)});
    i += len;
  }
  symbols.back().next = -1;

  std::priority_queue<Candidate, std::vector<Candidate>,
                      std::greater<Candidate>>
      heap;
  const auto consider = [&](int32_t pos) {
    if (pos < 0) return;
    const int32_t next = symbols[pos].next;
    if (next < 0) return;
    const int32_t a = symbols[pos].id;
    const int32_t b = symbols[next].id;
    if (a < 0 || b < 0) return;
    auto it = merges_.find(PairKey(a, b));
    if (it == merges_.end()) return;
    heap.push({it->second.rank, pos, next, a, b, it->second.new_id});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i)
    consider(i);

  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Symbol& left = symbols[c.pos];
    // Stale: the left symbol was absorbed (len 0), grew, or its right neighbour
    // changed.
    if (left.len == 0 || left.next != c.next || left.id != c.left_id ||
        symbols[c.next].id != c.right_id || symbols[c.next].len == 0) {
      continue;
    }
    Symbol& right = symbols[c.next];
    left.id = c.new_id;
    left.len += right.len;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.pos;
    right.len = 0;
    right.id = -2;
    consider(left.prev);
    consider(c.pos);
  }

  bool last_was_unk = false;
  for (int32_t i = 0; i >= 0; i = symbols[i].next) {
    const Symbol& s = symbols[i];
    if (s.id >= 0) {
      out->push_back(s.id);
      last_was_unk = false;
      continue;
    }
    const absl::string_view ch = word.substr(s.begin, s.len);
    if (byte_fallback_) {
      bool all = true;
      for (unsigned char b : ch) all = all && byte_ids_[b] >= 0;
      if (all) {
        for (unsigned char b : ch) out->push_back(byte_ids_[b]);
        last_was_unk = false;
        continue;
      }
    }
    if (unk_id_ < 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("tokenizer: character '", ch,
                       "' is not in the vocabulary and the file has no byte "
                       "fallback tokens or unk_token"));
    }
    if (!(fuse_unk_ && last_was_unk)) out->push_back(unk_id_);
    last_was_unk = true;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> TokenizerImpl::Encode(
    absl::string_view text, BosPolicy bos) const {
  const size_t bad = FindInvalidUtf8(text);
  if (bad != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tokenizer: input text is not valid UTF-8 at byte offset ", bad));
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 2);
  if (bos == BosPolicy::kOn) {
    if (bos_id_ < 0) {
      return absl::FailedPreconditionError(
          "tokenizer: BosPolicy::kOn but the tokenizer file defines no BOS "
          "token");
    }
    ids.push_back(bos_id_);
  }
  std::vector<Segment> raw_segments;
  SplitOnAddedTokens(raw_trie_, text, &raw_segments);
  std::vector<Segment> normalized_segments;
  for (const Segment& raw : raw_segments) {
    if (raw.token_id >= 0) {
      ids.push_back(raw.token_id);
      continue;
    }
    const std::string normalized = Normalize(raw.text);
    normalized_segments.clear();
    SplitOnAddedTokens(normalized_trie_, normalized, &normalized_segments);
    for (const Segment& seg : normalized_segments) {
      if (seg.token_id >= 0) {
        ids.push_back(seg.token_id);
        continue;
      }
      for (absl::string_view word : PreTokenize(seg.text)) {
        RETURN_IF_ERROR(EncodeWord(word, &ids));
      }
    }
  }
  return ids;
}

// ---------------------------------------------------------------------------------------------
// Decoding.

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void AppendCodePoint(char32_t c, std::string* out) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::vector<std::string> ApplyByteFallback(std::vector<std::string> tokens) {
  std::vector<std::string> out;
  out.reserve(tokens.size());
  std::string bytes;
  const auto flush = [&] {
    if (bytes.empty()) return;
    if (IsValidUtf8(bytes)) {
      out.push_back(bytes);
    } else {
      std::string replacement;
      for (size_t i = 0; i < bytes.size(); ++i)
        AppendCodePoint(0xFFFD, &replacement);
      out.push_back(std::move(replacement));
    }
    bytes.clear();
  };
  for (std::string& t : tokens) {
    if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' &&
        HexValue(t[3]) >= 0 && HexValue(t[4]) >= 0) {
      bytes.push_back(static_cast<char>(HexValue(t[3]) * 16 + HexValue(t[4])));
      continue;
    }
    flush();
    out.push_back(std::move(t));
  }
  flush();
  return out;
}

std::string StripToken(const std::string& token, const DecoderStep& step) {
  const std::vector<char32_t> cps = ToCodePoints(token);
  size_t begin = 0;
  while (begin < cps.size() && begin < static_cast<size_t>(step.strip_start) &&
         cps[begin] == step.strip_char) {
    ++begin;
  }
  size_t end = cps.size();
  size_t removed = 0;
  while (end > begin && removed < static_cast<size_t>(step.strip_stop) &&
         cps[end - 1] == step.strip_char) {
    --end;
    ++removed;
  }
  std::string out;
  for (size_t i = begin; i < end; ++i) AppendCodePoint(cps[i], &out);
  return out;
}

absl::StatusOr<std::string> TokenizerImpl::Decode(absl::Span<const int32_t> ids,
                                                  bool skip_special) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id >= vocab_size() || !assigned_[id]) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer: token id ", id, " at position ", i,
                       " is not in the vocabulary (size ", vocab_size(), ")"));
    }
    if (skip_special && special_[id]) continue;
    tokens.push_back(id_to_token_[id]);
  }
  if (!has_decoder_) return absl::StrJoin(tokens, " ");
  for (const DecoderStep& step : decoder_) {
    switch (step.kind) {
      case DecoderStep::Kind::kReplace:
        for (std::string& t : tokens)
          t = absl::StrReplaceAll(t, {{step.pattern, step.content}});
        break;
      case DecoderStep::Kind::kByteFallback:
        tokens = ApplyByteFallback(std::move(tokens));
        break;
      case DecoderStep::Kind::kFuse: {
        std::string fused = absl::StrJoin(tokens, "");
        tokens.clear();
        tokens.push_back(std::move(fused));
        break;
      }
      case DecoderStep::Kind::kStrip:
        for (std::string& t : tokens) t = StripToken(t, step);
        break;
    }
  }
  return absl::StrJoin(tokens, "");
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(
    absl::string_view json_text, absl::string_view source_name) {
  const std::string source(source_name);
  Json root;
  try {
    root = Json::parse(json_text.begin(), json_text.end());
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tokenizer file ", source, ": not valid JSON: ", e.what()));
  }
  try {
    return TokenizerImpl::Build(root, source);
  } catch (const Json::exception& e) {
    // Checked accessors should make this unreachable; keep exceptions inside
    // the component.
    return absl::InvalidArgumentError(absl::StrCat(
        "tokenizer file ", source, ": unexpected JSON structure: ", e.what()));
  }
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromFile(
    const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("tokenizer file ", path, ": cannot be opened"));
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) {
    return absl::DataLossError(
        absl::StrCat("tokenizer file ", path, ": read failed"));
  }
  return FromJson(buffer.str(), path);
}

}  // namespace sweepd
