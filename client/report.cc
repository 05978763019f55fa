// Report model: the layer study (coordinator/layer_profile.h) and drop plans
// (coordinator/drop_plan.h) of one sweep, with its title and options.
// Formulas: docs/REPORTS.md.
#include "client/report.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/model_config.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace sweepd {

absl::StatusOr<ReportData> BuildReportData(
    const std::vector<sweepd::v1::TaskRecord>& tasks,
    const ReportOptions& options) {
  RETURN_IF_ERROR(ValidateDropSizes(options.drop_k));
  LayerProfileOptions profile_options;
  profile_options.weights = options.weights;
  profile_options.critical_delta_pct = options.critical_delta_pct;
  profile_options.ablation_dataset = options.ablation_dataset;
  profile_options.num_layers = options.num_layers;
  profile_options.layer_types = options.layer_types;
  // Generate and canary tasks have their own sections; the layer study sees
  // the others.
  // In a calibration sweep the eval tasks (base, masked and materialized
  // checkpoints) belong to the calibration sections.
  const bool calibration = IsCalibrationSweep(tasks);
  std::vector<sweepd::v1::TaskRecord> study_tasks;
  bool has_study_kind = false;
  for (const sweepd::v1::TaskRecord& t : tasks) {
    const sweepd::v1::JobKind kind = t.spec().kind();
    if (kind == sweepd::v1::JOB_KIND_GENERATE ||
        kind == sweepd::v1::JOB_KIND_CANARY ||
        (calibration && kind == sweepd::v1::JOB_KIND_EVAL)) {
      continue;
    }
    has_study_kind |=
        kind == sweepd::v1::JOB_KIND_EVAL || kind == sweepd::v1::JOB_KIND_PROBE;
    study_tasks.push_back(t);
  }
  ASSIGN_OR_RETURN(GenerationReport generation,
                   BuildGenerationReport(tasks, options.bootstrap));
  ASSIGN_OR_RETURN(LayerStudy study,
                   BuildLayerStudy(study_tasks, profile_options));
  ASSIGN_OR_RETURN(DropPlans plans, DeriveDropPlans(study, options.drop_k));
  MarkVerdicts(plans.plans, &study.layers);

  ReportData data;
  data.sweep_id = std::move(study.sweep_id);
  for (const sweepd::v1::TaskRecord& t : tasks) {
    if (!data.sweep_id.empty()) break;
    data.sweep_id = t.sweep_id();
  }
  data.title = options.title.empty() ? absl::StrCat("Sweep ", data.sweep_id)
                                     : options.title;
  data.num_layers = study.num_layers;
  for (const sweepd::v1::TaskRecord& t : tasks) {
    ++data.tasks_total;
    switch (t.state()) {
      case sweepd::v1::TASK_STATE_DONE:
        ++data.tasks_done;
        break;
      case sweepd::v1::TASK_STATE_FAILED:
        ++data.tasks_failed;
        break;
      case sweepd::v1::TASK_STATE_PENDING:
      case sweepd::v1::TASK_STATE_LEASED:
        ++data.tasks_unfinished;
        break;
      default:
        break;
    }
  }
  data.calibration = BuildCalibrationReport(tasks);
  data.layer_study =
      has_study_kind || (generation.empty() && data.calibration.empty());
  for (std::string& note : generation.notes) data.notes.push_back(note);
  data.generation = std::move(generation);
  data.options = options;
  data.options.drop_k.clear();
  for (const DropPlan& plan : plans.plans)
    data.options.drop_k.push_back(plan.k);
  data.score_uses_bi = study.score_uses_bi;
  data.score_uses_bi_var = study.score_uses_bi_var;
  data.score_uses_delta = study.score_uses_delta;
  data.categories = std::move(study.categories);
  data.probe = std::move(study.probe);
  data.decision_layers = std::move(study.decision_layers);
  data.evals = std::move(study.evals);
  data.layers = std::move(study.layers);
  data.drop_plans = std::move(plans.plans);
  data.notes = std::move(study.notes);
  for (const std::string& note : data.calibration.notes) {
    data.notes.push_back(note);
  }
  for (std::string& note : plans.notes) data.notes.push_back(std::move(note));
  return data;
}

absl::StatusOr<std::vector<std::string>> LayerTypesFromConfigJson(
    const std::string& config_json, const std::string& source) {
  ASSIGN_OR_RETURN(HfConfig config, HfConfig::Parse(config_json, source));
  ASSIGN_OR_RETURN(std::vector<std::string> types, config.LayerTypes());
  for (std::string& type : types) {
    if (type == "sliding_attention") type = "sliding";
    if (type == "full_attention") type = "full";
  }
  return types;
}

}  // namespace sweepd
