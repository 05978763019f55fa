// Implementation of common/tokenizer_json.h.
#include "common/tokenizer_json.h"

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace sweepd::tokenizer_internal {

absl::Status FieldReader::Error(absl::string_view field,
                                absl::string_view what) const {
  return absl::InvalidArgumentError(absl::StrCat(
      "tokenizer file ", source_, ": field '", field, "': ", what));
}

absl::StatusOr<std::string> FieldReader::String(const Json& obj,
                                                absl::string_view field,
                                                absl::string_view key) const {
  auto it = obj.find(std::string(key));
  if (it == obj.end()) return Error(Path(field, key), "missing");
  if (!it->is_string()) return Error(Path(field, key), "expected a string");
  return it->get<std::string>();
}

absl::StatusOr<bool> FieldReader::Bool(const Json& obj, absl::string_view field,
                                       absl::string_view key,
                                       bool default_value) const {
  auto it = obj.find(std::string(key));
  if (it == obj.end() || it->is_null()) return default_value;
  if (!it->is_boolean())
    return Error(Path(field, key), "expected true or false");
  return it->get<bool>();
}

absl::StatusOr<int64_t> FieldReader::Int(const Json& obj,
                                         absl::string_view field,
                                         absl::string_view key) const {
  auto it = obj.find(std::string(key));
  if (it == obj.end()) return Error(Path(field, key), "missing");
  if (!it->is_number_integer())
    return Error(Path(field, key), "expected an integer");
  return it->get<int64_t>();
}

std::string FieldReader::Path(absl::string_view field, absl::string_view key) {
  return field.empty() ? std::string(key) : absl::StrCat(field, ".", key);
}

absl::Status FieldReader::ForEach(
    const Json& obj, const std::string& field, const std::string& key,
    const std::function<absl::Status(const Json&, const std::string&)>& parse)
    const {
  const std::string path = field + "." + key;
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_array()) {
    return Error(path, "expected an array");
  }
  for (size_t i = 0; i < it->size(); ++i) {
    RETURN_IF_ERROR(parse((*it)[i], absl::StrCat(path, "[", i, "]")));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> FieldReader::StringPattern(
    const Json& obj, absl::string_view field) const {
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

}  // namespace sweepd::tokenizer_internal
