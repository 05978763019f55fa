#include "worker/engine/layer_trainer.h"

#include <ATen/core/grad_mode.h>
#include <c10/core/DeviceGuard.h>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "worker/engine/decode_session.h"
#include "worker/engine/forward_plan.h"
#include "worker/engine/random_init.h"
#include "worker/engine/rank_forward.h"
#include "worker/engine/reference_backend.h"
#include "worker/engine/weights.h"

namespace sweepd::engine::internal {
namespace {

class LayerTrainerImpl : public LayerTrainer {
 public:
  LayerTrainerImpl(DecodeHost* host, int layer, at::Device device,
                   at::ScalarType dtype, std::vector<LayerTensorSpec> specs)
      : host_(host),
        layer_(layer),
        device_(device),
        dtype_(dtype),
        specs_(std::move(specs)) {
    for (const LayerTensorSpec& s : specs_) {
      infos_.push_back({s.name, s.full_shape});
    }
  }

  int layer() const override { return layer_; }
  at::Device device() const override { return device_; }
  at::ScalarType compute_dtype() const override { return dtype_; }
  const std::vector<LayerTensorInfo>& tensors() const override {
    return infos_;
  }

  absl::StatusOr<std::vector<at::Tensor>> ReinitTensors(
      uint64_t seed) override {
    const ModelConfig& cfg = host_->cfg();
    SliceFn slice = RandomSlices(seed, cfg.initializer_range,
                                 InitStyle::kTransformers, device_, at::kFloat);
    std::vector<at::Tensor> out;
    const std::string p = absl::StrCat("layers.", layer_, ".");
    for (const LayerTensorSpec& s : specs_) {
      ASSIGN_OR_RETURN(at::Tensor t,
                       slice(p + s.name, s.full_shape, s.dim, s.start, s.len));
      out.push_back(t.contiguous());
    }
    return out;
  }

  absl::StatusOr<std::vector<at::Tensor>> BaseTensors() override {
    std::vector<at::Tensor> out;
    RETURN_IF_ERROR(host_->RunRanks(
        [&](const RankContext& ctx) {
          LayerWeights w = ctx.shard->layers[layer_];
          for (const LayerTensorSpec& s : specs_) {
            out.push_back(LayerTensor(&w, s.name)
                              ->detach()
                              .to(at::kFloat)
                              .contiguous()
                              .clone());
          }
        },
        "reading the layer's weights"));
    return out;
  }

  absl::Status Residuals(const std::vector<int32_t>& tokens, int64_t batch,
                         int64_t seq, at::Tensor* in,
                         at::Tensor* out) override {
    ForwardRequest req;
    req.tokens = tokens;
    req.batch = batch;
    req.seq = seq;
    Plan plan;
    RETURN_IF_ERROR(MakePlan(host_->cfg(), 1, host_->owner(), req, &plan));
    ForwardResult result;
    int64_t executed = 0;
    RETURN_IF_ERROR(host_->RunRanks(
        [&](const RankContext& ctx) {
          at::NoGradGuard no_grad;
          RankForward f(host_->cfg(), host_->opts(), ctx.shard, ctx.backend,
                        ctx.comm, plan, host_->diagnostics(), &result,
                        &executed);
          f.Begin();
          *in = f.ResidualEntering(layer_);
          *out = f.LayerWith(layer_, *in, ctx.shard->layers[layer_]);
        },
        "retrain: the residuals of the frozen model"));
    host_->AddLayerForwards(layer_ + 1);
    return absl::OkStatus();
  }

  absl::StatusOr<double> Loss(const at::Tensor& in, const at::Tensor& target,
                              const std::vector<at::Tensor>& weights,
                              bool backward) override {
    if (weights.size() != specs_.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("LayerTrainer::Loss: ", weights.size(),
                       " weights, the layer has ", specs_.size(), " tensors"));
    }
    for (size_t i = 0; i < specs_.size(); ++i) {
      if (!weights[i].defined() ||
          weights[i].sizes().vec() != specs_[i].full_shape) {
        return absl::InvalidArgumentError(
            absl::StrCat("LayerTrainer::Loss: weight ", specs_[i].name,
                         " is not of the layer's shape"));
      }
    }
    const int64_t B = in.size(0), S = in.size(1);
    ForwardRequest req;
    req.tokens.assign(B * S, 0);
    req.batch = B;
    req.seq = S;
    Plan plan;
    RETURN_IF_ERROR(MakePlan(host_->cfg(), 1, host_->owner(), req, &plan));
    ForwardResult result;
    int64_t executed = 0;
    double value = 0.0;
    RETURN_IF_ERROR(host_->RunRanks(
        [&](const RankContext& ctx) {
          c10::DeviceGuard guard(device_);
          // The trainable layer always runs the eager (differentiable) ops.
          std::unique_ptr<RankBackend> reference =
              CreateReferenceBackend(host_->cfg(), host_->opts(), ctx.shard);
          std::optional<at::NoGradGuard> no_grad;
          if (!backward) no_grad.emplace();
          RankForward f(host_->cfg(), host_->opts(), ctx.shard, reference.get(),
                        ctx.comm, plan, host_->diagnostics(), &result,
                        &executed);
          f.Begin();
          const std::string p = absl::StrCat("layers.", layer_, ".");
          auto built = BuildLayer(
              host_->cfg(), layer_, ctx.shard->geom[layer_],
              [&](const std::string& name, const std::vector<int64_t>&, int,
                  int64_t, int64_t) -> absl::StatusOr<at::Tensor> {
                for (size_t i = 0; i < specs_.size(); ++i) {
                  if (p + specs_[i].name == name) {
                    return weights[i].to(device_).to(dtype_);
                  }
                }
                return absl::InternalError(absl::StrCat("no weight ", name));
              });
          if (!built.ok()) throw std::runtime_error(built.status().ToString());
          at::Tensor y = f.LayerWith(layer_, in, *built);
          at::Tensor loss =
              (y.to(at::kFloat) - target.to(at::kFloat)).pow(2).mean();
          if (backward) loss.backward();
          value = loss.item<double>();
        },
        "retrain: the trained layer"));
    host_->AddLayerForwards(1);
    return value;
  }

 private:
  DecodeHost* const host_;
  const int layer_;
  const at::Device device_;
  const at::ScalarType dtype_;
  const std::vector<LayerTensorSpec> specs_;
  std::vector<LayerTensorInfo> infos_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<LayerTrainer>> CreateLayerTrainer(
    DecodeHost* host, int layer) {
  const ModelConfig& cfg = host->cfg();
  if (host->tp() != 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "retrain trains a layer at tensor parallel 1 only; this worker's "
        "engine has tp_size ",
        host->tp(), " (run retrain on a worker with --tp 1)"));
  }
  if (layer < 0 || layer >= cfg.num_hidden_layers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "layer ", layer, " out of range [0, ", cfg.num_hidden_layers, ")"));
  }
  const EngineOptions& opts = host->opts();
  const at::Device device = opts.device == "cuda"
                                ? at::Device(at::kCUDA, opts.first_device)
                                : at::Device(at::kCPU);
  const at::ScalarType dtype =
      opts.dtype == DType::kBFloat16 ? at::kBFloat16 : at::kFloat;
  ASSIGN_OR_RETURN(std::vector<LayerGeom> geom, ShardGeometry(cfg, 1, 0));
  return std::unique_ptr<LayerTrainer>(new LayerTrainerImpl(
      host, layer, device, dtype, LayerTensors(cfg, layer, geom[layer])));
}

}  // namespace sweepd::engine::internal
