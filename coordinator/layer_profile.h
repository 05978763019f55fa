// Layer profile: the per-layer evidence of a layer-study sweep. BuildLayerStudy
// turns the TaskRecords of a sweep (probe and eval tasks, seeds 000 and 002)
// into evaluation conditions pooled over shards, probe cells, and one
// LayerProfile per decoder layer (BI, BI variance, single-layer ablation
// delta, criticality and the combined safety score). docs/REPORTS.md documents
// every derived number; the metric rows read are those of docs/METRICS.md.
//
// Used by the report (client/report.h, which adds the drop plans and a
// title) and by the planner's derived drop_plan stages
// (coordinator/drop_plan.h) alike, so neither depends on the other.
//
// Plain value types and stateless free functions: thread-safe, no I/O. The
// caller owns the records and the returned study.
#ifndef SWEEPD_COORDINATOR_LAYER_PROFILE_H_
#define SWEEPD_COORDINATOR_LAYER_PROFILE_H_

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

struct LayerProfileOptions {
  SafetyWeights weights;
  // Layers whose single-layer ablation delta (percent) exceeds this are "never
  // touch": they get a score but never enter a drop plan.
  double critical_delta_pct = 1000.0;
  // Evaluation dataset whose deltas feed the layer profile and the score (a
  // condition label as in EvalRow::dataset). Empty = every evaluation dataset
  // pooled.
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
  std::string type;                  // from layer_types; empty = unknown
  std::optional<double> bi;          // category "all"
  std::optional<double> bi_var;      // cross-category variance of BI
  std::optional<double> resid_norm;  // category "all"
  std::optional<double> lens_rank;   // category "all"
  // Single-layer skip on the ablation dataset(s): perplexity and delta in
  // percent.
  std::optional<double> ablation_ppl;
  std::optional<double> ablation_delta_pct;
  std::optional<double> score;
  bool critical = false;
  // Set from the drop plans (coordinator/drop_plan.h, MarkVerdicts); kUnscored
  // and 0 in a fresh study.
  Verdict verdict = Verdict::kUnscored;
  // Smallest k whose drop plan contains this layer; 0 = none.
  int first_drop_k = 0;
};

// Everything BuildLayerStudy derives from one sweep's records.
struct LayerStudy {
  std::string sweep_id;
  int num_layers = 0;
  // Task states of the sweep (all records, every job kind).
  int64_t tasks_total = 0;
  int64_t tasks_done = 0;
  int64_t tasks_failed = 0;
  int64_t tasks_unfinished = 0;  // pending or leased
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
  // The evaluation datasets whose deltas feed the profile and the score
  // (LayerProfileOptions::ablation_dataset, or every dataset with a baseline),
  // sorted.
  std::vector<std::string> ablation_datasets;
  // Human-readable remarks: ignored or incomplete results, dropped score
  // components.
  std::vector<std::string> notes;
};

// Builds the study from every TaskRecord of one sweep (any order, any state;
// only DONE eval and probe tasks contribute numbers). INVALID_ARGUMENT, naming
// the task key and the metric or field, for malformed results (a non-integer
// layer label, a probe mean without its tokens/prompts weight, a bad layer
// selector) and for invalid options (negative or all-zero weights,
// layer_types longer than the model). Incomplete conditions (shards not all
// done) are left out and listed in `notes`.
absl::StatusOr<LayerStudy> BuildLayerStudy(
    const std::vector<sweepd::v1::TaskRecord>& tasks,
    const LayerProfileOptions& options);

// Perplexity and delta of one intervention (an EvalRow::intervention such as
// "skip 3,4"), pooled over the study's ablation datasets that measured both
// it and their baseline: exp(Σ nll / Σ tokens), and its delta in percent
// against the pooled baselines. nullopt when no ablation dataset measured it.
struct PooledAblation {
  double ppl = 0;
  double delta_pct = 0;
};
std::optional<PooledAblation> PoolAblation(const LayerStudy& study,
                                           const std::string& intervention);

}  // namespace sweepd

#endif  // SWEEPD_COORDINATOR_LAYER_PROFILE_H_
