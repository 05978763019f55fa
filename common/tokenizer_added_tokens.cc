// Implementation of common/tokenizer_added_tokens.h.
#include "common/tokenizer_added_tokens.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/tokenizer_unicode.h"

namespace sweepd::tokenizer_internal {

void AddedTokenTrie::Insert(absl::string_view content, int token_index) {
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

int AddedTokenTrie::LongestAt(absl::string_view text, size_t pos,
                              size_t* end) const {
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

absl::Status AddedVocabulary::Parse(const Json& root, const FieldReader& reader,
                                    Vocabulary* vocab) {
  vocab->special.assign(vocab->id_to_token.size(), false);
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
    const int64_t id_limit = static_cast<int64_t>(vocab->id_to_token.size()) +
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
    if (token.id >= static_cast<int32_t>(vocab->id_to_token.size())) {
      vocab->id_to_token.resize(token.id + 1);
      vocab->assigned.resize(token.id + 1, false);
      vocab->special.resize(token.id + 1, false);
    }
    if (vocab->assigned[token.id] &&
        vocab->id_to_token[token.id] != token.content) {
      return reader.Error(
          field + ".id",
          absl::StrCat("id ", token.id, " is already the token '",
                       vocab->id_to_token[token.id], "'"));
    }
    auto existing = vocab->token_to_id.find(token.content);
    if (existing != vocab->token_to_id.end() && existing->second != token.id) {
      return reader.Error(field + ".content",
                          absl::StrCat("'", token.content, "' already has id ",
                                       existing->second));
    }
    vocab->assigned[token.id] = true;
    vocab->id_to_token[token.id] = token.content;
    vocab->special[token.id] = token.special;
    vocab->token_to_id[token.content] = token.id;
    tokens_.push_back(std::move(token));
  }
  return absl::OkStatus();
}

void AddedVocabulary::Index(const Normalizer& normalizer) {
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const AddedToken& t = tokens_[i];
    if (t.normalized) {
      normalized_trie_.Insert(normalizer.Apply(t.content), static_cast<int>(i));
    } else {
      raw_trie_.Insert(t.content, static_cast<int>(i));
    }
  }
}

void AddedVocabulary::Split(const AddedTokenTrie& trie, absl::string_view text,
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
    const AddedToken& token = tokens_[index];
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

}  // namespace sweepd::tokenizer_internal
