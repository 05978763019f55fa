// Layer profile: classification of tasks, aggregation across shards, the
// per-layer profile and the combined safety score. Formulas: docs/REPORTS.md.
#include "coordinator/layer_profile.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/layer_selector.h"
#include "common/status.h"
#include "coordinator/task_summary.h"

namespace sweepd {
namespace {

using ::sweepd::v1::InterventionSet;
using ::sweepd::v1::JobKind;
using ::sweepd::v1::Metric;
using ::sweepd::v1::TaskRecord;
using ::sweepd::v1::TaskSpec;
using ::sweepd::v1::TaskState;

constexpr char kAllCategory[] = "all";
// Layer bound used to parse selectors before the model's layer count is known.
constexpr int kUnknownLayerBound = 1 << 16;

std::string JoinLayers(const std::vector<int>& layers) {
  return absl::StrJoin(layers, ",");
}

std::string LabelOr(const Metric& metric, const std::string& key,
                    const std::string& fallback) {
  auto it = metric.labels().find(key);
  return it == metric.labels().end() ? fallback : it->second;
}

// A classified intervention set.
struct ParsedInterventions {
  EvalKind kind = EvalKind::kOther;
  std::vector<int> layers;
  std::string description;
};

bool SelectorMentionsAll(const std::string& selector) {
  for (absl::string_view part : absl::StrSplit(selector, ',')) {
    if (absl::StripAsciiWhitespace(part) == "all") return true;
  }
  return false;
}

absl::StatusOr<std::vector<int>> ParseLayers(const std::string& selector,
                                             int num_layers,
                                             const std::string& field) {
  if (num_layers <= 0 && SelectorMentionsAll(selector)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": layer selector \"", selector,
                     "\" uses \"all\" but the number of layers is unknown (no "
                     "probe rows; set "
                     "num_layers)"));
  }
  return ParseLayerSelector(
      selector, num_layers > 0 ? num_layers : kUnknownLayerBound, field);
}

// Describes an intervention set from its raw selectors (used for base
// interventions, which are only a label).
std::string DescribeRaw(const InterventionSet& set) {
  std::vector<std::string> parts;
  for (const auto& iv : set.interventions()) {
    switch (iv.op_case()) {
      case sweepd::v1::Intervention::kSkip:
        parts.push_back(absl::StrCat("skip ", iv.skip().layers()));
        break;
      case sweepd::v1::Intervention::kZero:
        parts.push_back(absl::StrCat("zero ", iv.zero().layers()));
        break;
      case sweepd::v1::Intervention::kReinit:
        parts.push_back(absl::StrCat("reinit ", iv.reinit().layers(), " (seed ",
                                     iv.reinit().seed(), ")"));
        break;
      case sweepd::v1::Intervention::kMaskHeads:
        parts.push_back(absl::StrCat(
            "mask_heads layer ", iv.mask_heads().layer(), " heads ",
            absl::StrJoin(iv.mask_heads().heads(), ",")));
        break;
      case sweepd::v1::Intervention::kSteer:
        parts.push_back(SteerSummary(iv.steer()));
        break;
      case sweepd::v1::Intervention::kReplaceLayer:
        parts.push_back(ReplaceLayerSummary(iv.replace_layer()));
        break;
      case sweepd::v1::Intervention::OP_NOT_SET:
        parts.push_back("unset");
        break;
    }
  }
  return parts.empty() ? "none" : absl::StrJoin(parts, " + ");
}

absl::StatusOr<ParsedInterventions> ClassifyInterventions(
    const InterventionSet& set, int num_layers, const std::string& task_key) {
  ParsedInterventions out;
  if (set.interventions().empty()) {
    out.kind = EvalKind::kBaseline;
    out.description = "none";
    return out;
  }
  std::set<sweepd::v1::Intervention::OpCase> ops;
  std::set<uint64_t> seeds;
  std::set<int> layers;
  for (int i = 0; i < set.interventions_size(); ++i) {
    const auto& iv = set.interventions(i);
    const std::string field = absl::StrCat(
        "task ", task_key, ": spec.interventions.interventions[", i, "]");
    ops.insert(iv.op_case());
    std::string selector;
    switch (iv.op_case()) {
      case sweepd::v1::Intervention::kSkip:
        selector = iv.skip().layers();
        break;
      case sweepd::v1::Intervention::kZero:
        selector = iv.zero().layers();
        break;
      case sweepd::v1::Intervention::kReinit:
        selector = iv.reinit().layers();
        seeds.insert(iv.reinit().seed());
        break;
      case sweepd::v1::Intervention::kMaskHeads:
        layers.insert(iv.mask_heads().layer());
        continue;
      case sweepd::v1::Intervention::kSteer:
        layers.insert(iv.steer().layer());
        continue;
      case sweepd::v1::Intervention::kReplaceLayer:
        layers.insert(iv.replace_layer().layer());
        continue;
      case sweepd::v1::Intervention::OP_NOT_SET:
        return absl::InvalidArgumentError(
            absl::StrCat(field, ": intervention has no op"));
    }
    ASSIGN_OR_RETURN(std::vector<int> parsed,
                     ParseLayers(selector, num_layers, field));
    layers.insert(parsed.begin(), parsed.end());
  }
  out.layers.assign(layers.begin(), layers.end());
  const std::string joined = JoinLayers(out.layers);
  if (ops.size() == 1 && *ops.begin() == sweepd::v1::Intervention::kSkip) {
    out.kind =
        out.layers.size() == 1 ? EvalKind::kSingleSkip : EvalKind::kBlockDrop;
    out.description = absl::StrCat("skip ", joined);
  } else if (ops.size() == 1 &&
             *ops.begin() == sweepd::v1::Intervention::kZero) {
    out.kind = EvalKind::kZero;
    out.description = absl::StrCat("zero ", joined);
  } else if (ops.size() == 1 &&
             *ops.begin() == sweepd::v1::Intervention::kReinit &&
             seeds.size() == 1) {
    out.kind = EvalKind::kReinit;
    out.description =
        absl::StrCat("reinit ", joined, " (seed ", *seeds.begin(), ")");
  } else {
    out.kind = EvalKind::kOther;
    out.description = DescribeRaw(set);
  }
  return out;
}

std::string FormatValue(const sweepd::v1::Value& value) {
  switch (value.kind_case()) {
    case sweepd::v1::Value::kIntValue:
      return absl::StrCat(value.int_value());
    case sweepd::v1::Value::kDoubleValue:
      return absl::StrCat(value.double_value());
    case sweepd::v1::Value::kStringValue:
      return value.string_value();
    case sweepd::v1::Value::kBoolValue:
      return value.bool_value() ? "true" : "false";
    case sweepd::v1::Value::KIND_NOT_SET:
      break;
  }
  return "";
}

// The comparability label of a task's data: dataset name, swept parameters,
// base interventions.
std::string ConditionLabel(const TaskSpec& spec) {
  std::string label = spec.data().dataset().name();
  if (label.empty()) label = spec.data().dataset().path();
  if (!spec.params().empty()) {
    std::map<std::string, std::string> sorted;
    for (const auto& [key, value] : spec.params())
      sorted[key] = FormatValue(value);
    absl::StrAppend(&label, " [",
                    absl::StrJoin(sorted, ",", absl::PairFormatter("=")), "]");
  }
  if (spec.has_eval() &&
      !spec.eval().base_interventions().interventions().empty()) {
    absl::StrAppend(&label, " + base(",
                    DescribeRaw(spec.eval().base_interventions()), ")");
  }
  return label;
}

struct WeightedMean {
  double sum = 0;
  double weight = 0;
  void Add(double value, double w) {
    sum += value * w;
    weight += w;
  }
  std::optional<double> Get() const {
    if (weight <= 0) return std::nullopt;
    return sum / weight;
  }
};

struct ShardTotals {
  double nll_sum = 0;
  double tokens = 0;
  std::string task_key;
};

struct EvalAccum {
  std::string dataset;
  ParsedInterventions interventions;
  int num_shards = 1;
  std::map<int, ShardTotals> shards;
};

struct ProbeAccum {
  WeightedMean bi, resid_norm, lens_rank, lens_top1;
};

struct ProbeDatasetProgress {
  int num_shards = 1;
  std::set<int> shards_done;
  std::vector<const TaskRecord*> tasks;
};

absl::Status ValidateOptions(const LayerProfileOptions& options) {
  const SafetyWeights& w = options.weights;
  for (const auto& [name, value] : {std::pair<const char*, double>{"bi", w.bi},
                                    {"bi_var", w.bi_var},
                                    {"delta", w.delta}}) {
    if (!std::isfinite(value) || value < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("safety weight ", name,
                       " must be a finite number >= 0, got ", value));
    }
  }
  if (w.bi + w.bi_var + w.delta <= 0) {
    return absl::InvalidArgumentError(
        "safety weights bi, bi_var, delta are all zero");
  }
  if (std::isnan(options.critical_delta_pct)) {
    return absl::InvalidArgumentError("critical_delta_pct is NaN");
  }
  if (options.num_layers < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_layers must be >= 0, got ", options.num_layers));
  }
  if (options.num_layers > 0 && !options.layer_types.empty() &&
      static_cast<int>(options.layer_types.size()) != options.num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer_types has ", options.layer_types.size(),
                     " entries but num_layers is ", options.num_layers));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> ParseLayerLabel(const Metric& metric,
                                    const std::string& task_key) {
  auto it = metric.labels().find("layer");
  if (it == metric.labels().end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "task ", task_key, ": metric ", metric.name(), " has no layer label"));
  }
  int layer = 0;
  if (!absl::SimpleAtoi(it->second, &layer) || layer < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "task ", task_key, ": metric ", metric.name(), " has layer label \"",
        it->second, "\", not a layer index"));
  }
  return layer;
}

// Adds one probe task's rows to the accumulators.
absl::Status AccumulateProbe(
    const TaskRecord& task, int num_layers_bound,
    std::map<std::pair<int, std::string>, ProbeAccum>* cells,
    std::map<std::string, WeightedMean>* decisions) {
  std::map<std::string, double> tokens;
  std::map<std::string, double> prompts;
  for (const Metric& m : task.result().metrics()) {
    if (m.labels().count("layer")) continue;
    if (m.name() == "tokens")
      tokens[LabelOr(m, "category", kAllCategory)] = m.value();
    if (m.name() == "prompts")
      prompts[LabelOr(m, "category", kAllCategory)] = m.value();
  }
  auto weight = [&](const std::map<std::string, double>& weights,
                    const char* weight_name, const Metric& m,
                    const std::string& category) -> absl::StatusOr<double> {
    auto it = weights.find(category);
    if (it == weights.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("probe task ", task.task_key(), ": metric ", m.name(),
                       " for category \"", category, "\" has no ", weight_name,
                       " row to weight it by"));
    }
    return it->second;
  };
  for (const Metric& m : task.result().metrics()) {
    const std::string category = LabelOr(m, "category", kAllCategory);
    const std::string& name = m.name();
    if (name == "decision_layer") {
      ASSIGN_OR_RETURN(double w, weight(prompts, "prompts", m, category));
      (*decisions)[category].Add(m.value(), w);
      continue;
    }
    if (name != "bi" && name != "resid_norm" && name != "lens_rank" &&
        name != "lens_top1") {
      continue;
    }
    ASSIGN_OR_RETURN(int layer, ParseLayerLabel(m, task.task_key()));
    if (layer >= num_layers_bound) {
      return absl::InvalidArgumentError(absl::StrCat(
          "probe task ", task.task_key(), ": metric ", name, " has layer ",
          layer, " but the model has ", num_layers_bound, " layers"));
    }
    ProbeAccum& cell = (*cells)[{layer, category}];
    if (name == "bi" || name == "resid_norm") {
      ASSIGN_OR_RETURN(double w, weight(tokens, "tokens", m, category));
      (name == "bi" ? cell.bi : cell.resid_norm).Add(m.value(), w);
    } else {
      ASSIGN_OR_RETURN(double w, weight(prompts, "prompts", m, category));
      (name == "lens_rank" ? cell.lens_rank : cell.lens_top1).Add(m.value(), w);
    }
  }
  return absl::OkStatus();
}

// Finds the "all" nll_sum and tokens rows of an eval task.
absl::StatusOr<ShardTotals> EvalTotals(const TaskRecord& task) {
  std::optional<double> nll_sum;
  std::optional<double> tokens;
  for (const Metric& m : task.result().metrics()) {
    if (LabelOr(m, "category", kAllCategory) != kAllCategory) continue;
    if (m.name() == "nll_sum") nll_sum = m.value();
    if (m.name() == "tokens") tokens = m.value();
  }
  if (!nll_sum || !tokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "eval task ", task.task_key(), " has no ",
        nll_sum ? "tokens" : "nll_sum", " row for category \"all\""));
  }
  if (!(*tokens > 0) || !std::isfinite(*nll_sum)) {
    return absl::InvalidArgumentError(
        absl::StrCat("eval task ", task.task_key(),
                     " reports tokens = ", *tokens, ", nll_sum = ", *nll_sum));
  }
  return ShardTotals{*nll_sum, *tokens, task.task_key()};
}

double Normalise(double x, double lo, double hi) {
  if (!(hi > lo)) return 0;
  return std::clamp((x - lo) / (hi - lo), 0.0, 1.0);
}

}  // namespace

const char* EvalKindName(EvalKind kind) {
  switch (kind) {
    case EvalKind::kBaseline:
      return "baseline";
    case EvalKind::kSingleSkip:
      return "skip";
    case EvalKind::kBlockDrop:
      return "block_drop";
    case EvalKind::kZero:
      return "zero";
    case EvalKind::kReinit:
      return "reinit";
    case EvalKind::kOther:
      return "other";
  }
  return "other";
}

const char* VerdictName(Verdict verdict) {
  switch (verdict) {
    case Verdict::kUnscored:
      return "unscored";
    case Verdict::kNeverTouch:
      return "never touch";
    case Verdict::kDrop:
      return "drop";
    case Verdict::kKeep:
      return "keep";
  }
  return "unscored";
}

absl::StatusOr<LayerStudy> BuildLayerStudy(const std::vector<TaskRecord>& tasks,
                                           const LayerProfileOptions& options) {
  RETURN_IF_ERROR(ValidateOptions(options));
  LayerStudy data;

  // ---- Pass 1: states, the sweep id, the layer count seen in probe rows. ----
  std::vector<const TaskRecord*> done_eval;
  std::map<std::string, ProbeDatasetProgress> probe_progress;
  std::map<int, int> other_kinds;  // job kind -> done tasks ignored
  int max_probe_layer = -1;
  for (const TaskRecord& task : tasks) {
    if (data.sweep_id.empty()) data.sweep_id = task.sweep_id();
    ++data.tasks_total;
    switch (task.state()) {
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
    const TaskSpec& spec = task.spec();
    if (spec.kind() == sweepd::v1::JOB_KIND_PROBE) {
      ProbeDatasetProgress& progress = probe_progress[ConditionLabel(spec)];
      progress.num_shards = std::max(1, spec.data().num_shards());
      if (task.state() != sweepd::v1::TASK_STATE_DONE) continue;
      progress.shards_done.insert(spec.data().shard_index());
      progress.tasks.push_back(&task);
      for (const Metric& m : task.result().metrics()) {
        if (!m.labels().count("layer")) continue;
        ASSIGN_OR_RETURN(int layer, ParseLayerLabel(m, task.task_key()));
        max_probe_layer = std::max(max_probe_layer, layer);
      }
    } else if (task.state() != sweepd::v1::TASK_STATE_DONE) {
      continue;
    } else if (spec.kind() == sweepd::v1::JOB_KIND_EVAL) {
      done_eval.push_back(&task);
    } else {
      ++other_kinds[spec.kind()];
    }
  }
  for (const auto& [kind, count] : other_kinds) {
    data.notes.push_back(
        absl::StrCat(count, " done task(s) of job kind ",
                     sweepd::v1::JobKind_Name(static_cast<JobKind>(kind)),
                     " are not part of this report."));
  }

  // The model's layer count, as far as it is known before parsing
  // interventions.
  int num_layers = options.num_layers;
  if (num_layers == 0) {
    num_layers = std::max(max_probe_layer + 1,
                          static_cast<int>(options.layer_types.size()));
  } else if (max_probe_layer >= num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("probe rows name layer ", max_probe_layer,
                     " but num_layers is ", num_layers));
  }

  // ---- Probe aggregation over complete probe datasets. ----
  std::map<std::pair<int, std::string>, ProbeAccum> cells;
  std::map<std::string, WeightedMean> decisions;
  int probe_datasets_used = 0;
  for (const auto& [label, progress] : probe_progress) {
    if (static_cast<int>(progress.shards_done.size()) < progress.num_shards) {
      data.notes.push_back(
          absl::StrCat("Probe results of \"", label,
                       "\" left out: ", progress.shards_done.size(), " of ",
                       progress.num_shards, " shards done."));
      continue;
    }
    ++probe_datasets_used;
    for (const TaskRecord* task : progress.tasks) {
      RETURN_IF_ERROR(AccumulateProbe(
          *task, num_layers > 0 ? num_layers : kUnknownLayerBound, &cells,
          &decisions));
    }
  }
  if (probe_datasets_used > 1) {
    data.notes.push_back(
        absl::StrCat("Probe metrics pool ", probe_datasets_used,
                     " probe datasets (weighted by tokens / prompts)."));
  }

  // ---- Eval aggregation. ----
  std::map<std::pair<std::string, std::string>, EvalAccum> evals;
  std::map<std::pair<std::string, std::string>, int>
      eval_progress_shards;  // num_shards
  int max_intervened_layer = -1;
  for (const TaskRecord* task : done_eval) {
    const TaskSpec& spec = task->spec();
    ASSIGN_OR_RETURN(ParsedInterventions parsed,
                     ClassifyInterventions(spec.interventions(), num_layers,
                                           task->task_key()));
    ASSIGN_OR_RETURN(ShardTotals totals, EvalTotals(*task));
    if (!parsed.layers.empty()) {
      max_intervened_layer =
          std::max(max_intervened_layer, parsed.layers.back());
    }
    const std::string label = ConditionLabel(spec);
    EvalAccum& accum = evals[{label, parsed.description}];
    accum.dataset = label;
    accum.interventions = parsed;
    accum.num_shards = std::max(1, spec.data().num_shards());
    const int shard = spec.data().shard_index();
    auto [it, inserted] = accum.shards.emplace(shard, totals);
    if (!inserted) {
      return absl::InvalidArgumentError(
          absl::StrCat("tasks ", it->second.task_key, " and ", task->task_key(),
                       " both report shard ", shard, " of dataset \"", label,
                       "\" under intervention \"", parsed.description, "\""));
    }
  }
  // Conditions with some shards still pending or failed never reach DONE; count
  // them too.
  for (const TaskRecord& task : tasks) {
    if (task.spec().kind() != sweepd::v1::JOB_KIND_EVAL ||
        task.state() == sweepd::v1::TASK_STATE_DONE) {
      continue;
    }
    auto parsed = ClassifyInterventions(task.spec().interventions(), num_layers,
                                        task.task_key());
    if (!parsed.ok())
      continue;  // such a task has no numbers; its selector is reported above
    const std::string label = ConditionLabel(task.spec());
    if (!evals.count({label, parsed->description})) {
      data.notes.push_back(absl::StrCat("No finished shard for \"",
                                        parsed->description, "\" on \"", label,
                                        "\"."));
      evals[{label, parsed->description}].num_shards =
          -1;  // marks "already noted"
    }
  }
  num_layers = std::max(num_layers, max_intervened_layer + 1);
  data.num_layers = num_layers;
  if (!options.layer_types.empty() &&
      static_cast<int>(options.layer_types.size()) != num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer_types has ", options.layer_types.size(),
                     " entries but the results cover ", num_layers, " layers"));
  }

  // Complete conditions become rows; baselines first so deltas can be computed.
  std::map<std::string, const EvalRow*> baseline_of;
  std::map<std::pair<std::string, std::string>, EvalRow> rows;
  for (const auto& [key, accum] : evals) {
    if (accum.num_shards < 0) continue;
    if (static_cast<int>(accum.shards.size()) < accum.num_shards) {
      data.notes.push_back(absl::StrCat("\"", key.second, "\" on \"", key.first,
                                        "\" left out: ", accum.shards.size(),
                                        " of ", accum.num_shards,
                                        " shards done."));
      continue;
    }
    EvalRow row;
    row.dataset = accum.dataset;
    row.kind = accum.interventions.kind;
    row.layers = accum.interventions.layers;
    row.intervention = accum.interventions.description;
    for (const auto& [shard, totals] : accum.shards) {
      row.nll_sum += totals.nll_sum;
      row.tokens += totals.tokens;
    }
    row.ppl = std::exp(row.nll_sum / row.tokens);
    row.shards = static_cast<int>(accum.shards.size());
    rows[key] = row;
  }
  for (const auto& [key, row] : rows) {
    if (row.kind == EvalKind::kBaseline) baseline_of[row.dataset] = &row;
  }
  for (auto& [key, row] : rows) {
    auto base = baseline_of.find(row.dataset);
    if (base == baseline_of.end()) continue;
    row.ppl_delta_pct = 100.0 * (row.ppl / base->second->ppl - 1.0);
  }

  // The datasets that feed the profile, score and plan.
  std::vector<std::string>& ablation_datasets = data.ablation_datasets;
  if (!options.ablation_dataset.empty()) {
    bool known = false;
    std::set<std::string> names;
    for (const auto& [key, row] : rows) {
      names.insert(row.dataset);
      known = known || row.dataset == options.ablation_dataset;
    }
    if (!known) {
      return absl::InvalidArgumentError(
          absl::StrCat("ablation_dataset \"", options.ablation_dataset,
                       "\" has no complete evaluation results; datasets: ",
                       names.empty() ? "(none)" : absl::StrJoin(names, ", ")));
    }
    ablation_datasets.push_back(options.ablation_dataset);
  } else {
    for (const auto& [dataset, row] : baseline_of)
      ablation_datasets.push_back(dataset);
  }
  for (auto& [key, row] : rows) data.evals.push_back(row);
  std::sort(data.evals.begin(), data.evals.end(),
            [](const EvalRow& a, const EvalRow& b) {
              return std::tie(a.dataset, a.kind, a.layers, a.intervention) <
                     std::tie(b.dataset, b.kind, b.layers, b.intervention);
            });

  // ---- Probe cells, decision layers, BI variance. ----
  std::set<std::string> categories;
  for (const auto& [key, accum] : cells) {
    ProbeCell cell;
    cell.layer = key.first;
    cell.category = key.second;
    cell.bi = accum.bi.Get();
    cell.resid_norm = accum.resid_norm.Get();
    cell.lens_rank = accum.lens_rank.Get();
    cell.lens_top1 = accum.lens_top1.Get();
    if (cell.category != kAllCategory) categories.insert(cell.category);
    data.probe.push_back(cell);
  }
  data.categories.assign(categories.begin(), categories.end());
  for (const auto& [category, mean] : decisions) {
    if (auto value = mean.Get())
      data.decision_layers.push_back({category, *value, mean.weight});
  }

  // ---- Layer profile. ----
  data.layers.resize(num_layers);
  for (int layer = 0; layer < num_layers; ++layer) {
    LayerProfile& profile = data.layers[layer];
    profile.layer = layer;
    if (!options.layer_types.empty()) profile.type = options.layer_types[layer];
    std::vector<double> category_bi;
    for (const ProbeCell& cell : data.probe) {
      if (cell.layer != layer) continue;
      if (cell.category == kAllCategory) {
        profile.bi = cell.bi;
        profile.resid_norm = cell.resid_norm;
        profile.lens_rank = cell.lens_rank;
      } else if (cell.bi) {
        category_bi.push_back(*cell.bi);
      }
    }
    if (!category_bi.empty()) {
      double mean = 0;
      for (double v : category_bi) mean += v;
      mean /= category_bi.size();
      double var = 0;
      for (double v : category_bi) var += (v - mean) * (v - mean);
      profile.bi_var = var / category_bi.size();
    }
    if (auto single = PoolAblation(data, absl::StrCat("skip ", layer))) {
      profile.ablation_ppl = single->ppl;
      profile.ablation_delta_pct = single->delta_pct;
      profile.critical = single->delta_pct > options.critical_delta_pct;
    }
  }

  // ---- Combined safety score. ----
  auto any_layer = [&](auto has) {
    return std::any_of(data.layers.begin(), data.layers.end(), has);
  };
  const SafetyWeights& w = options.weights;
  data.score_uses_bi =
      w.bi > 0 && any_layer([](const LayerProfile& p) { return p.bi; });
  data.score_uses_bi_var =
      w.bi_var > 0 && any_layer([](const LayerProfile& p) { return p.bi_var; });
  data.score_uses_delta = w.delta > 0 && any_layer([](const LayerProfile& p) {
                            return p.ablation_delta_pct;
                          });
  if (w.bi > 0 && !data.score_uses_bi) {
    data.notes.push_back("Safety score without BI: no probe results.");
  }
  if (w.bi_var > 0 && !data.score_uses_bi_var) {
    data.notes.push_back(
        "Safety score without BI variance: no per-category probe results.");
  }
  if (w.delta > 0 && !data.score_uses_delta) {
    data.notes.push_back(
        "Safety score without the ablation delta: no single-layer ablations.");
  }
  const bool any_component =
      data.score_uses_bi || data.score_uses_bi_var || data.score_uses_delta;
  auto scorable = [&](const LayerProfile& p) {
    return any_component && (!data.score_uses_bi || p.bi) &&
           (!data.score_uses_bi_var || p.bi_var) &&
           (!data.score_uses_delta || p.ablation_delta_pct);
  };
  struct Range {
    double lo = std::numeric_limits<double>::infinity();
    double hi = -std::numeric_limits<double>::infinity();
    void Add(double v) {
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
  };
  Range bi_range, var_range, delta_range;
  bool any_noncritical = false;
  for (const LayerProfile& p : data.layers) {
    any_noncritical = any_noncritical || (scorable(p) && !p.critical);
  }
  for (const LayerProfile& p : data.layers) {
    // The ranges come from the drop candidates (non-critical layers), so one
    // exploding layer does not flatten the others' delta component; all layers
    // if every one is critical.
    if (!scorable(p) || (p.critical && any_noncritical)) continue;
    if (data.score_uses_bi) bi_range.Add(*p.bi);
    if (data.score_uses_bi_var) var_range.Add(*p.bi_var);
    if (data.score_uses_delta)
      delta_range.Add(std::max(*p.ablation_delta_pct, 0.0));
  }
  for (LayerProfile& p : data.layers) {
    if (!scorable(p)) continue;
    double score = 0;
    if (data.score_uses_bi)
      score += w.bi * Normalise(*p.bi, bi_range.lo, bi_range.hi);
    if (data.score_uses_bi_var) {
      score += w.bi_var * Normalise(*p.bi_var, var_range.lo, var_range.hi);
    }
    if (data.score_uses_delta) {
      score += w.delta * Normalise(std::max(*p.ablation_delta_pct, 0.0),
                                   delta_range.lo, delta_range.hi);
    }
    p.score = score;
  }
  return data;
}

std::optional<PooledAblation> PoolAblation(const LayerStudy& study,
                                           const std::string& intervention) {
  auto find = [&](const std::string& dataset, auto matches) -> const EvalRow* {
    for (const EvalRow& row : study.evals) {
      if (row.dataset == dataset && matches(row)) return &row;
    }
    return nullptr;
  };
  double nll = 0, tok = 0, base_nll = 0, base_tok = 0;
  for (const std::string& dataset : study.ablation_datasets) {
    const EvalRow* row = find(dataset, [&](const EvalRow& r) {
      return r.intervention == intervention;
    });
    const EvalRow* base = find(dataset, [](const EvalRow& r) {
      return r.kind == EvalKind::kBaseline;
    });
    if (row == nullptr || base == nullptr) continue;
    nll += row->nll_sum;
    tok += row->tokens;
    base_nll += base->nll_sum;
    base_tok += base->tokens;
  }
  if (tok <= 0) return std::nullopt;
  const double ppl = std::exp(nll / tok);
  return PooledAblation{ppl,
                        100.0 * (ppl / std::exp(base_nll / base_tok) - 1.0)};
}

}  // namespace sweepd
