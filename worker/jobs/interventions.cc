#include "worker/jobs/interventions.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace sweepd {
namespace {

const char* OpName(engine::Intervention::Kind kind) {
  switch (kind) {
    case engine::Intervention::Kind::kSkipLayer:
      return "skip";
    case engine::Intervention::Kind::kZeroLayer:
      return "zero";
    case engine::Intervention::Kind::kReinitLayer:
      return "reinit";
    case engine::Intervention::Kind::kMaskHeads:
      return "mask_heads";
  }
  return "?";
}

}  // namespace

absl::Status CheckInterventions(
    const std::vector<engine::Intervention>& interventions,
    const std::vector<std::string>& fields, const ModelConfig& config) {
  for (size_t i = 0; i < interventions.size(); ++i) {
    const engine::Intervention& iv = interventions[i];
    const std::string name = absl::StrCat(
        i < fields.size() ? fields[i] : absl::StrCat("interventions[", i, "]"),
        " (", OpName(iv.kind), " of layer ", iv.layer, ")");
    if (iv.layer < 0 || iv.layer >= config.num_hidden_layers) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": layer out of range [0, ",
                       config.num_hidden_layers, ") of this model"));
    }
    if (iv.kind != engine::Intervention::Kind::kMaskHeads) continue;
    if (iv.heads.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": a non-empty list of heads is required"));
    }
    for (size_t h = 0; h < iv.heads.size(); ++h) {
      if (iv.heads[h] < 0 || iv.heads[h] >= config.num_attention_heads) {
        return absl::InvalidArgumentError(absl::StrCat(
            name, ": heads[", h, "] = ", iv.heads[h], " is not a head in [0, ",
            config.num_attention_heads, ")"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace sweepd
