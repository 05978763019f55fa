#include "worker/engine/rank_forward.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "worker/engine/host_upload.h"
#include "worker/engine/random_init.h"
#include "worker/engine/tp_ops.h"

namespace sweepd::engine::internal {

HostTensor ToHost(const at::Tensor& t) {
  at::Tensor c = t.to(at::kCPU, at::kFloat).contiguous();
  HostTensor h;
  h.shape.assign(c.sizes().begin(), c.sizes().end());
  h.data.assign(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  return h;
}

void RankForward::Run() {
  const ForwardRequest& req = *plan_.req;
  const int64_t B = req.batch, S = req.seq;
  const int N = cfg_.num_hidden_layers;
  const bool lead = s_.rank == 0;
  DeviceEventTimer* events = backend_->BeginForward(this);
  PhaseClock clock(lead && opts_.phase_profiling, events, diagnostics_);
  clock_ = &clock;
  clock.Mark("embed");
  // Uploaded without a host synchronisation (host_upload.h).
  at::Tensor tokens =
      Upload(req.tokens, at::kInt, s_.device).view({B, S}).to(at::kLong);
  targets_ = Upload(plan_.targets, at::kInt, s_.device).to(at::kLong);
  target_valid_ = targets_.ge(0);
  backend_->PrepareTargets();
  if (!plan_.grams.empty()) {
    at::Tensor rows = at::tensor(plan_.gram_rows, at::kLong).to(s_.device);
    grams_ = std::make_unique<GramFeed>(cfg_, s_.rank, s_.tp, comm_,
                                        plan_.grams, std::move(rows));
  }

  at::Tensor h;
  if (plan_.start_state != nullptr) {
    h = plan_.start_state->resid[s_.rank][plan_.start_layer].to(s_.device);
    if (plan_.start_repeat > 1) h = h.repeat({plan_.start_repeat, 1, 1});
  } else {
    h = Embed(tokens);
  }
  std::vector<at::Tensor> kept;
  if (plan_.keep_state) {
    kept.resize(N + 1);
    if (plan_.start_state != nullptr) {
      for (int L = 0; L < plan_.start_layer; ++L) {
        kept[L] = plan_.start_state->resid[s_.rank][L];
        if (plan_.start_repeat > 1) {
          kept[L] = kept[L].repeat({plan_.start_repeat, 1, 1});
        }
      }
    }
  }
  if (lead && req.layer_stats) out_->layer_stats.assign(N, LayerStats{});

  auto layers = [&](const at::Tensor& h_in) {
    backend_->BeginLayers();
    at::Tensor h = h_in;
    for (int L = plan_.start_layer; L < N; ++L) {
      // The prefix state keeps the residual before steering (a later forward
      // starting at L applies its own), the capture shows what layer L reads.
      if (plan_.keep_state) kept[L] = h;
      if (!plan_.steer[L].empty()) h = Steer(L, h);
      Capture(CapturePoint::kResidIn, L, h);
      clock.Mark("layer");
      at::Tensor out_h = h;
      if (!plan_.skip[L]) out_h = Layer(L, h);
      Capture(CapturePoint::kResidOut, L, out_h);
      if (req.layer_stats) {
        clock.Mark("stats");
        backend_->LayerStats(L, h, out_h);
      }
      h = out_h;
    }
    return h;
  };
  auto count_executed = [&] {
    for (int L = plan_.start_layer; L < N; ++L) {
      if (!plan_.skip[L]) ++*executed_;
    }
  };
  if (hook_ != nullptr) {
    // A generation forward: the hook's head samples in place of the NLL and
    // outputs, and the hook may run layers and head as one CUDA graph.
    hook_->RunStep(h, layers, [&](const at::Tensor& out) {
      clock.Mark("lm_head");
      at::Tensor x = backend_->FinalNorm(out);
      Capture(CapturePoint::kFinalNorm, N - 1, x);
      hook_->Head(this, x);
    });
    count_executed();
    clock.Finish();
    clock_ = nullptr;
    return;
  }
  h = layers(h);
  count_executed();
  if (plan_.keep_state) kept[N] = h;

  clock.Mark("lm_head");
  at::Tensor x = backend_->FinalNorm(h);
  Capture(CapturePoint::kFinalNorm, N - 1, x);
  at::Tensor nll;
  if (!req.return_logits) {
    nll = backend_->Nll(x);
  } else {
    at::Tensor logits =
        LocalLogits(x);  // [B*S, vocab_shard] float32, padding -inf
    at::Tensor rank;
    VocabStats(logits, /*want_rank=*/false, &nll, &rank);
    at::Tensor all = AllGather(comm_, logits);  // [tp, T, shard]
    if (lead) {
      at::Tensor full = all.permute({1, 0, 2})
                            .reshape({B * S, -1})
                            .narrow(1, 0, cfg_.vocab_size);
      out_->logits = ToHost(full.reshape({B, S, cfg_.vocab_size}));
    }
  }
  if (req.layer_stats) backend_->FinishStats();
  clock.Mark("outputs");
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
  clock.Finish();
  clock_ = nullptr;
}

// One decoder layer: the backend's operations around the shared head masking,
// captures and all-reduces (phase marks as docs/GPU.md's profile names them).
at::Tensor RankForward::Layer(int L, const at::Tensor& h) {
  std::shared_ptr<const LayerWeights> hold;
  return LayerWith(L, h, WeightsFor(L, &hold));
}

at::Tensor RankForward::LayerWith(int L, const at::Tensor& h,
                                  const LayerWeights& w) {
  std::optional<PhaseClock> local_clock;
  if (clock_ == nullptr) {
    local_clock.emplace(false, nullptr, diagnostics_);
    clock_ = &*local_clock;
  }
  struct ResetClock {
    RankForward* f;
    PhaseClock* local;
    ~ResetClock() {
      if (f->clock_ == local) f->clock_ = nullptr;
    }
  } reset{this, local_clock ? &*local_clock : nullptr};
  const int64_t B = h.size(0), S = h.size(1);
  const LayerQkv qkv = backend_->AttentionInput(L, h, w);
  clock_->Mark(cfg_.layers[L].kind == LayerKind::kFull ? "attention_full"
                                                       : "attention_sliding");
  at::Tensor attn = hook_ != nullptr
                        ? hook_->Attention(this, L, qkv, w)
                        : backend_->Attention(L, qkv);  // [B, S, Hl, hd]
  clock_->Mark("other");
  attn = MaskAndCaptureHeads(L, attn);
  clock_->Mark("gemm_o");
  at::Tensor a = backend_->AttentionOutput(L, attn, w);
  clock_->Mark("allreduce");
  AllReduceSum(comm_, a);
  Capture(CapturePoint::kAttnOut, L, a.reshape({B, S, cfg_.hidden_size}));
  clock_->Mark("norm_attn_out");
  const AttentionResidual r = backend_->AddAttention(L, h, a, w);
  Capture(CapturePoint::kMlpIn, L, r.mlp_in.reshape({B, S, cfg_.hidden_size}));
  clock_->Mark("gemm_gate_up");
  at::Tensor m = backend_->Mlp(L, r.mlp_in, w);
  clock_->Mark("allreduce");
  AllReduceSum(comm_, m);
  clock_->Mark("norm_ff_out");
  at::Tensor out = backend_->AddMlp(L, r.resid, m, w);
  clock_->Mark("other");
  return out;
}

void RankForward::Begin() {
  backend_->BeginForward(this);
  const ForwardRequest& req = *plan_.req;
  targets_ = at::from_blob(const_cast<int32_t*>(plan_.targets.data()),
                           {req.batch * req.seq}, at::kInt)
                 .to(at::TensorOptions().dtype(at::kLong).device(s_.device));
  target_valid_ = targets_.ge(0);
  backend_->PrepareTargets();
}

at::Tensor RankForward::ResidualEntering(int L) {
  const ForwardRequest& req = *plan_.req;
  at::Tensor tokens =
      at::from_blob(const_cast<int32_t*>(req.tokens.data()),
                    {req.batch, req.seq}, at::kInt)
          .to(at::TensorOptions().dtype(at::kLong).device(s_.device));
  at::Tensor h = Embed(tokens);
  for (int l = 0; l < L; ++l) {
    if (!plan_.steer[l].empty()) h = Steer(l, h);
    if (!plan_.skip[l]) h = Layer(l, h);
  }
  return h;
}

at::Tensor RankForward::Embed(const at::Tensor& tokens) {
  at::Tensor local = tokens - s_.vocab_start;
  at::Tensor in_range = local.ge(0).logical_and(local.lt(s_.vocab_len));
  at::Tensor rows = at::embedding(
      s_.embed, local.clamp(0, std::max<int64_t>(0, s_.vocab_len - 1)));
  rows = rows * in_range.unsqueeze(-1).to(rows.scalar_type());
  at::Tensor scale =
      at::scalar_tensor(std::sqrt(static_cast<double>(cfg_.hidden_size)),
                        at::TensorOptions().dtype(at::kFloat).device(s_.device))
          .to(s_.dtype);
  at::Tensor e = (rows * scale).contiguous();
  AllReduceSum(comm_, e);
  return e;
}

LayerWeights ZeroedWeights(const LayerWeights& w) {
  LayerWeights z = w;
  for (at::Tensor* t : {&z.qkv, &z.o, &z.gate_up, &z.down, &z.q_norm, &z.k_norm,
                        &z.input_norm, &z.pre_ff_norm}) {
    if (t->defined()) *t = at::zeros_like(*t);
  }
  PointViews(&z, w.q.size(0), w.k.size(0), w.v.defined(), w.gate.size(0));
  return z;
}

at::Tensor RankForward::Steer(int L, const at::Tensor& h) const {
  const int64_t hidden = cfg_.hidden_size;
  const int64_t T = h.numel() / hidden;
  at::Tensor out = h.reshape({T, hidden});
  for (const SteerOp& op : plan_.steer[L]) {
    const int64_t n = static_cast<int64_t>(op.rows.size());
    if (n == 0) continue;
    at::Tensor d =
        at::from_blob(const_cast<float*>(op.delta.data()), {hidden}, at::kFloat)
            .to(s_.device)
            .to(h.scalar_type());
    const bool add = op.mode == Intervention::SteerMode::kAdd;
    if (n == T) {
      out = add ? out + d : d.unsqueeze(0).expand({T, hidden}).contiguous();
      continue;
    }
    at::Tensor idx =
        at::from_blob(const_cast<int64_t*>(op.rows.data()), {n}, at::kLong)
            .to(s_.device);
    at::Tensor rows = d.unsqueeze(0).expand({n, hidden}).contiguous();
    out = add ? out.index_add(0, idx, rows) : out.index_copy(0, idx, rows);
  }
  return out.reshape(h.sizes());
}

LayerWeights ReplacedWeights(const ModelConfig& cfg, int L,
                             const RankShard& shard,
                             const SafetensorsFile& file) {
  auto built = BuildLayer(cfg, L, shard.geom[L],
                          ReplacementSlices(&file, LayerSlices(shard.layers[L]),
                                            shard.device, shard.dtype));
  // MakePlan checked names, shapes and dtypes; what is left is an I/O fault
  // of the mapping or a bug.
  if (!built.ok()) throw std::runtime_error(built.status().ToString());
  return std::move(*built);
}

LayerWeights ReinitWeights(const ModelConfig& cfg, int L,
                           const RankShard& shard, uint64_t seed) {
  auto built = BuildLayer(
      cfg, L, shard.geom[L],
      RandomSlices(seed, cfg.initializer_range, InitStyle::kTransformers,
                   shard.device, shard.dtype));
  SWEEPD_CHECK(built.ok()) << built.status();
  return std::move(*built);
}

const LayerWeights& RankForward::WeightsFor(
    int L, std::shared_ptr<const LayerWeights>* hold) {
  if (hook_ != nullptr) {
    if (const LayerWeights* cached = hook_->CachedWeights(L)) return *cached;
  }
  if (plan_.zero[L]) {
    *hold = std::make_shared<const LayerWeights>(ZeroedWeights(s_.layers[L]));
    return **hold;
  }
  // replace_layer and reinit weights are built once per (layer, file or
  // seed) and reused by later forwards (layer_weights_cache.h).
  if (plan_.reinit[L].has_value()) {
    const uint64_t seed = *plan_.reinit[L];
    *hold =
        s_.built_layers->GetOrBuild(LayerWeightsCache::ReinitKey(L, seed), [&] {
          return std::make_shared<const LayerWeights>(
              ReinitWeights(cfg_, L, s_, seed));
        });
    return **hold;
  }
  if (plan_.replace[L] != nullptr) {
    const SafetensorsFile& file = *plan_.replace[L];
    auto build = [&] {
      return std::make_shared<const LayerWeights>(
          ReplacedWeights(cfg_, L, s_, file));
    };
    const std::string key = LayerWeightsCache::ReplaceKey(L, file.path());
    *hold = key.empty() ? build() : s_.built_layers->GetOrBuild(key, build);
    return **hold;
  }
  return s_.layers[L];
}

std::pair<at::Tensor, at::Tensor> RankForward::Rope(int L, int64_t S) const {
  at::Tensor positions;
  if (hook_ != nullptr) positions = hook_->positions();
  if (!positions.defined()) {
    positions =
        at::arange(S, at::TensorOptions().dtype(at::kLong).device(s_.device));
  }
  return RopeAt(L, positions);
}

at::Tensor RopeInvFreq(const LayerConfig& lc, at::Device device) {
  const int64_t hd = lc.head_dim;
  auto fopts = at::TensorOptions().dtype(at::kFloat).device(device);
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
  return inv_freq;
}

std::pair<at::Tensor, at::Tensor> RankForward::RopeAt(
    int L, const at::Tensor& positions) const {
  at::Tensor inv_freq = RopeInvFreq(cfg_.layers[L], s_.device);
  at::Tensor pos = positions.to(at::kFloat);
  at::Tensor freqs = pos.unsqueeze(-1) * inv_freq;  // [..., hd/2]
  at::Tensor emb = at::cat({freqs, freqs}, -1);
  return {emb.cos().to(s_.dtype), emb.sin().to(s_.dtype)};
}

at::Tensor RankForward::AllowedMask(int L, int64_t S) const {
  auto lopts = at::TensorOptions().dtype(at::kLong).device(s_.device);
  at::Tensor q = at::arange(S, lopts).unsqueeze(1);
  at::Tensor k = at::arange(S, lopts).unsqueeze(0);
  at::Tensor allowed = k.le(q);
  const int window = cfg_.layers[L].sliding_window;
  if (window > 0) allowed = allowed.logical_and((q - k).lt(window));
  return allowed;
}

// Zeroes the masked heads this rank owns and serves the attn_heads capture;
// attn is [B, S, heads_local, head_dim] contiguous.
at::Tensor RankForward::MaskAndCaptureHeads(int L, at::Tensor attn) {
  const LayerGeom& g = s_.geom[L];
  const int64_t B = attn.size(0), S = attn.size(1), hd = g.head_dim;
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
  const std::vector<std::vector<int>>& rows = plan_.row_masked_heads[L];
  if (!rows.empty()) {
    // [B, 1, heads_local, 1]: 1 where row b masks a head this rank owns.
    std::vector<uint8_t> mask(B * g.heads_local, 0);
    bool any = false;
    for (int64_t b = 0; b < B; ++b) {
      for (int head : rows[b]) {
        if (head >= g.head_start && head < g.head_start + g.heads_local) {
          mask[b * g.heads_local + (head - g.head_start)] = 1;
          any = true;
        }
      }
    }
    if (any) {
      at::Tensor m =
          at::from_blob(mask.data(), {B, 1, g.heads_local, 1}, at::kByte)
              .to(s_.device)
              .to(at::kBool);
      attn = attn.masked_fill(m, 0).contiguous();
    }
  }
  if (grams_ != nullptr) grams_->Offer(CapturePoint::kAttnHeads, L, attn);
  if (Wanted(CapturePoint::kAttnHeads, L)) {
    at::Tensor all =
        AllGather(comm_, attn.permute({2, 0, 1, 3}));  // [tp, Hl, B, S, hd]
    if (s_.rank == 0) {
      at::Tensor full =
          all.reshape({s_.tp * g.heads_local, B, S, hd}).permute({1, 2, 0, 3});
      Store(CapturePoint::kAttnHeads, L, full);
    }
  }
  return attn;
}

at::Tensor RankForward::LocalLogits(const at::Tensor& x) const {
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

void RankForward::VocabStats(const at::Tensor& z, bool want_rank,
                             at::Tensor* nll, at::Tensor* rank) {
  at::Tensor local_t = targets_ - s_.vocab_start;
  at::Tensor mine = target_valid_.logical_and(local_t.ge(0))
                        .logical_and(local_t.lt(s_.vocab_len));
  at::Tensor picked =
      z.gather(1, local_t.clamp(0, s_.vocab_shard - 1).unsqueeze(1)).squeeze(1);
  at::Tensor tgt = at::where(mine, picked, at::zeros_like(picked)).contiguous();
  AllReduceSum(comm_, tgt);
  if (nll != nullptr) {
    at::Tensor mx = std::get<0>(z.max(1)).contiguous();
    AllReduceMax(comm_, mx);
    at::Tensor sum = (z - mx.unsqueeze(1)).exp().sum(1).contiguous();
    AllReduceSum(comm_, sum);
    *nll = mx + sum.log() - tgt;
  }
  if (want_rank) {
    at::Tensor count = z.gt(tgt.unsqueeze(1)).sum(1).to(at::kLong).contiguous();
    AllReduceSum(comm_, count);
    *rank = at::where(target_valid_, count, at::full_like(count, -1));
  }
}

bool RankForward::Wanted(CapturePoint::Kind kind, int L) const {
  for (const CapturePoint& cp : plan_.captures) {
    if (cp.kind == kind && cp.layer == L) return true;
  }
  return false;
}

void RankForward::Capture(CapturePoint::Kind kind, int L, const at::Tensor& t) {
  if (grams_ != nullptr) grams_->Offer(kind, L, t);
  if (s_.rank == 0 && Wanted(kind, L)) Store(kind, L, t);
}

void RankForward::Store(CapturePoint::Kind kind, int L, const at::Tensor& t) {
  for (const CapturePoint& cp : plan_.captures) {
    if (cp.kind == kind && cp.layer == L) out_->captures[cp.name] = ToHost(t);
  }
}

void RankForward::StoreState(std::vector<at::Tensor> kept) {
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

}  // namespace sweepd::engine::internal
