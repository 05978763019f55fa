#include "coordinator/grid_expansion.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/layer_selector.h"
#include "common/status.h"
#include "coordinator/intervention_validation.h"
#include "coordinator/job_params.h"

namespace sweepd::internal {
namespace {

namespace v1 = ::sweepd::v1;

constexpr int64_t kMaxAxisPoints = 1'000'000;

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

}  // namespace

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

}  // namespace sweepd::internal
