#include "common/layer_selector.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status.h"

namespace sweepd {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", message));
}

// A non-negative decimal integer with nothing else around it.
bool ParseIndex(absl::string_view text, int64_t* out) {
  text = absl::StripAsciiWhitespace(text);
  if (text.empty() || text.size() > 12) return false;
  for (char c : text) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return absl::SimpleAtoi(text, out);
}

std::string RangeText(int n) { return absl::StrCat("[0, ", n, ")"); }

}  // namespace

absl::StatusOr<std::vector<int>> ParseLayerSelector(const std::string& selector,
                                                    int num_layers,
                                                    const std::string& field) {
  const bool known = num_layers != kLayerCountUnknown;
  if (absl::StripAsciiWhitespace(selector).empty()) {
    return Invalid(field, "empty layer selector");
  }
  if (known && num_layers <= 0) {
    return Invalid(field, "the model has no layers to select");
  }
  std::vector<int> out;
  auto add = [&](int64_t layer) -> absl::Status {
    if (layer < 0 || (known && layer >= num_layers) || layer > INT32_MAX) {
      return Invalid(field,
                     absl::StrCat("layer ", layer, " out of range ",
                                  RangeText(known ? num_layers : INT32_MAX)));
    }
    out.push_back(static_cast<int>(layer));
    return absl::OkStatus();
  };
  for (absl::string_view raw : absl::StrSplit(selector, ',')) {
    const absl::string_view item = absl::StripAsciiWhitespace(raw);
    auto bad = [&](absl::string_view why) {
      return Invalid(field, absl::StrCat("bad layer selector item \"", item,
                                         "\" in \"", selector, "\": ", why));
    };
    if (item.empty()) return bad("empty item");
    if (item == "all") {
      if (!known) return bad("\"all\" needs the model's layer count");
      for (int l = 0; l < num_layers; ++l) out.push_back(l);
      continue;
    }
    if (item.find(':') != absl::string_view::npos) {
      std::vector<absl::string_view> parts = absl::StrSplit(item, ':');
      if (parts.size() > 3) {
        return bad("expected start:stop or start:stop:step");
      }
      int64_t start = 0, stop = num_layers, step = 1;
      if (!absl::StripAsciiWhitespace(parts[0]).empty() &&
          !ParseIndex(parts[0], &start)) {
        return bad("start is not a non-negative integer");
      }
      if (absl::StripAsciiWhitespace(parts[1]).empty()) {
        if (!known) return bad("an open stop needs the model's layer count");
      } else if (!ParseIndex(parts[1], &stop)) {
        return bad("stop is not a non-negative integer");
      }
      if (parts.size() == 3 && !absl::StripAsciiWhitespace(parts[2]).empty() &&
          !ParseIndex(parts[2], &step)) {
        return bad("step is not a positive integer");
      }
      if (step == 0) return bad("step must be positive");
      if (known && stop > num_layers) {
        return Invalid(field, absl::StrCat("stop ", stop, " out of range [0, ",
                                           num_layers, "] in \"", item, "\""));
      }
      if (start >= stop) return bad("selects no layers");
      for (int64_t l = start; l < stop; l += step) RETURN_IF_ERROR(add(l));
      continue;
    }
    const size_t dash = item.find('-');
    if (dash != absl::string_view::npos) {
      int64_t a = 0, b = 0;
      if (!ParseIndex(item.substr(0, dash), &a) ||
          !ParseIndex(item.substr(dash + 1), &b)) {
        return bad("expected first-last with non-negative integers");
      }
      if (a > b) return bad("first > last");
      RETURN_IF_ERROR(add(a));
      RETURN_IF_ERROR(add(b));
      for (int64_t l = a + 1; l < b; ++l) out.push_back(static_cast<int>(l));
      continue;
    }
    int64_t layer = 0;
    if (!ParseIndex(item, &layer)) {
      return bad("not a layer index, range or \"all\"");
    }
    RETURN_IF_ERROR(add(layer));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::string FormatLayerList(const std::vector<int>& layers) {
  std::vector<std::string> parts;
  for (size_t i = 0; i < layers.size();) {
    size_t j = i;
    while (j + 1 < layers.size() && layers[j + 1] == layers[j] + 1) ++j;
    parts.push_back(j == i ? absl::StrCat(layers[i])
                           : absl::StrCat(layers[i], "-", layers[j]));
    i = j + 1;
  }
  return absl::StrJoin(parts, ",");
}

}  // namespace sweepd
