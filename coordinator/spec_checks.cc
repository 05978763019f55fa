#include "coordinator/spec_checks.h"

#include <algorithm>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/layer_selector.h"
#include "common/status.h"

namespace sweepd::internal {

namespace v1 = ::sweepd::v1;

absl::Status Invalid(absl::string_view field, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", message));
}

bool ParseIndex(absl::string_view text, int64_t* out) {
  text = absl::StripAsciiWhitespace(text);
  if (text.empty() || text.size() > 12) return false;
  for (char c : text) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return absl::SimpleAtoi(text, out);
}

std::string RangeText(int n) { return absl::StrCat("[0, ", n, ")"); }

absl::Status CheckRange(int64_t value, int64_t lo, int64_t hi,
                        absl::string_view field) {
  if (value < lo || value > hi) {
    return Invalid(field,
                   absl::StrCat(value, " out of range [", lo, ", ", hi, "]"));
  }
  return absl::OkStatus();
}

absl::Status CheckFraction(double value, absl::string_view field) {
  if (!(value >= 0.0 && value <= 1.0)) {
    return Invalid(field, absl::StrCat(value, " must be in [0, 1]"));
  }
  return absl::OkStatus();
}

absl::Status ValidateBos(std::string* bos, absl::string_view field) {
  if (bos->empty()) *bos = "on";
  if (*bos != "on" && *bos != "off") {
    return Invalid(
        field, absl::StrCat("must be \"on\" or \"off\", got \"", *bos, "\""));
  }
  return absl::OkStatus();
}

absl::Status ValidateWindowing(v1::TextWindowing* w,
                               const std::string& prefix) {
  if (w->context_length() == 0) w->set_context_length(kDefaultContextLength);
  RETURN_IF_ERROR(CheckRange(w->context_length(), 1, kMaxContextLength,
                             prefix + ".context_length"));
  if (w->stride() == 0) w->set_stride(w->context_length());
  if (w->stride() < 1 || w->stride() > w->context_length()) {
    return Invalid(
        prefix + ".stride",
        absl::StrCat(w->stride(), " out of range [1, context_length = ",
                     w->context_length(), "]"));
  }
  return ValidateBos(w->mutable_bos(), prefix + ".bos");
}

absl::StatusOr<std::string> CanonicalLayers(const std::string& selector,
                                            const ModelShape& m,
                                            const std::string& field) {
  ASSIGN_OR_RETURN(std::vector<int> layers,
                   ParseLayerSelector(selector, m.num_layers, field));
  return FormatLayerList(layers);
}

absl::Status CheckLayer(int layer, const ModelShape& m,
                        const std::string& field) {
  if (layer < 0 || layer >= m.num_layers) {
    return Invalid(field, absl::StrCat("layer ", layer, " out of range ",
                                       RangeText(m.num_layers)));
  }
  return absl::OkStatus();
}

absl::Status CheckHeads(google::protobuf::RepeatedField<int32_t>* heads,
                        const ModelShape& m, const std::string& field) {
  if (heads->empty()) return Invalid(field, "at least one head is required");
  for (int i = 0; i < heads->size(); ++i) {
    int h = heads->Get(i);
    if (h < 0 || h >= m.num_heads) {
      return Invalid(
          absl::StrCat(field, "[", i, "]"),
          absl::StrCat("head ", h, " out of range ", RangeText(m.num_heads)));
    }
  }
  std::sort(heads->begin(), heads->end());
  heads->erase(std::unique(heads->begin(), heads->end()), heads->end());
  return absl::OkStatus();
}

}  // namespace sweepd::internal
