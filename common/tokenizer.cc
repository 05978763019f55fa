// Implementation of common/tokenizer.h: the composition of the pipeline's
// parts, reading them from tokenizer.json in order. The pipeline mirrors the
// `tokenizers` library (huggingface/tokenizers, tokenizer/added_vocabulary.rs
// and models/bpe/word.rs):
//   text -> split on non-normalized added tokens -> normalize each remaining
//   piece -> split on normalized added tokens -> pre-tokenize -> BPE per word
//   (+ byte fallback) -> optional BOS.
// The parts (tokenizer_*.h, namespace tokenizer_internal): the vocabulary
// (tokenizer_vocab), the BPE model and its word cache (tokenizer_bpe), added
// tokens and splitting on them (tokenizer_added_tokens), the normalizer
// (tokenizer_normalizer), the pre-tokenizer (tokenizer_pre_tokenizer), the
// decoder chain with byte fallback (tokenizer_decoder), BOS/EOS/PAD
// (tokenizer_special_ids), JSON field access (tokenizer_json) and the UTF-8
// helpers they share (tokenizer_unicode).
#include "common/tokenizer.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/tokenizer_added_tokens.h"
#include "common/tokenizer_bpe.h"
#include "common/tokenizer_decoder.h"
#include "common/tokenizer_json.h"
#include "common/tokenizer_normalizer.h"
#include "common/tokenizer_pre_tokenizer.h"
#include "common/tokenizer_special_ids.h"
#include "common/tokenizer_unicode.h"
#include "common/tokenizer_vocab.h"

namespace sweepd {
namespace {

using tokenizer_internal::AddedVocabulary;
using tokenizer_internal::BpeModel;
using tokenizer_internal::DecoderChain;
using tokenizer_internal::FieldReader;
using tokenizer_internal::Json;
using tokenizer_internal::Normalizer;
using tokenizer_internal::PreTokenizer;
using tokenizer_internal::Segment;
using tokenizer_internal::SpecialIds;
using tokenizer_internal::Vocabulary;

class TokenizerImpl final : public Tokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Build(
      const Json& root, const std::string& source);

  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text,
                                              BosPolicy bos) const override;
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                     bool skip_special) const override;

  int32_t vocab_size() const override { return vocab_.size(); }
  std::optional<int32_t> TokenToId(absl::string_view token) const override {
    auto it = vocab_.token_to_id.find(token);
    if (it == vocab_.token_to_id.end()) return std::nullopt;
    return it->second;
  }
  std::optional<std::string> IdToToken(int32_t id) const override {
    if (!vocab_.IsAssigned(id)) return std::nullopt;
    return vocab_.id_to_token[id];
  }
  bool IsSpecial(int32_t id) const override {
    return id >= 0 && id < vocab_size() && vocab_.special[id];
  }
  int32_t bos_id() const override { return special_ids_.bos; }
  int32_t eos_id() const override { return special_ids_.eos; }
  int32_t pad_id() const override { return special_ids_.pad; }
  int32_t unk_id() const override { return model_.unk_id(); }

 private:
  Vocabulary vocab_;
  BpeModel model_;
  AddedVocabulary added_;
  Normalizer normalizer_;
  PreTokenizer pre_tokenizer_;
  DecoderChain decoder_;
  SpecialIds special_ids_;
};

absl::StatusOr<std::unique_ptr<Tokenizer>> TokenizerImpl::Build(
    const Json& root, const std::string& source) {
  FieldReader reader(source);
  if (!root.is_object())
    return reader.Error("(top level)", "expected a JSON object");
  auto impl = std::make_unique<TokenizerImpl>();
  auto model = root.find("model");
  if (model == root.end()) return reader.Error("model", "missing");
  RETURN_IF_ERROR(impl->model_.Parse(*model, reader, &impl->vocab_));
  RETURN_IF_ERROR(impl->added_.Parse(root, reader, &impl->vocab_));
  auto normalizer = root.find("normalizer");
  if (normalizer != root.end()) {
    RETURN_IF_ERROR(impl->normalizer_.Parse(*normalizer, "normalizer", reader));
  }
  auto pre = root.find("pre_tokenizer");
  if (pre != root.end()) {
    RETURN_IF_ERROR(impl->pre_tokenizer_.Parse(*pre, "pre_tokenizer", reader));
  }
  auto decoder = root.find("decoder");
  if (decoder != root.end() && !decoder->is_null()) {
    RETURN_IF_ERROR(impl->decoder_.Parse(*decoder, "decoder", reader));
  }
  ASSIGN_OR_RETURN(impl->special_ids_, tokenizer_internal::ParseSpecialIds(
                                           root, reader, impl->vocab_));
  impl->added_.Index(impl->normalizer_);
  return std::unique_ptr<Tokenizer>(std::move(impl));
}

absl::StatusOr<std::vector<int32_t>> TokenizerImpl::Encode(
    absl::string_view text, BosPolicy bos) const {
  const size_t bad = tokenizer_internal::FindInvalidUtf8(text);
  if (bad != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tokenizer: input text is not valid UTF-8 at byte offset ", bad));
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 2);
  if (bos == BosPolicy::kOn) {
    if (special_ids_.bos < 0) {
      return absl::FailedPreconditionError(
          "tokenizer: BosPolicy::kOn but the tokenizer file defines no BOS "
          "token");
    }
    ids.push_back(special_ids_.bos);
  }
  std::vector<Segment> raw_segments;
  added_.SplitRaw(text, &raw_segments);
  std::vector<Segment> normalized_segments;
  for (const Segment& raw : raw_segments) {
    if (raw.token_id >= 0) {
      ids.push_back(raw.token_id);
      continue;
    }
    const std::string normalized = normalizer_.Apply(raw.text);
    normalized_segments.clear();
    added_.SplitNormalized(normalized, &normalized_segments);
    for (const Segment& seg : normalized_segments) {
      if (seg.token_id >= 0) {
        ids.push_back(seg.token_id);
        continue;
      }
      for (absl::string_view word : pre_tokenizer_.Split(seg.text)) {
        RETURN_IF_ERROR(model_.EncodeWord(word, vocab_, &ids));
      }
    }
  }
  return ids;
}

absl::StatusOr<std::string> TokenizerImpl::Decode(absl::Span<const int32_t> ids,
                                                  bool skip_special) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (!vocab_.IsAssigned(id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer: token id ", id, " at position ", i,
                       " is not in the vocabulary (size ", vocab_size(), ")"));
    }
    if (skip_special && vocab_.special[id]) continue;
    tokens.push_back(vocab_.id_to_token[id]);
  }
  return decoder_.Decode(std::move(tokens));
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
