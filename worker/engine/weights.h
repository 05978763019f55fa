// Internal to sweepd::engine: one rank's shard of the model weights and how
// it is built: the per-layer geometry of the shard (which heads, KV heads and
// intermediate columns the rank holds), the layer weights with q/k/v and
// gate/up fused, and the slice sources that fill them (the memory-mapped
// checkpoint, or deterministic random values). docs/ENGINE.md, "Tensor-parallel
// contract". A RankShard is owned by the engine and written only while loading
// (but for its cache of intervention-built layers, layer_weights_cache.h);
// forwards read it from the rank's own thread.
#ifndef SWEEPD_WORKER_ENGINE_WEIGHTS_H_
#define SWEEPD_WORKER_ENGINE_WEIGHTS_H_

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/model_config.h"
#include "common/safetensors.h"
#include "worker/engine/layer_weights_cache.h"
#include "worker/engine/random_init.h"

namespace sweepd::engine::internal {

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
  // q/k/v (v undefined on K = V layers) and gate/up are views of row ranges of
  // the fused qkv and gate_up weights (FuseLayer), so the GPU path runs one
  // GEMM for each pair and the eager path still reads them separately.
  at::Tensor q, k, v, o;
  at::Tensor qkv;      // [(heads + kv (+ kv)) * head_dim, hidden]
  at::Tensor gate_up;  // [2 * inter, hidden]
  at::Tensor q_norm, k_norm;
  at::Tensor input_norm, post_attn_norm, pre_ff_norm, post_ff_norm;
  at::Tensor layer_scalar;
  at::Tensor gate, up, down;
};

// One rank's shard: vocab-parallel embedding, final norm and the layers.
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
  // Layer weights built by replace_layer / reinit interventions, reused
  // across forwards (the one part written after loading; thread-safe).
  std::shared_ptr<LayerWeightsCache> built_layers =
      std::make_shared<LayerWeightsCache>();
};

// The geometry of rank `rank`'s shard of every layer at `tp` ranks;
// INVALID_ARGUMENT naming the layer when its KV heads cannot be split or
// replicated evenly.
absl::StatusOr<std::vector<LayerGeom>> ShardGeometry(const ModelConfig& cfg,
                                                     int tp, int rank);

// Re-points q/k/v and gate/up at row ranges of the fused weights.
void PointViews(LayerWeights* w, int64_t q_rows, int64_t k_rows, bool has_v,
                int64_t inter);

// Supplies one slice of a canonical weight: dim -1 = whole tensor, 0 = rows, 1
// = columns.
using SliceFn = std::function<absl::StatusOr<at::Tensor>(
    const std::string& name, const std::vector<int64_t>& full_shape, int dim,
    int64_t start, int64_t len)>;

// One tensor of decoder layer L: its name relative to the layer
// ("self_attn.q_proj.weight"), its full (unsharded) shape, and the slice a
// shard holds (dim -1 = whole tensor, 0 = rows, 1 = columns).
struct LayerTensorSpec {
  std::string name;
  std::vector<int64_t> full_shape;
  int dim = -1;
  int64_t start = 0;
  int64_t len = 0;
};

// Every tensor of layer L (v_proj only on layers without K = V) and the slice
// of it a shard with geometry g holds: the one statement of how a layer is
// sharded (BuildLayer, replacements, trainers).
std::vector<LayerTensorSpec> LayerTensors(const ModelConfig& cfg, int L,
                                          const LayerGeom& g);
// The member of `w` holding the tensor named relative to the layer; nullptr
// for an unknown name.
at::Tensor* LayerTensor(LayerWeights* w, absl::string_view name);

// Layer L's weights of a shard with geometry g, fused (q/k/v into qkv, gate/up
// into gate_up; the separate tensors are views of the fused ones).
absl::StatusOr<LayerWeights> BuildLayer(const ModelConfig& cfg, int L,
                                        const LayerGeom& g,
                                        const SliceFn& slice);

// Deterministic random slices (random_init.h) on `device` in `dtype`.
SliceFn RandomSlices(uint64_t seed, double init_range, InitStyle style,
                     at::Device device, at::ScalarType dtype);

// Reads slices from the memory-mapped checkpoint; only the slice's bytes are
// copied. `ckpt` is borrowed and must outlive the SliceFn.
SliceFn CheckpointSlices(const Checkpoint* ckpt, std::string prefix,
                         std::string dir, at::Device device,
                         at::ScalarType dtype);

// The tensors of an already built layer `w` (a shard's own slices) as a
// SliceFn over BuildLayer's names: the slice arguments are ignored.
SliceFn LayerSlices(const LayerWeights& w);

// Checks a replace_layer file (names relative to layer L) against the model:
// INVALID_ARGUMENT naming the file and tensor when the file holds no tensor,
// a tensor that is not one of layer L's, a shape other than the full
// (unsharded) shape of the checkpoint's tensor, or a non-float dtype.
absl::Status CheckReplacement(const ModelConfig& cfg, int L,
                              const SafetensorsFile& file);

// Slices of layer tensors from a replace_layer file (names relative to the
// layer) where it has them, read and converted as CheckpointSlices does; from
// `base` (typically LayerSlices of the shard's layer) otherwise. `file` is
// borrowed and must outlive the SliceFn.
SliceFn ReplacementSlices(const SafetensorsFile* file, SliceFn base,
                          at::Device device, at::ScalarType dtype);

// The prefix of the text model's tensor names in the checkpoint ("model.",
// "model.language_model.", ...), found from where embed_tokens.weight lives.
absl::StatusOr<std::string> DetectPrefix(const Checkpoint& ckpt,
                                         const std::string& dir);

}  // namespace sweepd::engine::internal

#endif  // SWEEPD_WORKER_ENGINE_WEIGHTS_H_
