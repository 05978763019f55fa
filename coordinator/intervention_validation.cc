#include "coordinator/intervention_validation.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/artifact_store.h"
#include "common/status.h"

namespace sweepd::internal {

namespace v1 = ::sweepd::v1;

absl::Status CheckArtifactRef(const v1::ArtifactRef& ref,
                              const std::string& field) {
  if (!IsArtifactObjectPath(ref.path())) {
    return Invalid(field + ".path",
                   absl::StrCat("\"", ref.path(),
                                "\" is not an artifact object path "
                                "(objects/<aa>/<sha256>)"));
  }
  if (!ref.sha256().empty() && !absl::EndsWith(ref.path(), ref.sha256())) {
    return Invalid(field + ".sha256",
                   absl::StrCat("\"", ref.sha256(),
                                "\" does not match the path ", ref.path()));
  }
  return absl::OkStatus();
}

absl::Status ValidateIntervention(v1::Intervention* iv, const ModelShape& m,
                                  const std::string& field) {
  if (iv->op_case() == v1::Intervention::OP_NOT_SET) {
    return Invalid(
        field,
        "empty intervention: set one of skip, zero, reinit, mask_heads, "
        "steer, replace_layer");
  }
  if (!m.known)
    return Invalid(field, "interventions need a model (set model.path)");
  switch (iv->op_case()) {
    case v1::Intervention::kSkip: {
      ASSIGN_OR_RETURN(
          *iv->mutable_skip()->mutable_layers(),
          CanonicalLayers(iv->skip().layers(), m, field + ".skip.layers"));
      break;
    }
    case v1::Intervention::kZero: {
      ASSIGN_OR_RETURN(
          *iv->mutable_zero()->mutable_layers(),
          CanonicalLayers(iv->zero().layers(), m, field + ".zero.layers"));
      break;
    }
    case v1::Intervention::kReinit: {
      ASSIGN_OR_RETURN(
          *iv->mutable_reinit()->mutable_layers(),
          CanonicalLayers(iv->reinit().layers(), m, field + ".reinit.layers"));
      break;
    }
    case v1::Intervention::kMaskHeads: {
      RETURN_IF_ERROR(
          CheckLayer(iv->mask_heads().layer(), m, field + ".mask_heads.layer"));
      RETURN_IF_ERROR(CheckHeads(iv->mutable_mask_heads()->mutable_heads(), m,
                                 field + ".mask_heads.heads"));
      break;
    }
    case v1::Intervention::kSteer: {
      v1::Steer* st = iv->mutable_steer();
      RETURN_IF_ERROR(CheckLayer(st->layer(), m, field + ".steer.layer"));
      if (st->mode().empty()) st->set_mode("add");
      if (st->mode() != "add" && st->mode() != "replace") {
        return Invalid(field + ".steer.mode",
                       absl::StrCat("must be \"add\" or \"replace\", got \"",
                                    st->mode(), "\""));
      }
      const bool has_artifact =
          st->has_vector_artifact() && !st->vector_artifact().path().empty();
      if (has_artifact == !st->vector().empty()) {
        return Invalid(field + ".steer",
                       "exactly one of vector (inline values) and "
                       "vector_artifact is required");
      }
      if (has_artifact) {
        RETURN_IF_ERROR(CheckArtifactRef(st->vector_artifact(),
                                         field + ".steer.vector_artifact"));
      } else if (m.hidden_size > 0 && st->vector_size() != m.hidden_size) {
        return Invalid(field + ".steer.vector",
                       absl::StrCat(st->vector_size(),
                                    " values; the model's hidden_size is ",
                                    m.hidden_size));
      }
      for (int i = 0; i < st->vector_size(); ++i) {
        if (!std::isfinite(st->vector(i))) {
          return Invalid(absl::StrCat(field, ".steer.vector[", i, "]"),
                         "must be finite");
        }
      }
      if (st->has_scale() && !std::isfinite(st->scale())) {
        return Invalid(field + ".steer.scale", "must be finite");
      }
      std::vector<int> seen;
      for (int i = 0; i < st->positions_size(); ++i) {
        const int p = st->positions(i);
        if (p < -kMaxContextLength || p >= kMaxContextLength) {
          return Invalid(absl::StrCat(field, ".steer.positions[", i, "]"),
                         absl::StrCat(p, " out of range [", -kMaxContextLength,
                                      ", ", kMaxContextLength, ")"));
        }
        if (std::find(seen.begin(), seen.end(), p) != seen.end()) {
          return Invalid(absl::StrCat(field, ".steer.positions[", i, "]"),
                         absl::StrCat(p, " is listed twice"));
        }
        seen.push_back(p);
      }
      break;
    }
    case v1::Intervention::kReplaceLayer: {
      RETURN_IF_ERROR(CheckLayer(iv->replace_layer().layer(), m,
                                 field + ".replace_layer.layer"));
      if (!iv->replace_layer().has_weights() ||
          iv->replace_layer().weights().path().empty()) {
        return Invalid(field + ".replace_layer.weights",
                       "an artifact reference (path, sha256) is required");
      }
      RETURN_IF_ERROR(CheckArtifactRef(iv->replace_layer().weights(),
                                       field + ".replace_layer.weights"));
      break;
    }
    case v1::Intervention::OP_NOT_SET:
      break;
  }
  return absl::OkStatus();
}

absl::Status ValidateInterventionSet(v1::InterventionSet* set,
                                     const ModelShape& m,
                                     const std::string& field) {
  for (int k = 0; k < set->interventions_size(); ++k) {
    RETURN_IF_ERROR(
        ValidateIntervention(set->mutable_interventions(k), m,
                             absl::StrCat(field, ".interventions[", k, "]")));
  }
  return absl::OkStatus();
}

}  // namespace sweepd::internal
