// The typed task path: what one leased task is, as executors see it. The agent
// (worker/agent/conversion.h) converts each protobuf TaskAssignment into a
// TaskInput once, at the edge; executors receive these plain structs and never
// parse spec text. One job struct per job family; the planner has already
// resolved layer selectors to explicit lists, param axes into the job's own
// fields and seeds into the interventions that use them (docs/JOBS.md), so
// what an executor reads here is exactly what it computes.
//
// Plain C++ (no libtorch, no protobuf): value types, thread-compatible.
#ifndef SWEEPD_WORKER_JOBS_TASK_H_
#define SWEEPD_WORKER_JOBS_TASK_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "worker/engine/engine.h"
#include "worker/jobs/dataset.h"
#include "worker/jobs/windowing.h"
#include "worker/verify/verifier_spec.h"

namespace sweepd {

inline constexpr char kEvalKind[] = "eval";
inline constexpr char kProbeKind[] = "probe";
inline constexpr char kSyntheticKind[] = "synthetic";
inline constexpr char kGenerateKind[] = "generate";
inline constexpr char kCanaryKind[] = "canary";
inline constexpr char kHeadImportanceKind[] = "head_importance";
inline constexpr char kMaterializeKind[] = "materialize";
inline constexpr char kCaptureKind[] = "capture";
inline constexpr char kHealKind[] = "heal";
inline constexpr char kRetrainKind[] = "retrain";

// The model a task runs on.
struct ModelRefSpec {
  std::string path;         // model directory ("" = the worker's model)
  std::string fingerprint;  // "" = unknown
  std::string dtype;        // "float32" / "bfloat16"; "" = the worker's
  std::string tokenizer;    // "" = <path>/tokenizer.json
};

// An intervention input kept in the artifact store (spec ArtifactRef of a
// steer's vector_artifact or a replace_layer's weights): the executor
// resolves it through its ArtifactStore before the engine sees the
// intervention (ResolveInterventionArtifacts, interventions.h).
struct InterventionArtifactRef {
  size_t intervention = 0;  // index into the job's interventions
  std::string path;         // relative to the store root
  std::string sha256;       // "" = the one in the path
  std::string tensor;       // steer: the safetensors tensor ("" = the only one)
};

// eval and probe (docs/JOBS.md): one dataset shard, windowed, under
// interventions.
struct LmJobSpec {
  ModelRefSpec model;
  std::string dataset_name;
  DatasetShardRef data;
  Windowing windowing;
  // eval.base_interventions first, then the task's own, one engine
  // intervention per layer. Layers and heads are checked against the model by
  // the executor (CheckInterventions in worker/jobs/interventions.h).
  std::vector<engine::Intervention> interventions;
  // The spec field each intervention came from
  // ("interventions.interventions[1].skip.layers"), for errors; same length.
  std::vector<std::string> intervention_fields;
  // Interventions whose vector or weights are artifacts.
  std::vector<InterventionArtifactRef> intervention_artifacts;
};

// One prompt of a generate or canary task.
struct PromptSpec {
  std::string id;
  std::string text;
  std::string reference;  // "" = none
  std::string category;
  // canary: substrings the greedy continuation must all contain.
  std::vector<std::string> expect;
};

// generate and canary (docs/GENERATION.md). A canary task is a greedy
// generate task whose prompts carry `expect`.
struct GenerateJobSpec {
  ModelRefSpec model;
  // Inline prompts; with has_data, the shard's records come after them.
  std::vector<PromptSpec> prompts;
  bool has_data = false;
  std::string dataset_name;
  DatasetShardRef data;
  int samples = 1;
  int max_new_tokens = 128;
  double temperature = 1.0;  // 0 = greedy
  int top_k = 0;
  double top_p = 1.0;
  double min_p = 0.0;
  std::vector<std::pair<int32_t, float>> logit_bias;
  std::vector<int32_t> banned_tokens;
  std::vector<std::string> ban_strings;  // token families
  std::vector<std::string> stop;         // stop strings
  bool bos = true;
  bool chat = false;
  std::string system;
  verify::VerifierSpec verifier;  // kind "" = none
  int max_batch = 64;
  bool token_logprobs = false;
  std::vector<engine::Intervention> interventions;
  std::vector<std::string> intervention_fields;
  std::vector<InterventionArtifactRef> intervention_artifacts;
};

// head_importance (docs/CALIBRATION.md): the leave-one-out NLL delta of every
// attention head of `layers` on one dataset shard.
struct HeadImportanceJobSpec {
  ModelRefSpec model;
  std::string dataset_name;
  DatasetShardRef data;
  Windowing windowing;
  std::vector<int> layers;  // explicit, ascending
  // Heads masked per forward (one batch row per head); 0 = all of a layer's.
  int heads_per_forward = 0;
};

// The synthetic test workload (docs/SYNTHETIC.md).
struct SyntheticJobSpec {
  int64_t min_ms = 0;
  int64_t max_ms = 0;
  double failure_rate = 0.0;
  double permanent_failure_rate = 0.0;
};

// materialize (docs/CALIBRATION.md, "Materialize"): writes the task's model
// edited as the plan says into out_dir, in Hugging Face layout.
struct MaterializeJobSpec {
  ModelRefSpec model;  // the base checkpoint
  // Relative to the worker's first --model-root (or absolute inside it).
  std::string out_dir;
  std::string mode;  // "mask" ("" = "mask")
  struct Pruned {
    int layer = 0;
    std::vector<int> heads;
  };
  // A heal artifact (the heal job's output) for one layer's o_proj.
  struct Heal {
    int layer = 0;
    std::string path;    // in the artifact store
    std::string sha256;  // verified on read
    std::string tensor;  // "" = "self_attn.o_proj.weight"
  };
  std::vector<Pruned> pruned;
  std::vector<Heal> heals;
  // The layers whose edits are written (explicit, sorted); has_layers false =
  // every layer.
  bool has_layers = false;
  std::vector<int> layers;
};

// Which positions of each document a capture keeps (CapturePositions;
// docs/CALIBRATION.md, "Capture").
struct CapturePositionsSpec {
  enum class Mode {
    kAll,     // every token of the document
    kLast,    // its last token
    kSample,  // k tokens at or beyond min_position, per-document keyed RNG
  };
  Mode mode = Mode::kAll;
  int k = 0;
  int min_position = 0;
  uint64_t seed = 0;
};

// capture (docs/CALIBRATION.md, "Capture"): activations of one dataset shard
// at capture points, as raw shards and/or Grams.
struct CaptureJobSpec {
  ModelRefSpec model;
  std::string dataset_name;
  DatasetShardRef data;
  Windowing windowing;
  std::vector<std::string> points;
  bool raw = true;
  bool gram = false;
  // Raw shards: "bfloat16" or "float32".
  std::string dtype = "bfloat16";
  CapturePositionsSpec positions;
  // Gram mode: per point, the target Y of XᵀY ("" = none); empty = none.
  std::vector<std::string> gram_targets;
  std::vector<engine::Intervention> interventions;
  std::vector<std::string> intervention_fields;
  // Steer vectors / replace_layer weights held in the artifact store.
  std::vector<InterventionArtifactRef> intervention_artifacts;
};

// A reference to an artifact-store object (spec ArtifactRef).
struct ArtifactRefSpec {
  std::string path;
  std::string sha256;
  std::string tensor;
};

// heal (docs/CALIBRATION.md, "Heal"): the ridge refit of layer's o_proj for
// the heads not removed, from capture Grams of attn_heads[layer].
struct HealJobSpec {
  ModelRefSpec model;
  int layer = 0;
  std::vector<int> heads_removed;
  double ridge_rel = 0.01;
  std::vector<ArtifactRefSpec> grams;          // summed in this order
  std::vector<ArtifactRefSpec> heldout_grams;  // residual only
};

// retrain (docs/CALIBRATION.md, "Retrain"): re-initialise `layer` from
// init_seed and train it (AdamW, the rest of the model frozen) to reproduce
// the original layer's output on windows of one dataset shard. The defaults
// here are the ones a 0 in the spec stands for.
struct RetrainJobSpec {
  ModelRefSpec model;
  std::string dataset_name;
  DatasetShardRef data;
  Windowing windowing;
  int layer = 0;
  uint64_t init_seed = 0;
  int steps = 0;
  double lr = 1e-4;
  double weight_decay = 0.0;  // applied to the 2-D weights only
  double beta1 = 0.9;
  double beta2 = 0.999;
  int batch_windows = 1;      // windows per optimiser step
  int checkpoint_every = 50;  // steps between checkpoints
  uint64_t seed = 0;          // the window order
};

// One leased task.
struct TaskInput {
  std::string task_key;
  std::string sweep_id;
  std::string group_key;
  // Job kind in lower case without prefix: "synthetic", "eval", "probe", ...;
  // says which member of `job` is set.
  std::string kind;
  // 1 for the first attempt of the task.
  int attempt = 1;
  // Position of the task in its sweep's expansion.
  int64_t index = 0;
  // The stage that planned the task ("" = the first).
  std::string stage;
  // The grid's seed for this task (already folded into the interventions that
  // use it).
  uint64_t seed = 0;
  // Swept job parameters of the grid point, as text ("context_length" ->
  // "256"); already applied to the job struct, kept for labels.
  std::map<std::string, std::string> params;
  std::variant<std::monostate, LmJobSpec, SyntheticJobSpec, GenerateJobSpec,
               MaterializeJobSpec, CaptureJobSpec, HealJobSpec,
               HeadImportanceJobSpec, RetrainJobSpec>
      job;
};

}  // namespace sweepd

#endif  // SWEEPD_WORKER_JOBS_TASK_H_
