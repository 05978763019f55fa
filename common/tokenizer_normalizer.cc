// Implementation of common/tokenizer_normalizer.h.
#include "common/tokenizer_normalizer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/status.h"

namespace sweepd::tokenizer_internal {

absl::Status Normalizer::Parse(const Json& node, const std::string& field,
                               const FieldReader& reader) {
  if (node.is_null()) return absl::OkStatus();
  if (!node.is_object())
    return reader.Error(field, "expected an object or null");
  ASSIGN_OR_RETURN(std::string type, reader.String(node, field, "type"));
  if (type == "Sequence") {
    return reader.ForEach(node, field, "normalizers",
                          [&](const Json& item, const std::string& path) {
                            return Parse(item, path, reader);
                          });
  }
  if (type == "Replace") {
    Step step{Step::Kind::kReplace, "", ""};
    ASSIGN_OR_RETURN(step.pattern, reader.StringPattern(node, field));
    ASSIGN_OR_RETURN(step.content, reader.String(node, field, "content"));
    steps_.push_back(std::move(step));
    return absl::OkStatus();
  }
  if (type == "Prepend") {
    Step step{Step::Kind::kPrepend, "", ""};
    ASSIGN_OR_RETURN(step.content, reader.String(node, field, "prepend"));
    steps_.push_back(std::move(step));
    return absl::OkStatus();
  }
  return reader.Error(field + ".type",
                      absl::StrCat("normalizer type '", type,
                                   "' is not supported (supported: "
                                   "Replace, Prepend, Sequence)"));
}

std::string Normalizer::Apply(absl::string_view text) const {
  std::string s(text);
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Step::Kind::kReplace:
        s = absl::StrReplaceAll(s, {{step.pattern, step.content}});
        break;
      case Step::Kind::kPrepend:
        if (!s.empty()) s = absl::StrCat(step.content, s);
        break;
    }
  }
  return s;
}

}  // namespace sweepd::tokenizer_internal
