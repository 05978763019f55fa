#include "worker/engine/cuda_backend.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "kernels/block_influence.h"
#include "kernels/cuda_util.h"
#include "kernels/geglu.h"
#include "kernels/head_norm_rope.h"
#include "kernels/lm_head_pass.h"
#include "kernels/row_norm.h"
#include "worker/engine/cuda_attention.h"
#include "worker/engine/cuda_check.h"
#include "worker/engine/device_stats.h"
#include "worker/engine/gemm_tuner.h"
#include "worker/engine/rank_forward.h"
#include "worker/engine/skinny_linear.h"
#include "worker/engine/tp_ops.h"

namespace sweepd::engine::internal {
namespace {

// Fused projections (4 GEMMs per layer), fused norm / RoPE / GeGLU kernels
// (kernels/row_norm.h, head_norm_rope.h, geglu.h, block_influence.h),
// mask-free attention and the fused LM-head pass
// (kernels/lm_head_pass.h) on bf16 logits. Same semantics as the reference
// backend (docs/ENGINE.md, "GPU path").
class CudaBackend : public RankBackend, public DeviceEventTimer {
 public:
  CudaBackend(const ModelConfig& cfg, const EngineOptions& opts,
              RankShard* shard, EngineDiagnostics* diagnostics)
      : cfg_(cfg),
        opts_(opts),
        s_(*shard),
        diagnostics_(diagnostics),
        attention_(cfg, opts, shard, diagnostics) {}

  // ---- RankBackend: one forward.

  DeviceEventTimer* BeginForward(RankForward* f) override {
    f_ = f;
    CudaCheck(kernels::CudaSetDevice(s_.device.index()), "cudaSetDevice");
    stream_ = internal::CurrentCudaStream(s_.device.index());
    attention_.Bind(f, stream_);
    return this;
  }

  void PrepareTargets() override {
    const std::vector<int32_t>& targets = f_->plan().targets;
    const std::vector<uint8_t>& lens_positions = f_->plan().lens;
    const int64_t T = f_->batch() * f_->seq();
    // Positions with a target, found on the host (no device sync).
    std::vector<int64_t> valid;
    for (int64_t i = 0; i < T; ++i) {
      if (targets[i] >= 0) valid.push_back(i);
    }
    valid_idx_ = at::tensor(valid, at::kLong).to(s_.device);
    valid_targets_ = f_->targets().index_select(0, valid_idx_);
    std::vector<int64_t> lens;
    for (int64_t i = 0; i < T; ++i) {
      if (lens_positions[i]) lens.push_back(i);
    }
    lens_idx_ = at::tensor(lens, at::kLong).to(s_.device);
    lens_targets_ = f_->targets().index_select(0, lens_idx_);
  }

  void BeginLayers() override { rope_cache_.clear(); }

  void EndForward() override {
    f_ = nullptr;
    attention_.Bind(nullptr, stream_);
    valid_idx_ = valid_targets_ = lens_idx_ = lens_targets_ = at::Tensor();
    rope_cache_.clear();
    stats_bi_.clear();
    stats_norm_.clear();
    stats_rank_.clear();
    lens_pending_.clear();
    lens_pending_rows_ = 0;
  }

  // ---- DeviceEventTimer: CUDA events on the rank's stream.

  void* Record() override {
    void* event = nullptr;
    CudaCheck(kernels::CudaEventCreate(&event), "profile event");
    CudaCheck(kernels::CudaEventRecord(event, stream_), "profile event");
    return event;
  }

  double ElapsedMs(void* start, void* end) override {
    float dev_ms = 0;
    CudaCheck(kernels::CudaEventElapsedMs(start, end, &dev_ms),
              "profile event");
    return dev_ms;
  }

  void Destroy(void* event) override { kernels::CudaEventDestroy(event); }

  // ---- RankBackend: the layer operations.

  LayerQkv AttentionInput(int L, const at::Tensor& h,
                          const LayerWeights& w) override {
    const LayerGeom& g = s_.geom[L];
    const LayerConfig& lc = cfg_.layers[L];
    const int64_t B = h.size(0), S = h.size(1), T = B * S, hd = g.head_dim;
    const int64_t hidden = cfg_.hidden_size;
    auto opts = h.options();
    at::Tensor h2 = h.reshape({T, hidden}).contiguous();

    f_->clock()->Mark("norm_input");
    at::Tensor x = at::empty({T, hidden}, opts);
    RowNormFast(h2, w.input_norm, at::Tensor(), at::Tensor(), x);
    f_->clock()->Mark("gemm_qkv");
    at::Tensor qkv = Linear(x, w.qkv);  // [T, (Hl + KVl (+ KVl)) * hd]
    f_->clock()->Mark("qkv_norm_rope");
    const auto& [cos, sin] = RopeFor(L, S);
    // q (q_norm, RoPE), k (k_norm, RoPE) and v (v_norm: no weight, no RoPE)
    // in one launch, reading qkv [T, width] in place.
    kernels::HeadNormRopeMultiArgs a;
    a.dtype = OpDtype();
    a.x = qkv.data_ptr();
    a.x_stride = qkv.stride(0);
    a.tokens = T;
    a.seq = S;
    a.head_dim = static_cast<int>(hd);
    a.eps = static_cast<float>(cfg_.rms_norm_eps);
    a.cos = Ptr(cos);
    a.sin = Ptr(sin);
    auto add = [&a](int64_t col, int heads, const at::Tensor& weight, bool rope,
                    void* out) -> kernels::HeadNormRopeSegment& {
      kernels::HeadNormRopeSegment& s = a.seg[a.segments++];
      s.col = col;
      s.heads = heads;
      s.weight = Ptr(weight);
      s.rope = rope;
      s.out = out;
      return s;
    };
    const bool rope = cos.defined();
    const int64_t q_cols = g.heads_local * hd, kv_cols = g.kv_local * hd;
    // K = V layers: V is v_norm of the raw k_proj output.
    const int64_t v_col = lc.k_eq_v ? q_cols : q_cols + kv_cols;
    at::Tensor q = at::empty({B, S, g.heads_local, hd}, opts);
    add(0, g.heads_local, w.q_norm, rope, q.data_ptr());
    at::Tensor k, v;
    KvDestination dest;
    ForwardHook* hook = f_->hook();
    if (hook != nullptr && hook->KvDestinationFor(L, T, &dest)) {
      // Straight into the KV cache at the rows' slots (K = V layers store v
      // only); k and v stay undefined.
      auto to_pool = [&dest](kernels::HeadNormRopeSegment& s) {
        s.head_stride = dest.head_stride;
        s.row_stride = dest.row_stride;
        s.rows = dest.rows;
      };
      if (dest.k_pool != nullptr) {
        to_pool(add(q_cols, g.kv_local, w.k_norm, rope, dest.k_pool));
      }
      to_pool(add(v_col, g.kv_local, at::Tensor(), false, dest.v_pool));
    } else {
      k = at::empty({B, S, g.kv_local, hd}, opts);
      v = at::empty({B, S, g.kv_local, hd}, opts);
      add(q_cols, g.kv_local, w.k_norm, rope, k.data_ptr());
      add(v_col, g.kv_local, at::Tensor(), false, v.data_ptr());
    }
    CudaCheck(kernels::HeadNormRopeMultiCuda(a, stream_), "HeadNormRopeMulti");
    return {q, k, v};
  }

  at::Tensor Attention(int L, const LayerQkv& qkv) override {
    return attention_.Forward(L, qkv.q, qkv.k, qkv.v);  // [B, S, Hl, hd]
  }

  at::Tensor AttentionOutput(int L, const at::Tensor& attn,
                             const LayerWeights& w) override {
    const LayerGeom& g = s_.geom[L];
    const int64_t T = attn.size(0) * attn.size(1);
    return Linear(attn.view({T, g.heads_local * g.head_dim}), w.o);
  }

  AttentionResidual AddAttention(int L, const at::Tensor& h,
                                 const at::Tensor& a,
                                 const LayerWeights& w) override {
    const int64_t hidden = cfg_.hidden_size;
    const int64_t T = h.size(0) * h.size(1);
    auto opts = h.options();
    at::Tensor h2 = h.reshape({T, hidden}).contiguous();
    at::Tensor hh = at::empty({T, hidden}, opts);
    at::Tensor m_in = at::empty({T, hidden}, opts);
    RowNormFast(a, w.post_attn_norm, h2, at::Tensor(), hh, w.pre_ff_norm, m_in);
    return {hh, m_in};
  }

  at::Tensor Mlp(int L, const at::Tensor& m_in,
                 const LayerWeights& w) override {
    const LayerGeom& g = s_.geom[L];
    const int64_t T = m_in.size(0);
    at::Tensor gu = Linear(m_in, w.gate_up);  // [T, 2 * inter_local]
    f_->clock()->Mark("geglu");
    at::Tensor act = at::empty({T, g.inter_local}, m_in.options());
    CudaCheck(kernels::GegluCuda(OpDtype(), gu.data_ptr(), T, g.inter_local,
                                 cfg_.hidden_activation != "gelu",
                                 act.data_ptr(), stream_),
              "Geglu");
    gu = at::Tensor();
    f_->clock()->Mark("gemm_down");
    return Linear(act, w.down);
  }

  at::Tensor AddMlp(int L, const at::Tensor& resid, const at::Tensor& m,
                    const LayerWeights& w) override {
    at::Tensor out = at::empty(resid.sizes(), resid.options());  // [T, hidden]
    RowNormFast(m, w.post_ff_norm, resid, w.layer_scalar, out);
    // [B, T / B, hidden]: T = B x S, or a decode graph's padded rows (B 1).
    return out.view({f_->batch(), -1, cfg_.hidden_size});
  }

  // ---- RankBackend: head and probes.

  at::Tensor FinalNorm(const at::Tensor& h) override {
    return NormFast(h, s_.final_norm);
  }

  at::Tensor Nll(const at::Tensor& x) override { return NllFast(x); }

  void LayerStats(int L, const at::Tensor& in, const at::Tensor& out) override {
    at::Tensor a = in.reshape({-1, cfg_.hidden_size}).contiguous();
    at::Tensor b = out.reshape({-1, cfg_.hidden_size}).contiguous();
    auto fopts = at::TensorOptions().dtype(at::kFloat).device(s_.device);
    at::Tensor bi = at::empty({a.size(0)}, fopts);
    at::Tensor nb = at::empty({a.size(0)}, fopts);
    CudaCheck(kernels::RowCosNormCuda(
                  OpDtype(), a.data_ptr(), b.data_ptr(), a.size(0), a.size(1),
                  bi.data_ptr<float>(), nb.data_ptr<float>(), stream_),
              "RowCosNorm");
    if (stats_bi_.empty()) {
      const int N = cfg_.num_hidden_layers;
      stats_bi_.resize(N);
      stats_norm_.resize(N);
      stats_rank_.resize(N);
    }
    stats_bi_[L] = bi;
    stats_norm_[L] = nb;
    if (lens_idx_.numel() == 0) return;
    // Logit lens only at the lens positions (targeted, and selected by
    // ForwardRequest::lens_positions); the LM head runs later over the rows of
    // many layers at once (one read of the embedding).
    at::Tensor rows = b.index_select(0, lens_idx_);
    at::Tensor normed = at::empty(rows.sizes(), rows.options());
    RowNormFast(rows, s_.final_norm, at::Tensor(), at::Tensor(), normed);
    lens_pending_.emplace_back(L, normed);
    lens_pending_rows_ += normed.size(0);
    if (lens_pending_rows_ >= LmHeadChunkRows()) FlushLens();
  }

  void FinishStats() override {
    f_->clock()->Mark("stats");
    FlushLens();
    PublishStatsFast();
  }

 private:
  void FlushLens() {
    if (lens_pending_.empty()) return;
    std::vector<at::Tensor> xs;
    for (const auto& [L, t] : lens_pending_) xs.push_back(t);
    at::Tensor x = xs.size() == 1 ? xs[0] : at::cat(xs, 0);
    at::Tensor targets =
        lens_targets_.repeat({static_cast<int64_t>(xs.size())});
    at::Tensor rank;
    LmHeadPass(x, targets, nullptr, &rank);
    const int64_t n = lens_idx_.size(0);
    for (size_t i = 0; i < lens_pending_.size(); ++i) {
      stats_rank_[lens_pending_[i].first] =
          rank.narrow(0, static_cast<int64_t>(i) * n, n);
    }
    lens_pending_.clear();
    lens_pending_rows_ = 0;
  }

  // Copies the per-layer statistics to the result (rank 0), one transfer each.
  void PublishStatsFast() {
    if (s_.rank != 0 || stats_bi_.empty()) return;
    const int N = cfg_.num_hidden_layers;
    std::vector<int> layers;
    std::vector<at::Tensor> bis, norms, ranks;
    const at::Tensor& targets = f_->targets();
    const int64_t T = targets.size(0);
    for (int L = f_->plan().start_layer; L < N; ++L) {
      if (!stats_bi_[L].defined()) continue;
      layers.push_back(L);
      bis.push_back(stats_bi_[L]);
      norms.push_back(stats_norm_[L]);
      at::Tensor r = at::full({T}, -1, targets.options());
      if (stats_rank_[L].defined()) r.index_copy_(0, lens_idx_, stats_rank_[L]);
      ranks.push_back(r);
    }
    if (layers.empty()) return;
    at::Tensor bi = at::stack(bis).to(at::kCPU).contiguous();
    at::Tensor nb = at::stack(norms).to(at::kCPU).contiguous();
    at::Tensor rk = at::stack(ranks).to(at::kCPU).contiguous();
    for (size_t i = 0; i < layers.size(); ++i) {
      engine::LayerStats& st = f_->out()->layer_stats[layers[i]];
      const float* pb = bi.data_ptr<float>() + i * T;
      const float* pn = nb.data_ptr<float>() + i * T;
      const int64_t* pr = rk.data_ptr<int64_t>() + i * T;
      st.block_influence.assign(pb, pb + T);
      st.resid_out_norm.assign(pn, pn + T);
      st.target_rank.assign(pr, pr + T);
    }
  }

  // NLL at every position [T] (0 where no target) from the final-norm output.
  at::Tensor NllFast(const at::Tensor& x) {
    at::Tensor flat = x.reshape({-1, cfg_.hidden_size});
    at::Tensor nll =
        at::zeros({flat.size(0)},
                  at::TensorOptions().dtype(at::kFloat).device(s_.device));
    if (valid_idx_.numel() == 0) return nll;
    at::Tensor rows = flat.index_select(0, valid_idx_);
    at::Tensor v;
    LmHeadPass(rows, valid_targets_, &v, nullptr);
    nll.index_copy_(0, valid_idx_, v);
    return nll;
  }

  static const void* Ptr(const at::Tensor& t) {
    return t.defined() ? t.data_ptr() : nullptr;
  }

  // out = norm(x)·w; with residual: (residual + ·)[·scalar]; with out2 also
  // out2 = norm(out)·w2. x is [rows, dim] with unit column stride.
  void RowNormFast(const at::Tensor& x, const at::Tensor& w,
                   const at::Tensor& residual, const at::Tensor& scalar,
                   const at::Tensor& out, const at::Tensor& w2 = at::Tensor(),
                   const at::Tensor& out2 = at::Tensor()) {
    kernels::RowNormArgs a;
    a.dtype = OpDtype();
    a.x = x.data_ptr();
    a.x_stride = x.stride(0);
    a.rows = x.size(0);
    a.dim = x.size(1);
    a.weight = Ptr(w);
    a.eps = static_cast<float>(cfg_.rms_norm_eps);
    a.residual = Ptr(residual);
    a.scalar = Ptr(scalar);
    a.out = out.data_ptr();
    a.weight2 = Ptr(w2);
    a.out2 = out2.defined() ? out2.data_ptr() : nullptr;
    CudaCheck(kernels::RowNormCuda(a, stream_), "RowNorm");
  }

  at::Tensor NormFast(const at::Tensor& h, const at::Tensor& w) {
    at::Tensor x = h.reshape({-1, h.size(-1)}).contiguous();
    at::Tensor out = at::empty(x.sizes(), x.options());
    RowNormFast(x, w, at::Tensor(), at::Tensor(), out);
    return out.view(h.sizes());
  }

  // cos/sin [S, head_dim] of layer L's RoPE, computed once per forward per
  // distinct RoPE configuration.
  const std::pair<at::Tensor, at::Tensor>& RopeFor(int L, int64_t S) {
    const LayerConfig& lc = cfg_.layers[L];
    const std::string key =
        absl::StrCat(static_cast<int>(lc.rope_type), "/", lc.rope_theta, "/",
                     lc.partial_rotary_factor, "/", lc.rope_factor, "/",
                     lc.head_dim, "/", S);
    auto it = rope_cache_.find(key);
    if (it == rope_cache_.end()) {
      auto [cos, sin] = f_->Rope(L, S);
      it = rope_cache_
               .emplace(key, std::make_pair(cos.contiguous(), sin.contiguous()))
               .first;
    }
    return it->second;
  }

  // y [M, N] = x [M, K] · wᵀ (w [N, K]): the skinny GEMM kernel
  // (EngineOptions::skinny_gemm, bf16, M <= 32, K a multiple of 64, rows
  // contiguous and 16-byte aligned); cuBLASLt with autotuned algorithms
  // (GemmTuning::kAutotune, bf16, M >= 1024 or a power of two, the same
  // layout); else at::mm with cuBLAS's heuristic.
  at::Tensor Linear(const at::Tensor& x, const at::Tensor& w) {
    const auto aligned = [](const at::Tensor& t) {
      return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0 &&
             t.stride(0) % 8 == 0 && t.stride(1) == 1;
    };
    if (opts_.skinny_gemm && SkinnyLinear::Takes(x, w)) {
      return skinny_.Run(x, w, stream_);
    }
    // Only GEMMs of at least kTunedMinRows rows, or of a power of two rows
    // (the decode steps' batch buckets, decode_graph.h), are tuned: the
    // logit lens' and the prefills' few-row GEMMs come in many shapes, each
    // of which would be timed once.
    constexpr int64_t kTunedMinRows = 1024;
    const int64_t m = x.size(0);
    const bool tuned_rows = m >= kTunedMinRows || (m > 0 && (m & (m - 1)) == 0);
    if (opts_.gemm_tuning == GemmTuning::kAutotune && s_.device.is_cuda() &&
        tuned_rows && x.scalar_type() == at::kBFloat16 &&
        w.scalar_type() == at::kBFloat16 && x.dim() == 2 && w.dim() == 2 &&
        aligned(x) && aligned(w)) {
      if (gemm_ == nullptr && gemm_error_.empty()) {
        // One small GEMM through libtorch first, so that its cuBLAS (and
        // the cuBLASLt next to it, which the tuner uses) is loaded.
        at::mm(x.narrow(0, 0, 1), w.narrow(0, 0, 1).t());
        auto t = GemmTuner::Create(s_.device.index(), opts_.gemm_tuning_cache);
        if (t.ok()) {
          gemm_ = std::move(*t);
        } else {
          gemm_error_ = t.status().ToString();
          SWEEPD_LOG(WARNING) << "rank " << s_.rank
                              << ": GEMM autotuning unavailable, using "
                                 "cuBLAS's heuristic: "
                              << gemm_error_;
        }
      }
      if (gemm_ != nullptr) {
        at::Tensor y = at::empty({x.size(0), w.size(0)}, x.options());
        GemmArgs a;
        a.shape = {x.size(0), w.size(0), x.size(1)};
        a.x = x.data_ptr();
        a.ldx = x.stride(0);
        a.w = w.data_ptr();
        a.ldw = w.stride(0);
        a.y = y.data_ptr();
        a.ldy = y.stride(0);
        absl::StatusOr<bool> tuned = gemm_->Run(a, stream_);
        if (!tuned.ok()) throw std::runtime_error(tuned.status().ToString());
        if (*tuned) {
          const GemmTuner::Choice c = gemm_->Choices().back();
          const std::string line =
              c.from_cache
                  ? absl::StrCat("rank ", s_.rank, " GEMM ",
                                 GemmShapeName(c.shape), ": ", c.candidates,
                                 " candidates, #", c.chosen,
                                 " from the tuning cache")
                  : absl::StrCat("rank ", s_.rank, " GEMM ",
                                 GemmShapeName(c.shape), ": ", c.candidates,
                                 " candidates, chose #", c.chosen, " ",
                                 c.chosen_ms, " ms (heuristic's first ",
                                 c.heuristic_ms, " ms)");
          SWEEPD_LOG(INFO) << line;
          diagnostics_->AddGemmLine(line);
        }
        return y;
      }
    }
    return at::mm(x, w.t());
  }

  // Rows of bf16/fp32 logits per LM-head chunk: about 1 GiB of logits.
  int64_t LmHeadChunkRows() const {
    return std::max<int64_t>(
        1, (int64_t{1} << 30) / (s_.vocab_len * s_.embed.element_size()));
  }

  // Vocab-parallel LM head over rows x [n, hidden] (final-norm outputs) with
  // global target ids [n] (all >= 0): NLL (float [n]) and/or the target's rank
  // (int64 [n]), from one GEMM per chunk of rows into logits of the compute
  // dtype and the fused pass of kernels/lm_head_pass.h (docs/KERNELS.md call
  // sequences: one call at TP = 1, two passes around all-reduces at TP > 1).
  void LmHeadPass(const at::Tensor& x, const at::Tensor& targets,
                  at::Tensor* nll, at::Tensor* rank) {
    const int64_t n = x.size(0);
    auto fopts = at::TensorOptions().dtype(at::kFloat).device(s_.device);
    if (nll != nullptr) *nll = at::empty({n}, fopts);
    if (rank != nullptr) *rank = at::empty({n}, targets.options());
    const float cap = cfg_.final_logit_softcapping
                          ? static_cast<float>(*cfg_.final_logit_softcapping)
                          : 0.0f;
    const int64_t chunk = LmHeadChunkRows();
    auto check = [](const absl::Status& st) {
      if (!st.ok()) throw std::runtime_error(st.ToString());
    };
    for (int64_t c0 = 0; c0 < n; c0 += chunk) {
      const int64_t cn = std::min(chunk, n - c0);
      f_->clock()->Mark("lm_head_gemm");
      at::Tensor logits = Linear(x.narrow(0, c0, cn), s_.embed);
      f_->clock()->Mark("lm_head_pass");
      at::Tensor tg = targets.narrow(0, c0, cn).contiguous();
      kernels::LogitsShard sh;
      sh.data = logits.data_ptr();
      sh.type = s_.dtype == at::kBFloat16 ? kernels::LogitsType::kBFloat16
                                          : kernels::LogitsType::kFloat32;
      sh.num_rows = cn;
      sh.vocab_shard = s_.vocab_len;
      sh.row_stride = logits.stride(0);
      sh.vocab_offset = s_.vocab_start;
      sh.softcap = cap;
      kernels::TargetIds ids;
      ids.data = tg.data_ptr();
      ids.type = kernels::TargetIdType::kInt64;
      at::Tensor mx = at::empty({cn}, fopts), se = at::empty({cn}, fopts);
      at::Tensor tl = at::empty({cn}, fopts), lse = at::empty({cn}, fopts);
      at::Tensor count = at::empty(
          {cn}, at::TensorOptions().dtype(at::kInt).device(s_.device));
      if (s_.tp == 1) {
        if (rank != nullptr) {
          kernels::StatsAndRankOutputs o;
          o.row_max = mx.data_ptr<float>();
          o.row_sumexp = se.data_ptr<float>();
          o.target_logit = tl.data_ptr<float>();
          o.count = count.data_ptr<int32_t>();
          o.lse = lse.data_ptr<float>();
          check(kernels::ShardStatsAndRankCuda(sh, ids, o, stream_));
        } else {
          check(kernels::ShardStatsCuda(
              sh, ids,
              {mx.data_ptr<float>(), se.data_ptr<float>(),
               tl.data_ptr<float>()},
              stream_));
          check(kernels::LseFromMaxSumCuda(mx.data_ptr<float>(),
                                           se.data_ptr<float>(), cn,
                                           lse.data_ptr<float>(), stream_));
        }
      } else {
        check(kernels::ShardStatsCuda(
            sh, ids,
            {mx.data_ptr<float>(), se.data_ptr<float>(), tl.data_ptr<float>()},
            stream_));
        at::Tensor both = at::stack({mx, tl});  // [2, cn]: max, target logit
        AllReduceMax(f_->comm(), both);
        at::Tensor global_max = both.select(0, 0);
        tl = both.select(0, 1);
        at::Tensor rescaled = at::empty({cn}, fopts);
        check(kernels::RescaleSumExpCuda(mx.data_ptr<float>(),
                                         se.data_ptr<float>(),
                                         global_max.data_ptr<float>(), cn,
                                         rescaled.data_ptr<float>(), stream_));
        if (rank != nullptr) {
          check(kernels::ShardCountAboveCuda(sh, ids, tl.data_ptr<float>(),
                                             count.data_ptr<int32_t>(),
                                             stream_));
        }
        AllReduceSum(f_->comm(), rescaled);
        if (rank != nullptr) AllReduceSum(f_->comm(), count);
        check(kernels::LseFromMaxSumCuda(global_max.data_ptr<float>(),
                                         rescaled.data_ptr<float>(), cn,
                                         lse.data_ptr<float>(), stream_));
      }
      if (nll != nullptr) nll->narrow(0, c0, cn).copy_(lse - tl);
      if (rank != nullptr) rank->narrow(0, c0, cn).copy_(count.to(at::kLong));
    }
  }

  kernels::Dtype OpDtype() const { return OpDtypeOf(s_.dtype); }

  const ModelConfig& cfg_;
  const EngineOptions& opts_;
  RankShard& s_;
  EngineDiagnostics* const diagnostics_;
  CudaAttention attention_;
  // Created on the rank's thread at the first autotuned GEMM; gemm_error_
  // keeps why it could not be (the GEMMs then stay on at::mm).
  std::unique_ptr<GemmTuner> gemm_;
  std::string gemm_error_;
  SkinnyLinear skinny_;  // EngineOptions::skinny_gemm
  // The forward in progress (BeginForward .. EndForward).
  RankForward* f_ = nullptr;
  void* stream_ = nullptr;    // cudaStream_t of the rank's compute stream
  at::Tensor valid_idx_;      // positions with a target, int64
  at::Tensor valid_targets_;  // their target ids
  at::Tensor lens_idx_;       // logit-lens positions (Plan::lens), int64
  at::Tensor lens_targets_;   // their target ids
  std::map<std::string, std::pair<at::Tensor, at::Tensor>> rope_cache_;
  std::vector<at::Tensor> stats_bi_, stats_norm_, stats_rank_;  // per layer
  std::vector<std::pair<int, at::Tensor>> lens_pending_;        // (layer, rows)
  int64_t lens_pending_rows_ = 0;
};

}  // namespace

std::unique_ptr<RankBackend> CreateCudaBackend(const ModelConfig& cfg,
                                               const EngineOptions& opts,
                                               RankShard* shard,
                                               EngineDiagnostics* diagnostics) {
  return std::make_unique<CudaBackend>(cfg, opts, shard, diagnostics);
}

}  // namespace sweepd::engine::internal
