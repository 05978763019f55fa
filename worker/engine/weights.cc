#include "worker/engine/weights.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/status.h"

namespace sweepd::engine::internal {
namespace {

// Concatenates q/k/v into qkv and gate/up into gate_up (one copy at load time);
// the separate tensors become views of the fused ones.
void FuseLayer(LayerWeights* w) {
  const int64_t q_rows = w->q.size(0), k_rows = w->k.size(0);
  const int64_t inter = w->gate.size(0);
  const bool has_v = w->v.defined();
  std::vector<at::Tensor> parts = {w->q, w->k};
  if (has_v) parts.push_back(w->v);
  w->qkv = at::cat(parts, 0);
  w->gate_up = at::cat({w->gate, w->up}, 0);
  PointViews(w, q_rows, k_rows, has_v, inter);
}

absl::StatusOr<at::ScalarType> StToTorch(StDtype d, const std::string& name) {
  switch (d) {
    case StDtype::kF32:
      return at::kFloat;
    case StDtype::kBF16:
      return at::kBFloat16;
    case StDtype::kF16:
      return at::kHalf;
    case StDtype::kF64:
      return at::kDouble;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("tensor ", name, " has dtype ", StDtypeName(d),
                       "; weights must be F32, BF16, F16 or F64"));
  }
}

}  // namespace

absl::StatusOr<std::vector<LayerGeom>> ShardGeometry(const ModelConfig& cfg,
                                                     int tp, int rank) {
  const int r = rank;
  std::vector<LayerGeom> geom;
  for (int L = 0; L < cfg.num_hidden_layers; ++L) {
    const LayerConfig& lc = cfg.layers[L];
    LayerGeom g;
    g.head_dim = lc.head_dim;
    g.heads_local = cfg.num_attention_heads / tp;
    g.head_start = r * g.heads_local;
    if (lc.num_kv_heads >= tp) {
      if (lc.num_kv_heads % tp) {
        return absl::InvalidArgumentError(
            absl::StrCat("layer ", L, " (", LayerKindName(lc.kind),
                         "): num_key_value_heads ", lc.num_kv_heads,
                         " is not divisible by tp_size ", tp));
      }
      g.kv_local = lc.num_kv_heads / tp;
      g.kv_start = r * g.kv_local;
    } else {
      if (tp % lc.num_kv_heads) {
        return absl::InvalidArgumentError(absl::StrCat(
            "layer ", L, " (", LayerKindName(lc.kind), "): tp_size ", tp,
            " is not a multiple of num_key_value_heads ", lc.num_kv_heads,
            " (KV heads cannot be replicated evenly)"));
      }
      g.kv_local = 1;
      g.kv_start = r / (tp / lc.num_kv_heads);
    }
    g.inter_local = cfg.intermediate_size / tp;
    g.inter_start = r * g.inter_local;
    geom.push_back(g);
  }
  return geom;
}

void PointViews(LayerWeights* w, int64_t q_rows, int64_t k_rows, bool has_v,
                int64_t inter) {
  w->q = w->qkv.narrow(0, 0, q_rows);
  w->k = w->qkv.narrow(0, q_rows, k_rows);
  w->v = has_v ? w->qkv.narrow(0, q_rows + k_rows, k_rows) : at::Tensor();
  w->gate = w->gate_up.narrow(0, 0, inter);
  w->up = w->gate_up.narrow(0, inter, inter);
}

std::vector<LayerTensorSpec> LayerTensors(const ModelConfig& cfg, int L,
                                          const LayerGeom& g) {
  const LayerConfig& lc = cfg.layers[L];
  const int64_t hidden = cfg.hidden_size;
  const int64_t hd = lc.head_dim;
  const int64_t H = cfg.num_attention_heads;
  const int64_t KV = lc.num_kv_heads;
  const int64_t I = cfg.intermediate_size;
  std::vector<LayerTensorSpec> t = {
      {"self_attn.q_proj.weight",
       {H * hd, hidden},
       0,
       g.head_start * hd,
       g.heads_local * hd},
      {"self_attn.k_proj.weight",
       {KV * hd, hidden},
       0,
       g.kv_start * hd,
       g.kv_local * hd},
  };
  if (!lc.k_eq_v) {
    t.push_back({"self_attn.v_proj.weight",
                 {KV * hd, hidden},
                 0,
                 g.kv_start * hd,
                 g.kv_local * hd});
  }
  t.push_back({"self_attn.o_proj.weight",
               {hidden, H * hd},
               1,
               g.head_start * hd,
               g.heads_local * hd});
  t.push_back({"self_attn.q_norm.weight", {hd}, -1, 0, 0});
  t.push_back({"self_attn.k_norm.weight", {hd}, -1, 0, 0});
  t.push_back({"input_layernorm.weight", {hidden}, -1, 0, 0});
  t.push_back({"post_attention_layernorm.weight", {hidden}, -1, 0, 0});
  t.push_back({"pre_feedforward_layernorm.weight", {hidden}, -1, 0, 0});
  t.push_back({"post_feedforward_layernorm.weight", {hidden}, -1, 0, 0});
  t.push_back({"layer_scalar", {1}, -1, 0, 0});
  t.push_back(
      {"mlp.gate_proj.weight", {I, hidden}, 0, g.inter_start, g.inter_local});
  t.push_back(
      {"mlp.up_proj.weight", {I, hidden}, 0, g.inter_start, g.inter_local});
  t.push_back(
      {"mlp.down_proj.weight", {hidden, I}, 1, g.inter_start, g.inter_local});
  return t;
}

at::Tensor* LayerTensor(LayerWeights* w, absl::string_view name) {
  static const std::pair<const char*, at::Tensor LayerWeights::*> kFields[] = {
      {"self_attn.q_proj.weight", &LayerWeights::q},
      {"self_attn.k_proj.weight", &LayerWeights::k},
      {"self_attn.v_proj.weight", &LayerWeights::v},
      {"self_attn.o_proj.weight", &LayerWeights::o},
      {"self_attn.q_norm.weight", &LayerWeights::q_norm},
      {"self_attn.k_norm.weight", &LayerWeights::k_norm},
      {"input_layernorm.weight", &LayerWeights::input_norm},
      {"post_attention_layernorm.weight", &LayerWeights::post_attn_norm},
      {"pre_feedforward_layernorm.weight", &LayerWeights::pre_ff_norm},
      {"post_feedforward_layernorm.weight", &LayerWeights::post_ff_norm},
      {"layer_scalar", &LayerWeights::layer_scalar},
      {"mlp.gate_proj.weight", &LayerWeights::gate},
      {"mlp.up_proj.weight", &LayerWeights::up},
      {"mlp.down_proj.weight", &LayerWeights::down},
  };
  for (const auto& [n, field] : kFields) {
    if (name == n) return &(w->*field);
  }
  return nullptr;
}

absl::StatusOr<LayerWeights> BuildLayer(const ModelConfig& cfg, int L,
                                        const LayerGeom& g,
                                        const SliceFn& slice) {
  const std::string p = absl::StrCat("layers.", L, ".");
  LayerWeights w;
  for (const LayerTensorSpec& t : LayerTensors(cfg, L, g)) {
    ASSIGN_OR_RETURN(*LayerTensor(&w, t.name),
                     slice(p + t.name, t.full_shape, t.dim, t.start, t.len));
  }
  FuseLayer(&w);
  return w;
}

SliceFn RandomSlices(uint64_t seed, double init_range, InitStyle style,
                     at::Device device, at::ScalarType dtype) {
  return
      [=](const std::string& name, const std::vector<int64_t>& shape, int dim,
          int64_t start, int64_t len) -> absl::StatusOr<at::Tensor> {
        const int64_t rows = shape.size() >= 2 ? shape[0] : 1;
        const int64_t cols = shape.size() >= 2 ? shape[1] : shape[0];
        int64_t r0 = 0, r1 = rows, c0 = 0, c1 = cols;
        if (dim == 0) r0 = start, r1 = start + len;
        if (dim == 1) c0 = start, c1 = start + len;
        return RandomWeightSlice(name, shape, r0, r1, c0, c1, seed, init_range,
                                 style, device, dtype);
      };
}

namespace {

// The slice (dim, start, len) of a stored tensor as `dtype` on `device`, after
// checking its shape against the one the config implies; `where` names the
// file or directory in errors. Only the slice's bytes are copied.
absl::StatusOr<at::Tensor> ReadSlice(const TensorView& tv,
                                     const std::string& where,
                                     const std::vector<int64_t>& shape, int dim,
                                     int64_t start, int64_t len,
                                     at::Device device, at::ScalarType dtype) {
  if (tv.shape != shape) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": tensor ", tv.name, " has shape [",
                     absl::StrJoin(tv.shape, ", "), "], the config implies [",
                     absl::StrJoin(shape, ", "), "]"));
  }
  ASSIGN_OR_RETURN(at::ScalarType st, StToTorch(tv.dtype, tv.name));
  at::Tensor view =
      at::from_blob(const_cast<uint8_t*>(tv.data), tv.shape,
                    at::TensorOptions().dtype(st).device(at::kCPU));
  if (dim >= 0) view = view.narrow(dim, start, len);
  at::Tensor out =
      at::empty(view.sizes(), at::TensorOptions().dtype(dtype).device(device));
  out.copy_(view);
  return out;
}

}  // namespace

SliceFn CheckpointSlices(const Checkpoint* ckpt, std::string prefix,
                         std::string dir, at::Device device,
                         at::ScalarType dtype) {
  return [=](const std::string& name, const std::vector<int64_t>& shape,
             int dim, int64_t start,
             int64_t len) -> absl::StatusOr<at::Tensor> {
    const std::string full = prefix + name;
    const TensorView* tv = ckpt->Find(full);
    if (tv == nullptr) {
      if (absl::EndsWith(name, "layer_scalar")) {
        // transformers initialises a missing layer_scalar buffer to 1.
        SWEEPD_LOG(WARNING)
            << dir << ": tensor " << full << " absent; using 1.0";
        return at::ones({1}, at::TensorOptions().dtype(dtype).device(device));
      }
      return absl::NotFoundError(
          absl::StrCat("checkpoint ", dir, " has no tensor ", full));
    }
    return ReadSlice(*tv, absl::StrCat("checkpoint ", dir), shape, dim, start,
                     len, device, dtype);
  };
}

SliceFn LayerSlices(const LayerWeights& w) {
  return [w](const std::string& name, const std::vector<int64_t>&, int, int64_t,
             int64_t) -> absl::StatusOr<at::Tensor> {
    const size_t dot = name.find('.', name.find('.') + 1);  // "layers.L."
    LayerWeights copy = w;
    at::Tensor* t = LayerTensor(&copy, name.substr(dot + 1));
    if (t == nullptr || !t->defined()) {
      return absl::InternalError(absl::StrCat("no layer tensor ", name));
    }
    return *t;
  };
}

absl::Status CheckReplacement(const ModelConfig& cfg, int L,
                              const SafetensorsFile& file) {
  const std::string where = absl::StrCat("replace_layer weights ", file.path());
  if (file.tensors().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, " holds no tensor of layer ", L));
  }
  // Full shapes do not depend on the geometry.
  const std::vector<LayerTensorSpec> specs = LayerTensors(cfg, L, LayerGeom{});
  for (const TensorView& tv : file.tensors()) {
    auto it = std::find_if(
        specs.begin(), specs.end(),
        [&](const LayerTensorSpec& s) { return s.name == tv.name; });
    if (it == specs.end()) {
      std::vector<std::string> names;
      for (const LayerTensorSpec& s : specs) names.push_back(s.name);
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": tensor '", tv.name, "' is not a tensor of layer ", L,
          " (names are relative to the layer: ", absl::StrJoin(names, ", "),
          ")"));
    }
    if (tv.shape != it->full_shape) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": tensor ", tv.name, " has shape [",
                       absl::StrJoin(tv.shape, ", "), "], layer ", L,
                       " needs [", absl::StrJoin(it->full_shape, ", "), "]"));
    }
    RETURN_IF_ERROR(StToTorch(tv.dtype, tv.name).status());
  }
  return absl::OkStatus();
}

SliceFn ReplacementSlices(const SafetensorsFile* file, SliceFn base,
                          at::Device device, at::ScalarType dtype) {
  return [=](const std::string& name, const std::vector<int64_t>& shape,
             int dim, int64_t start,
             int64_t len) -> absl::StatusOr<at::Tensor> {
    const size_t dot = name.find('.', name.find('.') + 1);  // "layers.L."
    const TensorView* tv = file->Find(name.substr(dot + 1));
    if (tv == nullptr) return base(name, shape, dim, start, len);
    return ReadSlice(*tv, absl::StrCat("replace_layer weights ", file->path()),
                     shape, dim, start, len, device, dtype);
  };
}

absl::StatusOr<std::string> DetectPrefix(const Checkpoint& ckpt,
                                         const std::string& dir) {
  for (const char* p :
       {"model.language_model.", "model.", "language_model.model.", ""}) {
    if (ckpt.Find(absl::StrCat(p, "embed_tokens.weight")) != nullptr)
      return std::string(p);
  }
  return absl::NotFoundError(
      absl::StrCat("checkpoint ", dir,
                   " has no embed_tokens.weight under model., "
                   "model.language_model. or no prefix"));
}

}  // namespace sweepd::engine::internal
