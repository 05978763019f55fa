// Implementation of common/tokenizer_special_ids.h.
#include "common/tokenizer_special_ids.h"

#include <initializer_list>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace sweepd::tokenizer_internal {

absl::StatusOr<SpecialIds> ParseSpecialIds(const Json& root,
                                           const FieldReader& reader,
                                           const Vocabulary& vocab) {
  SpecialIds ids;
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
      if (seen_sequence || ids.bos >= 0) {
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
        ids.bos = (*entry)["ids"][0].get<int32_t>();
      } else {
        auto it = vocab.token_to_id.find(name);
        if (it == vocab.token_to_id.end()) {
          return reader.Error(
              field, absl::StrCat("special token '", name, "' is unknown"));
        }
        ids.bos = it->second;
      }
      if (!vocab.IsAssigned(ids.bos)) {
        return reader.Error(field, absl::StrCat("BOS id ", ids.bos,
                                                " is not in the vocabulary"));
      }
    }
  }
  const auto find_first =
      [&](std::initializer_list<const char*> names) -> int32_t {
    for (const char* name : names) {
      auto it = vocab.token_to_id.find(name);
      if (it != vocab.token_to_id.end()) return it->second;
    }
    return -1;
  };
  if (ids.bos < 0) ids.bos = find_first({"<bos>", "<s>"});
  ids.eos = find_first({"<eos>", "</s>"});
  ids.pad = find_first({"<pad>"});
  return ids;
}

}  // namespace sweepd::tokenizer_internal
