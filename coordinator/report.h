// Sweep reports: turns the TaskRecords of a layer-study or layer-degeneration
// sweep (seeds 000 and 002) into a report model (BuildReportData) and renders
// that model as one self-contained, offline HTML file with Vega-Lite charts and
// tables (RenderReportHtml). docs/REPORTS.md documents every derived number
// (aggregation across shards, deltas, BI variance, the combined safety score
// and the drop plan); the metric rows read are those of docs/METRICS.md.
//
// Plain value types and stateless free functions: thread-safe, no I/O. The
// caller owns the records and the returned data.
#ifndef SWEEPD_COORDINATOR_REPORT_H_
#define SWEEPD_COORDINATOR_REPORT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sweepd/v1/task.pb.h"

namespace sweepd {

// Weights of the combined safety score (docs/REPORTS.md):
//   score_L = bi·n(BI_L) + bi_var·n(var_L) + delta·n(max(Δ_L, 0)).
struct SafetyWeights {
  double bi = 0.4;
  double bi_var = 0.2;
  double delta = 0.4;
};

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
};

// What an evaluated intervention set is, by the rules of docs/REPORTS.md.
enum class EvalKind {
  kBaseline,    // no intervention
  kSingleSkip,  // skip of exactly one layer
  kBlockDrop,   // skip of two or more layers
  kZero,        // zero (seed 002)
  kReinit,      // re-initialise (seed 002)
  kOther,       // head masks or mixed operations
};

// Name used in the HTML and JSON: "baseline", "skip", "block_drop", "zero",
// "reinit", "other".
const char* EvalKindName(EvalKind kind);

// One intervention set on one evaluation dataset, pooled over all of the
// dataset's shards.
struct EvalRow {
  // Condition label: the dataset name, plus " [k=v,...]" for swept job
  // parameters and " + base(...)" for EvalJob.base_interventions, so only
  // comparable rows share a label.
  std::string dataset;
  EvalKind kind = EvalKind::kOther;
  // Layers touched by the intervention set, ascending (empty for the baseline).
  std::vector<int> layers;
  // Canonical description, e.g. "skip 3", "skip 10,11,12", "reinit 0 (seed 7)",
  // "none".
  std::string intervention;
  double nll_sum = 0;
  double tokens = 0;
  double ppl = 0;  // exp(nll_sum / tokens)
  // 100·(ppl / ppl_baseline − 1) against the same dataset's baseline, when it
  // exists.
  std::optional<double> ppl_delta_pct;
  int shards = 0;
};

// Probe metrics of one (layer, category), weighted over shards (and probe
// datasets).
struct ProbeCell {
  int layer = 0;
  std::string category;  // "all" aggregates every record
  std::optional<double> bi;
  std::optional<double> resid_norm;
  std::optional<double> lens_rank;
  std::optional<double> lens_top1;
};

struct DecisionLayer {
  std::string category;
  double mean_layer = 0;
  double prompts = 0;
};

enum class Verdict { kUnscored, kNeverTouch, kDrop, kKeep };
const char* VerdictName(
    Verdict verdict);  // "unscored", "never touch", "drop", "keep"

// The complete per-layer profile (seed 000's "All layers — complete profile").
struct LayerProfile {
  int layer = 0;
  std::string type;          // from ReportOptions::layer_types; empty = unknown
  std::optional<double> bi;  // category "all"
  std::optional<double> bi_var;      // cross-category variance of BI
  std::optional<double> resid_norm;  // category "all"
  std::optional<double> lens_rank;   // category "all"
  // Single-layer skip on the ablation dataset(s): perplexity and delta in
  // percent.
  std::optional<double> ablation_ppl;
  std::optional<double> ablation_delta_pct;
  std::optional<double> score;
  bool critical = false;
  Verdict verdict = Verdict::kUnscored;
  // Smallest k whose drop plan contains this layer; 0 = none.
  int first_drop_k = 0;
};

struct DropPlan {
  int k = 0;
  // False when fewer than k scored non-critical layers exist; `layers` is then
  // empty.
  bool feasible = false;
  std::vector<int> layers;  // ascending
  // Measured by a block-drop (or, for k = 1, single-skip) task on exactly these
  // layers.
  std::optional<double> measured_ppl;
  std::optional<double> measured_delta_pct;
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
};

// Builds the report model from every TaskRecord of one sweep (any order, any
// state; only DONE eval and probe tasks contribute numbers). INVALID_ARGUMENT,
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

#endif  // SWEEPD_COORDINATOR_REPORT_H_
