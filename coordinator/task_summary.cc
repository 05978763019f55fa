// Task summaries. See task_summary.h.
#include "coordinator/task_summary.h"

#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/hash.h"

namespace sweepd {
namespace {

namespace v1 = ::sweepd::v1;

std::string ValueText(const v1::Value& v) {
  switch (v.kind_case()) {
    case v1::Value::kIntValue:
      return absl::StrCat(v.int_value());
    case v1::Value::kDoubleValue:
      return absl::StrFormat("%g", v.double_value());
    case v1::Value::kStringValue:
      return v.string_value();
    case v1::Value::kBoolValue:
      return v.bool_value() ? "true" : "false";
    case v1::Value::KIND_NOT_SET:
      break;
  }
  return "";
}

// The first 12 hex digits of an artifact's SHA-256 (the given one, else the
// one in its object path), plus "@tensor" when one is named.
std::string ArtifactId(const v1::ArtifactRef& ref) {
  std::string sha = ref.sha256();
  if (sha.empty()) sha = ref.path().substr(ref.path().rfind('/') + 1);
  std::string id = sha.substr(0, 12);
  if (!ref.tensor().empty()) absl::StrAppend(&id, "@", ref.tensor());
  return id;
}

}  // namespace

std::string InterventionSummary(const v1::InterventionSet& set) {
  std::vector<std::string> parts;
  for (const v1::Intervention& iv : set.interventions()) {
    switch (iv.op_case()) {
      case v1::Intervention::kSkip:
        parts.push_back("skip:" + iv.skip().layers());
        break;
      case v1::Intervention::kZero:
        parts.push_back("zero:" + iv.zero().layers());
        break;
      case v1::Intervention::kReinit:
        parts.push_back(absl::StrCat("reinit:", iv.reinit().layers(),
                                     "@seed=", iv.reinit().seed()));
        break;
      case v1::Intervention::kMaskHeads:
        parts.push_back(
            absl::StrCat("mask_heads:", iv.mask_heads().layer(), "[",
                         absl::StrJoin(iv.mask_heads().heads(), ","), "]"));
        break;
      case v1::Intervention::kSteer:
        parts.push_back(SteerSummary(iv.steer()));
        break;
      case v1::Intervention::kReplaceLayer:
        parts.push_back(ReplaceLayerSummary(iv.replace_layer()));
        break;
      case v1::Intervention::OP_NOT_SET:
        break;
    }
  }
  return parts.empty() ? "baseline" : absl::StrJoin(parts, "+");
}

std::string SteerSummary(const v1::Steer& steer) {
  std::string out = absl::StrCat(
      "steer:", steer.layer(), "[", steer.mode().empty() ? "add" : steer.mode(),
      ",x", absl::StrFormat("%g", steer.has_scale() ? steer.scale() : 1.0));
  if (!steer.positions().empty()) {
    absl::StrAppend(&out, ",pos=", absl::StrJoin(steer.positions(), ","));
  }
  if (steer.has_vector_artifact() && !steer.vector_artifact().path().empty()) {
    absl::StrAppend(&out, "]#", ArtifactId(steer.vector_artifact()));
  } else {
    const absl::string_view bytes(
        reinterpret_cast<const char*>(steer.vector().data()),
        steer.vector_size() * sizeof(float));
    absl::StrAppend(&out, "]#v", absl::StrFormat("%016x", Hash64(bytes)));
  }
  return out;
}

std::string ReplaceLayerSummary(const v1::ReplaceLayer& replace) {
  return absl::StrCat("replace_layer:", replace.layer(), "#",
                      ArtifactId(replace.weights()));
}

std::string ParamsSummary(const v1::TaskSpec& spec) {
  std::map<std::string, std::string> sorted;
  for (const auto& [name, value] : spec.params())
    sorted[name] = ValueText(value);
  std::vector<std::string> parts;
  for (const auto& [name, text] : sorted)
    parts.push_back(absl::StrCat(name, "=", text));
  return absl::StrJoin(parts, ",");
}

}  // namespace sweepd
