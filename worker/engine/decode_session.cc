#include "worker/engine/decode_session.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "worker/engine/decode_graph.h"
#include "worker/engine/decode_rows.h"
#include "worker/engine/forward_plan.h"
#include "worker/engine/fused_sampler.h"
#include "worker/engine/host_upload.h"
#include "worker/engine/kv_cache.h"
#include "worker/engine/page_table.h"
#include "worker/engine/rank_forward.h"
#include "worker/engine/sampler.h"

namespace sweepd::engine {

namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

uint64_t SampleSeed(uint64_t task_hash, uint64_t prompt_index,
                    uint64_t sample_index) {
  uint64_t k = SplitMix64(task_hash);
  k = SplitMix64(k ^ prompt_index);
  return SplitMix64(k ^ (sample_index * 0xd1b54a32d192ed03ULL));
}

double SampleUniform(uint64_t seed, int64_t step) {
  const uint64_t bits =
      SplitMix64(seed ^ SplitMix64(static_cast<uint64_t>(step) + 1));
  // 53 random bits, centred in their cell: strictly inside (0, 1).
  return (static_cast<double>(bits >> 11) + 0.5) * 0x1.0p-53;
}

absl::StatusOr<std::vector<DecodedToken>> DecodeSession::AddPrompt(
    const std::vector<int32_t>& prompt,
    const std::vector<SamplingParams>& samples) {
  ASSIGN_OR_RETURN(std::vector<std::vector<DecodedToken>> all,
                   AddPrompts({{prompt, samples}}));
  return std::move(all[0]);
}

namespace internal {
namespace {

// One forward's host-side inputs, shared by the ranks.
struct StepInputs {
  ForwardRequest request;
  Plan plan;
  std::vector<int64_t> positions;  // [T]
  bool prefill = false;
  // Per group: rows of the forward whose K/V are stored, and where.
  std::vector<std::vector<int64_t>> write_rows, write_slots;
  // Decode only, per group: the keys each row sees (decode_rows.h).
  std::vector<GroupStepRows> keys;
  SamplerBatch sampler;
  // Prefill: the flat row of each sampled sequence's prompt's last token.
  std::vector<int64_t> head_rows;
  // Per flat row: the token's position in its sequence (-1 = a pad) and its
  // prompt's length, which steering positions are resolved against.
  std::vector<int64_t> steer_pos,
      steer_len;  // Decode: the CUDA graph bucket the step runs as (0 = eager).
  int graph_bucket = 0;
};

class DecodeSessionImpl;

// One rank's hook for one forward.
class RankHook : public ForwardHook {
 public:
  RankHook(const RankContext& ctx, const StepInputs& in, RankKvCache* cache,
           const std::vector<int>& layer_group,
           const std::map<int, LayerWeights>& weights, DecodeGraphs* graphs,
           FusedSampler* sampler, std::vector<DecodedToken>* out)
      : ctx_(ctx),
        in_(in),
        cache_(cache),
        layer_group_(layer_group),
        weights_(weights),
        session_graphs_(graphs),
        graphs_(in.graph_bucket > 0 ? graphs : nullptr),
        sampler_(sampler),
        out_(out) {
    if (graphs_ != nullptr) {
      BindGraphBuffers();
      return;
    }
    const at::Device dev = ctx.shard->device;
    auto up = [&](const std::vector<int64_t>& v) {
      return Upload(v, at::kLong, dev);
    };
    positions_ = up(in.positions);
    if (in.prefill) head_rows_ = up(in.head_rows);
    const size_t groups = in.write_rows.size();
    rows_.resize(groups);
    write_rows_.resize(groups);
    for (size_t g = 0; g < groups; ++g) {
      write_rows_[g] = up(in.write_rows[g]);
      rows_[g].write_slots = up(in.write_slots[g]);
      if (in.prefill) continue;
      const GroupStepRows& k = in.keys[g];
      const int64_t R = static_cast<int64_t>(in.positions.size());
      GroupRows& rows = rows_[g];
      rows.clusters = k.clusters;
      rows.rmax = k.rmax;
      rows.sh_gather = up(k.sh_gather).view({k.clusters, k.shared_pages});
      rows.sh_key_pos = up(k.sh_key_pos).view({k.clusters, -1});
      rows.sh_rows = up(k.sh_rows);
      rows.row_slot = up(k.row_slot);
      rows.pr_gather = up(k.pr_gather).view({R, k.private_pages});
      rows.pr_key_pos = up(k.pr_key_pos).view({R, -1});
      if (k.rmax == 1) {
        rows.first_pos = up(k.row_first_pos);
        rows.q_pos = positions_;
      }
    }
  }

  at::Tensor positions() override { return positions_; }

  void RunStep(const at::Tensor& h, const DecodeGraphs::Layers& layers,
               const std::function<void(const at::Tensor&)>& head) override {
    if (graphs_ == nullptr) {
      head(layers(h));
      return;
    }
    const int64_t R = h.size(1);
    DecodeGraphs::Buffers& buf = graphs_->buffers(in_.graph_bucket);
    buf.h_in.narrow(1, 0, R).copy_(h);
    if (sampler_ == nullptr) {
      // The layers' graph; the head runs eagerly on the first R rows.
      head(graphs_->Run(in_.graph_bucket, layers).narrow(1, 0, R));
      return;
    }
    // Layers, final norm, LM head and fused sampler as one graph of the
    // bucket's rows; the first R rows' tokens are the step's.
    graphs_->Run(in_.graph_bucket, [&](const at::Tensor& h_in) {
      at::Tensor out = layers(h_in);
      head(out);
      return out;
    });
    if (ctx_.rank == 0) sampler_->CopyOut(R, out_);
  }

  // Decode steps write every row of the forward, in order: the backend may
  // put k/v straight into the pools at the rows' slots.
  bool KvDestinationFor(int L, int64_t tokens, KvDestination* d) override {
    if (in_.prefill) return false;
    const int g = layer_group_[L];
    if (write_rows_[g].numel() != tokens) return false;
    return cache_->Destination(L, rows_[g].write_slots, d);
  }

  at::Tensor Attention(RankForward* f, int L, const LayerQkv& qkv,
                       const LayerWeights& w) override {
    const int g = layer_group_[L];
    const int window = f->cfg().layers[L].sliding_window;
    // v undefined: the backend stored k/v already (KvDestinationFor).
    if (qkv.v.defined()) {
      LayerQkv kept = qkv;
      const bool all_rows =
          write_rows_[g].numel() == qkv.v.size(0) * qkv.v.size(1);
      if (!all_rows) {
        kept.k = qkv.k.reshape({-1, qkv.k.size(2), qkv.k.size(3)})
                     .index_select(0, write_rows_[g])
                     .unsqueeze(0);
        kept.v = qkv.v.reshape({-1, qkv.v.size(2), qkv.v.size(3)})
                     .index_select(0, write_rows_[g])
                     .unsqueeze(0);
      }
      cache_->Write(L, rows_[g].write_slots, kept);
    }
    if (in_.prefill) return ctx_.backend->Attention(L, qkv);
    GroupRows& rows = rows_[g];
    if (rows.rmax == 1 && cache_->fused(L)) {
      return cache_->Attend(*f, L, qkv.q, rows, w);  // no masks needed
    }
    if (!rows.sh_blocked.defined() || allowed_window_[g] != window) {
      // A key is visible when it exists, is not after the query and lies in
      // the window.
      auto visible = [&](const at::Tensor& q, const at::Tensor& key) {
        at::Tensor a = key.ge(0).logical_and(key.le(q));
        return window > 0 ? a.logical_and((q - key).lt(window)) : a;
      };
      at::Tensor q = positions_.unsqueeze(1);  // [R, 1]
      rows.pr_blocked =
          visible(q, rows.pr_key_pos).logical_not().unsqueeze(1).unsqueeze(1);
      // Query position per cluster slot ([C, rmax, 1], padding -1 sees
      // nothing) against the cluster's keys [C, 1, S * page_size].
      at::Tensor slot_pos =
          at::cat({positions_, at::full({1}, -1, positions_.options())})
              .index_select(0, rows.sh_rows)
              .view({rows.clusters, rows.rmax, 1});
      at::Tensor sh = visible(slot_pos, rows.sh_key_pos.unsqueeze(1))
                          .logical_and(slot_pos.ge(0));
      rows.sh_blocked =
          sh.logical_not().unsqueeze(1).unsqueeze(3);  // [C,1,rmax,1,keys]
      allowed_window_[g] = window;
    }
    return cache_->Attend(*f, L, qkv.q, rows, w);
  }

  void Head(RankForward* f, const at::Tensor& x) override {
    const int64_t hidden = f->cfg().hidden_size;
    at::Tensor rows = x.reshape({-1, hidden});
    if (in_.prefill) rows = rows.index_select(0, head_rows_);
    if (sampler_ != nullptr) {
      // Fused (fused_sampler.h); a graph step filled its rows before the
      // replay and copies the tokens out after it (RunStep).
      if (graphs_ != nullptr) {
        sampler_->Sample(rows);
        return;
      }
      if (sampler_->Fill(in_.sampler, rows.size(0)) &&
          session_graphs_ != nullptr) {
        session_graphs_->Reset();
      }
      sampler_->Sample(rows);
      if (ctx_.rank == 0) sampler_->CopyOut(rows.size(0), out_);
      return;
    }
    at::Tensor z = f->LocalLogits(rows);
    SampledRows s = SampleRows(ctx_.comm, z, ctx_.shard->vocab_start,
                               ctx_.shard->vocab_len, in_.sampler);
    if (ctx_.rank != 0) return;
    at::Tensor tok = s.token.to(at::kCPU).contiguous();
    at::Tensor lp = s.logprob.to(at::kCPU).contiguous();
    out_->resize(tok.numel());
    for (int64_t i = 0; i < tok.numel(); ++i) {
      (*out_)[i].token = static_cast<int32_t>(tok.data_ptr<int64_t>()[i]);
      (*out_)[i].logprob = lp.data_ptr<float>()[i];
    }
  }

  const LayerWeights* CachedWeights(int L) override {
    auto it = weights_.find(L);
    return it == weights_.end() ? nullptr : &it->second;
  }

 private:
  // A graph step: the rows' inputs, padded to the bucket, copied into the
  // bucket's static buffers, which the hook then uses (padding rows:
  // position -1, no keys, writes to the trash slot).
  void BindGraphBuffers() {
    const int B = in_.graph_bucket;
    const int64_t R = static_cast<int64_t>(in_.positions.size());
    DecodeGraphs::Buffers& buf = graphs_->buffers(B);
    auto fill = [&](const at::Tensor& dst, const std::vector<int64_t>& host) {
      UploadInto(dst, host.data());
    };
    if (sampler_ != nullptr && sampler_->Fill(in_.sampler, B)) {
      graphs_->Reset();
    }
    std::vector<int64_t> pos(in_.positions);
    pos.resize(B, -1);
    fill(buf.positions, pos);
    positions_ = buf.positions;
    const size_t groups = in_.write_rows.size();
    rows_.resize(groups);
    write_rows_.resize(groups);
    for (size_t g = 0; g < groups; ++g) {
      const GroupStepRows& k = in_.keys[g];
      const int64_t P = graphs_->max_pages(static_cast<int>(g));
      std::vector<int64_t> slots(in_.write_slots[g]);
      slots.resize(B, cache_->TrashSlot(static_cast<int>(g)));
      std::vector<int64_t> pages(B * P, 0), first(B, 0);
      for (int64_t r = 0; r < R; ++r) {
        for (int64_t i = 0; i < k.shared_pages; ++i) {
          pages[r * P + i] = k.sh_gather[r * k.shared_pages + i];
        }
        first[r] = k.row_first_pos[r];
      }
      fill(buf.write_slots[g], slots);
      fill(buf.pages[g], pages);
      fill(buf.first_pos[g], first);
      write_rows_[g] = buf.write_rows[g];
      GroupRows& rows = rows_[g];
      rows.write_slots = buf.write_slots[g];
      rows.clusters = B;
      rows.rmax = 1;
      rows.sh_gather = buf.pages[g];
      rows.first_pos = buf.first_pos[g];
      rows.q_pos = buf.positions;
    }
  }

  const RankContext& ctx_;
  const StepInputs& in_;
  RankKvCache* cache_;
  const std::vector<int>& layer_group_;
  const std::map<int, LayerWeights>& weights_;
  DecodeGraphs* session_graphs_;  // the session's (may be null)
  DecodeGraphs* graphs_;          // null: an eager step
  FusedSampler* sampler_;         // null: SampleRows
  std::vector<DecodedToken>* out_;
  at::Tensor positions_;
  at::Tensor head_rows_;
  std::vector<at::Tensor> write_rows_;
  std::vector<GroupRows> rows_;
  std::map<int, int> allowed_window_;
};

// Whether the flat plan runs the fused paged kernel on `device`: on CUDA
// unless kAten (and only in builds with the CUDA kernels), on CPU (its
// reference implementation) only when kFused.
bool FusedAttention(DecodeAttention mode, const at::Device& device) {
  if (mode == DecodeAttention::kAten) return false;
#if SWEEPD_KERNELS_CUDA
  const bool cuda_kernels = true;
#else
  const bool cuda_kernels = false;
#endif
  if (device.is_cuda()) return cuda_kernels;
  return mode == DecodeAttention::kFused;
}

absl::Status CheckSampling(const SamplingParams& p, int64_t vocab) {
  if (!(p.temperature >= 0) || !std::isfinite(p.temperature)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling temperature must be a finite number >= 0, got ",
                     p.temperature));
  }
  if (p.top_k < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling top_k must be >= 0, got ", p.top_k));
  }
  if (!(p.top_p > 0 && p.top_p <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling top_p must be in (0, 1], got ", p.top_p));
  }
  if (!(p.min_p >= 0 && p.min_p < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling min_p must be in [0, 1), got ", p.min_p));
  }
  if (p.logit_bias) {
    for (const auto& [tok, bias] : *p.logit_bias) {
      if (tok < 0 || tok >= vocab) {
        return absl::InvalidArgumentError(
            absl::StrCat("logit_bias names token ", tok,
                         ", outside the vocabulary [0, ", vocab, ")"));
      }
      if (std::isnan(bias)) {
        return absl::InvalidArgumentError(
            absl::StrCat("logit_bias of token ", tok, " is NaN"));
      }
    }
  }
  if (p.banned) {
    for (int32_t tok : *p.banned) {
      if (tok < 0 || tok >= vocab) {
        return absl::InvalidArgumentError(
            absl::StrCat("banned token ", tok,
                         " is outside the vocabulary [0, ", vocab, ")"));
      }
    }
    if (static_cast<int64_t>(p.banned->size()) >= vocab) {
      return absl::InvalidArgumentError(
          "the banned tokens cover the whole vocabulary");
    }
  }
  return absl::OkStatus();
}

class DecodeSessionImpl : public DecodeSession {
 public:
  DecodeSessionImpl(DecodeHost* host, DecodeOptions options)
      : host_(host), options_(std::move(options)) {}

  ~DecodeSessionImpl() override {
    // Free the rank memory on the ranks' threads (CUDA caching allocator).
    if (caches_.empty()) return;
    (void)host_->RunRanks(
        [&](const RankContext& ctx) {
          graphs_[ctx.rank].reset();
          samplers_[ctx.rank].reset();
          caches_[ctx.rank].reset();
          weights_[ctx.rank].clear();
        },
        "closing a decode session");
  }

  absl::Status Init() {
    const ModelConfig& cfg = host_->cfg();
    const int N = cfg.num_hidden_layers;
    if (options_.page_size < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "DecodeOptions.page_size must be >= 1, got ", options_.page_size));
    }
    if (options_.attention_key_splits < 0 ||
        options_.attention_key_splits > 1024) {
      return absl::InvalidArgumentError(absl::StrCat(
          "DecodeOptions.attention_key_splits must be in [0, 1024] (0 = "
          "automatic), got ",
          options_.attention_key_splits));
    }
    if (options_.max_sequences < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("DecodeOptions.max_sequences must be >= 1, got ",
                       options_.max_sequences));
    }
    if (options_.max_sequence_tokens < 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("DecodeOptions.max_sequence_tokens must be >= 2, got ",
                       options_.max_sequence_tokens));
    }
    // The interventions, checked as a forward checks them.
    ForwardRequest probe;
    probe.tokens = {0};
    probe.batch = probe.seq = 1;
    probe.interventions = options_.interventions;
    Plan plan;
    RETURN_IF_ERROR(MakePlan(cfg, host_->tp(), host_->owner(), probe, &plan));
    skip_ = plan.skip;
    // Layer groups by window.
    std::vector<int> windows;
    layer_group_.assign(N, 0);
    for (int L = 0; L < N; ++L) {
      const int w = cfg.layers[L].sliding_window;
      auto it = std::find(windows.begin(), windows.end(), w);
      if (it == windows.end()) {
        windows.push_back(w);
        it = windows.end() - 1;
      }
      layer_group_[L] = static_cast<int>(it - windows.begin());
    }
    const int P = options_.page_size;
    std::vector<int64_t> pages(windows.size());
    PageTable sizing(windows, std::vector<int64_t>(windows.size(), 0), P);
    for (size_t g = 0; g < windows.size(); ++g) {
      const int64_t per_seq =
          sizing.PagesFor(static_cast<int>(g), options_.max_sequence_tokens);
      if (options_.max_cached_tokens > 0) {
        pages[g] = (options_.max_cached_tokens + P - 1) / P +
                   options_.max_sequences + per_seq;
      } else {
        pages[g] = int64_t{options_.max_sequences} * (per_seq + 1) + per_seq;
      }
    }
    table_ = std::make_unique<PageTable>(windows, pages, P);
    caches_.resize(host_->tp());
    weights_.resize(host_->tp());
    graphs_.resize(host_->tp());
    samplers_.resize(host_->tp());
    // CUDA graphs of the step (decode_graph.h): one CUDA rank, no per-step
    // host data inside the layers (steering, head masks).
    bool graphs =
        options_.cuda_graphs && DecodeGraphs::Available() && host_->tp() == 1;
    for (const Intervention& iv : options_.interventions) {
      if (iv.kind == Intervention::Kind::kSteer ||
          iv.kind == Intervention::Kind::kMaskHeads) {
        graphs = false;
      }
    }
    std::vector<int64_t> graph_pages(windows.size());
    for (size_t g = 0; g < windows.size(); ++g) {
      graph_pages[g] =
          table_->PagesFor(static_cast<int>(g), options_.max_sequence_tokens) +
          1;
    }
    return host_->RunRanks(
        [&](const RankContext& ctx) {
          caches_[ctx.rank] = std::make_unique<RankKvCache>(
              cfg, *ctx.shard, layer_group_, skip_, pages, P,
              FusedAttention(options_.decode_attention, ctx.shard->device),
              options_.attention_key_splits);
          for (int L = 0; L < N; ++L) {
            if (plan.zero[L]) {
              weights_[ctx.rank][L] = ZeroedWeights(ctx.shard->layers[L]);
            } else if (plan.reinit[L].has_value()) {
              weights_[ctx.rank][L] =
                  ReinitWeights(cfg, L, *ctx.shard, *plan.reinit[L]);
            } else if (plan.replace[L] != nullptr) {
              weights_[ctx.rank][L] =
                  ReplacedWeights(cfg, L, *ctx.shard, *plan.replace[L]);
            }
          }
          if (options_.fused_sampler &&
              FusedSampler::Available(*ctx.shard, host_->tp())) {
            samplers_[ctx.rank] = std::make_unique<FusedSampler>(
                *ctx.shard,
                cfg.final_logit_softcapping
                    ? static_cast<float>(*cfg.final_logit_softcapping)
                    : 0.0f,
                options_.max_sequences, host_->opts().skinny_gemm);
          }
          bool use_graphs = graphs && ctx.shard->device.is_cuda();
          for (int L = 0; L < N; ++L) {
            if (!skip_[L] && !caches_[ctx.rank]->fused(L)) use_graphs = false;
          }
          if (use_graphs) {
            graphs_[ctx.rank] = std::make_unique<DecodeGraphs>(
                ctx.shard->device, ctx.shard->dtype, cfg.hidden_size,
                graph_pages, options_.max_sequences);
          }
        },
        "allocating the KV cache");
  }

  absl::StatusOr<std::vector<std::vector<DecodedToken>>> AddPrompts(
      const std::vector<PromptRequest>& prompts) override {
    const ModelConfig& cfg = host_->cfg();
    if (prompts.empty()) {
      return absl::InvalidArgumentError("AddPrompts needs at least one prompt");
    }
    int total = 0;
    int64_t S = 0;
    std::vector<AdmitSize> sizes;
    for (size_t b = 0; b < prompts.size(); ++b) {
      const std::vector<int32_t>& prompt = prompts[b].tokens;
      const int64_t P = static_cast<int64_t>(prompt.size());
      const std::string which = absl::StrCat("prompt ", b);
      if (P == 0) return absl::InvalidArgumentError(which + " is empty");
      if (P + 1 > options_.max_sequence_tokens) {
        return absl::InvalidArgumentError(absl::StrCat(
            which, " has ", P, " tokens; the session allows ",
            options_.max_sequence_tokens,
            " per sequence (max_sequence_tokens) including one new token"));
      }
      for (int64_t i = 0; i < P; ++i) {
        if (prompt[i] < 0 || prompt[i] >= cfg.vocab_size) {
          return absl::InvalidArgumentError(absl::StrCat(
              which, ": token ", i, " is ", prompt[i],
              ", outside the vocabulary [0, ", cfg.vocab_size, ")"));
        }
      }
      if (prompts[b].samples.empty()) {
        return absl::InvalidArgumentError(which + " has no samples");
      }
      for (const SamplingParams& p : prompts[b].samples) {
        absl::Status st = CheckSampling(p, cfg.vocab_size);
        if (!st.ok()) {
          return absl::InvalidArgumentError(
              absl::StrCat(which, ": ", st.message()));
        }
      }
      total += static_cast<int>(prompts[b].samples.size());
      S = std::max(S, P);
      sizes.push_back({P, static_cast<int>(prompts[b].samples.size()), 0});
    }
    if (live_sequences() + total > options_.max_sequences) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the session holds ", live_sequences(), " sequences; ", total,
          " more exceed max_sequences ", options_.max_sequences));
    }
    if (!CanAdmit(sizes)) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the KV cache has no room for ", prompts.size(),
                       " prompts with ", total, " samples"));
    }

    const int64_t B = static_cast<int64_t>(prompts.size());
    std::vector<int64_t> parents;
    auto release_parents = [&] {
      for (int64_t p : parents) table_->Release(p);
    };
    for (int64_t b = 0; b < B; ++b) {
      parents.push_back(table_->Create());
      absl::Status reserved = table_->ReservePrompt(
          parents.back(), static_cast<int64_t>(prompts[b].tokens.size()));
      if (!reserved.ok()) {
        release_parents();
        return reserved;
      }
    }
    StepInputs in;
    in.prefill = true;
    in.request.batch = B;
    in.request.seq = S;
    in.request.tokens.assign(B * S, 0);  // pads after each prompt
    in.request.targets.assign(B * S, -1);
    in.request.interventions = options_.interventions;
    for (int64_t i = 0; i < S; ++i) in.positions.push_back(i);
    const int G = table_->groups();
    in.write_rows.resize(G);
    in.write_slots.resize(G);
    for (int64_t b = 0; b < B; ++b) {
      const std::vector<int32_t>& prompt = prompts[b].tokens;
      const int64_t P = static_cast<int64_t>(prompt.size());
      std::copy(prompt.begin(), prompt.end(),
                in.request.tokens.begin() + b * S);
      for (int64_t i = 0; i < S; ++i) {
        in.steer_pos.push_back(i < P ? i : -1);
        in.steer_len.push_back(P);
      }
      for (int g = 0; g < G; ++g) {
        for (int64_t i = 0; i < P; ++i) {
          const int64_t slot = table_->Slot(parents[b], g, i);
          if (slot < 0) continue;
          in.write_rows[g].push_back(b * S + i);
          in.write_slots[g].push_back(slot);
        }
      }
      for (const SamplingParams& p : prompts[b].samples) {
        in.head_rows.push_back(b * S + P - 1);
        AddSamplerRow(p, 0, &in.sampler);
      }
    }
    std::vector<DecodedToken> out;
    absl::Status st = Run(&in, &out);
    if (!st.ok()) {
      release_parents();
      return st;
    }
    std::vector<PageCopy> copies;
    std::vector<std::vector<int64_t>> children(B);
    for (int64_t b = 0; b < B; ++b) {
      table_->Advance(parents[b],
                      static_cast<int64_t>(prompts[b].tokens.size()));
      for (size_t i = 0; i < prompts[b].samples.size(); ++i) {
        auto child = table_->Fork(parents[b], &copies);
        if (!child.ok()) {
          for (const auto& cs : children) {
            for (int64_t c : cs) table_->Release(c);
          }
          release_parents();
          return child.status();
        }
        children[b].push_back(*child);
      }
    }
    release_parents();
    if (!copies.empty()) {
      absl::Status copied = host_->RunRanks(
          [&](const RankContext& ctx) { caches_[ctx.rank]->CopyPages(copies); },
          "forking the prompts' KV cache");
      if (!copied.ok()) {
        for (const auto& cs : children) {
          for (int64_t c : cs) table_->Release(c);
        }
        return copied;
      }
    }
    std::vector<std::vector<DecodedToken>> result(B);
    size_t row = 0;
    for (int64_t b = 0; b < B; ++b) {
      for (size_t i = 0; i < prompts[b].samples.size(); ++i, ++row) {
        DecodedToken t = out[row];
        Live& s = live_[children[b][i]];
        s.params = prompts[b].samples[i];
        s.prompt_len = static_cast<int64_t>(prompts[b].tokens.size());
        s.last = t.token;
        s.step = 1;
        t.sequence = children[b][i];
        if (t.token < 0) {
          return absl::InternalError(
              "sampling found no token with probability > 0");
        }
        result[b].push_back(t);
      }
    }
    return result;
  }

  absl::StatusOr<std::vector<DecodedToken>> Step() override {
    if (live_.empty()) return std::vector<DecodedToken>();
    const int G = table_->groups();
    const int P = options_.page_size;
    StepInputs in;
    in.request.batch = 1;
    in.write_rows.resize(G);
    in.write_slots.resize(G);
    in.keys.resize(G);
    std::vector<int64_t> ids;
    for (auto& [id, s] : live_) {
      const int64_t len = table_->length(id);
      if (len + 1 > options_.max_sequence_tokens) {
        return absl::FailedPreconditionError(absl::StrCat(
            "sequence ", id, " holds ", len,
            " tokens, the session's max_sequence_tokens; release it"));
      }
      RETURN_IF_ERROR(table_->Reserve(id, 1));
      ids.push_back(id);
      in.request.tokens.push_back(s.last);
      in.positions.push_back(len);
      in.steer_pos.push_back(len);
      in.steer_len.push_back(s.prompt_len);
      AddSamplerRow(s.params, s.step, &in.sampler);
    }
    const int64_t R = static_cast<int64_t>(ids.size());
    in.request.seq = R;
    in.request.targets.assign(R, -1);
    in.request.interventions = options_.interventions;
    for (int g = 0; g < G; ++g) {
      std::vector<RowPages> row_pages(R);
      for (int64_t r = 0; r < R; ++r) {
        const int64_t id = ids[r];
        in.write_rows[g].push_back(r);
        in.write_slots[g].push_back(table_->Slot(id, g, in.positions[r]));
        row_pages[r] = {&table_->pages(id, g), table_->first_page(id, g)};
      }
      in.keys[g] =
          PlanGroupRows(row_pages, P, options_.shared_attention_min_keys);
    }
    in.graph_bucket = GraphBucket(in);
    std::vector<DecodedToken> out;
    RETURN_IF_ERROR(Run(&in, &out));
    for (int64_t r = 0; r < R; ++r) {
      const int64_t id = ids[r];
      table_->Advance(id, 1);
      Live& s = live_[id];
      s.last = out[r].token;
      ++s.step;
      out[r].sequence = id;
      if (out[r].token < 0) {
        return absl::InternalError(
            "sampling found no token with probability > 0");
      }
    }
    return out;
  }

  void Release(int64_t sequence) override {
    if (live_.erase(sequence) > 0) table_->Release(sequence);
  }

  int live_sequences() const override { return static_cast<int>(live_.size()); }

  bool CanAdmit(const std::vector<AdmitSize>& prompts) const override {
    int samples = 0;
    for (const AdmitSize& p : prompts) samples += p.samples;
    if (live_sequences() + samples > options_.max_sequences) return false;
    for (int g = 0; g < table_->groups(); ++g) {
      // Each prompt's pages, a private last page per sample and its growth,
      // and one more page per live sequence for its next token.
      int64_t need = live_sequences();
      for (const AdmitSize& p : prompts) {
        const int64_t prompt_pages = table_->PagesFor(g, p.prompt_tokens);
        const int64_t grow =
            table_->PagesFor(g, p.prompt_tokens + p.new_tokens) - prompt_pages;
        need += prompt_pages + int64_t{p.samples} * (1 + grow);
      }
      if (need > table_->free_pages(g)) return false;
    }
    return true;
  }

  int64_t layer_forwards() const override { return layer_forwards_; }

 private:
  struct Live {
    SamplingParams params;
    int32_t last = 0;
    int64_t step = 0;
    int64_t prompt_len = 0;
  };

  static void AddSamplerRow(const SamplingParams& p, int64_t step,
                            SamplerBatch* b) {
    const int64_t row = b->rows();
    b->temperature.push_back(static_cast<float>(p.temperature));
    b->top_k.push_back(p.top_k);
    b->top_p.push_back(static_cast<float>(p.top_p));
    b->min_p.push_back(static_cast<float>(p.min_p));
    b->uniform.push_back(SampleUniform(p.seed, step));
    if (p.logit_bias) {
      for (const auto& [tok, bias] : *p.logit_bias) {
        b->bias_row.push_back(row);
        b->bias_token.push_back(tok);
        b->bias_value.push_back(bias);
      }
    }
    if (p.banned) {
      for (int32_t tok : *p.banned) {
        b->ban_row.push_back(row);
        b->ban_token.push_back(tok);
      }
    }
  }

  // The CUDA graph bucket of a decode step, or 0 (eager): graphs on (rank
  // 0 stands for all: one rank), a flat plan within the buffers' page bound
  // in every group (Run also drops it under phase profiling).
  int GraphBucket(const StepInputs& in) const {
    const DecodeGraphs* g = graphs_.empty() ? nullptr : graphs_[0].get();
    if (g == nullptr || g->broken()) return 0;
    for (size_t grp = 0; grp < in.keys.size(); ++grp) {
      const GroupStepRows& k = in.keys[grp];
      if (k.rmax != 1 || k.shared_pages > g->max_pages(static_cast<int>(grp))) {
        return 0;
      }
    }
    return g->Bucket(static_cast<int64_t>(in.positions.size()));
  }

  absl::Status Run(StepInputs* in, std::vector<DecodedToken>* out) {
    const ModelConfig& cfg = host_->cfg();
    RETURN_IF_ERROR(
        MakePlan(cfg, host_->tp(), host_->owner(), in->request, &in->plan));
    ResolveSteering(in->request, in->steer_pos, in->steer_len, &in->plan);
    std::vector<int64_t> executed(host_->tp(), 0);
    RETURN_IF_ERROR(host_->RunRanks(
        [&](const RankContext& ctx) {
          const EngineOptions& opts = host_->opts();
          DecodeGraphs* graphs = graphs_[ctx.rank].get();
          // Graph steps have one rank (Init), so only this thread writes.
          if (in->graph_bucket > 0 && opts.phase_profiling) {
            in->graph_bucket = 0;  // the profile's events need eager phases
          }
          std::unique_ptr<DecodeGraphs::StepStream> stream;
          if (in->graph_bucket > 0) stream = graphs->EnterStep();
          RankHook hook(ctx, *in, caches_[ctx.rank].get(), layer_group_,
                        weights_[ctx.rank], graphs, samplers_[ctx.rank].get(),
                        out);
          ForwardResult unused;
          RankForward(cfg, opts, ctx.shard, ctx.backend, ctx.comm, in->plan,
                      host_->diagnostics(), &unused, &executed[ctx.rank], &hook)
              .Run();
        },
        in->prefill ? "prefilling a prompt" : "decoding a step"));
    layer_forwards_ += executed[0];
    host_->AddLayerForwards(executed[0]);
    return absl::OkStatus();
  }

  DecodeHost* const host_;
  const DecodeOptions options_;
  std::vector<uint8_t> skip_;
  std::vector<int> layer_group_;
  std::unique_ptr<PageTable> table_;
  std::vector<std::unique_ptr<RankKvCache>> caches_;     // per rank
  std::vector<std::map<int, LayerWeights>> weights_;     // per rank
  std::vector<std::unique_ptr<DecodeGraphs>> graphs_;    // per rank (or null)
  std::vector<std::unique_ptr<FusedSampler>> samplers_;  // per rank (or null)
  std::map<int64_t, Live> live_;
  int64_t layer_forwards_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<DecodeSession>> CreateDecodeSession(
    DecodeHost* host, const DecodeOptions& options) {
  auto session = std::make_unique<DecodeSessionImpl>(host, options);
  RETURN_IF_ERROR(session->Init());
  return std::unique_ptr<DecodeSession>(std::move(session));
}

}  // namespace internal
}  // namespace sweepd::engine
