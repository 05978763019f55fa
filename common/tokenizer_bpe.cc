// Implementation of common/tokenizer_bpe.h.
#include "common/tokenizer_bpe.h"

#include <algorithm>
#include <functional>
#include <queue>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/status.h"
#include "common/tokenizer_unicode.h"

namespace sweepd::tokenizer_internal {
namespace {

// Words at least this long (bytes) are not cached: they rarely repeat and would
// crowd out the short ones. The cache stops growing at kCacheCapacity entries
// (as `tokenizers` does).
constexpr size_t kMaxCachedWordBytes = 64;
constexpr size_t kCacheCapacity = 100000;

}  // namespace

absl::Status BpeModel::Parse(const Json& model, const FieldReader& reader,
                             Vocabulary* vocab) {
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

  auto json_vocab = model.find("vocab");
  if (json_vocab == model.end() || !json_vocab->is_object()) {
    return reader.Error("model.vocab", "expected an object of token -> id");
  }
  int64_t max_id = -1;
  const int64_t id_limit = static_cast<int64_t>(json_vocab->size()) + kIdSlack;
  for (auto it = json_vocab->begin(); it != json_vocab->end(); ++it) {
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
  auto& token_to_id = vocab->token_to_id;
  auto& id_to_token = vocab->id_to_token;
  auto& assigned = vocab->assigned;
  id_to_token.assign(max_id + 1, std::string());
  assigned.assign(max_id + 1, false);
  token_to_id.reserve(json_vocab->size());
  for (auto it = json_vocab->begin(); it != json_vocab->end(); ++it) {
    const int32_t id = static_cast<int32_t>(it.value().get<int64_t>());
    if (assigned[id]) {
      return reader.Error(
          absl::StrCat("model.vocab[\"", it.key(), "\"]"),
          absl::StrCat("id ", id, " is also used by '", id_to_token[id], "'"));
    }
    assigned[id] = true;
    id_to_token[id] = it.key();
    token_to_id.emplace(it.key(), id);
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
    auto l = token_to_id.find(left);
    auto r = token_to_id.find(right);
    auto merged = token_to_id.find(left + right);
    if (l == token_to_id.end()) {
      return reader.Error(field,
                          absl::StrCat("'", left, "' is not in model.vocab"));
    }
    if (r == token_to_id.end()) {
      return reader.Error(field,
                          absl::StrCat("'", right, "' is not in model.vocab"));
    }
    if (merged == token_to_id.end()) {
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
    auto it = token_to_id.find(unk->get<std::string>());
    if (it == token_to_id.end()) {
      return reader.Error("model.unk_token",
                          absl::StrCat("'", unk->get<std::string>(),
                                       "' is not in model.vocab"));
    }
    unk_id_ = it->second;
  }

  for (int c = 0; c < 128; ++c) {
    const char ch = static_cast<char>(c);
    auto it = token_to_id.find(absl::string_view(&ch, 1));
    ascii_ids_[c] = it == token_to_id.end() ? -1 : it->second;
  }
  for (int b = 0; b < 256; ++b) {
    auto it = token_to_id.find(absl::StrFormat("<0x%02X>", b));
    byte_ids_[b] = it == token_to_id.end() ? -1 : it->second;
  }
  return absl::OkStatus();
}

absl::Status BpeModel::EncodeWord(absl::string_view word,
                                  const Vocabulary& vocab,
                                  std::vector<int32_t>* out) const {
  if (word.empty()) return absl::OkStatus();
  if (ignore_merges_) {
    auto it = vocab.token_to_id.find(word);
    if (it != vocab.token_to_id.end()) {
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
  RETURN_IF_ERROR(RunBpe(word, vocab, &ids));
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
absl::Status BpeModel::RunBpe(absl::string_view word, const Vocabulary& vocab,
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
      auto it = vocab.token_to_id.find(word.substr(i, len));
      id = it == vocab.token_to_id.end() ? -1 : it->second;
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

}  // namespace sweepd::tokenizer_internal
