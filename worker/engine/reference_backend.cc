#include "worker/engine/reference_backend.h"

#include <utility>

#include "worker/engine/rank_forward.h"
#include "worker/engine/torch_compat.h"

namespace sweepd::engine::internal {

at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor n = xf * at::pow(xf.pow(2).mean(-1, /*keepdim=*/true) + eps, -0.5);
  if (weight.defined()) n = n * weight.to(at::kFloat);
  return n.to(x.scalar_type());
}

namespace {

at::Tensor RotateHalf(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

class ReferenceBackend : public RankBackend {
 public:
  ReferenceBackend(const ModelConfig& cfg, const EngineOptions& opts,
                   RankShard* shard)
      : cfg_(cfg), opts_(opts), s_(*shard) {}

  DeviceEventTimer* BeginForward(RankForward* f) override {
    f_ = f;
    return nullptr;
  }

  void PrepareTargets() override {
    const int64_t T = f_->batch() * f_->seq();
    lens_mask_ = at::from_blob(const_cast<uint8_t*>(f_->plan().lens.data()),
                               {T}, at::kByte)
                     .to(s_.device)
                     .to(at::kBool);
  }

  void EndForward() override {
    f_ = nullptr;
    lens_mask_ = at::Tensor();
  }

  LayerQkv AttentionInput(int L, const at::Tensor& h,
                          const LayerWeights& w) override {
    const LayerGeom& g = s_.geom[L];
    const LayerConfig& lc = cfg_.layers[L];
    const int64_t B = h.size(0), S = h.size(1), hd = g.head_dim;
    const double eps = cfg_.rms_norm_eps;

    at::Tensor x = RmsNorm(h, w.input_norm, eps);
    auto [cos, sin] = f_->Rope(L, S);
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
    return {q, k, v};
  }

  at::Tensor Attention(int L, const LayerQkv& qkv) override {
    const LayerGeom& g = s_.geom[L];
    const int64_t S = qkv.q.size(1);
    at::Tensor q = qkv.q.transpose(1, 2);
    at::Tensor k = qkv.k.transpose(1, 2);
    at::Tensor v = qkv.v.transpose(1, 2);
    const int64_t groups = g.heads_local / g.kv_local;
    if (groups > 1) {
      k = k.repeat_interleave(groups, 1);
      v = v.repeat_interleave(groups, 1);
    }
    at::Tensor attn = compat::Attention(
        q.contiguous(), k.contiguous(), v.contiguous(), f_->AllowedMask(L, S),
        1.0, opts_.use_sdpa && s_.device.is_cuda());
    return attn.transpose(1, 2).contiguous();  // [B, S, heads_local, hd]
  }

  at::Tensor AttentionOutput(int L, const at::Tensor& attn,
                             const LayerWeights& w) override {
    const LayerGeom& g = s_.geom[L];
    const int64_t B = attn.size(0), S = attn.size(1);
    return at::linear(attn.view({B, S, g.heads_local * g.head_dim}), w.o)
        .contiguous();
  }

  AttentionResidual AddAttention(int L, const at::Tensor& h,
                                 const at::Tensor& a,
                                 const LayerWeights& w) override {
    const double eps = cfg_.rms_norm_eps;
    at::Tensor hh = h + RmsNorm(a, w.post_attn_norm, eps);
    at::Tensor m_in = RmsNorm(hh, w.pre_ff_norm, eps);
    return {hh, m_in};
  }

  at::Tensor Mlp(int L, const at::Tensor& m_in,
                 const LayerWeights& w) override {
    at::Tensor act = cfg_.hidden_activation == "gelu"
                         ? at::gelu(at::linear(m_in, w.gate))
                         : at::gelu(at::linear(m_in, w.gate), "tanh");
    return at::linear(act * at::linear(m_in, w.up), w.down).contiguous();
  }

  at::Tensor AddMlp(int L, const at::Tensor& resid, const at::Tensor& m,
                    const LayerWeights& w) override {
    at::Tensor hh = resid + RmsNorm(m, w.post_ff_norm, cfg_.rms_norm_eps);
    return hh * w.layer_scalar;
  }

  at::Tensor FinalNorm(const at::Tensor& h) override {
    return RmsNorm(h, s_.final_norm, cfg_.rms_norm_eps);
  }

  at::Tensor Nll(const at::Tensor& x) override {
    at::Tensor logits =
        f_->LocalLogits(x);  // [B*S, vocab_shard] float32, padding -inf
    at::Tensor nll, rank;
    f_->VocabStats(logits, /*want_rank=*/false, &nll, &rank);
    return nll;
  }

  void LayerStats(int L, const at::Tensor& in, const at::Tensor& out) override {
    at::Tensor a = in.to(at::kFloat).reshape({-1, cfg_.hidden_size});
    at::Tensor b = out.to(at::kFloat).reshape({-1, cfg_.hidden_size});
    at::Tensor norm_b = b.norm(2, 1);
    at::Tensor cos = (a * b).sum(1) / (a.norm(2, 1) * norm_b).clamp_min(1e-30);
    at::Tensor bi = 1.0 - cos;
    at::Tensor logits =
        f_->LocalLogits(RmsNorm(out, s_.final_norm, cfg_.rms_norm_eps));
    at::Tensor rank;
    f_->VocabStats(logits, /*want_rank=*/true, nullptr, &rank);
    rank = at::where(lens_mask_, rank, at::full_like(rank, -1));
    if (s_.rank == 0) {
      engine::LayerStats& st = f_->out()->layer_stats[L];
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

  void FinishStats() override {}

 private:
  const ModelConfig& cfg_;
  const EngineOptions& opts_;
  RankShard& s_;
  RankForward* f_ = nullptr;  // the forward in progress
  at::Tensor lens_mask_;      // Plan::lens as a bool tensor [batch*seq]
};

}  // namespace

std::unique_ptr<RankBackend> CreateReferenceBackend(const ModelConfig& cfg,
                                                    const EngineOptions& opts,
                                                    RankShard* shard) {
  return std::make_unique<ReferenceBackend>(cfg, opts, shard);
}

}  // namespace sweepd::engine::internal
