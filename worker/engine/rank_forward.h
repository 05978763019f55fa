// Internal to sweepd::engine: one rank's part of one forward (docs/ENGINE.md).
// RankForward runs what is the same on every backend — the vocab-parallel
// embedding, the layer loop with interventions (skip, zero, re-init), captures,
// head masking, the all-reduces after o_proj and down_proj, the logits and
// vocab-parallel NLL/rank of the eager LM head, the outputs and the prefix
// state — and calls the rank's RankBackend for each layer operation.
//
// Ownership: everything passed to the constructor is borrowed for the
// forward; rank 0 writes the ForwardResult. Used only on the rank's thread.
// Collectives throw CommFailure (tp_ops.h); libtorch errors throw c10::Error:
// both unwind to EngineImpl::Forward.
#ifndef SWEEPD_WORKER_ENGINE_RANK_FORWARD_H_
#define SWEEPD_WORKER_ENGINE_RANK_FORWARD_H_

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "common/model_config.h"
#include "worker/comm/communicator.h"
#include "worker/engine/diagnostics.h"
#include "worker/engine/engine.h"
#include "worker/engine/forward_plan.h"
#include "worker/engine/gram.h"
#include "worker/engine/profile.h"
#include "worker/engine/rank_backend.h"
#include "worker/engine/weights.h"

namespace sweepd::engine::internal {

// A host float32 copy of t.
HostTensor ToHost(const at::Tensor& t);

class RankForward;

// Layer weights with the zero intervention applied (docs/ENGINE.md): q/k/v/o,
// gate/up/down, the input and pre-feedforward norms and q/k norms are zero.
LayerWeights ZeroedWeights(const LayerWeights& w);
// Layer L re-initialised from `seed` as transformers' _init_weights does.
LayerWeights ReinitWeights(const ModelConfig& cfg, int L,
                           const RankShard& shard, uint64_t seed);

// Layer L with the tensors of a replace_layer file in place of the shard's
// (docs/ENGINE.md); the file was checked by MakePlan (CheckReplacement).
LayerWeights ReplacedWeights(const ModelConfig& cfg, int L,
                             const RankShard& shard,
                             const SafetensorsFile& file);

// RoPE's inverse frequencies of a layer, float32 [head_dim / 2] on `device`:
// position p's angle i is float(p) * inv_freq[i] (RankForward::RopeAt; the
// fused decode attention rotates cached keys with them).
at::Tensor RopeInvFreq(const LayerConfig& lc, at::Device device);

// What a generation forward changes in a rank's forward (decode_session.cc):
// token positions for RoPE, attention through the KV cache, and sampling in
// place of the NLL and outputs. Owned by the caller; used on the rank's
// thread for one forward.
class ForwardHook {
 public:
  virtual ~ForwardHook() = default;
  // Positions [S] (int64, the rank's device) of the forward's tokens (batch
  // 1); undefined: 0..S-1.
  virtual at::Tensor positions() = 0;
  // Layer L's attention output [B, S, heads_local, head_dim] (contiguous)
  // from its inputs; `w` are the weights the layer runs with.
  virtual at::Tensor Attention(RankForward* f, int L, const LayerQkv& qkv,
                               const LayerWeights& w) = 0;
  // The final-norm output [B, S, hidden]; replaces the NLL and the outputs.
  virtual void Head(RankForward* f, const at::Tensor& x) = 0;
  // Weights to run layer L with instead of building them (re-initialised
  // layers built once per session), or nullptr.
  virtual const LayerWeights* CachedWeights(int L) = 0;
  // Runs the forward's decoder layers (`layers`: residual in -> residual
  // out) on h, then `head` on their output (the final norm and Head). A hook
  // may replay a captured CUDA graph of both instead (decode_graph.h).
  virtual void RunStep(
      const at::Tensor& h,
      const std::function<at::Tensor(const at::Tensor&)>& layers,
      const std::function<void(const at::Tensor&)>& head) {
    head(layers(h));
  }
};

class RankForward {
 public:
  RankForward(const ModelConfig& cfg, const EngineOptions& opts,
              RankShard* shard, RankBackend* backend, comm::Communicator* comm,
              const Plan& plan, EngineDiagnostics* diagnostics,
              ForwardResult* out, int64_t* executed,
              ForwardHook* hook = nullptr)
      : cfg_(cfg),
        opts_(opts),
        s_(*shard),
        backend_(backend),
        comm_(comm),
        plan_(plan),
        diagnostics_(diagnostics),
        out_(out),
        executed_(executed),
        hook_(hook) {}
  RankForward(const RankForward&) = delete;
  RankForward& operator=(const RankForward&) = delete;
  ~RankForward() { backend_->EndForward(); }

  void Run();

  // Decoder layer L of this rank with weights `w` on the residual h [B, S,
  // hidden] (head masks and captures of the plan apply; no hook): what Run
  // does per layer. Differentiable on the reference backend when w's tensors
  // require grad (layer_trainer.cc uses it outside Run, at TP 1).
  at::Tensor LayerWith(int L, const at::Tensor& h, const LayerWeights& w);

  // --- Outside Run (layer_trainer.cc). Begin binds the backend to this
  // forward (BeginForward; the destructor releases it) so that LayerWith and
  // ResidualEntering can be called; once per RankForward.
  void Begin();
  // The residual entering layer L [B, S, hidden]: the embedding of the plan's
  // tokens and layers [0, L) as Run computes them (the plan's interventions
  // apply).
  at::Tensor ResidualEntering(int L);

  // --- For the backend, during the forward.
  const ModelConfig& cfg() const { return cfg_; }
  const EngineOptions& opts() const { return opts_; }
  RankShard& shard() { return s_; }
  comm::Communicator* comm() { return comm_; }
  RankBackend* backend() { return backend_; }
  const Plan& plan() const { return plan_; }
  ForwardResult* out() { return out_; }
  PhaseClock* clock() { return clock_; }
  int64_t batch() const { return plan_.req->batch; }
  int64_t seq() const { return plan_.req->seq; }
  // Global target ids [B * S] (int64, -1 = ignored) on the rank's device, and
  // where they are >= 0.
  const at::Tensor& targets() const { return targets_; }
  const at::Tensor& target_valid() const { return target_valid_; }

  // cos/sin [S, head_dim] of layer L's RoPE in the compute dtype, at the
  // forward's positions (0..S-1 unless a hook gives them).
  std::pair<at::Tensor, at::Tensor> Rope(int L, int64_t S) const;
  // cos/sin [..., head_dim] of layer L's RoPE at `positions` (int64, any
  // shape).
  std::pair<at::Tensor, at::Tensor> RopeAt(int L,
                                           const at::Tensor& positions) const;
  // bool [S, S]: query i may see key j (causal, and the window of a sliding
  // layer).
  at::Tensor AllowedMask(int L, int64_t S) const;
  // Softcapped logits of this rank's vocab shard, float32 [T, vocab_shard];
  // padding = -inf.
  at::Tensor LocalLogits(const at::Tensor& x) const;
  // Vocab-parallel NLL (logsumexp - target logit) and target rank (count of
  // strictly larger logits), without gathering the logits.
  void VocabStats(const at::Tensor& z, bool want_rank, at::Tensor* nll,
                  at::Tensor* rank);

 private:
  at::Tensor Embed(const at::Tensor& tokens);
  // Layer L's weights under the plan's interventions; weights built for this
  // forward (zero) or taken from the shard's cache (replace_layer, reinit) are
  // kept alive by *hold.
  const LayerWeights& WeightsFor(int L,
                                 std::shared_ptr<const LayerWeights>* hold);
  at::Tensor Layer(int L, const at::Tensor& h);
  // The plan's steering of resid_in[L] applied to h (a new tensor; h, which
  // a prefix state may hold, is never written).
  at::Tensor Steer(int L, const at::Tensor& h) const;
  at::Tensor MaskAndCaptureHeads(int L, at::Tensor attn);
  bool Wanted(CapturePoint::Kind kind, int L) const;
  void Capture(CapturePoint::Kind kind, int L, const at::Tensor& t);
  void Store(CapturePoint::Kind kind, int L, const at::Tensor& t);
  void StoreState(std::vector<at::Tensor> kept);

  const ModelConfig& cfg_;
  const EngineOptions& opts_;
  RankShard& s_;
  RankBackend* const backend_;
  comm::Communicator* const comm_;
  const Plan& plan_;
  EngineDiagnostics* const diagnostics_;
  ForwardResult* const out_;
  int64_t* const executed_;
  ForwardHook* const hook_;
  PhaseClock* clock_ = nullptr;
  std::unique_ptr<GramFeed> grams_;  // when the plan has Grams
  at::Tensor targets_;
  at::Tensor target_valid_;
};

}  // namespace sweepd::engine::internal

#endif  // SWEEPD_WORKER_ENGINE_RANK_FORWARD_H_
