// Tokenizer-internal access to the fields of a parsed tokenizer.json
// (common/tokenizer.h's implementation only): typed getters whose
// INVALID_ARGUMENT errors name the file and the dotted field path, e.g.
// "tokenizer file t.json: field 'model.merges[3]': expected an array".
//
// A FieldReader owns a copy of the source name and borrows the JSON it reads
// for the duration of each call. Immutable after construction; thread-safe.
#ifndef SWEEPD_COMMON_TOKENIZER_JSON_H_
#define SWEEPD_COMMON_TOKENIZER_JSON_H_

#include <cstdint>
#include <functional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace sweepd::tokenizer_internal {

using Json = nlohmann::json;

class FieldReader {
 public:
  // `source` names the file (or "<tokenizer.json>") in every error.
  explicit FieldReader(std::string source) : source_(std::move(source)) {}

  // INVALID_ARGUMENT "tokenizer file <source>: field '<field>': <what>".
  absl::Status Error(absl::string_view field, absl::string_view what) const;

  // obj[key] as a string; missing or another type is an error naming
  // field.key.
  absl::StatusOr<std::string> String(const Json& obj, absl::string_view field,
                                     absl::string_view key) const;
  // obj[key] as a bool; missing or null gives `default_value`.
  absl::StatusOr<bool> Bool(const Json& obj, absl::string_view field,
                            absl::string_view key, bool default_value) const;
  // obj[key] as an integer; missing or another type is an error.
  absl::StatusOr<int64_t> Int(const Json& obj, absl::string_view field,
                              absl::string_view key) const;

  // Calls parse(obj[key][i], "field.key[i]") for each element of the array
  // obj[key] in order, stopping at the first error; missing or not an array
  // is an error naming field.key.
  absl::Status ForEach(
      const Json& obj, const std::string& field, const std::string& key,
      const std::function<absl::Status(const Json&, const std::string&)>& parse)
      const;

  // The String pattern of a Replace/Split `pattern` object; Regex patterns and
  // empty strings are refused.
  absl::StatusOr<std::string> StringPattern(const Json& obj,
                                            absl::string_view field) const;

  // "field.key", or "key" when `field` is empty.
  static std::string Path(absl::string_view field, absl::string_view key);

 private:
  std::string source_;
};

}  // namespace sweepd::tokenizer_internal

#endif  // SWEEPD_COMMON_TOKENIZER_JSON_H_
