// Internal to sweepd::engine: the per-rank computation of a forward behind one
// small interface. RankForward (rank_forward.h) drives a forward of one rank —
// embedding, the layer loop, interventions, captures, head masking, the
// tensor-parallel all-reduces, the LM head's shared parts, prefix state — and
// calls a RankBackend for each layer operation. Two implementations:
//   - ReferenceBackend (reference_backend.cc): the eager libtorch ops, on CPU
//     and on any libtorch device; the semantics of docs/ENGINE.md.
//   - CudaBackend (cuda_backend.cc, only with SWEEPD_ENABLE_CUDA): fused
//     projections, fused norm/RoPE/GeGLU kernels, mask-free attention and the
//     fused LM-head pass, same semantics (docs/ENGINE.md, "GPU path").
// backend_registry.h picks one per rank; it is the only place that branches on
// the build.
//
// Ownership: the engine owns one backend per rank for its lifetime; a backend
// borrows the engine's config, options and the rank's shard. Thread-safety: a
// backend is used only from its rank's thread, one forward at a time. Calls
// are one virtual call per layer operation; no per-element dispatch.
#ifndef SWEEPD_WORKER_ENGINE_RANK_BACKEND_H_
#define SWEEPD_WORKER_ENGINE_RANK_BACKEND_H_

#include <ATen/ATen.h>

#include "worker/engine/profile.h"
#include "worker/engine/weights.h"

namespace sweepd::engine::internal {

class RankForward;

// Layer L's attention inputs after their norms and RoPE: q [B, S,
// heads_local, head_dim], k/v [B, S, kv_local, head_dim].
struct LayerQkv {
  at::Tensor q, k, v;
};

// The residual after the attention block and the MLP's input
// (pre_feedforward_layernorm of it).
struct AttentionResidual {
  at::Tensor resid;
  at::Tensor mlp_in;
};

class RankBackend {
 public:
  virtual ~RankBackend() = default;

  // --- One forward. BeginForward binds the backend to the rank's forward `f`
  // (borrowed until EndForward) before anything else and returns the device
  // event timer of the phase clock (nullptr: host clock). PrepareTargets runs
  // once f->targets() is set. EndForward releases the forward's state (also
  // after a failure).
  virtual DeviceEventTimer* BeginForward(RankForward* f) = 0;
  virtual void PrepareTargets() = 0;
  virtual void EndForward() = 0;
  // Before each run of the decoder layers (once per forward, or twice and
  // more in a forward that warms up and captures a CUDA graph of them,
  // decode_graph.h): drops what the backend caches for the layers (RoPE
  // tables), so a capture records their computation.
  virtual void BeginLayers() {}

  // --- Decoder layer L (docs/ENGINE.md, "The model"), in the order
  // RankForward::Layer calls them. h is the residual entering the layer
  // [B, S, hidden]; w the layer's weights (or their intervention's
  // replacement).
  // input_layernorm, the q/k/v projections, q/k/v norms and RoPE.
  virtual LayerQkv AttentionInput(int L, const at::Tensor& h,
                                  const LayerWeights& w) = 0;
  // Causal attention (banded on sliding layers) -> [B, S, heads_local,
  // head_dim], contiguous.
  virtual at::Tensor Attention(int L, const LayerQkv& qkv) = 0;
  // o_proj of the (masked) heads attn [B, S, heads_local, head_dim]: this
  // rank's partial sum, contiguous (the caller all-reduces it).
  virtual at::Tensor AttentionOutput(int L, const at::Tensor& attn,
                                     const LayerWeights& w) = 0;
  // resid = h + post_attention_layernorm(a) and mlp_in =
  // pre_feedforward_layernorm(resid); a is the all-reduced attention output.
  virtual AttentionResidual AddAttention(int L, const at::Tensor& h,
                                         const at::Tensor& a,
                                         const LayerWeights& w) = 0;
  // The GeGLU MLP's partial sum, contiguous (the caller all-reduces it).
  virtual at::Tensor Mlp(int L, const at::Tensor& mlp_in,
                         const LayerWeights& w) = 0;
  // (resid + post_feedforward_layernorm(m)) * layer_scalar -> [B, S, hidden]:
  // the residual leaving the layer.
  virtual at::Tensor AddMlp(int L, const at::Tensor& resid, const at::Tensor& m,
                            const LayerWeights& w) = 0;

  // --- Head and probes.
  // The final norm of h [B, S, hidden].
  virtual at::Tensor FinalNorm(const at::Tensor& h) = 0;
  // Natural-log NLL [B * S] float32 from the final-norm output x (any value
  // where no target; the caller zeroes those). Not used with return_logits.
  virtual at::Tensor Nll(const at::Tensor& x) = 0;
  // Probe statistics of layer L (ForwardRequest::layer_stats) from the
  // residuals entering and leaving it, into f->out()->layer_stats on rank 0
  // (now or at FinishStats).
  virtual void LayerStats(int L, const at::Tensor& in,
                          const at::Tensor& out) = 0;
  // After the NLL, with layer_stats: completes what LayerStats deferred.
  virtual void FinishStats() = 0;
};

}  // namespace sweepd::engine::internal

#endif  // SWEEPD_WORKER_ENGINE_RANK_BACKEND_H_
