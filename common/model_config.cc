#include "common/model_config.h"

#include <algorithm>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace sweepd {

using json = nlohmann::json;

const char* LayerKindName(LayerKind kind) {
  return kind == LayerKind::kFull ? "full_attention" : "sliding_attention";
}

namespace {

// Reads typed optional fields from one JSON object, naming `prefix + key` in
// errors.
class Fields {
 public:
  Fields(const json& obj, std::string prefix, std::string source)
      : obj_(obj), prefix_(std::move(prefix)), source_(std::move(source)) {}

  bool Has(const char* key) const {
    return obj_.contains(key) && !obj_.at(key).is_null();
  }
  bool Present(const char* key) const { return obj_.contains(key); }

  absl::Status Bad(const char* key, absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(source_, ": field '", prefix_, key, "' ", what));
  }

  absl::StatusOr<int> Int(const char* key, int def) const {
    if (!Has(key)) return def;
    const json& v = obj_.at(key);
    if (!v.is_number_integer()) return Bad(key, "must be an integer");
    // get<int64_t> of a large unsigned wraps negative, which the range
    // check below refuses as well.
    const int64_t value = v.is_number_unsigned()
                              ? static_cast<int64_t>(std::min<uint64_t>(
                                    v.get<uint64_t>(), uint64_t{1} << 62))
                              : v.get<int64_t>();
    if (value < std::numeric_limits<int>::min() ||
        value > std::numeric_limits<int>::max()) {
      return Bad(key, absl::StrCat("is ", value, ", outside the int range"));
    }
    return static_cast<int>(value);
  }
  absl::StatusOr<double> Double(const char* key, double def) const {
    if (!Has(key)) return def;
    const json& v = obj_.at(key);
    if (!v.is_number()) return Bad(key, "must be a number");
    return v.get<double>();
  }
  absl::StatusOr<bool> Bool(const char* key, bool def) const {
    if (!Has(key)) return def;
    const json& v = obj_.at(key);
    if (!v.is_boolean()) return Bad(key, "must be true or false");
    return v.get<bool>();
  }
  absl::StatusOr<std::string> String(const char* key,
                                     const std::string& def) const {
    if (!Has(key)) return def;
    const json& v = obj_.at(key);
    if (!v.is_string()) return Bad(key, "must be a string");
    return v.get<std::string>();
  }

 private:
  const json& obj_;
  std::string prefix_;
  std::string source_;
};

struct RopeParams {
  RopeType type = RopeType::kDefault;
  double theta = 10000.0;
  double partial_rotary_factor = 1.0;
  double factor = 1.0;
};

absl::StatusOr<RopeParams> ParseRope(const json& obj, const std::string& field,
                                     const std::string& source,
                                     RopeParams defaults) {
  if (!obj.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": field '", field, "' must be an object"));
  }
  Fields f(obj, field + ".", source);
  RopeParams p = defaults;
  ASSIGN_OR_RETURN(
      std::string type,
      f.String("rope_type",
               p.type == RopeType::kProportional ? "proportional" : "default"));
  if (type == "default") {
    p.type = RopeType::kDefault;
  } else if (type == "proportional") {
    p.type = RopeType::kProportional;
  } else {
    return f.Bad(
        "rope_type",
        absl::StrCat("'", type,
                     "' is not supported (supported: default, proportional)"));
  }
  ASSIGN_OR_RETURN(p.theta, f.Double("rope_theta", p.theta));
  ASSIGN_OR_RETURN(p.partial_rotary_factor,
                   f.Double("partial_rotary_factor", p.partial_rotary_factor));
  ASSIGN_OR_RETURN(p.factor, f.Double("factor", p.factor));
  if (p.theta <= 0) return f.Bad("rope_theta", "must be positive");
  if (p.partial_rotary_factor < 0 || p.partial_rotary_factor > 1) {
    return f.Bad("partial_rotary_factor", "must be in [0, 1]");
  }
  if (p.factor <= 0) return f.Bad("factor", "must be positive");
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    static const std::set<std::string> kKnown = {
        "rope_type", "rope_theta", "partial_rotary_factor", "factor"};
    if (!kKnown.count(it.key())) {
      return f.Bad(it.key().c_str(), "is not supported by this engine");
    }
  }
  return p;
}

absl::Status Refuse(const std::string& source, const std::string& field,
                    absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat(source, ": field '", field, "' ", why,
                   " (not supported by this engine)"));
}

}  // namespace

absl::StatusOr<HfConfig> HfConfig::Parse(absl::string_view json_text,
                                         const std::string& source) {
  auto root = std::make_shared<json>(json::parse(json_text.begin(),
                                                 json_text.end(), nullptr,
                                                 /*allow_exceptions=*/false));
  if (root->is_discarded() || !root->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": not a JSON object"));
  }
  HfConfig c;
  if (root->contains("text_config")) {
    if (!(*root)["text_config"].is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": field 'text_config' must be an object"));
    }
    c.nested_ = true;
  }
  c.root_ = std::move(root);
  c.source_ = source;
  return c;
}

absl::StatusOr<HfConfig> HfConfig::ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return absl::NotFoundError(absl::StrCat("cannot open model config ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return Parse(ss.str(), path);
}

const json& HfConfig::root() const { return *root_; }

const json& HfConfig::text() const {
  return nested_ ? root_->at("text_config") : *root_;
}

absl::StatusOr<int> HfConfig::RequiredCount(absl::string_view key) const {
  const std::string where =
      nested_ ? absl::StrCat(source_, ": text_config") : source_;
  const json& t = text();
  auto it = t.find(std::string(key));
  if (it == t.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": missing \"", key, "\""));
  }
  if (!it->is_number_integer() || it->get<int64_t>() <= 0 ||
      it->get<int64_t>() > 1'000'000) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": \"", key, "\" must be a positive integer, got ", it->dump()));
  }
  return static_cast<int>(it->get<int64_t>());
}

absl::StatusOr<std::vector<std::string>> HfConfig::LayerTypes() const {
  const json& t = text();
  if (!t.contains("layer_types") || !t["layer_types"].is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_, ": no \"layer_types\" list"));
  }
  std::vector<std::string> types;
  for (const json& entry : t["layer_types"]) {
    if (!entry.is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(
          source_, ": layer_types[", types.size(), "] is not a string"));
    }
    types.push_back(entry.get<std::string>());
  }
  return types;
}

absl::StatusOr<ModelConfig> ModelConfig::FromJson(absl::string_view json_text,
                                                  const std::string& source) {
  ASSIGN_OR_RETURN(HfConfig config, HfConfig::Parse(json_text, source));
  return FromHfConfig(config);
}

absl::StatusOr<ModelConfig> ModelConfig::FromHfConfig(const HfConfig& config) {
  const std::string& source = config.source();
  const json& root = config.root();
  const json* text = &config.text();
  const std::string prefix = config.nested() ? "text_config." : "";
  const json& t = *text;
  Fields f(t, prefix, source);
  ModelConfig c;

  // Refusals first: features that change the computation and are not
  // implemented.
  ASSIGN_OR_RETURN(bool moe, f.Bool("enable_moe_block", false));
  if (moe)
    return Refuse(source, prefix + "enable_moe_block", "is true: MoE blocks");
  if (!f.Present("hidden_size_per_layer_input")) {
    return Refuse(source, prefix + "hidden_size_per_layer_input",
                  "is absent, which transformers reads as 256 (per-layer "
                  "inputs); set 0 or null");
  }
  ASSIGN_OR_RETURN(int ple, f.Int("hidden_size_per_layer_input", 0));
  if (ple > 0) {
    return Refuse(source, prefix + "hidden_size_per_layer_input",
                  absl::StrCat("is ", ple, ": per-layer inputs"));
  }
  ASSIGN_OR_RETURN(int kv_shared, f.Int("num_kv_shared_layers", 0));
  if (kv_shared > 0) {
    return Refuse(source, prefix + "num_kv_shared_layers",
                  absl::StrCat("is ", kv_shared, ": KV sharing"));
  }
  ASSIGN_OR_RETURN(bool double_wide, f.Bool("use_double_wide_mlp", false));
  if (double_wide)
    return Refuse(source, prefix + "use_double_wide_mlp", "is true");
  ASSIGN_OR_RETURN(bool attention_bias, f.Bool("attention_bias", false));
  if (attention_bias)
    return Refuse(source, prefix + "attention_bias", "is true");
  if (f.Has("use_bidirectional_attention")) {
    return Refuse(source, prefix + "use_bidirectional_attention", "is set");
  }
  // tie_word_embeddings may sit at the top level of a multimodal config.
  bool tie = true;
  if (t.contains("tie_word_embeddings")) {
    ASSIGN_OR_RETURN(tie, f.Bool("tie_word_embeddings", true));
  } else if (text != &root) {
    ASSIGN_OR_RETURN(
        tie, Fields(root, "", source).Bool("tie_word_embeddings", true));
  }
  if (!tie)
    return Refuse(source, prefix + "tie_word_embeddings",
                  "is false: untied LM head");
  c.tie_word_embeddings = true;
  ASSIGN_OR_RETURN(c.hidden_activation,
                   f.String("hidden_activation", "gelu_pytorch_tanh"));
  if (c.hidden_activation != "gelu_pytorch_tanh" &&
      c.hidden_activation != "gelu") {
    return Refuse(source, prefix + "hidden_activation",
                  absl::StrCat("is '", c.hidden_activation,
                               "' (supported: gelu_pytorch_tanh, gelu)"));
  }

  ASSIGN_OR_RETURN(c.vocab_size, f.Int("vocab_size", 262144));
  ASSIGN_OR_RETURN(c.hidden_size, f.Int("hidden_size", 2304));
  ASSIGN_OR_RETURN(c.intermediate_size, f.Int("intermediate_size", 9216));
  ASSIGN_OR_RETURN(c.num_hidden_layers, f.Int("num_hidden_layers", 30));
  ASSIGN_OR_RETURN(c.num_attention_heads, f.Int("num_attention_heads", 8));
  ASSIGN_OR_RETURN(int kv_heads, f.Int("num_key_value_heads", 4));
  ASSIGN_OR_RETURN(int head_dim, f.Int("head_dim", 256));
  ASSIGN_OR_RETURN(c.max_position_embeddings,
                   f.Int("max_position_embeddings", 131072));
  ASSIGN_OR_RETURN(c.initializer_range, f.Double("initializer_range", 0.02));
  ASSIGN_OR_RETURN(c.rms_norm_eps, f.Double("rms_norm_eps", 1e-6));
  ASSIGN_OR_RETURN(c.sliding_window, f.Int("sliding_window", 512));
  ASSIGN_OR_RETURN(c.bos_token_id, f.Int("bos_token_id", 2));
  ASSIGN_OR_RETURN(c.pad_token_id, f.Int("pad_token_id", 0));
  ASSIGN_OR_RETURN(bool k_eq_v, f.Bool("attention_k_eq_v", false));
  if (f.Has("final_logit_softcapping")) {
    ASSIGN_OR_RETURN(double cap, f.Double("final_logit_softcapping", 0));
    if (cap <= 0)
      return f.Bad("final_logit_softcapping", "must be positive or null");
    c.final_logit_softcapping = cap;
  }
  if (f.Has("eos_token_id")) {
    const json& e = t["eos_token_id"];
    c.eos_token_ids.clear();
    if (e.is_number_integer()) {
      c.eos_token_ids.push_back(e.get<int>());
    } else if (e.is_array()) {
      for (const json& x : e) {
        if (!x.is_number_integer())
          return f.Bad("eos_token_id", "must hold integers");
        c.eos_token_ids.push_back(x.get<int>());
      }
    } else {
      return f.Bad("eos_token_id", "must be an integer or a list of integers");
    }
  }
  for (auto [name, value] :
       {std::pair<const char*, int>{"vocab_size", c.vocab_size},
        {"hidden_size", c.hidden_size},
        {"intermediate_size", c.intermediate_size},
        {"num_hidden_layers", c.num_hidden_layers},
        {"num_attention_heads", c.num_attention_heads},
        {"num_key_value_heads", kv_heads},
        {"head_dim", head_dim},
        {"sliding_window", c.sliding_window}}) {
    if (value <= 0)
      return f.Bad(name, absl::StrCat("must be positive, got ", value));
  }
  if (c.rms_norm_eps <= 0) return f.Bad("rms_norm_eps", "must be positive");
  // Plausibility limits, checked before anything is sized from the config
  // (defect 8 of issue 13: a billion layers allocated gigabytes first).
  ASSIGN_OR_RETURN(int global_head_dim_checked, f.Int("global_head_dim", 512));
  for (auto [name, value, limit] :
       {std::tuple<const char*, int64_t, int64_t>{
            "num_hidden_layers", c.num_hidden_layers, kMaxConfigLayers},
        {"hidden_size", c.hidden_size, kMaxConfigHiddenSize},
        {"intermediate_size", c.intermediate_size, kMaxConfigIntermediateSize},
        {"vocab_size", c.vocab_size, kMaxConfigVocabSize},
        {"num_attention_heads", c.num_attention_heads, kMaxConfigHeads},
        {"num_key_value_heads", kv_heads, kMaxConfigHeads},
        {"head_dim", head_dim, kMaxConfigHeadDim},
        {"global_head_dim", global_head_dim_checked, kMaxConfigHeadDim},
        {"max_position_embeddings", c.max_position_embeddings,
         kMaxConfigPositions}}) {
    if (value > limit) {
      return f.Bad(name, absl::StrCat("is ", value, "; at most ", limit,
                                      " is accepted (not a plausible model)"));
    }
  }

  // Layer types (transformers' default: every 6th layer full; the last layer is
  // forced full).
  std::vector<LayerKind> kinds(c.num_hidden_layers);
  if (f.Has("layer_types")) {
    const json& lt = t["layer_types"];
    if (!lt.is_array() || static_cast<int>(lt.size()) != c.num_hidden_layers) {
      return f.Bad("layer_types",
                   absl::StrCat("must be a list of num_hidden_layers (",
                                c.num_hidden_layers, ") strings"));
    }
    for (int i = 0; i < c.num_hidden_layers; ++i) {
      const std::string v = lt[i].is_string() ? lt[i].get<std::string>() : "";
      if (v == "sliding_attention") {
        kinds[i] = LayerKind::kSliding;
      } else if (v == "full_attention") {
        kinds[i] = LayerKind::kFull;
      } else {
        return f.Bad("layer_types",
                     absl::StrCat("entry ", i, " is '", lt[i].dump(),
                                  "' (sliding_attention or full_attention)"));
      }
    }
  } else {
    for (int i = 0; i < c.num_hidden_layers; ++i) {
      kinds[i] = (i + 1) % 6 ? LayerKind::kSliding : LayerKind::kFull;
    }
  }
  kinds.back() = LayerKind::kFull;

  // RoPE per layer type.
  RopeParams sliding_rope{RopeType::kDefault, 10000.0, 1.0, 1.0};
  RopeParams full_rope{RopeType::kProportional, 1000000.0, 0.25, 1.0};
  if (f.Has("rope_parameters")) {
    const json& rp = t["rope_parameters"];
    if (!rp.is_object()) return f.Bad("rope_parameters", "must be an object");
    if (rp.contains("sliding_attention") || rp.contains("full_attention")) {
      for (auto it = rp.begin(); it != rp.end(); ++it) {
        const std::string field =
            absl::StrCat(prefix, "rope_parameters.", it.key());
        if (it.key() == "sliding_attention") {
          ASSIGN_OR_RETURN(sliding_rope,
                           ParseRope(it.value(), field, source, sliding_rope));
        } else if (it.key() == "full_attention") {
          ASSIGN_OR_RETURN(full_rope,
                           ParseRope(it.value(), field, source, full_rope));
        } else {
          return f.Bad("rope_parameters",
                       absl::StrCat("has unknown layer type '", it.key(), "'"));
        }
      }
    } else {
      ASSIGN_OR_RETURN(RopeParams all, ParseRope(rp, prefix + "rope_parameters",
                                                 source, RopeParams{}));
      sliding_rope = full_rope = all;
    }
  }

  // Top-level form: global_head_dim / num_global_key_value_heads.
  ASSIGN_OR_RETURN(int global_head_dim, f.Int("global_head_dim", 512));
  ASSIGN_OR_RETURN(int global_kv_heads,
                   f.Int("num_global_key_value_heads", -1));
  c.layers.resize(c.num_hidden_layers);
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    LayerConfig& l = c.layers[i];
    l.kind = kinds[i];
    const bool full = l.kind == LayerKind::kFull;
    l.head_dim = full ? global_head_dim : head_dim;
    l.k_eq_v = full && k_eq_v;
    l.num_kv_heads =
        (l.k_eq_v && global_kv_heads > 0) ? global_kv_heads : kv_heads;
    const RopeParams& r = full ? full_rope : sliding_rope;
    l.rope_type = r.type;
    l.rope_theta = r.theta;
    l.partial_rotary_factor = r.partial_rotary_factor;
    l.rope_factor = r.factor;
    l.sliding_window = full ? 0 : c.sliding_window;
  }

  // per_layer_config form: overrides keyed by layer index or by layer type.
  if (f.Has("per_layer_config")) {
    const json& plc = t["per_layer_config"];
    if (!plc.is_object()) return f.Bad("per_layer_config", "must be an object");
    // Type-keyed entries first, index-keyed entries override them.
    for (int pass = 0; pass < 2; ++pass) {
      for (auto it = plc.begin(); it != plc.end(); ++it) {
        const std::string& key = it.key();
        std::vector<int> targets;
        int index = -1;
        const bool is_index = absl::SimpleAtoi(key, &index);
        if (is_index != (pass == 1)) continue;
        const std::string field =
            absl::StrCat(prefix, "per_layer_config.", key);
        if (is_index) {
          if (index < 0 || index >= c.num_hidden_layers) {
            return absl::InvalidArgumentError(absl::StrCat(
                source, ": field '", field, "' names a layer outside [0, ",
                c.num_hidden_layers, ")"));
          }
          targets.push_back(index);
        } else if (key == "sliding_attention" || key == "full_attention") {
          const LayerKind kind =
              key == "full_attention" ? LayerKind::kFull : LayerKind::kSliding;
          for (int i = 0; i < c.num_hidden_layers; ++i) {
            if (c.layers[i].kind == kind) targets.push_back(i);
          }
        } else {
          return absl::InvalidArgumentError(
              absl::StrCat(source, ": field '", field,
                           "': keys must be layer indices or "
                           "sliding_attention/full_attention"));
        }
        if (!it.value().is_object()) {
          return absl::InvalidArgumentError(
              absl::StrCat(source, ": field '", field, "' must be an object"));
        }
        Fields lf(it.value(), field + ".", source);
        for (auto kv = it.value().begin(); kv != it.value().end(); ++kv) {
          static const std::set<std::string> kKnown = {
              "head_dim",       "num_key_value_heads", "attention_k_eq_v",
              "sliding_window", "rope_parameters",     "num_attention_heads"};
          if (!kKnown.count(kv.key())) {
            return Refuse(source, absl::StrCat(field, ".", kv.key()), "is set");
          }
        }
        for (int i : targets) {
          LayerConfig& l = c.layers[i];
          ASSIGN_OR_RETURN(l.head_dim, lf.Int("head_dim", l.head_dim));
          ASSIGN_OR_RETURN(l.num_kv_heads,
                           lf.Int("num_key_value_heads", l.num_kv_heads));
          ASSIGN_OR_RETURN(
              int heads, lf.Int("num_attention_heads", c.num_attention_heads));
          if (heads != c.num_attention_heads) {
            return Refuse(source, field + ".num_attention_heads",
                          "differs from num_attention_heads");
          }
          if (lf.Has("attention_k_eq_v")) {
            ASSIGN_OR_RETURN(l.k_eq_v, lf.Bool("attention_k_eq_v", false));
          }
          if (l.kind == LayerKind::kSliding) {
            ASSIGN_OR_RETURN(l.sliding_window,
                             lf.Int("sliding_window", l.sliding_window));
          }
          if (lf.Has("rope_parameters")) {
            RopeParams cur{l.rope_type, l.rope_theta, l.partial_rotary_factor,
                           l.rope_factor};
            ASSIGN_OR_RETURN(
                cur, ParseRope(it.value()["rope_parameters"],
                               field + ".rope_parameters", source, cur));
            l.rope_type = cur.type;
            l.rope_theta = cur.theta;
            l.partial_rotary_factor = cur.partial_rotary_factor;
            l.rope_factor = cur.factor;
          }
        }
      }
    }
  }

  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const LayerConfig& l = c.layers[i];
    const std::string where =
        absl::StrCat(source, ": layer ", i, " (", LayerKindName(l.kind), ")");
    if (l.head_dim <= 0 || l.head_dim % 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": head_dim ", l.head_dim, " must be positive and even"));
    }
    if (l.head_dim > kMaxConfigHeadDim) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": head_dim ", l.head_dim, "; at most ", kMaxConfigHeadDim));
    }
    if (l.num_kv_heads <= 0 || c.num_attention_heads % l.num_kv_heads) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": num_key_value_heads ", l.num_kv_heads,
                       " must be positive and divide num_attention_heads ",
                       c.num_attention_heads));
    }
    if (l.kind == LayerKind::kSliding && l.sliding_window <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": sliding_window must be positive"));
    }
  }
  return c;
}

absl::StatusOr<ModelConfig> ModelConfig::FromFile(const std::string& path) {
  ASSIGN_OR_RETURN(HfConfig config, HfConfig::ReadFile(path));
  return FromHfConfig(config);
}

std::string ModelConfig::ToJson() const {
  json j;
  j["architectures"] = {"Gemma4ForCausalLM"};
  j["model_type"] = "gemma4_text";
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["hidden_activation"] = hidden_activation;
  j["max_position_embeddings"] = max_position_embeddings;
  j["initializer_range"] = initializer_range;
  j["rms_norm_eps"] = rms_norm_eps;
  j["sliding_window"] = sliding_window;
  j["bos_token_id"] = bos_token_id;
  j["pad_token_id"] = pad_token_id;
  j["eos_token_id"] =
      eos_token_ids.size() == 1 ? json(eos_token_ids[0]) : json(eos_token_ids);
  j["tie_word_embeddings"] = true;
  j["final_logit_softcapping"] =
      final_logit_softcapping ? json(*final_logit_softcapping) : json(nullptr);
  j["hidden_size_per_layer_input"] = 0;
  j["num_kv_shared_layers"] = 0;
  j["enable_moe_block"] = false;
  j["attention_bias"] = false;
  json types = json::array();
  const LayerConfig* first[2] = {nullptr, nullptr};
  for (const LayerConfig& l : layers) {
    types.push_back(LayerKindName(l.kind));
    const int k = l.kind == LayerKind::kFull;
    if (first[k] == nullptr) first[k] = &l;
  }
  j["layer_types"] = types;
  auto rope_json = [](const LayerConfig& l) {
    json r;
    r["rope_type"] =
        l.rope_type == RopeType::kProportional ? "proportional" : "default";
    r["rope_theta"] = l.rope_theta;
    if (l.rope_type == RopeType::kProportional) {
      r["partial_rotary_factor"] = l.partial_rotary_factor;
      r["factor"] = l.rope_factor;
    }
    return r;
  };
  json rope;
  if (first[0]) rope["sliding_attention"] = rope_json(*first[0]);
  if (first[1]) rope["full_attention"] = rope_json(*first[1]);
  j["rope_parameters"] = rope;
  const LayerConfig& s = first[0] ? *first[0] : *first[1];
  const LayerConfig& g = first[1] ? *first[1] : *first[0];
  j["head_dim"] = s.head_dim;
  j["num_key_value_heads"] = s.num_kv_heads;
  j["attention_k_eq_v"] = g.k_eq_v;
  j["global_head_dim"] = g.head_dim;
  if (g.k_eq_v) j["num_global_key_value_heads"] = g.num_kv_heads;
  // Layers that the top-level form cannot express go into per_layer_config by
  // index.
  json plc = json::object();
  for (int i = 0; i < num_hidden_layers; ++i) {
    const LayerConfig& l = layers[i];
    const LayerConfig& ref = l.kind == LayerKind::kFull ? g : s;
    const int expected_kv = l.kind == LayerKind::kFull && !l.k_eq_v
                                ? s.num_kv_heads
                                : ref.num_kv_heads;
    json o = json::object();
    if (l.head_dim != ref.head_dim) o["head_dim"] = l.head_dim;
    if (l.num_kv_heads != expected_kv)
      o["num_key_value_heads"] = l.num_kv_heads;
    if (l.k_eq_v != (l.kind == LayerKind::kFull && g.k_eq_v))
      o["attention_k_eq_v"] = l.k_eq_v;
    if (l.kind == LayerKind::kSliding && l.sliding_window != sliding_window) {
      o["sliding_window"] = l.sliding_window;
    }
    if (l.rope_type != ref.rope_type || l.rope_theta != ref.rope_theta ||
        l.partial_rotary_factor != ref.partial_rotary_factor ||
        l.rope_factor != ref.rope_factor) {
      o["rope_parameters"] = rope_json(l);
    }
    if (!o.empty()) plc[std::to_string(i)] = o;
  }
  if (!plc.empty()) j["per_layer_config"] = plc;
  return j.dump(2) + "\n";
}

int64_t ModelConfig::NumParameters() const {
  int64_t n = static_cast<int64_t>(vocab_size) * hidden_size + hidden_size;
  for (const LayerConfig& l : layers) {
    const int64_t q = static_cast<int64_t>(num_attention_heads) * l.head_dim;
    const int64_t kv = static_cast<int64_t>(l.num_kv_heads) * l.head_dim;
    n += static_cast<int64_t>(hidden_size) * (q + kv * (l.k_eq_v ? 1 : 2)) +
         q * hidden_size;
    n += 3LL * hidden_size * intermediate_size;
    n += 4LL * hidden_size + 2LL * l.head_dim + 1;
  }
  return n;
}

}  // namespace sweepd
