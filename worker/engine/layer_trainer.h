// LayerTrainer: one decoder layer of a loaded engine as a differentiable
// function, for the retrain job (worker/jobs/retrain_executor.cc,
// docs/CALIBRATION.md "Retrain"): the residuals entering and leaving the layer
// under the unmodified model (no grad), the layer re-initialised as the
// reinit intervention draws it, and the L2 loss of the layer run with given
// weights against a target, with its gradient.
//
// This header uses ATen (at::Tensor): include it only from translation units
// that link libtorch and never see protobuf (the retrain executor's .cc).
// engine.h stays plain C++ and only forward-declares the class.
//
// Tensor parallelism: TP 1 only (Engine::StartLayerTraining refuses an engine
// with tp_size > 1). The trainable layer runs on the reference backend (eager
// libtorch ops, differentiable; on CUDA with SDPA), whatever backend the
// engine's forwards use; the frozen layers below it and the target run on the
// engine's own backend.
//
// Ownership: borrows its engine, which must outlive it. Thread-safety: each
// call holds the engine as a forward does (one at a time with the engine's
// forwards); use a trainer from one thread at a time.
#ifndef SWEEPD_WORKER_ENGINE_LAYER_TRAINER_H_
#define SWEEPD_WORKER_ENGINE_LAYER_TRAINER_H_

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sweepd::engine {

// One tensor of the trained layer: its name relative to the layer
// ("self_attn.q_proj.weight", "layer_scalar", ...) and its full shape.
struct LayerTensorInfo {
  std::string name;
  std::vector<int64_t> shape;
};

class LayerTrainer {
 public:
  virtual ~LayerTrainer() = default;

  virtual int layer() const = 0;
  // The engine's device and compute dtype (the layer runs in it; weights
  // given in float32 are cast to it inside the differentiable graph).
  virtual at::Device device() const = 0;
  virtual at::ScalarType compute_dtype() const = 0;
  // Every tensor of the layer, in the order the other calls take them.
  virtual const std::vector<LayerTensorInfo>& tensors() const = 0;

  // The layer's tensors re-initialised from `seed` exactly as the reinit
  // intervention draws them (transformers' _init_weights: matrices
  // N(0, initializer_range), RMSNorm weights and layer_scalar 1), as float32
  // on the device (fresh leaves, no grad).
  virtual absl::StatusOr<std::vector<at::Tensor>> ReinitTensors(
      uint64_t seed) = 0;
  // The checkpoint's tensors of the layer as float32 on the device.
  virtual absl::StatusOr<std::vector<at::Tensor>> BaseTensors() = 0;

  // The residual entering the layer (`in`) and leaving it (`out`) under the
  // unmodified model for token windows [batch, seq] (row-major): no grad, the
  // compute dtype, on the device. Layers above are not run.
  virtual absl::Status Residuals(const std::vector<int32_t>& tokens,
                                 int64_t batch, int64_t seq, at::Tensor* in,
                                 at::Tensor* out) = 0;

  // The mean squared error, in float32, between the layer run with `weights`
  // (tensors() order and shapes, any float dtype) on `in` and `target`:
  // mean over every element of (layer(in) - target)². With `backward`, the
  // gradient is accumulated into the .grad of those of `weights` that require
  // grad. Returns the loss.
  virtual absl::StatusOr<double> Loss(const at::Tensor& in,
                                      const at::Tensor& target,
                                      const std::vector<at::Tensor>& weights,
                                      bool backward) = 0;
};

namespace internal {
class DecodeHost;  // decode_session.h: what an engine lends its sessions
// The trainer of layer `layer` of the engine behind `host` (EngineImpl's
// StartLayerTraining). FAILED_PRECONDITION at tp_size > 1, INVALID_ARGUMENT
// for a layer out of range.
absl::StatusOr<std::unique_ptr<LayerTrainer>> CreateLayerTrainer(
    DecodeHost* host, int layer);
}  // namespace internal

}  // namespace sweepd::engine

#endif  // SWEEPD_WORKER_ENGINE_LAYER_TRAINER_H_
