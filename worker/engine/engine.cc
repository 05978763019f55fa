// Engine implementation: per-rank weight shards, the Gemma 4 decoder forward in
// libtorch, Megatron-style tensor parallelism over a Communicator,
// interventions, captures, probe statistics and prefix reuse. Semantics:
// docs/ENGINE.md.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "common/safetensors.h"
#include "common/status.h"
#include "worker/engine/api.h"
#include "worker/engine/comm_factory.h"
#include "worker/engine/random_init.h"
#include "worker/engine/torch_compat.h"

namespace sweepd::engine {

const char* DTypeName(DType dtype) {
  return dtype == DType::kBFloat16 ? "bfloat16" : "float32";
}

absl::StatusOr<DType> ParseDType(absl::string_view name) {
  if (name == "float32" || name == "fp32") return DType::kFloat32;
  if (name == "bfloat16" || name == "bf16") return DType::kBFloat16;
  return absl::InvalidArgumentError(
      absl::StrCat("dtype must be float32 or bfloat16, got '", name, "'"));
}

int FirstTouchedLayer(const std::vector<Intervention>& interventions,
                      int num_layers) {
  int first = num_layers;
  for (const Intervention& iv : interventions)
    first = std::min(first, iv.layer);
  return first;
}

int64_t HostTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {

// A failed collective inside rank code; unwound to the rank's edge and returned
// as Status.
struct CommFailure {
  absl::Status status;
};

comm::CommDtype ToCommDtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return comm::CommDtype::kFloat32;
    case at::kDouble:
      return comm::CommDtype::kFloat64;
    case at::kBFloat16:
      return comm::CommDtype::kBFloat16;
    case at::kInt:
      return comm::CommDtype::kInt32;
    default:
      return comm::CommDtype::kInt64;
  }
}

// In-place collectives on contiguous tensors of the rank's device.
void AllReduceSum(comm::Communicator* c, at::Tensor& t) {
  if (c->size() == 1) return;
  SWEEPD_CHECK(t.is_contiguous());
  absl::Status s =
      c->AllReduceSum(t.data_ptr(), t.numel(), ToCommDtype(t.scalar_type()));
  if (!s.ok()) throw CommFailure{s};
}

void AllReduceMax(comm::Communicator* c, at::Tensor& t) {
  if (c->size() == 1) return;
  SWEEPD_CHECK(t.is_contiguous());
  absl::Status s =
      c->AllReduceMax(t.data_ptr(), t.numel(), ToCommDtype(t.scalar_type()));
  if (!s.ok()) throw CommFailure{s};
}

// Concatenation over ranks along a new leading dim: [size, ...t.shape].
at::Tensor AllGather(comm::Communicator* c, const at::Tensor& t) {
  at::Tensor src = t.contiguous();
  if (c->size() == 1) return src.unsqueeze(0);
  std::vector<int64_t> shape = {c->size()};
  for (int64_t d : src.sizes()) shape.push_back(d);
  at::Tensor out = at::empty(shape, src.options());
  absl::Status s = c->AllGather(src.data_ptr(), out.data_ptr(), src.numel(),
                                ToCommDtype(src.scalar_type()));
  if (!s.ok()) throw CommFailure{s};
  return out;
}

at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor n = xf * at::pow(xf.pow(2).mean(-1, /*keepdim=*/true) + eps, -0.5);
  if (weight.defined()) n = n * weight.to(at::kFloat);
  return n.to(x.scalar_type());
}

at::Tensor RotateHalf(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

// Per-layer geometry of one rank's shard.
struct LayerGeom {
  int heads_local = 0;
  int head_start = 0;
  int kv_local = 0;
  int kv_start = 0;
  int head_dim = 0;
  int inter_local = 0;
  int inter_start = 0;
};

struct LayerWeights {
  at::Tensor q, k, v, o;  // v undefined on K = V layers
  at::Tensor q_norm, k_norm;
  at::Tensor input_norm, post_attn_norm, pre_ff_norm, post_ff_norm;
  at::Tensor layer_scalar;
  at::Tensor gate, up, down;
};

// Supplies one slice of a canonical weight: dim -1 = whole tensor, 0 = rows, 1
// = columns.
using SliceFn = std::function<absl::StatusOr<at::Tensor>(
    const std::string& name, const std::vector<int64_t>& full_shape, int dim,
    int64_t start, int64_t len)>;

absl::StatusOr<LayerWeights> BuildLayer(const ModelConfig& cfg, int L,
                                        const LayerGeom& g,
                                        const SliceFn& slice) {
  const LayerConfig& lc = cfg.layers[L];
  const int64_t hidden = cfg.hidden_size;
  const int64_t hd = lc.head_dim;
  const int64_t H = cfg.num_attention_heads;
  const int64_t KV = lc.num_kv_heads;
  const int64_t I = cfg.intermediate_size;
  const std::string p = absl::StrCat("layers.", L, ".");
  LayerWeights w;
  ASSIGN_OR_RETURN(w.q, slice(p + "self_attn.q_proj.weight", {H * hd, hidden},
                              0, g.head_start * hd, g.heads_local * hd));
  ASSIGN_OR_RETURN(w.k, slice(p + "self_attn.k_proj.weight", {KV * hd, hidden},
                              0, g.kv_start * hd, g.kv_local * hd));
  if (!lc.k_eq_v) {
    ASSIGN_OR_RETURN(w.v,
                     slice(p + "self_attn.v_proj.weight", {KV * hd, hidden}, 0,
                           g.kv_start * hd, g.kv_local * hd));
  }
  ASSIGN_OR_RETURN(w.o, slice(p + "self_attn.o_proj.weight", {hidden, H * hd},
                              1, g.head_start * hd, g.heads_local * hd));
  ASSIGN_OR_RETURN(w.q_norm,
                   slice(p + "self_attn.q_norm.weight", {hd}, -1, 0, 0));
  ASSIGN_OR_RETURN(w.k_norm,
                   slice(p + "self_attn.k_norm.weight", {hd}, -1, 0, 0));
  ASSIGN_OR_RETURN(w.input_norm,
                   slice(p + "input_layernorm.weight", {hidden}, -1, 0, 0));
  ASSIGN_OR_RETURN(
      w.post_attn_norm,
      slice(p + "post_attention_layernorm.weight", {hidden}, -1, 0, 0));
  ASSIGN_OR_RETURN(w.pre_ff_norm, slice(p + "pre_feedforward_layernorm.weight",
                                        {hidden}, -1, 0, 0));
  ASSIGN_OR_RETURN(
      w.post_ff_norm,
      slice(p + "post_feedforward_layernorm.weight", {hidden}, -1, 0, 0));
  ASSIGN_OR_RETURN(w.layer_scalar, slice(p + "layer_scalar", {1}, -1, 0, 0));
  ASSIGN_OR_RETURN(w.gate, slice(p + "mlp.gate_proj.weight", {I, hidden}, 0,
                                 g.inter_start, g.inter_local));
  ASSIGN_OR_RETURN(w.up, slice(p + "mlp.up_proj.weight", {I, hidden}, 0,
                               g.inter_start, g.inter_local));
  ASSIGN_OR_RETURN(w.down, slice(p + "mlp.down_proj.weight", {hidden, I}, 1,
                                 g.inter_start, g.inter_local));
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

// Reads slices from the memory-mapped checkpoint; only the slice's bytes are
// copied.
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
    if (tv->shape != shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          "checkpoint ", dir, ": tensor ", full, " has shape [",
          absl::StrJoin(tv->shape, ", "), "], the config implies [",
          absl::StrJoin(shape, ", "), "]"));
    }
    ASSIGN_OR_RETURN(at::ScalarType st, StToTorch(tv->dtype, full));
    at::Tensor view =
        at::from_blob(const_cast<uint8_t*>(tv->data), tv->shape,
                      at::TensorOptions().dtype(st).device(at::kCPU));
    if (dim >= 0) view = view.narrow(dim, start, len);
    at::Tensor out = at::empty(view.sizes(),
                               at::TensorOptions().dtype(dtype).device(device));
    out.copy_(view);
    return out;
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

// ---------------------------------------------------------------------------------------------
// Prefix state.

class PrefixStateImpl : public PrefixState {
 public:
  int64_t device_bytes() const override { return device_bytes_; }
  int64_t host_bytes() const override { return host_bytes_; }
  int valid_until() const override { return valid_until_; }

  const void* owner = nullptr;
  std::vector<int32_t> tokens;
  int64_t batch = 0, seq = 0;
  int valid_until_ = 0;
  // [rank][layer 0..N]: the residual entering layer L (entry N: after the last
  // layer).
  std::vector<std::vector<at::Tensor>> resid;
  int64_t device_bytes_ = 0;
  int64_t host_bytes_ = 0;
};

// ---------------------------------------------------------------------------------------------
// A validated request as every rank sees it.

struct CapturePoint {
  enum Kind { kResidIn, kResidOut, kAttnHeads, kMlpIn, kFinalNorm } kind;
  int layer;
  std::string name;
};

struct Plan {
  const ForwardRequest* req = nullptr;
  int start_layer = 0;
  std::vector<uint8_t> skip;                    // per layer
  std::vector<uint8_t> zero;                    // per layer
  std::vector<std::optional<uint64_t>> reinit;  // per layer
  std::vector<std::vector<int>> masked_heads;   // per layer, global indices
  std::vector<CapturePoint> captures;
  std::vector<int32_t> targets;  // [batch*seq], -1 ignored
  const PrefixStateImpl* start_state = nullptr;
  std::shared_ptr<PrefixStateImpl> keep_state;
  int first_touched = 0;
};

absl::StatusOr<CapturePoint> ParseCapture(const std::string& name,
                                          int num_layers) {
  const size_t open = name.find('[');
  if (open == std::string::npos || name.back() != ']') {
    return absl::InvalidArgumentError(
        absl::StrCat("capture point '", name, "' must look like resid_in[L]"));
  }
  const std::string kind = name.substr(0, open);
  int idx = 0;
  if (!absl::SimpleAtoi(name.substr(open + 1, name.size() - open - 2), &idx)) {
    return absl::InvalidArgumentError(
        absl::StrCat("capture point '", name, "': bad index"));
  }
  CapturePoint cp{CapturePoint::kResidIn, idx, name};
  if (kind == "hidden_states") {
    if (idx < 0 || idx > num_layers) {
      return absl::InvalidArgumentError(absl::StrCat(
          "capture point '", name, "': index outside [0, ", num_layers, "]"));
    }
    if (idx == 0) {
      cp.kind = CapturePoint::kResidIn;
    } else if (idx < num_layers) {
      cp.kind = CapturePoint::kResidOut;
      cp.layer = idx - 1;
    } else {
      cp.kind = CapturePoint::kFinalNorm;
      cp.layer = num_layers - 1;
    }
    return cp;
  }
  if (kind == "resid_in") {
    cp.kind = CapturePoint::kResidIn;
  } else if (kind == "resid_out") {
    cp.kind = CapturePoint::kResidOut;
  } else if (kind == "attn_heads") {
    cp.kind = CapturePoint::kAttnHeads;
  } else if (kind == "mlp_in") {
    cp.kind = CapturePoint::kMlpIn;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("capture point '", name,
                     "': kind must be resid_in, resid_out, attn_heads, mlp_in "
                     "or hidden_states"));
  }
  if (idx < 0 || idx >= num_layers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "capture point '", name, "': layer outside [0, ", num_layers, ")"));
  }
  return cp;
}

HostTensor ToHost(const at::Tensor& t) {
  at::Tensor c = t.to(at::kCPU, at::kFloat).contiguous();
  HostTensor h;
  h.shape.assign(c.sizes().begin(), c.sizes().end());
  h.data.assign(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  return h;
}

// ---------------------------------------------------------------------------------------------
// One rank.

struct RankShard {
  int rank = 0;
  int tp = 1;
  at::Device device = at::kCPU;
  at::ScalarType dtype = at::kFloat;
  at::Tensor embed;  // [vocab_len, hidden]
  int64_t vocab_start = 0;
  int64_t vocab_len = 0;
  int64_t vocab_shard = 0;  // padded width, equal on every rank
  at::Tensor final_norm;
  std::vector<LayerGeom> geom;
  std::vector<LayerWeights> layers;
};

class RankRunner {
 public:
  RankRunner(const ModelConfig& cfg, const EngineOptions& opts,
             RankShard* shard, comm::Communicator* comm, const Plan& plan,
             ForwardResult* out, int64_t* executed)
      : cfg_(cfg),
        opts_(opts),
        s_(*shard),
        comm_(comm),
        plan_(plan),
        out_(out),
        executed_(executed) {}

  void Run() {
    const ForwardRequest& req = *plan_.req;
    const int64_t B = req.batch, S = req.seq;
    const int N = cfg_.num_hidden_layers;
    auto lopts = at::TensorOptions().dtype(at::kLong).device(s_.device);
    at::Tensor tokens =
        at::from_blob(const_cast<int32_t*>(req.tokens.data()), {B, S}, at::kInt)
            .to(lopts);
    targets_ = at::from_blob(const_cast<int32_t*>(plan_.targets.data()),
                             {B * S}, at::kInt)
                   .to(lopts);
    target_valid_ = targets_.ge(0);
    const bool lead = s_.rank == 0;

    at::Tensor h;
    if (plan_.start_state != nullptr) {
      h = plan_.start_state->resid[s_.rank][plan_.start_layer].to(s_.device);
    } else {
      h = Embed(tokens);
    }
    std::vector<at::Tensor> kept;
    if (plan_.keep_state) {
      kept.resize(N + 1);
      if (plan_.start_state != nullptr) {
        for (int L = 0; L < plan_.start_layer; ++L) {
          kept[L] = plan_.start_state->resid[s_.rank][L];
        }
      }
    }
    if (lead && req.layer_stats) out_->layer_stats.assign(N, LayerStats{});

    for (int L = plan_.start_layer; L < N; ++L) {
      if (plan_.keep_state) kept[L] = h;
      Capture(CapturePoint::kResidIn, L, h);
      at::Tensor out_h = plan_.skip[L] ? h : Layer(L, h);
      if (!plan_.skip[L]) ++*executed_;
      Capture(CapturePoint::kResidOut, L, out_h);
      if (req.layer_stats) Stats(L, h, out_h);
      h = out_h;
    }
    if (plan_.keep_state) kept[N] = h;

    at::Tensor x = RmsNorm(h, s_.final_norm, cfg_.rms_norm_eps);
    Capture(CapturePoint::kFinalNorm, N - 1, x);
    at::Tensor logits =
        LocalLogits(x);  // [B*S, vocab_shard] float32, padding -inf
    at::Tensor nll, rank;
    VocabStats(logits, /*want_rank=*/false, &nll, &rank);
    if (req.return_logits) {
      at::Tensor all = AllGather(comm_, logits);  // [tp, T, shard]
      if (lead) {
        at::Tensor full = all.permute({1, 0, 2})
                              .reshape({B * S, -1})
                              .narrow(1, 0, cfg_.vocab_size);
        out_->logits = ToHost(full.reshape({B, S, cfg_.vocab_size}));
      }
    }
    if (lead) {
      at::Tensor n = at::where(target_valid_, nll, at::zeros_like(nll))
                         .to(at::kCPU)
                         .contiguous();
      out_->nll.assign(n.data_ptr<float>(), n.data_ptr<float>() + n.numel());
      at::Tensor v = target_valid_.to(at::kCPU, at::kByte).contiguous();
      out_->target_valid.assign(v.data_ptr<uint8_t>(),
                                v.data_ptr<uint8_t>() + v.numel());
    }
    if (plan_.keep_state) StoreState(std::move(kept));
  }

 private:
  at::Tensor Embed(const at::Tensor& tokens) {
    at::Tensor local = tokens - s_.vocab_start;
    at::Tensor in_range = local.ge(0).logical_and(local.lt(s_.vocab_len));
    at::Tensor rows = at::embedding(
        s_.embed, local.clamp(0, std::max<int64_t>(0, s_.vocab_len - 1)));
    rows = rows * in_range.unsqueeze(-1).to(rows.scalar_type());
    at::Tensor scale =
        at::scalar_tensor(
            std::sqrt(static_cast<double>(cfg_.hidden_size)),
            at::TensorOptions().dtype(at::kFloat).device(s_.device))
            .to(s_.dtype);
    at::Tensor e = (rows * scale).contiguous();
    AllReduceSum(comm_, e);
    return e;
  }

  const LayerWeights& WeightsFor(int L, LayerWeights* scratch) {
    if (plan_.zero[L]) {
      const LayerWeights& w = s_.layers[L];
      *scratch = w;
      for (at::Tensor* t :
           {&scratch->q, &scratch->k, &scratch->v, &scratch->o, &scratch->gate,
            &scratch->up, &scratch->down, &scratch->q_norm, &scratch->k_norm,
            &scratch->input_norm, &scratch->pre_ff_norm}) {
        if (t->defined()) *t = at::zeros_like(*t);
      }
      return *scratch;
    }
    if (plan_.reinit[L].has_value()) {
      auto built = BuildLayer(
          cfg_, L, s_.geom[L],
          RandomSlices(*plan_.reinit[L], cfg_.initializer_range,
                       InitStyle::kTransformers, s_.device, s_.dtype));
      SWEEPD_CHECK(built.ok()) << built.status();
      *scratch = std::move(*built);
      return *scratch;
    }
    return s_.layers[L];
  }

  std::pair<at::Tensor, at::Tensor> Rope(int L, int64_t S) {
    const LayerConfig& lc = cfg_.layers[L];
    const int64_t hd = lc.head_dim;
    auto fopts = at::TensorOptions().dtype(at::kFloat).device(s_.device);
    at::Tensor inv_freq;
    if (lc.rope_type == RopeType::kProportional) {
      const int64_t angles =
          static_cast<int64_t>(std::floor(lc.partial_rotary_factor * hd / 2));
      at::Tensor rotated =
          1.0 / at::pow(lc.rope_theta,
                        at::arange(0, 2 * angles, 2, fopts.dtype(at::kLong))
                                .to(at::kFloat) /
                            static_cast<double>(hd));
      inv_freq = at::cat({rotated, at::zeros({hd / 2 - angles}, fopts)});
      inv_freq = inv_freq / lc.rope_factor;
    } else {
      inv_freq =
          1.0 /
          at::pow(lc.rope_theta,
                  at::arange(0, hd, 2, fopts.dtype(at::kLong)).to(at::kFloat) /
                      static_cast<double>(hd));
    }
    at::Tensor pos = at::arange(S, fopts);
    at::Tensor freqs = pos.unsqueeze(1) * inv_freq.unsqueeze(0);  // [S, hd/2]
    at::Tensor emb = at::cat({freqs, freqs}, -1);
    return {emb.cos().to(s_.dtype), emb.sin().to(s_.dtype)};
  }

  at::Tensor AllowedMask(int L, int64_t S) {
    auto lopts = at::TensorOptions().dtype(at::kLong).device(s_.device);
    at::Tensor q = at::arange(S, lopts).unsqueeze(1);
    at::Tensor k = at::arange(S, lopts).unsqueeze(0);
    at::Tensor allowed = k.le(q);
    const int window = cfg_.layers[L].sliding_window;
    if (window > 0) allowed = allowed.logical_and((q - k).lt(window));
    return allowed;
  }

  at::Tensor Layer(int L, const at::Tensor& h) {
    LayerWeights scratch;
    const LayerWeights& w = WeightsFor(L, &scratch);
    const LayerGeom& g = s_.geom[L];
    const LayerConfig& lc = cfg_.layers[L];
    const int64_t B = h.size(0), S = h.size(1), hd = g.head_dim;
    const double eps = cfg_.rms_norm_eps;

    at::Tensor x = RmsNorm(h, w.input_norm, eps);
    auto [cos, sin] = Rope(L, S);
    cos = cos.view({1, S, 1, hd});
    sin = sin.view({1, S, 1, hd});
    at::Tensor q = at::linear(x, w.q).view({B, S, g.heads_local, hd});
    q = RmsNorm(q, w.q_norm, eps);
    q = q * cos + RotateHalf(q) * sin;
    at::Tensor k_raw = at::linear(x, w.k).view({B, S, g.kv_local, hd});
    at::Tensor v_raw =
        lc.k_eq_v ? k_raw : at::linear(x, w.v).view({B, S, g.kv_local, hd});
    at::Tensor k = RmsNorm(k_raw, w.k_norm, eps);
    k = k * cos + RotateHalf(k) * sin;
    at::Tensor v = RmsNorm(v_raw, at::Tensor(), eps);
    q = q.transpose(1, 2);
    k = k.transpose(1, 2);
    v = v.transpose(1, 2);
    const int64_t groups = g.heads_local / g.kv_local;
    if (groups > 1) {
      k = k.repeat_interleave(groups, 1);
      v = v.repeat_interleave(groups, 1);
    }
    at::Tensor attn = compat::Attention(q.contiguous(), k.contiguous(),
                                        v.contiguous(), AllowedMask(L, S), 1.0,
                                        opts_.use_sdpa && s_.device.is_cuda());
    attn = attn.transpose(1, 2).contiguous();  // [B, S, heads_local, hd]
    const std::vector<int>& masked = plan_.masked_heads[L];
    if (!masked.empty()) {
      std::vector<int64_t> local;
      for (int head : masked) {
        if (head >= g.head_start && head < g.head_start + g.heads_local) {
          local.push_back(head - g.head_start);
        }
      }
      if (!local.empty()) {
        at::Tensor idx = at::tensor(local, at::kLong).to(s_.device);
        attn = attn.index_fill(2, idx, 0);
      }
    }
    if (Wanted(CapturePoint::kAttnHeads, L)) {
      at::Tensor all =
          AllGather(comm_, attn.permute({2, 0, 1, 3}));  // [tp, Hl, B, S, hd]
      if (s_.rank == 0) {
        at::Tensor full = all.reshape({s_.tp * g.heads_local, B, S, hd})
                              .permute({1, 2, 0, 3});
        Store(CapturePoint::kAttnHeads, L, full);
      }
    }
    at::Tensor a =
        at::linear(attn.view({B, S, g.heads_local * hd}), w.o).contiguous();
    AllReduceSum(comm_, a);
    a = RmsNorm(a, w.post_attn_norm, eps);
    at::Tensor hh = h + a;

    at::Tensor m_in = RmsNorm(hh, w.pre_ff_norm, eps);
    Capture(CapturePoint::kMlpIn, L, m_in);
    at::Tensor act = cfg_.hidden_activation == "gelu"
                         ? at::gelu(at::linear(m_in, w.gate))
                         : at::gelu(at::linear(m_in, w.gate), "tanh");
    at::Tensor m =
        at::linear(act * at::linear(m_in, w.up), w.down).contiguous();
    AllReduceSum(comm_, m);
    m = RmsNorm(m, w.post_ff_norm, eps);
    hh = hh + m;
    return hh * w.layer_scalar;
  }

  // Softcapped logits of this rank's vocab shard, float32 [T, vocab_shard];
  // padding = -inf.
  at::Tensor LocalLogits(const at::Tensor& x) {
    at::Tensor flat = x.reshape({-1, cfg_.hidden_size});
    at::Tensor z = at::linear(flat, s_.embed);
    if (cfg_.final_logit_softcapping) {
      const double cap = *cfg_.final_logit_softcapping;
      z = at::tanh(z / cap) * cap;
    }
    z = z.to(at::kFloat);
    if (s_.vocab_len < s_.vocab_shard) {
      z = at::cat(
          {z, at::full({z.size(0), s_.vocab_shard - s_.vocab_len},
                       -std::numeric_limits<float>::infinity(), z.options())},
          1);
    }
    return z.contiguous();
  }

  // Vocab-parallel NLL (logsumexp - target logit) and target rank (count of
  // strictly larger logits), without gathering the logits.
  void VocabStats(const at::Tensor& z, bool want_rank, at::Tensor* nll,
                  at::Tensor* rank) {
    at::Tensor local_t = targets_ - s_.vocab_start;
    at::Tensor mine = target_valid_.logical_and(local_t.ge(0))
                          .logical_and(local_t.lt(s_.vocab_len));
    at::Tensor picked =
        z.gather(1, local_t.clamp(0, s_.vocab_shard - 1).unsqueeze(1))
            .squeeze(1);
    at::Tensor tgt =
        at::where(mine, picked, at::zeros_like(picked)).contiguous();
    AllReduceSum(comm_, tgt);
    if (nll != nullptr) {
      at::Tensor mx = std::get<0>(z.max(1)).contiguous();
      AllReduceMax(comm_, mx);
      at::Tensor sum = (z - mx.unsqueeze(1)).exp().sum(1).contiguous();
      AllReduceSum(comm_, sum);
      *nll = mx + sum.log() - tgt;
    }
    if (want_rank) {
      at::Tensor count =
          z.gt(tgt.unsqueeze(1)).sum(1).to(at::kLong).contiguous();
      AllReduceSum(comm_, count);
      *rank = at::where(target_valid_, count, at::full_like(count, -1));
    }
  }

  void Stats(int L, const at::Tensor& in, const at::Tensor& out) {
    at::Tensor a = in.to(at::kFloat).reshape({-1, cfg_.hidden_size});
    at::Tensor b = out.to(at::kFloat).reshape({-1, cfg_.hidden_size});
    at::Tensor norm_b = b.norm(2, 1);
    at::Tensor cos = (a * b).sum(1) / (a.norm(2, 1) * norm_b).clamp_min(1e-30);
    at::Tensor bi = 1.0 - cos;
    at::Tensor logits =
        LocalLogits(RmsNorm(out, s_.final_norm, cfg_.rms_norm_eps));
    at::Tensor rank;
    VocabStats(logits, /*want_rank=*/true, nullptr, &rank);
    if (s_.rank == 0) {
      LayerStats& st = out_->layer_stats[L];
      at::Tensor bi_c = bi.to(at::kCPU).contiguous();
      at::Tensor nb_c = norm_b.to(at::kCPU).contiguous();
      at::Tensor r_c = rank.to(at::kCPU).contiguous();
      st.block_influence.assign(bi_c.data_ptr<float>(),
                                bi_c.data_ptr<float>() + bi_c.numel());
      st.resid_out_norm.assign(nb_c.data_ptr<float>(),
                               nb_c.data_ptr<float>() + nb_c.numel());
      st.target_rank.assign(r_c.data_ptr<int64_t>(),
                            r_c.data_ptr<int64_t>() + r_c.numel());
    }
  }

  bool Wanted(CapturePoint::Kind kind, int L) const {
    for (const CapturePoint& cp : plan_.captures) {
      if (cp.kind == kind && cp.layer == L) return true;
    }
    return false;
  }

  void Capture(CapturePoint::Kind kind, int L, const at::Tensor& t) {
    if (s_.rank == 0 && Wanted(kind, L)) Store(kind, L, t);
  }

  void Store(CapturePoint::Kind kind, int L, const at::Tensor& t) {
    for (const CapturePoint& cp : plan_.captures) {
      if (cp.kind == kind && cp.layer == L) out_->captures[cp.name] = ToHost(t);
    }
  }

  void StoreState(std::vector<at::Tensor> kept) {
    // Each rank fills its own slot; byte accounting is summed by the engine
    // afterwards.
    int64_t on_device = 0;
    for (at::Tensor& t : kept) {
      if (!t.defined()) continue;
      const int64_t bytes = t.numel() * t.element_size();
      if (on_device + bytes <= opts_.prefix_device_budget_bytes) {
        on_device += bytes;
      } else if (!t.device().is_cpu()) {
        t = t.to(at::kCPU);
      }
      // CPU engines: device and host memory are the same; only the accounting
      // differs.
    }
    plan_.keep_state->resid[s_.rank] = std::move(kept);
  }

  const ModelConfig& cfg_;
  const EngineOptions& opts_;
  RankShard& s_;
  comm::Communicator* comm_;
  const Plan& plan_;
  ForwardResult* out_;
  int64_t* executed_;
  at::Tensor targets_;
  at::Tensor target_valid_;
};

// ---------------------------------------------------------------------------------------------

absl::Status FromException(const std::exception& e, const char* where) {
  return absl::InternalError(
      absl::StrCat(where, ": libtorch error: ", e.what()));
}

class EngineImpl : public Engine {
 public:
  EngineImpl(ModelConfig cfg, EngineOptions opts)
      : cfg_(std::move(cfg)), opts_(std::move(opts)) {}

  const ModelConfig& config() const override { return cfg_; }
  const EngineOptions& options() const override { return opts_; }
  int64_t total_layer_forwards() const override {
    return total_layer_forwards_.load();
  }

  absl::Status Init() {
    const int tp = opts_.tp_size;
    if (tp < 1) return absl::InvalidArgumentError("tp_size must be >= 1");
    if (opts_.device == "cuda" && !at::hasCUDA()) {
      return absl::FailedPreconditionError(
          "device 'cuda' requested but libtorch has no CUDA");
    }
    if (opts_.device != "cpu" && opts_.device != "cuda") {
      return absl::InvalidArgumentError(absl::StrCat(
          "device must be 'cpu' or 'cuda', got '", opts_.device, "'"));
    }
    if (cfg_.num_attention_heads % tp) {
      return absl::InvalidArgumentError(
          absl::StrCat("num_attention_heads ", cfg_.num_attention_heads,
                       " is not divisible by tp_size ", tp));
    }
    if (cfg_.intermediate_size % tp) {
      return absl::InvalidArgumentError(
          absl::StrCat("intermediate_size ", cfg_.intermediate_size,
                       " is not divisible by tp_size ", tp));
    }
    const int64_t vshard = (cfg_.vocab_size + tp - 1) / tp;
    if (vshard * (tp - 1) >= cfg_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "vocab_size ", cfg_.vocab_size, " too small for tp_size ", tp));
    }
    shards_.resize(tp);
    for (int r = 0; r < tp; ++r) {
      RankShard& s = shards_[r];
      s.rank = r;
      s.tp = tp;
      s.device = opts_.device == "cuda"
                     ? at::Device(at::kCUDA, opts_.first_device + r)
                     : at::Device(at::kCPU);
      s.dtype = opts_.dtype == DType::kBFloat16 ? at::kBFloat16 : at::kFloat;
      s.vocab_shard = vshard;
      s.vocab_start = r * vshard;
      s.vocab_len = std::min<int64_t>(vshard, cfg_.vocab_size - s.vocab_start);
      for (int L = 0; L < cfg_.num_hidden_layers; ++L) {
        const LayerConfig& lc = cfg_.layers[L];
        LayerGeom g;
        g.head_dim = lc.head_dim;
        g.heads_local = cfg_.num_attention_heads / tp;
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
        g.inter_local = cfg_.intermediate_size / tp;
        g.inter_start = r * g.inter_local;
        s.geom.push_back(g);
      }
    }
    std::unique_ptr<Checkpoint> ckpt;
    std::string prefix;
    if (!opts_.random_weights) {
      ASSIGN_OR_RETURN(ckpt, Checkpoint::Open(opts_.model_dir));
      ASSIGN_OR_RETURN(prefix, DetectPrefix(*ckpt, opts_.model_dir));
      for (int L = 0; L < cfg_.num_hidden_layers; ++L) {
        const std::string v =
            absl::StrCat(prefix, "layers.", L, ".self_attn.v_proj.weight");
        if (cfg_.layers[L].k_eq_v && ckpt->Find(v) != nullptr) {
          return absl::InvalidArgumentError(
              absl::StrCat("checkpoint ", opts_.model_dir, " has ", v,
                           " but the config makes layer ", L,
                           " a K = V layer (attention_k_eq_v)"));
        }
      }
    }
    ASSIGN_OR_RETURN(comms_,
                     CreateRankComms(opts_.device, tp, opts_.first_device,
                                     opts_.collective_timeout));
    std::vector<absl::Status> status(tp);
    std::vector<std::thread> threads;
    for (int r = 0; r < tp; ++r) {
      threads.emplace_back([&, r] {
        try {
          RankShard& s = shards_[r];
          SliceFn slice =
              ckpt ? CheckpointSlices(ckpt.get(), prefix, opts_.model_dir,
                                      s.device, s.dtype)
                   : RandomSlices(opts_.seed, cfg_.initializer_range,
                                  InitStyle::kGenerator, s.device, s.dtype);
          auto embed =
              slice("embed_tokens.weight", {cfg_.vocab_size, cfg_.hidden_size},
                    0, s.vocab_start, s.vocab_len);
          if (!embed.ok()) {
            status[r] = embed.status();
            return;
          }
          s.embed = std::move(*embed);
          auto norm = slice("norm.weight", {cfg_.hidden_size}, -1, 0, 0);
          if (!norm.ok()) {
            status[r] = norm.status();
            return;
          }
          s.final_norm = std::move(*norm);
          for (int L = 0; L < cfg_.num_hidden_layers; ++L) {
            auto layer = BuildLayer(cfg_, L, s.geom[L], slice);
            if (!layer.ok()) {
              status[r] = layer.status();
              return;
            }
            s.layers.push_back(std::move(*layer));
          }
        } catch (const std::exception& e) {
          status[r] = FromException(e, "loading weights");
        }
      });
    }
    for (auto& t : threads) t.join();
    for (const absl::Status& s : status) RETURN_IF_ERROR(s);
    return absl::OkStatus();
  }

  absl::StatusOr<ForwardResult> Forward(const ForwardRequest& req) override {
    absl::MutexLock lock(&mu_);
    Plan plan;
    RETURN_IF_ERROR(MakePlan(req, &plan));
    ForwardResult result;
    result.batch = req.batch;
    result.seq = req.seq;
    const int tp = opts_.tp_size;
    std::vector<absl::Status> status(tp);
    std::vector<int64_t> executed(tp, 0);
    const int threads_per_rank =
        opts_.cpu_threads_per_rank > 0
            ? opts_.cpu_threads_per_rank
            : std::max(
                  1,
                  static_cast<int>(std::thread::hardware_concurrency()) / tp);
    auto run_rank = [&](int r) {
      if (opts_.device == "cpu") at::set_num_threads(threads_per_rank);
      try {
        RankRunner(cfg_, opts_, &shards_[r], comms_->rank(r), plan, &result,
                   &executed[r])
            .Run();
      } catch (const CommFailure& f) {
        status[r] = f.status;
        comms_->rank(r)->Abort();
      } catch (const std::exception& e) {
        status[r] =
            FromException(e, absl::StrCat("forward on rank ", r).c_str());
        // Release the other ranks now instead of after the collective timeout.
        comms_->rank(r)->Abort();
      }
    };
    std::vector<std::thread> threads;
    for (int r = 0; r < tp; ++r) threads.emplace_back(run_rank, r);
    for (auto& t : threads) t.join();
    absl::Status first_error;
    for (const absl::Status& s : status) {
      if (s.ok()) continue;
      // Prefer the root cause over the ranks that were aborted because of it.
      if (first_error.ok() ||
          (absl::IsAborted(first_error) && !absl::IsAborted(s))) {
        first_error = s;
      }
    }
    if (!first_error.ok()) {
      // A failed collective leaves the group aborted: make a fresh one for
      // later forwards.
      auto fresh = CreateRankComms(opts_.device, tp, opts_.first_device,
                                   opts_.collective_timeout);
      if (fresh.ok()) comms_ = std::move(*fresh);
      return first_error;
    }
    result.layer_forwards = executed[0];
    total_layer_forwards_ += executed[0];
    if (plan.keep_state) {
      AccountState(plan.keep_state.get());
      result.prefix_state = plan.keep_state;
    }
    return result;
  }

 private:
  void AccountState(PrefixStateImpl* st) const {
    st->device_bytes_ = st->host_bytes_ = 0;
    for (const auto& rank_resid : st->resid) {
      int64_t on_device = 0;
      for (const at::Tensor& t : rank_resid) {
        if (!t.defined()) continue;
        const int64_t bytes = t.numel() * t.element_size();
        const bool device_resident =
            opts_.device == "cuda"
                ? !t.device().is_cpu()
                : on_device + bytes <= opts_.prefix_device_budget_bytes;
        if (device_resident) {
          on_device += bytes;
          st->device_bytes_ += bytes;
        } else {
          st->host_bytes_ += bytes;
        }
      }
    }
  }

  absl::Status MakePlan(const ForwardRequest& req, Plan* plan) {
    const int N = cfg_.num_hidden_layers;
    if (req.batch < 1 || req.seq < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("batch and seq must be >= 1, got batch=", req.batch,
                       " seq=", req.seq));
    }
    const int64_t T = req.batch * req.seq;
    if (static_cast<int64_t>(req.tokens.size()) != T) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tokens has ", req.tokens.size(), " entries, batch*seq = ", T));
    }
    for (int64_t i = 0; i < T; ++i) {
      if (req.tokens[i] < 0 || req.tokens[i] >= cfg_.vocab_size) {
        return absl::InvalidArgumentError(
            absl::StrCat("tokens[", i, "] = ", req.tokens[i],
                         " outside [0, vocab_size=", cfg_.vocab_size, ")"));
      }
    }
    plan->req = &req;
    if (req.targets.empty()) {
      plan->targets.assign(T, -1);
      for (int64_t b = 0; b < req.batch; ++b) {
        for (int64_t s = 0; s + 1 < req.seq; ++s) {
          plan->targets[b * req.seq + s] = req.tokens[b * req.seq + s + 1];
        }
      }
    } else {
      if (static_cast<int64_t>(req.targets.size()) != T) {
        return absl::InvalidArgumentError(absl::StrCat(
            "targets has ", req.targets.size(), " entries, batch*seq = ", T));
      }
      for (int64_t i = 0; i < T; ++i) {
        if (req.targets[i] < -1 || req.targets[i] >= cfg_.vocab_size) {
          return absl::InvalidArgumentError(
              absl::StrCat("targets[", i, "] = ", req.targets[i],
                           " outside [-1, vocab_size)"));
        }
      }
      plan->targets = req.targets;
    }
    plan->skip.assign(N, 0);
    plan->zero.assign(N, 0);
    plan->reinit.assign(N, std::nullopt);
    plan->masked_heads.assign(N, {});
    for (size_t i = 0; i < req.interventions.size(); ++i) {
      const Intervention& iv = req.interventions[i];
      if (iv.layer < 0 || iv.layer >= N) {
        return absl::InvalidArgumentError(
            absl::StrCat("interventions[", i, "].layer ", iv.layer,
                         " outside [0, ", N, ")"));
      }
      switch (iv.kind) {
        case Intervention::Kind::kSkipLayer:
          plan->skip[iv.layer] = 1;
          break;
        case Intervention::Kind::kZeroLayer:
          plan->zero[iv.layer] = 1;
          break;
        case Intervention::Kind::kReinitLayer:
          plan->reinit[iv.layer] = iv.seed;
          break;
        case Intervention::Kind::kMaskHeads:
          for (int head : iv.heads) {
            if (head < 0 || head >= cfg_.num_attention_heads) {
              return absl::InvalidArgumentError(
                  absl::StrCat("interventions[", i, "].heads: head ", head,
                               " outside [0, ", cfg_.num_attention_heads, ")"));
            }
            plan->masked_heads[iv.layer].push_back(head);
          }
          break;
      }
    }
    for (int L = 0; L < N; ++L) {
      if (plan->skip[L] + plan->zero[L] + plan->reinit[L].has_value() > 1) {
        return absl::InvalidArgumentError(absl::StrCat(
            "layer ", L,
            " has more than one of skip / zero / reinit interventions"));
      }
    }
    plan->first_touched = FirstTouchedLayer(req.interventions, N);
    plan->start_layer = 0;
    if (req.start_from != nullptr) {
      const auto* st =
          dynamic_cast<const PrefixStateImpl*>(req.start_from.get());
      if (st == nullptr || st->owner != this) {
        return absl::InvalidArgumentError(
            "start_from was not produced by this engine");
      }
      if (st->tokens != req.tokens || st->batch != req.batch ||
          st->seq != req.seq) {
        return absl::InvalidArgumentError(
            "start_from was produced for different tokens than this request's");
      }
      if (req.start_layer < 0 || req.start_layer > N) {
        return absl::InvalidArgumentError(absl::StrCat(
            "start_layer ", req.start_layer, " outside [0, ", N, "]"));
      }
      if (req.start_layer > st->valid_until()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "start_layer ", req.start_layer,
            " is past the prefix state's valid_until ", st->valid_until(),
            " (its forward had an intervention at that layer)"));
      }
      if (req.start_layer > plan->first_touched) {
        return absl::InvalidArgumentError(
            absl::StrCat("start_layer ", req.start_layer,
                         " is past this request's first intervention at layer ",
                         plan->first_touched));
      }
      for (const auto& rank_resid : st->resid) {
        if (static_cast<int>(rank_resid.size()) != N + 1 ||
            !rank_resid[req.start_layer].defined()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "start_from holds no residual for layer ", req.start_layer));
        }
      }
      plan->start_state = st;
      plan->start_layer = req.start_layer;
    } else if (req.start_layer != 0) {
      return absl::InvalidArgumentError("start_layer > 0 needs start_from");
    }
    for (const std::string& name : req.captures) {
      ASSIGN_OR_RETURN(CapturePoint cp, ParseCapture(name, N));
      if (cp.layer < plan->start_layer) {
        return absl::InvalidArgumentError(
            absl::StrCat("capture point '", name, "' lies before start_layer ",
                         plan->start_layer));
      }
      if ((cp.kind == CapturePoint::kAttnHeads ||
           cp.kind == CapturePoint::kMlpIn) &&
          plan->skip[cp.layer]) {
        return absl::InvalidArgumentError(absl::StrCat(
            "capture point '", name, "' belongs to a skipped layer"));
      }
      plan->captures.push_back(cp);
    }
    if (req.keep_prefix_state) {
      auto st = std::make_shared<PrefixStateImpl>();
      st->owner = this;
      st->tokens = req.tokens;
      st->batch = req.batch;
      st->seq = req.seq;
      st->valid_until_ = plan->first_touched;
      if (plan->start_state != nullptr) {
        st->valid_until_ =
            std::min(st->valid_until_, plan->start_state->valid_until());
      }
      st->resid.resize(opts_.tp_size);
      plan->keep_state = std::move(st);
    }
    return absl::OkStatus();
  }

  const ModelConfig cfg_;
  const EngineOptions opts_;
  std::vector<RankShard> shards_;
  std::unique_ptr<RankComms> comms_;
  std::atomic<int64_t> total_layer_forwards_{0};
  absl::Mutex mu_;  // one forward at a time
};

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(
    const EngineOptions& options) {
  std::string config_path;
  if (!options.model_dir.empty()) {
    config_path = options.model_dir + "/config.json";
  } else if (options.random_weights && !options.config_path.empty()) {
    config_path = options.config_path;
  } else {
    return absl::InvalidArgumentError(
        "EngineOptions needs model_dir, or random_weights with config_path");
  }
  if (!options.random_weights && options.model_dir.empty()) {
    return absl::InvalidArgumentError("EngineOptions.model_dir is empty");
  }
  ASSIGN_OR_RETURN(ModelConfig cfg, ModelConfig::FromFile(config_path));
  auto engine = std::make_unique<EngineImpl>(std::move(cfg), options);
  try {
    RETURN_IF_ERROR(engine->Init());
  } catch (const std::exception& e) {
    return FromException(e, "creating the engine");
  }
  return std::unique_ptr<Engine>(std::move(engine));
}

}  // namespace sweepd::engine
