// Planner implementation. See planner.h for the contract and the key scheme.
//
// One concept, spec -> tasks, in one file past ~900 lines: path resolution,
// validation of every job kind, grid expansion, key computation and the
// derived stages all read and write the same resolved spec in one order, and
// splitting them would spread that order over files. The parts with their own
// contract live apart: job parameters (job_params.h), policy defaults
// (sweep_policy.h), layer selectors (common/layer_selector.h), the layer
// profile and drop plans (layer_profile.h, drop_plan.h), the fingerprint
// (common/model_fingerprint.h), the shared field checks (spec_checks.h) and
// the validation of the calibration job kinds (calibration_validation.h).
//
// Canonical task form (what task_key hashes): the TaskSpec with the model and
// dataset *paths* cleared (their fingerprints identify the content, so moving a
// checkpoint does not change a key) and, except for synthetic tasks, the
// expansion index cleared (so the same work in another sweep, or at another
// grid position, has the same key). Synthetic tasks derive their work from the
// index, so it stays in their key. Layer selectors inside interventions are
// canonicalised ("all" -> "0-59") before hashing, so equivalent spellings share
// a key. Grid points that expand to identical work are planned once (the first
// occurrence wins).
//
// group_key hashes the canonical task with interventions and seed cleared:
// tasks that differ only in their intervention share one unablated prefix pass.
// Synthetic tasks have no prefix to share, so each is its own group.
#include "coordinator/planner.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/artifact_store.h"
#include "common/fs.h"
#include "common/hash.h"
#include "common/layer_selector.h"
#include "common/model_config.h"
#include "common/model_fingerprint.h"
#include "common/path_confinement.h"
#include "common/status.h"
#include "coordinator/calibration_validation.h"
#include "coordinator/derived_stages.h"
#include "coordinator/job_params.h"
#include "coordinator/planner_internal.h"
#include "coordinator/spec_checks.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace sweepd {
namespace {

namespace v1 = ::sweepd::v1;

constexpr int kMaxShards = 1'000'000;
constexpr int64_t kMaxAxisPoints = 1'000'000;

using internal::CanonicalLayers;
using internal::CheckFraction;
using internal::CheckHeads;
using internal::CheckLayer;
using internal::CheckRange;
using internal::Invalid;
using internal::kMaxContextLength;
using internal::ModelShape;
using internal::RangeText;
using internal::ValidateBos;
using internal::ValidateWindowing;

std::string DeterministicBytes(const google::protobuf::MessageLite& message) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    message.SerializeToCodedStream(&coded);
  }
  return out;
}

std::string HashWithVersion(absl::string_view domain, absl::string_view bytes) {
  Sha256 h;
  h.Update(kCodeVersion);
  h.Update(absl::string_view("\0", 1));
  h.Update(domain);
  h.Update(absl::string_view("\0", 1));
  h.Update(bytes);
  return h.HexDigest();
}

// ---- Paths
// -------------------------------------------------------------------------------

// Collapses ".", ".." and repeated slashes without touching the file system.
std::string LexicallyNormal(const std::string& path) {
  std::vector<absl::string_view> out;
  for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    if (part == ".") continue;
    if (part == "..") {
      if (!out.empty()) out.pop_back();
      continue;
    }
    out.push_back(part);
  }
  return absl::StrCat("/", absl::StrJoin(out, "/"));
}

bool IsInside(const std::string& path, const std::string& root) {
  if (root == "/") return true;
  return path == root ||
         (path.size() > root.size() &&
          path.compare(0, root.size(), root) == 0 && path[root.size()] == '/');
}

absl::StatusOr<std::string> RealPath(const std::string& path) {
  char buf[PATH_MAX];
  if (realpath(path.c_str(), buf) == nullptr) {
    return absl::ErrnoToStatus(errno, path);
  }
  return std::string(buf);
}

absl::StatusOr<std::string> CurrentDir() {
  char buf[PATH_MAX];
  if (getcwd(buf, sizeof(buf)) == nullptr)
    return absl::ErrnoToStatus(errno, "getcwd");
  return std::string(buf);
}

// Resolves `path` (relative to `root`, or absolute) and requires the result,
// symlinks resolved, to stay inside `root`. `what` names the root in messages
// ("model root").
absl::StatusOr<std::string> ResolveUnderRoot(const std::string& path,
                                             const std::string& root,
                                             absl::string_view field,
                                             absl::string_view what) {
  if (path.empty()) return Invalid(field, "required");
  std::string base = root;
  std::string real_root;
  if (root.empty()) {
    ASSIGN_OR_RETURN(base, CurrentDir());
  } else {
    auto r = RealPath(root);
    if (!r.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat(field, ": the coordinator's ", what, " '", root,
                       "' is unusable: ", r.status().message()));
    }
    real_root = *r;
    base = real_root;
  }
  const std::string candidate =
      LexicallyNormal(path[0] == '/' ? path : absl::StrCat(base, "/", path));
  if (!root.empty() && !IsInside(candidate, real_root) &&
      !IsInside(candidate, LexicallyNormal(root))) {
    return absl::PermissionDeniedError(
        absl::StrCat(field, ": '", path, "' is outside the ", what, " ", root));
  }
  auto resolved = RealPath(candidate);
  if (!resolved.ok()) {
    if (absl::IsNotFound(resolved.status())) {
      return absl::NotFoundError(
          absl::StrCat(field, ": '", path, "' not found (", candidate, ")"));
    }
    return absl::Status(resolved.status().code(),
                        absl::StrCat(field, ": ", resolved.status().message()));
  }
  if (!root.empty() && !IsInside(*resolved, real_root)) {
    return absl::PermissionDeniedError(
        absl::StrCat(field, ": '", path, "' resolves to ", *resolved,
                     ", outside the ", what, " ", root));
  }
  return *resolved;
}

// What the planner reads from a model directory: the counts it checks layer
// and head indices against (config.json through the common parser; both are
// required, no defaults) and the model fingerprint.
struct ModelInfo {
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  // 0 = config.json has no usable one (steering vector lengths are then
  // checked by the worker only).
  int hidden_size = 0;
  std::string fingerprint;
};

absl::StatusOr<ModelInfo> ReadModelInfo(const std::string& dir,
                                        const PlannerOptions& options) {
  absl::StatusOr<HfConfig> config =
      HfConfig::ReadFile(JoinPath(dir, "config.json"));
  if (absl::IsNotFound(config.status())) {
    return absl::NotFoundError(
        absl::StrCat("model directory ", dir, " has no config.json"));
  }
  RETURN_IF_ERROR(config.status());
  ModelInfo info;
  ASSIGN_OR_RETURN(info.num_hidden_layers,
                   config->RequiredCount("num_hidden_layers"));
  ASSIGN_OR_RETURN(info.num_attention_heads,
                   config->RequiredCount("num_attention_heads"));
  if (absl::StatusOr<int> hidden = config->RequiredCount("hidden_size");
      hidden.ok()) {
    info.hidden_size = *hidden;
  }
  ModelFingerprintOptions fingerprint_options;
  fingerprint_options.cache_path = options.fingerprint_cache;
  ASSIGN_OR_RETURN(info.fingerprint,
                   ComputeModelFingerprint(dir, fingerprint_options));
  return info;
}

// An artifact reference's form: an object path of a store and, when given, a
// SHA-256 in lower-case hex that matches it.
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

// Validates one intervention and canonicalises its layer selectors in place.
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

// ---- Grid
// --------------------------------------------------------------------------------

// One point of one axis: what it contributes to a task.
struct AxisPoint {
  std::vector<v1::Intervention> interventions;
  bool has_seed = false;
  uint64_t seed = 0;
  const std::string* param_name = nullptr;  // points into the resolved spec
  v1::Value param_value;
};

absl::StatusOr<std::vector<v1::Value>> ExpandValues(const v1::ValueAxis& axis,
                                                    const std::string& field) {
  std::vector<v1::Value> out;
  const bool has_range = axis.has_range();
  if (axis.values_size() > 0 && has_range) {
    return Invalid(field, "give either values or range, not both");
  }
  if (axis.values_size() == 0 && !has_range) {
    return Invalid(field + ".values", "no values: give values or range");
  }
  for (int j = 0; j < axis.values_size(); ++j) {
    if (axis.values(j).kind_case() == v1::Value::KIND_NOT_SET) {
      return Invalid(absl::StrCat(field, ".values[", j, "]"), "empty value");
    }
    out.push_back(axis.values(j));
  }
  if (has_range) {
    const v1::Range& r = axis.range();
    const std::string rf = field + ".range";
    const double step = r.step() == 0 ? 1.0 : r.step();
    if (!std::isfinite(r.start()) || !std::isfinite(r.stop()) ||
        !std::isfinite(step)) {
      return Invalid(rf, "start, stop and step must be finite");
    }
    if (step < 0)
      return Invalid(rf + ".step", absl::StrCat(step, " must be positive"));
    if (!(r.start() < r.stop())) {
      return Invalid(rf, absl::StrCat("[", r.start(), ", ", r.stop(),
                                      ") selects no values"));
    }
    const double count_f = std::ceil((r.stop() - r.start()) / step - 1e-9);
    if (count_f > static_cast<double>(kMaxAxisPoints)) {
      return Invalid(rf, absl::StrCat("selects ", count_f,
                                      " values, more than ", kMaxAxisPoints));
    }
    const int64_t count = std::max<int64_t>(1, static_cast<int64_t>(count_f));
    const bool integral =
        std::floor(r.start()) == r.start() && std::floor(step) == step &&
        std::fabs(r.start()) < 9e15 && std::fabs(r.stop()) < 9e15;
    for (int64_t k = 0; k < count; ++k) {
      v1::Value v;
      if (integral) {
        v.set_int_value(static_cast<int64_t>(r.start()) +
                        k * static_cast<int64_t>(step));
      } else {
        v.set_double_value(r.start() + static_cast<double>(k) * step);
      }
      out.push_back(std::move(v));
    }
  }
  return out;
}

absl::StatusOr<std::vector<AxisPoint>> ExpandLayerAxis(
    v1::LayerAxis* axis, const ModelShape& m, const std::string& field) {
  static const char* const kOps[] = {"skip", "zero", "reinit", "mask_heads"};
  const std::string& op = axis->op();
  if (std::find(std::begin(kOps), std::end(kOps), op) == std::end(kOps)) {
    return Invalid(
        field + ".op",
        absl::StrCat("must be skip, zero, reinit or mask_heads, got \"", op,
                     "\""));
  }
  if (!m.known)
    return Invalid(field, "a layers axis needs a model (set model.path)");
  if (axis->select().empty())
    return Invalid(field + ".select", "required (e.g. \"all\")");
  ASSIGN_OR_RETURN(
      std::vector<int> layers,
      ParseLayerSelector(axis->select(), m.num_layers, field + ".select"));
  if (axis->block() == 0) axis->set_block(1);
  RETURN_IF_ERROR(CheckRange(axis->block(), 1, m.num_layers, field + ".block"));
  if (axis->seed() != 0 && op != "reinit") {
    return Invalid(field + ".seed", "only used with op \"reinit\"");
  }
  std::vector<AxisPoint> points;
  if (axis->include_baseline()) points.emplace_back();
  const int block = axis->block();
  for (int start : layers) {
    if (start + block > m.num_layers)
      continue;  // block would run past the last layer
    AxisPoint p;
    const std::string sel = block == 1
                                ? absl::StrCat(start)
                                : absl::StrCat(start, "-", start + block - 1);
    if (op == "mask_heads") {
      for (int l = start; l < start + block; ++l) {
        v1::Intervention iv;
        iv.mutable_mask_heads()->set_layer(l);
        for (int h = 0; h < m.num_heads; ++h)
          iv.mutable_mask_heads()->add_heads(h);
        p.interventions.push_back(std::move(iv));
      }
    } else {
      v1::Intervention iv;
      if (op == "skip") iv.mutable_skip()->set_layers(sel);
      if (op == "zero") iv.mutable_zero()->set_layers(sel);
      if (op == "reinit") {
        iv.mutable_reinit()->set_layers(sel);
        iv.mutable_reinit()->set_seed(axis->seed());
      }
      p.interventions.push_back(std::move(iv));
    }
    points.push_back(std::move(p));
  }
  if (points.empty() || (axis->include_baseline() && points.size() == 1)) {
    return Invalid(
        field,
        absl::StrCat("no block of ", block, " consecutive layers fits in ",
                     RangeText(m.num_layers), " starting at \"", axis->select(),
                     "\""));
  }
  return points;
}

// Every param axis names a parameter of `kind` and gives values of its type
// (checked after the axes' own structure, so those errors come first).
absl::Status CheckParamAxes(const v1::Grid& grid,
                            const std::vector<std::vector<AxisPoint>>& axes,
                            v1::JobKind kind) {
  for (int i = 0; i < grid.axes_size(); ++i) {
    if (grid.axes(i).kind_case() != v1::Axis::kParam) continue;
    const std::string pf = absl::StrCat("grid.axes[", i, "].param");
    std::vector<v1::Value> values;
    for (const AxisPoint& p : axes[i]) values.push_back(p.param_value);
    RETURN_IF_ERROR(
        CheckParamAxis(kind, grid.axes(i).param().name(), values, pf));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::vector<AxisPoint>>> ExpandAxes(
    v1::Grid* grid, const ModelShape& m) {
  std::vector<std::vector<AxisPoint>> axes;
  absl::flat_hash_set<std::string> param_names;
  bool have_seeds = false;
  for (int i = 0; i < grid->axes_size(); ++i) {
    v1::Axis* axis = grid->mutable_axes(i);
    const std::string field = absl::StrCat("grid.axes[", i, "]");
    std::vector<AxisPoint> points;
    switch (axis->kind_case()) {
      case v1::Axis::kInterventions: {
        auto* list = axis->mutable_interventions();
        if (list->items_size() == 0) {
          return Invalid(field + ".interventions.items",
                         "at least one item is required");
        }
        for (int j = 0; j < list->items_size(); ++j) {
          v1::InterventionSet* set = list->mutable_items(j);
          RETURN_IF_ERROR(ValidateInterventionSet(
              set, m, absl::StrCat(field, ".interventions.items[", j, "]")));
          AxisPoint p;
          p.interventions.assign(set->interventions().begin(),
                                 set->interventions().end());
          points.push_back(std::move(p));
        }
        break;
      }
      case v1::Axis::kLayers: {
        ASSIGN_OR_RETURN(points, ExpandLayerAxis(axis->mutable_layers(), m,
                                                 field + ".layers"));
        break;
      }
      case v1::Axis::kParam: {
        const std::string pf = field + ".param";
        const std::string& name = axis->param().name();
        if (name.empty()) return Invalid(pf + ".name", "required");
        if (!param_names.insert(name).second) {
          return Invalid(pf + ".name",
                         absl::StrCat("parameter \"", name,
                                      "\" is swept by more than one axis"));
        }
        ASSIGN_OR_RETURN(std::vector<v1::Value> values,
                         ExpandValues(axis->param(), pf));
        for (v1::Value& v : values) {
          AxisPoint p;
          p.param_name = &axis->param().name();
          p.param_value = std::move(v);
          points.push_back(std::move(p));
        }
        break;
      }
      case v1::Axis::kSeeds: {
        const std::string sf = field + ".seeds";
        if (have_seeds) return Invalid(sf, "only one seeds axis is allowed");
        have_seeds = true;
        ASSIGN_OR_RETURN(std::vector<v1::Value> values,
                         ExpandValues(axis->seeds(), sf));
        for (size_t j = 0; j < values.size(); ++j) {
          if (values[j].kind_case() != v1::Value::kIntValue ||
              values[j].int_value() < 0) {
            return Invalid(absl::StrCat(sf, ".values[", j, "]"),
                           "seeds must be non-negative integers");
          }
          AxisPoint p;
          p.has_seed = true;
          p.seed = static_cast<uint64_t>(values[j].int_value());
          points.push_back(std::move(p));
        }
        break;
      }
      case v1::Axis::KIND_NOT_SET:
        return Invalid(
            field,
            "empty axis: set one of interventions, layers, param, seeds");
    }
    axes.push_back(std::move(points));
  }
  return axes;
}

// ---- Job kinds
// ---------------------------------------------------------------------------

void CopyJob(const v1::SweepSpec& spec, v1::TaskSpec* task) {
  switch (spec.job_case()) {
    case v1::SweepSpec::kEval:
      *task->mutable_eval() = spec.eval();
      break;
    case v1::SweepSpec::kProbe:
      *task->mutable_probe() = spec.probe();
      break;
    case v1::SweepSpec::kHeadImportance:
      *task->mutable_head_importance() = spec.head_importance();
      break;
    case v1::SweepSpec::kCapture:
      *task->mutable_capture() = spec.capture();
      break;
    case v1::SweepSpec::kHeal:
      *task->mutable_heal() = spec.heal();
      break;
    case v1::SweepSpec::kMaterialize:
      *task->mutable_materialize() = spec.materialize();
      break;
    case v1::SweepSpec::kGenerate:
      *task->mutable_generate() = spec.generate();
      break;
    case v1::SweepSpec::kCanary:
      *task->mutable_canary() = spec.canary();
      break;
    case v1::SweepSpec::kSynthetic:
      *task->mutable_synthetic() = spec.synthetic();
      break;
    case v1::SweepSpec::kRetrain:
      *task->mutable_retrain() = spec.retrain();
      break;
    case v1::SweepSpec::JOB_NOT_SET:
      break;
  }
}

bool NeedsDatasets(v1::JobKind kind) {
  return kind == v1::JOB_KIND_EVAL || kind == v1::JOB_KIND_PROBE ||
         kind == v1::JOB_KIND_HEAD_IMPORTANCE || kind == v1::JOB_KIND_CAPTURE ||
         kind == v1::JOB_KIND_RETRAIN;
}

absl::Status ValidateJob(v1::SweepSpec* spec, const ModelShape& m) {
  switch (spec->job_case()) {
    case v1::SweepSpec::kEval: {
      RETURN_IF_ERROR(ValidateWindowing(
          spec->mutable_eval()->mutable_windowing(), "eval.windowing"));
      return ValidateInterventionSet(
          spec->mutable_eval()->mutable_base_interventions(), m,
          "eval.base_interventions");
    }
    case v1::SweepSpec::kProbe:
      return ValidateWindowing(spec->mutable_probe()->mutable_windowing(),
                               "probe.windowing");
    case v1::SweepSpec::kHeadImportance:
    case v1::SweepSpec::kCapture:
    case v1::SweepSpec::kHeal:
    case v1::SweepSpec::kMaterialize:
    case v1::SweepSpec::kRetrain:
      return internal::ValidateCalibrationJob(spec, m);
    case v1::SweepSpec::kGenerate: {
      auto* job = spec->mutable_generate();
      if (job->prompts_size() == 0 && spec->datasets_size() == 0) {
        return Invalid("generate.prompts",
                       "at least one prompt (or a JSONL dataset of prompts)");
      }
      if (job->references_size() != 0 &&
          job->references_size() != job->prompts_size()) {
        return Invalid("generate.references",
                       absl::StrCat(job->references_size(), " references for ",
                                    job->prompts_size(), " prompts"));
      }
      if (!(job->min_p() >= 0.0 && job->min_p() < 1.0)) {
        return Invalid("generate.min_p",
                       absl::StrCat(job->min_p(), " must be in [0, 1)"));
      }
      for (int i = 0; i < job->ban_strings_size(); ++i) {
        if (job->ban_strings(i).empty()) {
          return Invalid(absl::StrCat("generate.ban_strings[", i, "]"),
                         "must not be empty");
        }
      }
      for (int i = 0; i < job->stop_size(); ++i) {
        if (job->stop(i).empty()) {
          return Invalid(absl::StrCat("generate.stop[", i, "]"),
                         "must not be empty");
        }
      }
      if (job->max_batch() < 0) {
        return Invalid("generate.max_batch", "must be >= 0 (0 = 64)");
      }
      {
        v1::VerifierSpec* v = job->mutable_verifier_spec();
        if (!job->verifier().empty()) {
          if (!v->kind().empty() && v->kind() != job->verifier()) {
            return Invalid(
                "generate.verifier",
                absl::StrCat("\"", job->verifier(),
                             "\" conflicts with verifier_spec.kind \"",
                             v->kind(), "\""));
          }
          v->set_kind(job->verifier());
          job->clear_verifier();
        }
        static const char* const kKinds[] = {
            "", "exact", "contains", "regex", "numeric", "nll", "command"};
        if (std::find(std::begin(kKinds), std::end(kKinds), v->kind()) ==
            std::end(kKinds)) {
          return Invalid(
              "generate.verifier_spec.kind",
              absl::StrCat("\"", v->kind(),
                           "\" is not one of exact, contains, regex, "
                           "numeric, nll, command"));
        }
        if (v->kind() == "regex" && v->pattern().empty()) {
          return Invalid("generate.verifier_spec.pattern",
                         "required by the regex verifier");
        }
        if (v->kind() == "command" && v->command_size() == 0) {
          return Invalid("generate.verifier_spec.command",
                         "required by the command verifier (argv)");
        }
        if (!(v->timeout_seconds() >= 0) || v->batch_size() < 0) {
          return Invalid("generate.verifier_spec",
                         "timeout_seconds and batch_size must be >= 0");
        }
      }
      if (job->samples() == 0) job->set_samples(1);
      RETURN_IF_ERROR(
          CheckRange(job->samples(), 1, 100'000, "generate.samples"));
      if (job->max_new_tokens() == 0) job->set_max_new_tokens(128);
      RETURN_IF_ERROR(CheckRange(job->max_new_tokens(), 1, kMaxContextLength,
                                 "generate.max_new_tokens"));
      if (!(job->temperature() >= 0.0) || !std::isfinite(job->temperature())) {
        return Invalid(
            "generate.temperature",
            absl::StrCat(job->temperature(), " must be finite and >= 0"));
      }
      if (job->top_k() < 0) return Invalid("generate.top_k", "must be >= 0");
      if (job->top_p() == 0.0) job->set_top_p(1.0);
      if (!(job->top_p() > 0.0 && job->top_p() <= 1.0)) {
        return Invalid("generate.top_p",
                       absl::StrCat(job->top_p(), " must be in (0, 1]"));
      }
      for (const auto& [token, bias] : job->logit_bias()) {
        if (token < 0) {
          return Invalid(absl::StrCat("generate.logit_bias[", token, "]"),
                         "token ids must be >= 0");
        }
      }
      for (int i = 0; i < job->banned_tokens_size(); ++i) {
        if (job->banned_tokens(i) < 0) {
          return Invalid(absl::StrCat("generate.banned_tokens[", i, "]"),
                         "token ids must be >= 0");
        }
      }
      return ValidateBos(job->mutable_bos(), "generate.bos");
    }
    case v1::SweepSpec::kCanary: {
      auto* job = spec->mutable_canary();
      if (job->cases_size() == 0)
        return Invalid("canary.cases", "at least one case");
      for (int i = 0; i < job->cases_size(); ++i) {
        const std::string cf = absl::StrCat("canary.cases[", i, "]");
        if (job->cases(i).prompt().empty())
          return Invalid(cf + ".prompt", "required");
        if (job->cases(i).expect_size() == 0) {
          return Invalid(cf + ".expect", "at least one expected substring");
        }
      }
      if (job->max_new_tokens() == 0) job->set_max_new_tokens(32);
      RETURN_IF_ERROR(CheckRange(job->max_new_tokens(), 1, kMaxContextLength,
                                 "canary.max_new_tokens"));
      return ValidateBos(job->mutable_bos(), "canary.bos");
    }
    case v1::SweepSpec::kSynthetic: {
      const auto& job = spec->synthetic();
      if (job.tasks() < 1) {
        return Invalid("synthetic.tasks",
                       absl::StrCat(job.tasks(), " must be >= 1"));
      }
      RETURN_IF_ERROR(
          CheckRange(job.min_ms(), 0, 3'600'000, "synthetic.min_ms"));
      RETURN_IF_ERROR(
          CheckRange(job.max_ms(), 0, 3'600'000, "synthetic.max_ms"));
      if (job.min_ms() > job.max_ms()) {
        return Invalid("synthetic.min_ms",
                       absl::StrCat(job.min_ms(), " > max_ms ", job.max_ms()));
      }
      RETURN_IF_ERROR(
          CheckFraction(job.failure_rate(), "synthetic.failure_rate"));
      return CheckFraction(job.permanent_failure_rate(),
                           "synthetic.permanent_failure_rate");
    }
    case v1::SweepSpec::JOB_NOT_SET:
      break;
  }
  return Invalid("job", "exactly one job kind must be set");
}

// Fills defaults (spec, then the coordinator's configured defaults, then the
// built-in ones: coordinator/sweep_policy.h) and checks ranges.
absl::Status ValidatePolicy(const SweepPolicyDefaults& defaults,
                            v1::ExecutionPolicy* p) {
  ResolvePolicyDefaults(defaults, p);
  RETURN_IF_ERROR(CheckRange(p->max_attempts(), 1, 100, "policy.max_attempts"));
  RETURN_IF_ERROR(
      CheckRange(p->lease_seconds(), 1, 86'400, "policy.lease_seconds"));
  RETURN_IF_ERROR(CheckRange(p->retry_backoff_ms(), 1, 3'600'000,
                             "policy.retry_backoff_ms"));
  RETURN_IF_ERROR(
      CheckRange(p->tensor_parallel(), 0, 1024, "policy.tensor_parallel"));
  return absl::OkStatus();
}

// Multiplies with saturation at `cap` + 1.
int64_t SaturatingMul(int64_t a, int64_t b, int64_t cap) {
  if (a == 0 || b == 0) return 0;
  if (a > (cap + 1) / b) return cap + 1;
  return std::min(a * b, cap + 1);
}

struct DataSlot {
  const v1::DatasetRef* dataset = nullptr;  // null: the job reads no dataset
  int shard = 0;
};

}  // namespace

v1::JobKind JobKindOf(v1::SweepSpec::JobCase job) {
  switch (job) {
    case v1::SweepSpec::kEval:
      return v1::JOB_KIND_EVAL;
    case v1::SweepSpec::kProbe:
      return v1::JOB_KIND_PROBE;
    case v1::SweepSpec::kHeadImportance:
      return v1::JOB_KIND_HEAD_IMPORTANCE;
    case v1::SweepSpec::kCapture:
      return v1::JOB_KIND_CAPTURE;
    case v1::SweepSpec::kHeal:
      return v1::JOB_KIND_HEAL;
    case v1::SweepSpec::kMaterialize:
      return v1::JOB_KIND_MATERIALIZE;
    case v1::SweepSpec::kGenerate:
      return v1::JOB_KIND_GENERATE;
    case v1::SweepSpec::kCanary:
      return v1::JOB_KIND_CANARY;
    case v1::SweepSpec::kSynthetic:
      return v1::JOB_KIND_SYNTHETIC;
    case v1::SweepSpec::kRetrain:
      return v1::JOB_KIND_RETRAIN;
    case v1::SweepSpec::JOB_NOT_SET:
      break;
  }
  return v1::JOB_KIND_UNSPECIFIED;
}

namespace {

// Sets the seed of every reinit intervention of `task` that names none (seed
// 0) to the task's grid seed. True if one took it.
bool FoldSeedIntoReinit(v1::TaskSpec* task) {
  bool used = false;
  auto fold = [&](v1::InterventionSet* set) {
    for (v1::Intervention& iv : *set->mutable_interventions()) {
      if (iv.has_reinit() && iv.reinit().seed() == 0) {
        iv.mutable_reinit()->set_seed(task->seed());
        used = true;
      }
    }
  };
  fold(task->mutable_interventions());
  if (task->has_eval())
    fold(task->mutable_eval()->mutable_base_interventions());
  return used;
}

// The sweep's job with each combination of swept parameters applied and
// validated (defaults filled, selectors canonicalised), computed once per
// combination.
class JobsByParams {
 public:
  JobsByParams(const v1::SweepSpec& unvalidated, const ModelShape& shape)
      : unvalidated_(unvalidated), shape_(shape) {}

  // The resolved sweep (only its job matters) for `params`. INVALID_ARGUMENT
  // naming the point when the values make an invalid job (e.g. a stride
  // larger than a swept context_length).
  absl::StatusOr<const v1::SweepSpec*> Get(
      const google::protobuf::Map<std::string, v1::Value>& params) {
    std::map<std::string, const v1::Value*> sorted;
    for (const auto& [name, value] : params) sorted[name] = &value;
    std::string key;
    std::vector<std::string> label;
    for (const auto& [name, value] : sorted) {
      absl::StrAppend(&key, name, "\0", DeterministicBytes(*value), "\0");
      label.push_back(absl::StrCat(name, "=", ParamValueText(*value)));
    }
    auto it = cache_.find(key);
    if (it != cache_.end()) return &it->second;
    v1::SweepSpec spec = unvalidated_;
    const std::string where =
        absl::StrCat("grid point {", absl::StrJoin(label, ", "), "}");
    for (const auto& [name, value] : sorted) {
      RETURN_IF_ERROR(ApplyJobParam(&spec, name, *value, where));
    }
    absl::Status valid = ValidateJob(&spec, shape_);
    if (!valid.ok()) {
      return Invalid(where, valid.message());
    }
    return &cache_.emplace(std::move(key), std::move(spec)).first->second;
  }

 private:
  const v1::SweepSpec& unvalidated_;
  const ModelShape& shape_;
  std::map<std::string, v1::SweepSpec> cache_;
};

}  // namespace

namespace internal {

absl::StatusOr<Plan> PlanOneStage(const v1::SweepSpec& spec,
                                  const PlannerOptions& options,
                                  const std::string& stage) {
  Plan plan;
  v1::SweepSpec& rs = plan.resolved_spec;
  rs = spec;

  if (absl::StripAsciiWhitespace(rs.name()).empty())
    return Invalid("name", "required");
  if (rs.job_case() == v1::SweepSpec::JOB_NOT_SET) {
    return Invalid(
        "job",
        "exactly one job must be set: eval, probe, head_importance, capture, "
        "heal, materialize, generate, canary or synthetic");
  }
  const v1::JobKind kind = JobKindOf(rs.job_case());
  const bool synthetic = kind == v1::JOB_KIND_SYNTHETIC;
  RETURN_IF_ERROR(ValidatePolicy(options.policy_defaults, rs.mutable_policy()));

  // Model.
  ModelShape shape;
  if (!rs.model().path().empty()) {
    ASSIGN_OR_RETURN(std::string dir,
                     ResolveUnderRoot(rs.model().path(), options.model_root,
                                      "model.path", "model root"));
    struct stat st;
    if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return Invalid("model.path", absl::StrCat("'", rs.model().path(),
                                                "' is not a directory"));
    }
    if (!options.model_root.empty()) {
      // Every file read below (config.json, shards, index, tokenizer.json)
      // must stay inside the root too, not only the directory.
      absl::Status confined = CheckModelDirConfined(dir, {options.model_root});
      if (!confined.ok()) {
        return absl::Status(confined.code(),
                            absl::StrCat("model.path: ", confined.message()));
      }
    }
    auto info = ReadModelInfo(dir, options);
    if (!info.ok()) return Annotate(info.status(), "model.path");
    shape.known = true;
    shape.num_layers = info->num_hidden_layers;
    shape.num_heads = info->num_attention_heads;
    shape.hidden_size = info->hidden_size;
    rs.mutable_model()->set_path(dir);
    rs.mutable_model()->set_fingerprint(info->fingerprint);
    if (!rs.model().tokenizer().empty()) {
      ASSIGN_OR_RETURN(
          *rs.mutable_model()->mutable_tokenizer(),
          ResolveUnderRoot(rs.model().tokenizer(), options.model_root,
                           "model.tokenizer", "model root"));
    }
  } else if (!synthetic) {
    return Invalid("model.path", "required");
  } else {
    rs.mutable_model()->clear_fingerprint();
  }
  // The dtype decides the numbers, so it is resolved here and becomes part of
  // every task key: results of one precision are never reused as the other's.
  if (shape.known && rs.model().dtype().empty()) {
    rs.mutable_model()->set_dtype(options.default_dtype);
  }
  const std::string& dtype = rs.model().dtype();
  if (!dtype.empty() && dtype != "float32" && dtype != "bfloat16") {
    return Invalid("model.dtype",
                   absl::StrCat("must be \"float32\" or \"bfloat16\", got \"",
                                dtype, "\""));
  }

  // Datasets.
  if (NeedsDatasets(kind) && rs.datasets_size() == 0) {
    return Invalid("datasets",
                   "at least one dataset is required for this job kind");
  }
  absl::flat_hash_set<std::string> dataset_names;
  for (int i = 0; i < rs.datasets_size(); ++i) {
    v1::DatasetRef* ds = rs.mutable_datasets(i);
    const std::string field = absl::StrCat("datasets[", i, "]");
    if (ds->name().empty()) return Invalid(field + ".name", "required");
    if (!dataset_names.insert(ds->name()).second) {
      return Invalid(field + ".name", absl::StrCat("duplicate dataset name \"",
                                                   ds->name(), "\""));
    }
    if (ds->shards() == 0) ds->set_shards(1);
    RETURN_IF_ERROR(CheckRange(ds->shards(), 1, kMaxShards, field + ".shards"));
    if (ds->max_records() < 0)
      return Invalid(field + ".max_records", "must be >= 0");
    if (ds->split() == "paragraph") ds->clear_split();  // the default's key
    if (!ds->split().empty() && ds->split() != "line" &&
        ds->split() != "file") {
      return Invalid(field + ".split",
                     absl::StrCat("must be \"paragraph\", \"line\" or "
                                  "\"file\", got \"",
                                  ds->split(), "\""));
    }
    if (!ds->split().empty() && absl::EndsWith(ds->path(), ".jsonl")) {
      return Invalid(field + ".split",
                     "applies to plain-text files; a JSONL file is one record "
                     "per line");
    }
    if (ds->split() == "file" && ds->shards() > 1) {
      return Invalid(field + ".shards",
                     "split \"file\" makes the whole file one document, "
                     "which cannot be cut into shards; use shards: 1");
    }
    ASSIGN_OR_RETURN(std::string path,
                     ResolveUnderRoot(ds->path(), options.data_root,
                                      field + ".path", "data root"));
    struct stat st;
    if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      return Invalid(field + ".path",
                     absl::StrCat("'", ds->path(), "' is not a regular file"));
    }
    auto fp = Sha256File(path);
    if (!fp.ok()) return Annotate(fp.status(), field + ".path");
    ds->set_path(path);
    ds->set_fingerprint(*fp);
  }

  // The job before defaults and canonicalisation: swept parameters are
  // applied to copies of it and validated per point (JobWithParams).
  const v1::SweepSpec unvalidated = rs;
  RETURN_IF_ERROR(ValidateJob(&rs, shape));
  if (synthetic) {
    for (int i = 0; i < rs.grid().axes_size(); ++i) {
      const auto k = rs.grid().axes(i).kind_case();
      if ((k == v1::Axis::kInterventions || k == v1::Axis::kLayers) &&
          !shape.known) {
        return Invalid(
            absl::StrCat("grid.axes[", i, "]"),
            "synthetic jobs without a model take only param and seeds axes");
      }
    }
  }
  ASSIGN_OR_RETURN(std::vector<std::vector<AxisPoint>> axes,
                   ExpandAxes(rs.mutable_grid(), shape));
  RETURN_IF_ERROR(CheckParamAxes(rs.grid(), axes, kind));

  // Data slots: every (dataset, shard), or one slot without data.
  std::vector<DataSlot> slots;
  for (const v1::DatasetRef& ds : rs.datasets()) {
    for (int s = 0; s < ds.shards(); ++s) slots.push_back({&ds, s});
  }
  if (slots.empty()) slots.push_back({});

  const int64_t cap = options.max_tasks;
  const int64_t reps = synthetic ? rs.synthetic().tasks() : 1;
  int64_t total = SaturatingMul(static_cast<int64_t>(slots.size()), reps, cap);
  for (const auto& a : axes)
    total = SaturatingMul(total, static_cast<int64_t>(a.size()), cap);
  if (total > cap) {
    // Recompute exactly (in double) only for the message.
    double exact =
        static_cast<double>(slots.size()) * static_cast<double>(reps);
    for (const auto& a : axes) exact *= static_cast<double>(a.size());
    return Invalid("grid",
                   absl::StrFormat("the sweep expands to %.0f tasks, more than "
                                   "max_tasks = %d",
                                   exact, cap));
  }

  {
    const std::string spec_bytes = DeterministicBytes(rs);
    plan.sweep_id =
        absl::StrCat("sw-", HashWithVersion("sweep", spec_bytes).substr(0, 16));
  }

  // Canonical template: paths cleared (see the file comment).
  v1::TaskSpec base;
  base.set_kind(kind);
  if (shape.known) {
    *base.mutable_model() = rs.model();
    base.mutable_model()->clear_path();
  }
  CopyJob(rs, &base);
  base.set_stage(stage);
  std::vector<const v1::Intervention*> base_interventions;
  if (rs.has_eval()) {
    for (const auto& iv : rs.eval().base_interventions().interventions()) {
      base_interventions.push_back(&iv);
    }
  }

  JobsByParams jobs_by_params(unvalidated, shape);
  // eval and probe use a grid seed only as the seed of reinit interventions
  // that name none (docs/JOBS.md, "Seeds").
  const bool seeds_fold_into_reinit =
      kind == v1::JOB_KIND_EVAL || kind == v1::JOB_KIND_PROBE;
  bool seed_used = false;
  plan.tasks.reserve(static_cast<size_t>(total));
  absl::flat_hash_set<std::string> seen;
  seen.reserve(static_cast<size_t>(total));
  std::vector<size_t> odometer(axes.size(), 0);

  for (const DataSlot& slot : slots) {
    v1::TaskSpec slot_base = base;
    if (slot.dataset != nullptr) {
      v1::DataShard* data = slot_base.mutable_data();
      *data->mutable_dataset() = *slot.dataset;
      data->mutable_dataset()->clear_path();
      data->set_shard_index(slot.shard);
      data->set_num_shards(slot.dataset->shards());
    }
    std::fill(odometer.begin(), odometer.end(), 0);
    bool more = true;
    while (more) {
      v1::TaskSpec point = slot_base;
      for (const v1::Intervention* iv : base_interventions) {
        *point.mutable_interventions()->add_interventions() = *iv;
      }
      for (size_t a = 0; a < axes.size(); ++a) {
        const AxisPoint& p = axes[a][odometer[a]];
        for (const v1::Intervention& iv : p.interventions) {
          *point.mutable_interventions()->add_interventions() = iv;
        }
        if (p.has_seed) point.set_seed(p.seed);
        if (p.param_name != nullptr)
          (*point.mutable_params())[*p.param_name] = p.param_value;
      }
      if (!point.params().empty()) {
        ASSIGN_OR_RETURN(const v1::SweepSpec* job,
                         jobs_by_params.Get(point.params()));
        CopyJob(*job, &point);
      }
      if (point.interventions().interventions_size() == 0)
        point.clear_interventions();
      if (seeds_fold_into_reinit && point.seed() != 0) {
        if (FoldSeedIntoReinit(&point)) {
          seed_used = true;
        } else {
          point.clear_seed();  // unused: the task shares the unseeded key
        }
      }

      // Group key: the canonical task without interventions and seed (computed
      // once per point).
      std::string group_key;
      if (!synthetic) {
        v1::TaskSpec group = point;
        group.clear_interventions();
        group.clear_seed();
        group.clear_stage();
        if (kind == v1::JOB_KIND_EVAL || kind == v1::JOB_KIND_PROBE) {
          // eval and probe tasks over the same shard and windowing share one
          // unablated pass (docs/JOBS.md), whichever stage planned them.
          const v1::TextWindowing w = kind == v1::JOB_KIND_EVAL
                                          ? group.eval().windowing()
                                          : group.probe().windowing();
          group.clear_kind();
          group.clear_job();
          *group.mutable_eval()->mutable_windowing() = w;
        }
        group_key = HashWithVersion("group", DeterministicBytes(group));
      }

      for (int64_t r = 0; r < reps; ++r) {
        PlannedTask task;
        task.spec = point;
        if (synthetic)
          task.spec.set_index(static_cast<int64_t>(plan.tasks.size()));
        task.task_key = HashWithVersion("task", DeterministicBytes(task.spec));
        if (!seen.insert(task.task_key).second) continue;
        task.group_key = synthetic
                             ? HashWithVersion("group-synthetic", task.task_key)
                             : group_key;
        task.spec.set_index(static_cast<int64_t>(plan.tasks.size()));
        if (shape.known) task.spec.mutable_model()->set_path(rs.model().path());
        if (slot.dataset != nullptr) {
          task.spec.mutable_data()->mutable_dataset()->set_path(
              slot.dataset->path());
        }
        plan.tasks.push_back(std::move(task));
      }

      // Advance the odometer (last axis fastest).
      more = false;
      for (size_t a = axes.size(); a-- > 0;) {
        if (++odometer[a] < axes[a].size()) {
          more = true;
          break;
        }
        odometer[a] = 0;
      }
    }
  }
  if (seeds_fold_into_reinit && !seed_used) {
    for (int i = 0; i < rs.grid().axes_size(); ++i) {
      if (rs.grid().axes(i).kind_case() != v1::Axis::kSeeds) continue;
      return Invalid(
          absl::StrCat("grid.axes[", i, "].seeds"),
          absl::StrCat(absl::AsciiStrToLower(absl::StripPrefix(
                           v1::JobKind_Name(kind), "JOB_KIND_")),
                       " tasks use a seed only for reinit interventions that "
                       "name none, and no task of this sweep has one: every "
                       "seed would compute the same numbers"));
    }
  }
  return plan;
}

// The spec of stage `stage` of `spec`: the sweep's model, policy and labels
// with the stage's job (or the sweep's), grid and datasets (or the sweep's).
v1::SweepSpec StageSpec(const v1::SweepSpec& spec, const v1::Stage& stage) {
  v1::SweepSpec sub = spec;
  sub.clear_stages();
  sub.clear_grid();
  if (stage.job_case() != v1::Stage::JOB_NOT_SET) {
    // The oneof fields share numbers between Stage and SweepSpec.
    const google::protobuf::Descriptor* from = stage.GetDescriptor();
    const google::protobuf::FieldDescriptor* field =
        from->FindFieldByNumber(static_cast<int>(stage.job_case()));
    const google::protobuf::FieldDescriptor* to =
        sub.GetDescriptor()->FindFieldByNumber(field->number());
    sub.GetReflection()->MutableMessage(&sub, to)->CopyFrom(
        stage.GetReflection()->GetMessage(stage, field));
  }
  *sub.mutable_grid() = stage.grid();
  if (stage.datasets_size() > 0) *sub.mutable_datasets() = stage.datasets();
  return sub;
}

}  // namespace internal

namespace {
using internal::PlanOneStage;
using internal::StageSpec;

}  // namespace

// Names and labels within their length limits (planner.h).
absl::Status CheckNamesAndLabels(const v1::SweepSpec& spec) {
  auto too_long = [](absl::string_view field, size_t size, size_t limit) {
    return Invalid(
        field, absl::StrCat("is ", size, " bytes long; the limit is ", limit,
                            " bytes"));
  };
  if (spec.name().size() > kMaxSweepNameBytes) {
    return too_long("name", spec.name().size(), kMaxSweepNameBytes);
  }
  for (int i = 0; i < spec.stages_size(); ++i) {
    if (spec.stages(i).name().size() > kMaxSweepNameBytes) {
      return too_long(absl::StrCat("stages[", i, "].name"),
                      spec.stages(i).name().size(), kMaxSweepNameBytes);
    }
  }
  if (spec.labels_size() > kMaxLabels) {
    return Invalid("labels",
                   absl::StrCat("has ", spec.labels_size(),
                                " entries; the limit is ", kMaxLabels));
  }
  for (const auto& [key, value] : spec.labels()) {
    const std::string field = absl::StrCat("labels[\"", key.substr(0, 40),
                                           key.size() > 40 ? "...\"]" : "\"]");
    if (key.size() > kMaxLabelKeyBytes) {
      return too_long(absl::StrCat(field, " (key)"), key.size(),
                      kMaxLabelKeyBytes);
    }
    if (value.size() > kMaxLabelValueBytes) {
      return too_long(field, value.size(), kMaxLabelValueBytes);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Plan> PlanSweep(const v1::SweepSpec& spec,
                               const PlannerOptions& options) {
  RETURN_IF_ERROR(CheckNamesAndLabels(spec));
  v1::SweepSpec first = spec;
  first.clear_stages();
  ASSIGN_OR_RETURN(Plan plan, PlanOneStage(first, options, ""));
  if (spec.stages_size() == 0) return plan;

  absl::flat_hash_set<std::string> names;
  absl::flat_hash_set<std::string> keys;
  for (const PlannedTask& t : plan.tasks) keys.insert(t.task_key);
  for (int i = 0; i < spec.stages_size(); ++i) {
    const v1::Stage& stage = spec.stages(i);
    const std::string field = absl::StrCat("stages[", i, "]");
    if (stage.name().empty()) return Invalid(field + ".name", "required");
    if (!names.insert(stage.name()).second) {
      return Invalid(field + ".name", absl::StrCat("duplicate stage name \"",
                                                   stage.name(), "\""));
    }
    v1::SweepSpec sub = StageSpec(first, stage);
    // A derived stage, and every stage after one, is planned later from the
    // results before it (docs/STAGES.md); it is validated now.
    if (IsDerivedStage(stage) || !plan.deferred_stages.empty()) {
      RETURN_IF_ERROR(ValidateDeferredStage(spec, i, options));
      plan.deferred_stages.push_back(i);
      continue;
    }
    auto staged = PlanOneStage(sub, options, stage.name());
    if (!staged.ok()) return Annotate(staged.status(), field);
    for (PlannedTask& t : staged->tasks) {
      if (!keys.insert(t.task_key).second) continue;
      t.spec.set_index(static_cast<int64_t>(plan.tasks.size()));
      plan.tasks.push_back(std::move(t));
    }
    if (static_cast<int64_t>(plan.tasks.size()) > options.max_tasks) {
      return Invalid(field, absl::StrCat("the sweep expands to more than "
                                         "max_tasks = ",
                                         options.max_tasks, " tasks"));
    }
  }
  *plan.resolved_spec.mutable_stages() = spec.stages();
  plan.sweep_id = absl::StrCat(
      "sw-", HashWithVersion("sweep", DeterministicBytes(plan.resolved_spec))
                 .substr(0, 16));
  return plan;
}

}  // namespace sweepd
