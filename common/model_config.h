// The one Hugging Face config.json parser, in two layers:
//
// HfConfig reads a config.json document and picks its text decoder's section:
// "text_config" of a multimodal config (Gemma4Config) when present, else the
// top level. Its readers are lenient views for callers that need only a few
// facts: RequiredCount (the planner's layer and head counts, no defaults) and
// LayerTypes (the report's layer kinds, as written). Errors are
// INVALID_ARGUMENT naming the file (`source`) and the field.
//
// ModelConfig is the Gemma 4 text decoder's shape and hyper-parameters as the
// engine runs it, built from an HfConfig (Gemma4ForCausalLM, or the multimodal
// Gemma4Config with "text_config"). Both config forms are accepted: top-level
// global_head_dim / num_global_key_value_heads, or a per_layer_config map keyed
// by layer index or by layer type. Missing fields take transformers'
// Gemma4TextConfig defaults. Features the engine does not implement (MoE,
// per-layer inputs, KV sharing, untied embeddings, attention bias,
// bidirectional attention, unknown activations or RoPE types) are refused with
// INVALID_ARGUMENT naming the field.
//
// Plain C++ (no libtorch, no protobuf). Value types: HfConfig shares its parsed
// document between copies (immutable), ModelConfig owns its fields; both are
// thread-compatible (const methods may run concurrently).
#ifndef SWEEPD_COMMON_MODEL_CONFIG_H_
#define SWEEPD_COMMON_MODEL_CONFIG_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json_fwd.hpp"

namespace sweepd {

// A parsed config.json and its text decoder's section.
class HfConfig {
 public:
  // Parses config.json text; `source` names the file in errors.
  // INVALID_ARGUMENT "<source>: not a JSON object" for malformed JSON or a
  // non-object, and "<source>: field 'text_config' must be an object".
  static absl::StatusOr<HfConfig> Parse(absl::string_view json_text,
                                        const std::string& source);
  // Reads and parses `path`; NOT_FOUND "cannot open model config <path>".
  static absl::StatusOr<HfConfig> ReadFile(const std::string& path);

  const std::string& source() const { return source_; }
  // True when the decoder's fields sit under "text_config".
  bool nested() const { return nested_; }
  // The whole document, and the decoder's section (the document itself, or
  // its "text_config").
  const nlohmann::json& root() const;
  const nlohmann::json& text() const;

  // A required positive integer field of the decoder's section (no default),
  // e.g. "num_hidden_layers". INVALID_ARGUMENT
  // `<source>[: text_config]: missing "<key>"`, or
  // `... "<key>" must be a positive integer, got <value>` (above 1,000,000
  // counts as not plausible).
  absl::StatusOr<int> RequiredCount(absl::string_view key) const;

  // The decoder's "layer_types" list as written (any strings, e.g.
  // "sliding_attention"), without the engine's defaulting. INVALID_ARGUMENT
  // `<source>: no "layer_types" list` or `<source>: layer_types[<i>] is not a
  // string`.
  absl::StatusOr<std::vector<std::string>> LayerTypes() const;

 private:
  HfConfig() = default;
  std::shared_ptr<const nlohmann::json> root_;
  bool nested_ = false;
  std::string source_;
};

// Largest sizes ModelConfig accepts (INVALID_ARGUMENT "... at most N ..."
// beyond), checked before anything is allocated from the config. Far above any
// Gemma 4 (31B: 60 layers, hidden 5376, vocab 262144).
inline constexpr int64_t kMaxConfigLayers = 4096;
inline constexpr int64_t kMaxConfigHiddenSize = 1 << 17;
inline constexpr int64_t kMaxConfigIntermediateSize = 1 << 20;
inline constexpr int64_t kMaxConfigVocabSize = 1 << 23;
inline constexpr int64_t kMaxConfigHeads = 4096;
inline constexpr int64_t kMaxConfigHeadDim = 4096;
inline constexpr int64_t kMaxConfigPositions = int64_t{1} << 24;

enum class LayerKind { kSliding, kFull };
enum class RopeType { kDefault, kProportional };

const char* LayerKindName(
    LayerKind kind);  // "sliding_attention" / "full_attention"

struct LayerConfig {
  LayerKind kind = LayerKind::kSliding;
  int head_dim = 0;
  int num_kv_heads = 0;
  // K = V: the layer has no v_proj; V = v_norm(raw k_proj output).
  bool k_eq_v = false;
  RopeType rope_type = RopeType::kDefault;
  double rope_theta = 10000.0;
  // Proportional RoPE: fraction of head_dim/2 frequency pairs that rotate (the
  // rest are 0).
  double partial_rotary_factor = 1.0;
  double rope_factor = 1.0;
  // Keys visible to query q: 0 <= q - k < sliding_window; 0 = unlimited (full
  // layers).
  int sliding_window = 0;
};

struct ModelConfig {
  int hidden_size = 0;
  int num_hidden_layers = 0;
  int intermediate_size = 0;
  int num_attention_heads = 0;
  int vocab_size = 0;
  int sliding_window = 0;
  int max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  std::optional<double> final_logit_softcapping;
  bool tie_word_embeddings = true;
  std::string hidden_activation = "gelu_pytorch_tanh";
  int bos_token_id = 2;
  std::vector<int> eos_token_ids = {1};
  int pad_token_id = 0;
  double initializer_range = 0.02;
  std::vector<LayerConfig> layers;

  // The engine's reading of a parsed config (errors name config.source()).
  static absl::StatusOr<ModelConfig> FromHfConfig(const HfConfig& config);
  // HfConfig::Parse + FromHfConfig; `source` names the file in errors.
  static absl::StatusOr<ModelConfig> FromJson(
      absl::string_view json_text, const std::string& source = "config.json");
  // HfConfig::ReadFile + FromHfConfig.
  static absl::StatusOr<ModelConfig> FromFile(const std::string& path);

  // A config.json (Gemma4ForCausalLM, per_layer_config form, explicit per
  // layer) that FromJson parses back to an equal config.
  std::string ToJson() const;

  int64_t NumParameters() const;
};

}  // namespace sweepd

#endif  // SWEEPD_COMMON_MODEL_CONFIG_H_
