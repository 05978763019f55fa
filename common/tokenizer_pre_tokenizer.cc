// Implementation of common/tokenizer_pre_tokenizer.h.
#include "common/tokenizer_pre_tokenizer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace sweepd::tokenizer_internal {

absl::Status PreTokenizer::Parse(const Json& node, const std::string& field,
                                 const FieldReader& reader) {
  if (node.is_null()) return absl::OkStatus();
  if (!node.is_object())
    return reader.Error(field, "expected an object or null");
  ASSIGN_OR_RETURN(std::string type, reader.String(node, field, "type"));
  if (type == "Sequence") {
    return reader.ForEach(node, field, "pretokenizers",
                          [&](const Json& item, const std::string& path) {
                            return Parse(item, path, reader);
                          });
  }
  if (type != "Split") {
    return reader.Error(
        field + ".type",
        absl::StrCat("pre_tokenizer type '", type,
                     "' is not supported (supported: Split, Sequence)"));
  }
  Step step;
  ASSIGN_OR_RETURN(step.pattern, reader.StringPattern(node, field));
  ASSIGN_OR_RETURN(bool invert, reader.Bool(node, field, "invert", false));
  if (invert)
    return reader.Error(field + ".invert", "invert=true is not supported");
  ASSIGN_OR_RETURN(std::string behavior,
                   reader.String(node, field, "behavior"));
  if (behavior == "Removed") {
    step.behavior = Behavior::kRemoved;
  } else if (behavior == "Isolated") {
    step.behavior = Behavior::kIsolated;
  } else if (behavior == "MergedWithPrevious") {
    step.behavior = Behavior::kMergedWithPrevious;
  } else if (behavior == "MergedWithNext") {
    step.behavior = Behavior::kMergedWithNext;
  } else if (behavior == "Contiguous") {
    step.behavior = Behavior::kContiguous;
  } else {
    return reader.Error(field + ".behavior",
                        absl::StrCat("unknown behavior '", behavior, "'"));
  }
  steps_.push_back(std::move(step));
  return absl::OkStatus();
}

std::vector<absl::string_view> PreTokenizer::Split(
    absl::string_view text) const {
  std::vector<absl::string_view> pieces = {text};
  for (const Step& step : steps_) {
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
          case Behavior::kRemoved:
            if (!is_delim[k]) spans.push_back({b, e});
            break;
          case Behavior::kIsolated:
            spans.push_back({b, e});
            break;
          case Behavior::kContiguous:
            if (is_delim[k] && last_was_delim && !spans.empty()) {
              spans.back().second = e;
            } else {
              spans.push_back({b, e});
            }
            break;
          case Behavior::kMergedWithPrevious:
            if (is_delim[k] && !spans.empty() && !last_was_delim) {
              spans.back().second = e;
            } else {
              spans.push_back({b, e});
            }
            break;
          case Behavior::kMergedWithNext:
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

}  // namespace sweepd::tokenizer_internal
