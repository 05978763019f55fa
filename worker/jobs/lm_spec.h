// The parts of an eval / probe TaskSpec (protobuf JSON mapping, proto field
// names) that the language-model executor needs, parsed without protobuf:
// model reference, dataset shard, windowing and the intervention list, plus the
// conversion of spec interventions (layer selectors such as "3", "0,5",
// "10-22", "0:60:2", "all") into engine interventions. See docs/JOBS.md.
//
// Plain C++ (no libtorch, no protobuf). Value types and pure functions;
// thread-safe.
#ifndef SWEEPD_WORKER_JOBS_LM_SPEC_H_
#define SWEEPD_WORKER_JOBS_LM_SPEC_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "worker/engine/engine.h"
#include "worker/jobs/dataset.h"
#include "worker/jobs/windowing.h"

namespace sweepd {

inline constexpr char kEvalKind[] = "eval";
inline constexpr char kProbeKind[] = "probe";

struct LmModelRef {
  std::string path;         // model directory ("" = the worker's model)
  std::string fingerprint;  // "" = unknown
  std::string dtype;        // "" = the worker's default
  std::string tokenizer;    // "" = <path>/tokenizer.json
};

// One spec intervention (a JSON object with one of skip / zero / reinit /
// mask_heads) and the field path naming it in errors.
struct SpecIntervention {
  nlohmann::json op;
  std::string field;
};

struct LmTaskSpec {
  std::string kind;  // kEvalKind or kProbeKind
  LmModelRef model;
  std::string dataset_name;
  DatasetShardRef data;
  Windowing windowing;
  // eval.base_interventions first, then the task's own interventions.
  std::vector<SpecIntervention> interventions;
};

// Parses `spec` for a task of `kind` ("eval" or "probe"). INVALID_ARGUMENT
// naming the field for a malformed spec (missing data.dataset.path, bad
// windowing, an intervention that is not an object, ...). Layer selectors are
// checked later by ToEngineInterventions, which knows the model.
absl::StatusOr<LmTaskSpec> ParseLmTaskSpec(const std::string& kind,
                                           const nlohmann::json& spec);

// Parses a layer selector (the same grammar as the planner's
// ParseLayerSelector, which lives on the protobuf side) for a model of
// `num_layers` layers: "all", "3", "0,5,11", "10-22" (inclusive), "0:60:2"
// (start:stop:step, stop exclusive) or a comma-separated mix. Sorted,
// de-duplicated. INVALID_ARGUMENT naming `field` for syntax errors, empty
// selections and layers out of range.
absl::StatusOr<std::vector<int>> SelectLayers(const std::string& selector,
                                              int num_layers,
                                              const std::string& field);

// Converts spec interventions into engine interventions for `config`: one
// engine intervention per selected layer (skip / zero / reinit), one per
// mask_heads entry (heads checked against num_attention_heads).
absl::StatusOr<std::vector<engine::Intervention>> ToEngineInterventions(
    const std::vector<SpecIntervention>& interventions,
    const engine::ModelConfig& config);

}  // namespace sweepd

#endif  // SWEEPD_WORKER_JOBS_LM_SPEC_H_
