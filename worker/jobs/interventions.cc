#include "worker/jobs/interventions.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/safetensors.h"
#include "common/status.h"
#include "worker/jobs/job_artifacts.h"

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
    case engine::Intervention::Kind::kSteer:
      return "steer";
    case engine::Intervention::Kind::kReplaceLayer:
      return "replace_layer";
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
    if (iv.kind == engine::Intervention::Kind::kSteer &&
        static_cast<int64_t>(iv.vector.size()) != config.hidden_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, ": the steering vector has ", iv.vector.size(),
          " values; this model's hidden_size is ", config.hidden_size));
    }
    if (iv.kind == engine::Intervention::Kind::kReplaceLayer &&
        iv.weights_path.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": no weights file (unresolved artifact)"));
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

absl::Status ResolveInterventionArtifacts(
    const std::shared_ptr<ArtifactStore>& store,
    const std::vector<InterventionArtifactRef>& refs,
    const std::vector<std::string>& fields,
    std::vector<engine::Intervention>* interventions) {
  for (const InterventionArtifactRef& ref : refs) {
    const std::string field =
        ref.intervention < fields.size()
            ? fields[ref.intervention]
            : absl::StrCat("interventions[", ref.intervention, "]");
    if (ref.intervention >= interventions->size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": artifact of no intervention"));
    }
    absl::StatusOr<std::string> local =
        ResolveInputArtifact(store, ref.path, ref.sha256,
                             absl::StrCat(field, " (artifact ", ref.path, ")"));
    if (!local.ok()) return local.status();
    engine::Intervention& iv = (*interventions)[ref.intervention];
    if (iv.kind == engine::Intervention::Kind::kReplaceLayer) {
      iv.weights_path = *local;
      continue;
    }
    if (iv.kind != engine::Intervention::Kind::kSteer) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": only steer and replace_layer take artifacts"));
    }
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
        SafetensorsFile::Open(*local);
    if (!file.ok()) return Annotate(file.status(), field);
    const TensorView* tv = nullptr;
    if (!ref.tensor.empty()) {
      tv = (*file)->Find(ref.tensor);
      if (tv == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ": artifact ", ref.path, " has no tensor '",
                         ref.tensor, "'"));
      }
    } else if ((*file)->tensors().size() == 1) {
      tv = &(*file)->tensors()[0];
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": artifact ", ref.path, " holds ", (*file)->tensors().size(),
          " tensors; name one with vector_artifact.tensor"));
    }
    absl::StatusOr<std::vector<float>> values = TensorToFloat(*tv);
    if (!values.ok()) return Annotate(values.status(), field);
    iv.vector = std::move(*values);
  }
  return absl::OkStatus();
}

std::vector<engine::Intervention> PromptRelativeSteering(
    const std::vector<engine::Intervention>& interventions,
    int64_t prompt_len) {
  std::vector<engine::Intervention> out;
  for (const engine::Intervention& iv : interventions) {
    if (iv.kind != engine::Intervention::Kind::kSteer || iv.positions.empty()) {
      out.push_back(iv);
      continue;
    }
    engine::Intervention resolved = iv;
    resolved.positions.clear();
    for (int p : iv.positions) {
      const int64_t abs = p >= 0 ? p : prompt_len + p;
      if (abs >= 0) resolved.positions.push_back(static_cast<int>(abs));
    }
    if (!resolved.positions.empty()) out.push_back(std::move(resolved));
  }
  return out;
}

}  // namespace sweepd
