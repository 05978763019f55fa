// ModelConfig: the Gemma 4 text decoder's shape and hyper-parameters, parsed
// from a Hugging Face config.json (Gemma4ForCausalLM, or the multimodal
// Gemma4Config with "text_config"). Both config forms are accepted: top-level
// global_head_dim / num_global_key_value_heads, or a per_layer_config map keyed
// by layer index or by layer type. Missing fields take transformers'
// Gemma4TextConfig defaults. Features the engine does not implement (MoE,
// per-layer inputs, KV sharing, untied embeddings, attention bias,
// bidirectional attention, unknown activations or RoPE types) are refused with
// INVALID_ARGUMENT naming the field. Plain C++ (no libtorch); value type,
// thread-compatible.
#ifndef SWEEPD_WORKER_ENGINE_CONFIG_H_
#define SWEEPD_WORKER_ENGINE_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sweepd::engine {

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

  // Parses config.json text; `source` names the file in errors.
  static absl::StatusOr<ModelConfig> FromJson(
      absl::string_view json_text, const std::string& source = "config.json");
  static absl::StatusOr<ModelConfig> FromFile(const std::string& path);

  // A config.json (Gemma4ForCausalLM, per_layer_config form, explicit per
  // layer) that FromJson parses back to an equal config.
  std::string ToJson() const;

  int64_t NumParameters() const;
};

}  // namespace sweepd::engine

#endif  // SWEEPD_WORKER_ENGINE_CONFIG_H_
