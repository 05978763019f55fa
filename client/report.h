// Sweep reports: turns the TaskRecords of a layer-study, layer-degeneration
// or generation sweep (seeds 000, 002, 003, 001) into a report model
// (BuildReportData: the layer study of coordinator/layer_profile.h plus the
// drop plans of coordinator/drop_plan.h, the generation report of
// client/generation_report.h, a title and the options) and renders
// that model as one self-contained, offline HTML file with Vega-Lite charts and
// tables (RenderReportHtml). docs/REPORTS.md documents every derived number
// (aggregation across shards, deltas, BI variance, the combined safety score
// and the drop plan); the metric rows read are those of docs/METRICS.md.
//
// Plain value types and stateless free functions: thread-safe, no I/O. The
// caller owns the records and the returned data.
#ifndef SWEEPD_CLIENT_REPORT_H_
#define SWEEPD_CLIENT_REPORT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/calibration_report.h"
#include "client/generation_report.h"
#include "common/best_of_k.h"
#include "coordinator/drop_plan.h"
#include "coordinator/layer_profile.h"
#include "sweepd/v1/task.pb.h"

namespace sweepd {

struct ReportOptions {
  // Report title; empty = "Sweep <sweep id>".
  std::string title;
  SafetyWeights weights;
  // Layers whose single-layer ablation delta (percent) exceeds this are "never
  // touch": they get a score but never enter a drop plan.
  double critical_delta_pct = 1000.0;
  // Sizes of the drop plans to derive (each > 0; duplicates are merged).
  std::vector<int> drop_k = {10, 14, 18};
  // Evaluation dataset whose deltas feed the layer profile, the score and the
  // drop plan (a condition label as in EvalRow::dataset). Empty = every
  // evaluation dataset pooled.
  std::string ablation_dataset;
  // Number of decoder layers; 0 = inferred from the probe rows, the intervened
  // layers and layer_types.
  int num_layers = 0;
  // Per layer "sliding" or "full" (or any short label); empty = unknown.
  std::vector<std::string> layer_types;
  // Bootstrap of the best-of-k intervals (generate sweeps).
  BootstrapOptions bootstrap;
};

struct ReportData {
  std::string sweep_id;
  std::string title;
  int num_layers = 0;
  // Task states of the sweep (all records, every job kind).
  int64_t tasks_total = 0;
  int64_t tasks_done = 0;
  int64_t tasks_failed = 0;
  int64_t tasks_unfinished = 0;  // pending or leased
  // The options the numbers were derived with.
  ReportOptions options;
  // Score components actually used (a component absent for every layer is
  // dropped).
  bool score_uses_bi = false;
  bool score_uses_bi_var = false;
  bool score_uses_delta = false;

  // Probe categories other than "all", sorted.
  std::vector<std::string> categories;
  // Every (layer, category) probed, "all" included; sorted by layer then
  // category.
  std::vector<ProbeCell> probe;
  std::vector<DecisionLayer> decision_layers;  // sorted by category
  // Every complete evaluation condition, sorted by dataset, kind, layers.
  std::vector<EvalRow> evals;
  // One entry per layer 0..num_layers-1.
  std::vector<LayerProfile> layers;
  std::vector<DropPlan> drop_plans;  // ascending k
  // Human-readable remarks: ignored or incomplete results, dropped score
  // components.
  std::vector<std::string> notes;

  // Whether the layer-study sections (phases A-C, synthesis, degeneration)
  // are drawn: the sweep has eval or probe tasks, or nothing else.
  bool layer_study = true;
  // Generate and canary tasks (client/generation_report.h).
  GenerationReport generation;
  // Head importance, heals and pruned-checkpoint perplexity
  // (client/calibration_report.h); empty unless the sweep has calibration
  // tasks.
  CalibrationReport calibration;
};

// Builds the report model from every TaskRecord of one sweep (any order, any
// state; only DONE eval and probe tasks contribute layer-study numbers, DONE
// generate and canary tasks the generation sections). INVALID_ARGUMENT,
// naming the task key and the metric or field, for malformed results (a
// non-integer layer label, a probe mean without its tokens/prompts weight, a
// bad layer selector) and for invalid options (negative or all-zero weights, k
// <= 0, layer_types longer than the model). Incomplete conditions (shards not
// all done) are left out and listed in `notes`.
absl::StatusOr<ReportData> BuildReportData(
    const std::vector<sweepd::v1::TaskRecord>& tasks,
    const ReportOptions& options);

// Renders `data` as one HTML document that needs no network: the vendored Vega,
// Vega-Lite and vega-embed builds are inlined, and so is every number. Each
// chart is a Vega-Lite spec drawn into <div id="chart-...">; the page records
// each chart's outcome in window.__sweepdCharts[id] ("pending", then "ok" or
// "error: <message>") and resolves the promise window.__sweepdChartsDone when
// every chart has settled. Sections without data are replaced by a short note.
// INTERNAL if the embedded scripts are missing from the binary.
absl::StatusOr<std::string> RenderReportHtml(const ReportData& data);

// The report in parts, for a page that draws it itself (sweepd's live
// dashboard, dashboard/): the body RenderReportHtml puts under its <h1>
// (headings, tables, notes and one empty <div id="chart-..."> per chart) and
// the Vega-Lite specs of those charts as one JSON object text keyed by div id.
// The same sections, tables and specs as the HTML file; the scripts are not
// included (ReportAssets() has them).
struct ReportFragment {
  std::string body_html;
  std::string specs_json;
};
ReportFragment RenderReportFragment(const ReportData& data);

// Ids of the chart divs RenderReportHtml draws for `data`, in page order.
std::vector<std::string> ReportChartIds(const ReportData& data);

// Reads per-layer attention types from a Hugging Face config.json text with
// HfConfig::LayerTypes (common/model_config.h; "layer_types", under
// "text_config" when present): "sliding_attention" ->
// "sliding", "full_attention" -> "full", other values kept as they are.
// INVALID_ARGUMENT naming `source` when the JSON is malformed or has no
// layer_types list of strings.
absl::StatusOr<std::vector<std::string>> LayerTypesFromConfigJson(
    const std::string& config_json, const std::string& source);

}  // namespace sweepd

#endif  // SWEEPD_CLIENT_REPORT_H_
