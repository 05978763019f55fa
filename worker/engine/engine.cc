// Engine implementation: per-rank weight shards, the Gemma 4 decoder forward in
// libtorch, Megatron-style tensor parallelism over a Communicator,
// interventions, captures, probe statistics and prefix reuse. Semantics:
// docs/ENGINE.md.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "common/safetensors.h"
#include "common/status.h"
#include "kernels/lm_head_pass.h"
#include "worker/engine/api.h"
#include "worker/engine/comm_factory.h"
#include "worker/engine/device_stats.h"
#include "worker/engine/profile.h"
#include "worker/engine/random_init.h"
#include "worker/engine/torch_compat.h"
#if SWEEPD_ENGINE_GEMM_TUNER
#include "worker/engine/gemm_tuner.h"
#endif

#if SWEEPD_ENGINE_CUDA_OPS
#include "worker/engine/cuda_ops.h"
#endif

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

const char* AttentionPathName(AttentionPath path) {
  switch (path) {
    case AttentionPath::kFlash:
      return "flash";
    case AttentionPath::kSdpa:
      return "sdpa";
    case AttentionPath::kChunkedGemm:
      return "chunked";
    case AttentionPath::kAuto:
      break;
  }
  return "auto";
}

absl::StatusOr<AttentionPath> ParseAttentionPath(absl::string_view name) {
  if (name == "auto") return AttentionPath::kAuto;
  if (name == "flash") return AttentionPath::kFlash;
  if (name == "sdpa") return AttentionPath::kSdpa;
  if (name == "chunked") return AttentionPath::kChunkedGemm;
  return absl::InvalidArgumentError(absl::StrCat(
      "attention path must be auto, flash, sdpa or chunked, got '", name, "'"));
}

const char* GemmTuningName(GemmTuning tuning) {
  return tuning == GemmTuning::kAutotune ? "autotune" : "off";
}

absl::StatusOr<GemmTuning> ParseGemmTuning(absl::string_view name) {
  if (name == "off") return GemmTuning::kOff;
  if (name == "autotune") return GemmTuning::kAutotune;
  return absl::InvalidArgumentError(
      absl::StrCat("gemm tuning must be off or autotune, got '", name, "'"));
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

// True where a collective is the identity and is not issued: the in-process
// (host) backend with one rank. Device communicators (NCCL) are always called,
// so TP = 1 on CUDA runs through NCCL like any other degree.
bool SkipCollective(const comm::Communicator* c) {
  return c->size() == 1 && !c->on_device();
}

// In-place collectives on contiguous tensors of the rank's device.
void AllReduceSum(comm::Communicator* c, at::Tensor& t) {
  if (SkipCollective(c)) return;
  SWEEPD_CHECK(t.is_contiguous());
  absl::Status s =
      c->AllReduceSum(t.data_ptr(), t.numel(), ToCommDtype(t.scalar_type()));
  if (!s.ok()) throw CommFailure{s};
}

void AllReduceMax(comm::Communicator* c, at::Tensor& t) {
  if (SkipCollective(c)) return;
  SWEEPD_CHECK(t.is_contiguous());
  absl::Status s =
      c->AllReduceMax(t.data_ptr(), t.numel(), ToCommDtype(t.scalar_type()));
  if (!s.ok()) throw CommFailure{s};
}

// Concatenation over ranks along a new leading dim: [size, ...t.shape].
at::Tensor AllGather(comm::Communicator* c, const at::Tensor& t) {
  at::Tensor src = t.contiguous();
  if (SkipCollective(c)) return src.unsqueeze(0);
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

// Re-points q/k/v and gate/up at row ranges of the fused weights.
void PointViews(LayerWeights* w, int64_t q_rows, int64_t k_rows, bool has_v,
                int64_t inter) {
  w->q = w->qkv.narrow(0, 0, q_rows);
  w->k = w->qkv.narrow(0, q_rows, k_rows);
  w->v = has_v ? w->qkv.narrow(0, q_rows + k_rows, k_rows) : at::Tensor();
  w->gate = w->gate_up.narrow(0, 0, inter);
  w->up = w->gate_up.narrow(0, inter, inter);
}

// Concatenates q/k/v into qkv and gate/up into gate_up (one copy at load time);
// the separate tensors become views of the fused ones.
void FuseLayer(LayerWeights* w) {
  const int64_t q_rows = w->q.size(0), k_rows = w->k.size(0);
  const int64_t inter = w->gate.size(0);
  const bool has_v = w->v.defined();
  std::vector<at::Tensor> parts = {w->q, w->k};
  if (has_v) parts.push_back(w->v);
  w->qkv = at::cat(parts, 0);
  w->gate_up = at::cat({w->gate, w->up}, 0);
  PointViews(w, q_rows, k_rows, has_v, inter);
}

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
  FuseLayer(&w);
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
  // [batch*seq]: 1 where layer_stats ranks the target (ForwardRequest::
  // lens_positions; all targeted positions when the request leaves it empty).
  std::vector<uint8_t> lens;
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
// Phase profile (profile.h).

struct ProfileStore {
  absl::Mutex mu;
  std::vector<std::pair<std::string, double>> ms ABSL_GUARDED_BY(mu);
  int64_t forwards ABSL_GUARDED_BY(mu) = 0;
  bool device_events ABSL_GUARDED_BY(mu) = false;
};

std::atomic<bool> g_profiling{false};
// -1: none; else static_cast<int>(AttentionPath) (SetAttentionPathOverride).
std::atomic<int> g_attention_override{-1};
// -1: none; else static_cast<int>(GemmTuning) (SetGemmTuningOverride).
std::atomic<int> g_gemm_tuning_override{-1};
// Lines of GemmTuningReport, appended as tuners choose.
absl::Mutex g_gemm_report_mu(absl::kConstInit);
std::vector<std::string>* GemmReportLines() {
  static auto* lines = new std::vector<std::string>;
  return lines;
}
// 0: none; else query positions per chunked-attention block
// (SetChunkedQueryBlockOverride).
std::atomic<int64_t> g_query_block_override{0};

ProfileStore& Profiles() {
  static ProfileStore* store = new ProfileStore;
  return *store;
}

void AddTo(std::vector<std::pair<std::string, double>>* acc,
           const std::string& phase, double ms) {
  for (auto& [name, total] : *acc) {
    if (name == phase) {
      total += ms;
      return;
    }
  }
  acc->emplace_back(phase, ms);
}

#if SWEEPD_ENGINE_CUDA_OPS
void CudaCheck(int code, const char* what) {
  if (code != 0) {
    throw std::runtime_error(absl::StrCat(what, ": CUDA error ", code, " (",
                                          cuda_ops::ErrorString(code), ")"));
  }
}
#endif

// Marks phase boundaries of one forward on rank 0 (CUDA events on the compute
// stream, or the host clock) and adds the intervals to the process-wide store.
class PhaseClock {
 public:
  PhaseClock(bool enabled, bool device_events, void* stream)
      : enabled_(enabled), device_events_(device_events), stream_(stream) {}
  PhaseClock(const PhaseClock&) = delete;
  PhaseClock& operator=(const PhaseClock&) = delete;
  ~PhaseClock() {
#if SWEEPD_ENGINE_CUDA_OPS
    for (Point& p : points_) cuda_ops::EventDestroy(p.event);
#endif
  }

  void Mark(const char* phase) {
    if (!enabled_) return;
    Point p;
    p.phase = phase;
#if SWEEPD_ENGINE_CUDA_OPS
    if (device_events_) {
      CudaCheck(cuda_ops::EventCreate(&p.event), "profile event");
      CudaCheck(cuda_ops::EventRecord(p.event, stream_), "profile event");
    }
#endif
    p.host = std::chrono::steady_clock::now();
    points_.push_back(p);
  }

  void Finish() {
    if (!enabled_ || points_.empty()) return;
    Mark("end");
    std::vector<std::pair<std::string, double>> local;
    for (size_t i = 0; i + 1 < points_.size(); ++i) {
      double ms = std::chrono::duration<double, std::milli>(
                      points_[i + 1].host - points_[i].host)
                      .count();
#if SWEEPD_ENGINE_CUDA_OPS
      if (device_events_) {
        float dev_ms = 0;
        CudaCheck(cuda_ops::EventElapsedMs(points_[i].event,
                                           points_[i + 1].event, &dev_ms),
                  "profile event");
        ms = dev_ms;
      }
#endif
      AddTo(&local, points_[i].phase, ms);
    }
    ProfileStore& store = Profiles();
    absl::MutexLock lock(&store.mu);
    for (const auto& [name, ms] : local) AddTo(&store.ms, name, ms);
    ++store.forwards;
    store.device_events = device_events_;
  }

 private:
  struct Point {
    const char* phase = nullptr;
    void* event = nullptr;
    std::chrono::steady_clock::time_point host;
  };
  const bool enabled_;
  const bool device_events_;
  void* const stream_;
  std::vector<Point> points_;
};

// Verdicts of AttentionUsable, per (kernel name, device index).
absl::Mutex g_attention_checks_mu(absl::kConstInit);
std::map<std::pair<std::string, int>, bool>* AttentionChecks() {
  static auto* checks = new std::map<std::pair<std::string, int>, bool>;
  return checks;
}

#if SWEEPD_TORCH_HAS_FLASH_WINDOW
// Banded causal attention on q [B, S, H, D], k/v [B, S, KV, D]: query i sees
// keys j with j <= i and, window > 0, i - j < window.
using AttentionFn =
    std::function<at::Tensor(const at::Tensor& q, const at::Tensor& k,
                             const at::Tensor& v, int64_t window)>;

// The fused attention kernels (private ATen ops, and the banded composition
// built from them) are used only after they reproduced a float32 banded-mask
// reference on this device once per process, on grouped heads and on the
// shapes given as (sequence, window) pairs: a build whose kernels ignored the
// window or mishandled a layout would otherwise be silently wrong.
// Thread-safe; the verdict is cached per (name, device).
bool AttentionUsable(at::Device device, const std::string& name,
                     const AttentionFn& fn,
                     const std::vector<std::pair<int64_t, int64_t>>& shapes) {
  absl::MutexLock lock(&g_attention_checks_mu);
  auto* known = AttentionChecks();
  const auto key = std::make_pair(name, static_cast<int>(device.index()));
  auto it = known->find(key);
  if (it != known->end()) return it->second;
  bool ok = true;
  std::string why;
  try {
    for (const auto& [S, W] : shapes) {
      const int64_t B = 2, H = 4, KV = 2, D = 64;
      auto opts = at::TensorOptions().dtype(at::kBFloat16).device(device);
      at::Tensor q = at::randn({B, S, H, D}, opts);
      at::Tensor k = at::randn({B, S, KV, D}, opts);
      at::Tensor v = at::randn({B, S, KV, D}, opts);
      at::Tensor got = fn(q, k, v, W).to(at::kFloat);
      at::Tensor qf = q.to(at::kFloat).transpose(1, 2);
      at::Tensor kf =
          k.to(at::kFloat).repeat_interleave(H / KV, 2).transpose(1, 2);
      at::Tensor vf =
          v.to(at::kFloat).repeat_interleave(H / KV, 2).transpose(1, 2);
      auto lopts = at::TensorOptions().dtype(at::kLong).device(device);
      at::Tensor qi = at::arange(S, lopts).unsqueeze(1);
      at::Tensor ki = at::arange(S, lopts).unsqueeze(0);
      at::Tensor allowed = ki.le(qi);
      if (W > 0) allowed = allowed.logical_and((qi - ki).lt(W));
      at::Tensor scores =
          at::matmul(qf, kf.transpose(-2, -1))
              .masked_fill(allowed.logical_not(),
                           -std::numeric_limits<float>::infinity());
      at::Tensor ref = at::matmul(at::softmax(scores, -1), vf).transpose(1, 2);
      const double err = (got - ref).abs().max().item<double>();
      absl::StrAppend(&why, why.empty() ? "" : ", ", "S ", S, " window ", W,
                      ": max |got - float32 reference| = ", err);
      ok = ok && err < 0.05;
    }
  } catch (const std::exception& e) {
    ok = false;
    why = e.what();
  }
  if (ok) {
    SWEEPD_LOG(INFO) << "device " << static_cast<int>(device.index()) << ": "
                     << name << " checked (" << why << ")";
  } else {
    SWEEPD_LOG(WARNING) << "device " << static_cast<int>(device.index()) << ": "
                        << name << " unusable, falling back: " << why;
  }
  (*known)[key] = ok;
  return ok;
}

bool FlashWindowUsable(at::Device device) {
  return AttentionUsable(device, "FlashAttention-2 with a sliding window",
                         [](const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v, int64_t window) {
                           return compat::FlashCausalAttention(q, k, v, 1.0,
                                                               window);
                         },
                         {{40, 16}});
}
#endif

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
#if SWEEPD_ENGINE_GEMM_TUNER
  // Created on the rank's thread at the first autotuned GEMM; gemm_error
  // keeps why it could not be (the GEMMs then stay on at::mm).
  std::unique_ptr<GemmTuner> gemm;
  std::string gemm_error;
#endif
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
    const bool lead = s_.rank == 0;
#if SWEEPD_ENGINE_CUDA_OPS
    fast_ = s_.device.is_cuda();
    if (fast_) {
      CudaCheck(cuda_ops::SetDevice(s_.device.index()), "cudaSetDevice");
      stream_ = internal::CurrentCudaStream(s_.device.index());
    }
#endif
    PhaseClock clock(lead && g_profiling.load(), fast_, stream_);
    clock_ = &clock;
    clock.Mark("embed");
    auto lopts = at::TensorOptions().dtype(at::kLong).device(s_.device);
    at::Tensor tokens =
        at::from_blob(const_cast<int32_t*>(req.tokens.data()), {B, S}, at::kInt)
            .to(lopts);
    targets_ = at::from_blob(const_cast<int32_t*>(plan_.targets.data()),
                             {B * S}, at::kInt)
                   .to(lopts);
    target_valid_ = targets_.ge(0);
    if (fast_) {
      // Positions with a target, found on the host (no device sync).
      std::vector<int64_t> valid;
      for (int64_t i = 0; i < B * S; ++i) {
        if (plan_.targets[i] >= 0) valid.push_back(i);
      }
      valid_idx_ = at::tensor(valid, at::kLong).to(s_.device);
      valid_targets_ = targets_.index_select(0, valid_idx_);
      std::vector<int64_t> lens;
      for (int64_t i = 0; i < B * S; ++i) {
        if (plan_.lens[i]) lens.push_back(i);
      }
      lens_idx_ = at::tensor(lens, at::kLong).to(s_.device);
      lens_targets_ = targets_.index_select(0, lens_idx_);
    }
    lens_mask_ = at::from_blob(const_cast<uint8_t*>(plan_.lens.data()), {B * S},
                               at::kByte)
                     .to(s_.device)
                     .to(at::kBool);

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
      clock.Mark("layer");
      at::Tensor out_h = h;
      if (!plan_.skip[L]) out_h = fast_ ? LayerFast(L, h) : Layer(L, h);
      if (!plan_.skip[L]) ++*executed_;
      Capture(CapturePoint::kResidOut, L, out_h);
      if (req.layer_stats) {
        clock.Mark("stats");
        if (fast_) {
          StatsFast(L, h, out_h);
        } else {
          Stats(L, h, out_h);
        }
      }
      h = out_h;
    }
    if (plan_.keep_state) kept[N] = h;

    clock.Mark("lm_head");
    at::Tensor x = fast_ ? NormFast(h, s_.final_norm)
                         : RmsNorm(h, s_.final_norm, cfg_.rms_norm_eps);
    Capture(CapturePoint::kFinalNorm, N - 1, x);
    at::Tensor nll;
    if (fast_ && !req.return_logits) {
      nll = NllFast(x);
    } else {
      at::Tensor logits =
          LocalLogits(x);  // [B*S, vocab_shard] float32, padding -inf
      at::Tensor rank;
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
    }
    if (fast_ && req.layer_stats) {
      clock.Mark("stats");
      FlushLens();
      PublishStatsFast();
    }
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
      for (at::Tensor* t : {&scratch->qkv, &scratch->o, &scratch->gate_up,
                            &scratch->down, &scratch->q_norm, &scratch->k_norm,
                            &scratch->input_norm, &scratch->pre_ff_norm}) {
        if (t->defined()) *t = at::zeros_like(*t);
      }
      PointViews(scratch, w.q.size(0), w.k.size(0), w.v.defined(),
                 w.gate.size(0));
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
    attn = MaskAndCaptureHeads(L, attn);
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

  // Zeroes the masked heads this rank owns and serves the attn_heads capture;
  // attn is [B, S, heads_local, head_dim] contiguous.
  at::Tensor MaskAndCaptureHeads(int L, at::Tensor attn) {
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
    if (Wanted(CapturePoint::kAttnHeads, L)) {
      at::Tensor all =
          AllGather(comm_, attn.permute({2, 0, 1, 3}));  // [tp, Hl, B, S, hd]
      if (s_.rank == 0) {
        at::Tensor full = all.reshape({s_.tp * g.heads_local, B, S, hd})
                              .permute({1, 2, 0, 3});
        Store(CapturePoint::kAttnHeads, L, full);
      }
    }
    return attn;
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
    rank = at::where(lens_mask_, rank, at::full_like(rank, -1));
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

  // ---- GPU path (fast_): fused projections (4 GEMMs per layer), fused
  // norm / RoPE / GeGLU kernels (cuda_ops.h), mask-free attention and the
  // fused LM-head pass (kernels/lm_head_pass.h) on bf16 logits. Same
  // semantics as the eager path above (docs/ENGINE.md, "GPU path").

  static const void* Ptr(const at::Tensor& t) {
    return t.defined() ? t.data_ptr() : nullptr;
  }

  // out = norm(x)·w; with residual: (residual + ·)[·scalar]; with out2 also
  // out2 = norm(out)·w2. x is [rows, dim] with unit column stride.
  void RowNormFast(const at::Tensor& x, const at::Tensor& w,
                   const at::Tensor& residual, const at::Tensor& scalar,
                   const at::Tensor& out, const at::Tensor& w2 = at::Tensor(),
                   const at::Tensor& out2 = at::Tensor()) {
#if SWEEPD_ENGINE_CUDA_OPS
    cuda_ops::RowNormArgs a;
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
    CudaCheck(cuda_ops::RowNorm(a, stream_), "RowNorm");
#else
    SWEEPD_CHECK(false) << "GPU path in a build without SWEEPD_ENABLE_CUDA";
#endif
  }

  // Per-head norm (+ RoPE when cos is defined) of `heads` heads starting at
  // column `col` of qkv [T, width] into out [B, S, heads, head_dim].
  void HeadNormRopeFast(const at::Tensor& qkv, int64_t col, int heads,
                        int head_dim, int64_t seq, const at::Tensor& w,
                        const at::Tensor& cos, const at::Tensor& sin,
                        const at::Tensor& out) {
#if SWEEPD_ENGINE_CUDA_OPS
    cuda_ops::HeadNormRopeArgs a;
    a.dtype = OpDtype();
    a.x = static_cast<const char*>(qkv.data_ptr()) + col * qkv.element_size();
    a.x_stride = qkv.stride(0);
    a.tokens = qkv.size(0);
    a.seq = seq;
    a.heads = heads;
    a.head_dim = head_dim;
    a.weight = Ptr(w);
    a.eps = static_cast<float>(cfg_.rms_norm_eps);
    a.cos = Ptr(cos);
    a.sin = Ptr(sin);
    a.out = out.data_ptr();
    CudaCheck(cuda_ops::HeadNormRope(a, stream_), "HeadNormRope");
#else
    SWEEPD_CHECK(false) << "GPU path in a build without SWEEPD_ENABLE_CUDA";
#endif
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
      auto [cos, sin] = Rope(L, S);
      it = rope_cache_
               .emplace(key, std::make_pair(cos.contiguous(), sin.contiguous()))
               .first;
    }
    return it->second;
  }

  at::Tensor LayerFast(int L, const at::Tensor& h) {
    LayerWeights scratch;
    const LayerWeights& w = WeightsFor(L, &scratch);
    const LayerGeom& g = s_.geom[L];
    const LayerConfig& lc = cfg_.layers[L];
    const int64_t B = h.size(0), S = h.size(1), T = B * S, hd = g.head_dim;
    const int64_t hidden = cfg_.hidden_size;
    auto opts = h.options();
    at::Tensor h2 = h.reshape({T, hidden}).contiguous();

    clock_->Mark("norm_input");
    at::Tensor x = at::empty({T, hidden}, opts);
    RowNormFast(h2, w.input_norm, at::Tensor(), at::Tensor(), x);
    clock_->Mark("gemm_qkv");
    at::Tensor qkv = Linear(x, w.qkv);  // [T, (Hl + KVl (+ KVl)) * hd]
    clock_->Mark("qkv_norm_rope");
    const auto& [cos, sin] = RopeFor(L, S);
    at::Tensor q = at::empty({B, S, g.heads_local, hd}, opts);
    at::Tensor k = at::empty({B, S, g.kv_local, hd}, opts);
    at::Tensor v = at::empty({B, S, g.kv_local, hd}, opts);
    const int64_t q_cols = g.heads_local * hd, kv_cols = g.kv_local * hd;
    HeadNormRopeFast(qkv, 0, g.heads_local, hd, S, w.q_norm, cos, sin, q);
    HeadNormRopeFast(qkv, q_cols, g.kv_local, hd, S, w.k_norm, cos, sin, k);
    // K = V layers: V is v_norm of the raw k_proj output.
    HeadNormRopeFast(qkv, lc.k_eq_v ? q_cols : q_cols + kv_cols, g.kv_local, hd,
                     S, at::Tensor(), at::Tensor(), at::Tensor(), v);
    clock_->Mark(lc.kind == LayerKind::kFull ? "attention_full"
                                             : "attention_sliding");
    at::Tensor attn = AttentionFast(L, q, k, v);  // [B, S, Hl, hd]
    clock_->Mark("other");
    attn = MaskAndCaptureHeads(L, attn);
    clock_->Mark("gemm_o");
    at::Tensor a = Linear(attn.view({T, q_cols}), w.o);
    clock_->Mark("allreduce");
    AllReduceSum(comm_, a);
    clock_->Mark("norm_attn_out");
    at::Tensor hh = at::empty({T, hidden}, opts);
    at::Tensor m_in = at::empty({T, hidden}, opts);
    RowNormFast(a, w.post_attn_norm, h2, at::Tensor(), hh, w.pre_ff_norm, m_in);
    Capture(CapturePoint::kMlpIn, L, m_in.view({B, S, hidden}));
    clock_->Mark("gemm_gate_up");
    at::Tensor gu = Linear(m_in, w.gate_up);  // [T, 2 * inter_local]
    clock_->Mark("geglu");
    at::Tensor act = at::empty({T, g.inter_local}, opts);
#if SWEEPD_ENGINE_CUDA_OPS
    CudaCheck(cuda_ops::Geglu(OpDtype(), gu.data_ptr(), T, g.inter_local,
                              cfg_.hidden_activation != "gelu", act.data_ptr(),
                              stream_),
              "Geglu");
#endif
    gu = at::Tensor();
    clock_->Mark("gemm_down");
    at::Tensor m = Linear(act, w.down);
    clock_->Mark("allreduce");
    AllReduceSum(comm_, m);
    clock_->Mark("norm_ff_out");
    at::Tensor out = at::empty({T, hidden}, opts);
    RowNormFast(m, w.post_ff_norm, hh, w.layer_scalar, out);
    clock_->Mark("other");
    return out.view({B, S, hidden});
  }

  GemmTuning GemmTuningNow() const {
    const int forced = g_gemm_tuning_override.load();
    return forced >= 0 ? static_cast<GemmTuning>(forced) : opts_.gemm_tuning;
  }

  // y [M, N] = x [M, K] · wᵀ (w [N, K]): cuBLASLt with autotuned algorithms
  // (GemmTuning::kAutotune, bf16, M >= 1024, rows contiguous and 16-byte
  // aligned), else at::mm with cuBLAS's heuristic.
  at::Tensor Linear(const at::Tensor& x, const at::Tensor& w) {
#if SWEEPD_ENGINE_GEMM_TUNER
    const auto aligned = [](const at::Tensor& t) {
      return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0 &&
             t.stride(0) % 8 == 0 && t.stride(1) == 1;
    };
    // Only GEMMs of at least kTunedMinRows rows are tuned: the logit lens'
    // few-row GEMMs come in many shapes, each of which would be timed once.
    constexpr int64_t kTunedMinRows = 1024;
    if (GemmTuningNow() == GemmTuning::kAutotune && s_.device.is_cuda() &&
        x.size(0) >= kTunedMinRows && x.scalar_type() == at::kBFloat16 &&
        w.scalar_type() == at::kBFloat16 && x.dim() == 2 && w.dim() == 2 &&
        aligned(x) && aligned(w)) {
      if (s_.gemm == nullptr && s_.gemm_error.empty()) {
        // One small GEMM through libtorch first, so that its cuBLAS (and
        // the cuBLASLt next to it, which the tuner uses) is loaded.
        at::mm(x.narrow(0, 0, 1), w.narrow(0, 0, 1).t());
        auto t = GemmTuner::Create(s_.device.index(), opts_.gemm_tuning_cache);
        if (t.ok()) {
          s_.gemm = std::move(*t);
        } else {
          s_.gemm_error = t.status().ToString();
          SWEEPD_LOG(WARNING) << "rank " << s_.rank
                              << ": GEMM autotuning unavailable, using "
                                 "cuBLAS's heuristic: "
                              << s_.gemm_error;
        }
      }
      if (s_.gemm != nullptr) {
        at::Tensor y = at::empty({x.size(0), w.size(0)}, x.options());
        GemmArgs a;
        a.shape = {x.size(0), w.size(0), x.size(1)};
        a.x = x.data_ptr();
        a.ldx = x.stride(0);
        a.w = w.data_ptr();
        a.ldw = w.stride(0);
        a.y = y.data_ptr();
        a.ldy = y.stride(0);
        absl::StatusOr<bool> tuned = s_.gemm->Run(a, stream_);
        if (!tuned.ok()) throw std::runtime_error(tuned.status().ToString());
        if (*tuned) {
          const GemmTuner::Choice c = s_.gemm->Choices().back();
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
          absl::MutexLock lock(&g_gemm_report_mu);
          GemmReportLines()->push_back(line);
        }
        return y;
      }
    }
#endif
    return at::mm(x, w.t());
  }

  AttentionPath AttentionPathNow() const {
    const int forced = g_attention_override.load();
    return forced >= 0 ? static_cast<AttentionPath>(forced)
                       : opts_.attention_path;
  }

  // Causal attention of one layer on q [B, S, Hl, hd], k/v [B, S, KVl, hd]
  // (AttentionPath): cuDNN (kAuto) or FlashAttention-2 with the sliding window
  // and grouped KV heads where they apply (bf16, head_dim <= 256); chunked GEMM
  // attention for head_dim > 256 (kAuto, kFlash) or every layer
  // (kChunkedGemm); else SDPA with is_causal and no mask (K/V heads expanded),
  // or, for a sliding layer longer than its window, SDPA with the band mask.
  at::Tensor AttentionFast(int L, const at::Tensor& q, at::Tensor k,
                           at::Tensor v) {
    const LayerGeom& g = s_.geom[L];
    const int window = cfg_.layers[L].sliding_window;
    const int64_t S = q.size(1);
    const bool banded = window > 0 && S > window;
    const AttentionPath path = AttentionPathNow();
    if (path == AttentionPath::kChunkedGemm ||
        ((path == AttentionPath::kAuto || path == AttentionPath::kFlash) &&
         opts_.use_sdpa && g.head_dim > 256)) {
      return ChunkedAttention(q, k, v, banded ? window : 0);
    }
#if SWEEPD_TORCH_HAS_FLASH_WINDOW
    const bool fused = opts_.use_sdpa && s_.dtype == at::kBFloat16 &&
                       g.head_dim <= 256 && g.head_dim % 8 == 0;
#if SWEEPD_TORCH_HAS_CUDNN_ATTENTION && SWEEPD_ENGINE_CUDA_OPS
    if (path == AttentionPath::kAuto && fused && CudnnAttentionUsable()) {
      return CudnnAttention(q, k, v, banded ? window : 0);
    }
#endif
    if (fused && FlashWindowUsable(s_.device)) {
      return compat::FlashCausalAttention(q, k, v, 1.0, banded ? window : 0);
    }
#endif
    const int64_t groups = g.heads_local / g.kv_local;
    if (groups > 1) {
      k = k.repeat_interleave(groups, 2);
      v = v.repeat_interleave(groups, 2);
    }
    at::Tensor qt = q.transpose(1, 2), kt = k.transpose(1, 2),
               vt = v.transpose(1, 2);
    at::Tensor o =
        banded ? compat::Attention(qt.contiguous(), kt.contiguous(),
                                   vt.contiguous(), AllowedMask(L, S), 1.0,
                                   opts_.use_sdpa)
               : compat::CausalAttention(qt, kt, vt, 1.0, opts_.use_sdpa);
    return o.transpose(1, 2).contiguous();
  }

#if SWEEPD_TORCH_HAS_CUDNN_ATTENTION && SWEEPD_TORCH_HAS_FLASH_WINDOW && \
    SWEEPD_ENGINE_CUDA_OPS
  bool CudnnAttentionUsable() {
    // Sequences: not a multiple of the window, a multiple (one batched
    // cuDNN call), two blocks, and shorter than the window (plain causal).
    return AttentionUsable(
        s_.device, "cuDNN attention (banded by window blocks)",
        [this](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
               int64_t window) { return CudnnAttention(q, k, v, window); },
        {{40, 16}, {48, 16}, {32, 16}, {12, 16}});
  }

  // Causal attention through cuDNN's fused kernel; with window > 0 and a
  // sequence longer than the window, the band (query i sees keys j with
  // 0 <= i - j < window) is composed exactly (docs/ENGINE.md, "GPU path"):
  // the sequence is cut into blocks of `window` positions; the window of
  // query i of block b is the causal part of block b (keys 0..i of it) plus
  // the keys of block b - 1 after offset i. cuDNN computes every block
  // causally (one call when S is a multiple of the window); the part of the
  // previous block (offsets i < window - 1 only: the last query of a block
  // sees no earlier block) comes from cuDNN on reversed rows when S is a
  // multiple of the window, else from FlashAttention-2's local attention; and
  // LseMerge combines the two by their log-sum-exps. q [B, S, H, D], k/v
  // [B, S, KV, D] contiguous -> [B, S, H, D].
  at::Tensor CudnnAttention(const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v, int64_t window) {
    const int64_t B = q.size(0), S = q.size(1), H = q.size(2), D = q.size(3);
    const int64_t KV = k.size(2);
    if (window <= 0 || S <= window) {
      return compat::CudnnCausalAttentionLse(q, k, v, 1.0).first;
    }
    const int64_t W = window, n = (S + W - 1) / W;
    // Sub-phases in the profile (the phase itself ends at the caller's next
    // mark).
    clock_->Mark("attention_sliding.blocks");
    at::Tensor out;
    at::Tensor lse;  // [B, H, n, W]: block b's log-sum-exps at [:, :, b]
    if (S % W == 0) {
      auto [o, l] = compat::CudnnCausalAttentionLse(
          q.reshape({B * n, W, H, D}), k.reshape({B * n, W, KV, D}),
          v.reshape({B * n, W, KV, D}), 1.0);
      out = o.view({B, S, H, D});
      lse = l.view({B, n, H, W}).permute({0, 2, 1, 3});
    } else {
      out = at::empty({B, S, H, D}, q.options());
      lse = at::empty({B, H, n, W}, q.options().dtype(at::kFloat));
      for (int64_t b = 0; b < n; ++b) {
        const int64_t s0 = b * W, len = std::min(W, S - s0);
        auto [o, l] = compat::CudnnCausalAttentionLse(
            q.narrow(1, s0, len).contiguous(),
            k.narrow(1, s0, len).contiguous(),
            v.narrow(1, s0, len).contiguous(), 1.0);
        out.narrow(1, s0, len).copy_(o);
        lse.select(2, b).narrow(2, 0, len).copy_(l);
      }
    }
    // out[:, s0 : s0 + rows] (the first `rows` queries of a block, with
    // log-sum-exps lb [B, H, rows]) absorbs the previous block's part `other`
    // ([B, rows, H, D] at the given element strides, lse likewise).
    auto merge = [&](int64_t s0, int64_t rows, const at::Tensor& lb,
                     const void* other, const int64_t(&other_stride)[3],
                     const float* other_lse,
                     const int64_t(&other_lse_stride)[3]) {
      clock_->Mark("attention_sliding.merge");
      at::Tensor ob = out.narrow(1, s0, rows);
      cuda_ops::LseMergeArgs a;
      a.dtype = OpDtype();
      a.batch = B;
      a.rows = rows;
      a.heads = H;
      a.head_dim = D;
      a.out = ob.data_ptr();
      a.out_lse = lb.data_ptr<float>();
      a.other = other;
      a.other_lse = other_lse;
      for (int d = 0; d < 3; ++d) {
        a.out_stride[d] = ob.stride(d);
        a.out_lse_stride[d] = lb.stride(d);
        a.other_stride[d] = other_stride[d];
        a.other_lse_stride[d] = other_lse_stride[d];
      }
      CudaCheck(cuda_ops::LseMerge(a, stream_), "LseMerge");
    };
    if (S % W == 0 && W > 1) {
      // Every block's previous-block part in one cuDNN call: with the rows of
      // block b's queries and of block b - 1's keys/values reversed, "keys
      // after my offset" is causal. Reversed query a (offset W - 1 - a) sees
      // reversed keys 0..a - 1, i.e. queries 1..W - 1 against keys 0..W - 2
      // under the plain causal mask; its output row a is offset W - 2 - a
      // (read back with a negative row stride).
      clock_->Mark("attention_sliding.previous");
      const int64_t m = n - 1, esz = q.element_size();
      auto reversed = [&](const at::Tensor& t, int64_t first_block) {
        const int64_t heads = t.size(2), row = heads * D * esz;
        at::Tensor r = at::empty({B * m, W, heads, D}, t.options());
        CudaCheck(
            cuda_ops::ReverseRows(
                static_cast<const char*>(t.data_ptr()) + first_block * W * row,
                B, m, W, row, S * row, W * row, row, r.data_ptr(), stream_),
            "ReverseRows");
        return r;
      };
      at::Tensor qr = reversed(q, 1), kr = reversed(k, 0), vr = reversed(v, 0);
      auto [ou, lu] = compat::CudnnCausalAttentionLse(
          qr.narrow(1, 1, W - 1), kr.narrow(1, 0, W - 1),
          vr.narrow(1, 0, W - 1), 1.0);
      at::Tensor o5 = ou.view({B, m, W - 1, H, D});
      at::Tensor l4 = lu.view({B, m, H, W - 1});
      for (int64_t b = 1; b < n; ++b) {
        at::Tensor ob = o5.select(1, b - 1);  // [B, W - 1, H, D]
        at::Tensor lb = l4.select(1, b - 1);  // [B, H, W - 1]
        const int64_t os[3] = {ob.stride(0), -ob.stride(1), ob.stride(2)};
        const int64_t ls[3] = {lb.stride(0), lb.stride(1), -lb.stride(2)};
        merge(b * W, W - 1, lse.select(2, b).narrow(2, 0, W - 1),
              static_cast<const char*>(ob.data_ptr()) +
                  (W - 2) * ob.stride(1) * esz,
              os, lb.data_ptr<float>() + (W - 2) * lb.stride(2), ls);
      }
    } else {
      // Per block through FlashAttention-2's local attention: query i of
      // Sq = rows sees key j of the W previous keys when j >= i + 1
      // (left = W - 1 - rows, no right bound).
      for (int64_t b = 1; b < n; ++b) {
        const int64_t s0 = b * W, rows = std::min(W - 1, S - s0);
        if (rows <= 0) continue;  // window 1: a query sees only itself
        clock_->Mark("attention_sliding.previous");
        auto [o2, l2] = compat::FlashLocalAttentionLse(
            q.narrow(1, s0, rows), k.narrow(1, s0 - W, W),
            v.narrow(1, s0 - W, W), 1.0, /*left=*/W - 1 - rows,
            /*right=*/-1);
        at::Tensor l2f = l2.to(at::kFloat);
        const int64_t os[3] = {o2.stride(0), o2.stride(1), o2.stride(2)};
        const int64_t ls[3] = {l2f.stride(0), l2f.stride(1), l2f.stride(2)};
        merge(s0, rows, lse.select(2, b).narrow(2, 0, rows), o2.data_ptr(), os,
              l2f.data_ptr<float>(), ls);
      }
    }
    clock_->Mark("attention_sliding");
    return out;
  }
#endif

  // Chunked GEMM attention (docs/ENGINE.md, "GPU path"): the eager math —
  // scores = Q·Kᵀ in the compute dtype (cuBLAS, float32 accumulation),
  // softmax in float32 over the allowed keys, P rounded to the compute dtype,
  // O = P·V — one block of query positions at a time, each block reading only
  // the keys it may see ([0, end) causal; the window's band when window > 0).
  // GQA: the `group` query heads of a KV head are rows of one matrix
  // [B·KV, S·group, D] (rows ordered (position, head)), so K/V are never
  // expanded. q [B, S, H, D], k/v [B, S, KV, D] -> [B, S, H, D].
  at::Tensor ChunkedAttention(const at::Tensor& q, const at::Tensor& k,
                              const at::Tensor& v, int64_t window) {
#if SWEEPD_ENGINE_CUDA_OPS
    const int64_t B = q.size(0), S = q.size(1), H = q.size(2), D = q.size(3);
    const int64_t KV = k.size(2), G = H / KV;
    // Layout changes [B, S, KV, G·D] -> [B, KV, S, G·D] (rows of G·D or D
    // contiguous elements move whole; SwapMiddleDims is a plain row copy).
    const int64_t esize = q.element_size();
    auto grouped = [&](const at::Tensor& t, int64_t heads, int64_t rows_per) {
      at::Tensor src = t.contiguous();
      at::Tensor dst = at::empty({B * KV, S * rows_per, D}, t.options());
      CudaCheck(cuda_ops::SwapMiddleDims(src.data_ptr(), B, S, KV,
                                         heads / KV * D * esize, dst.data_ptr(),
                                         stream_),
                "SwapMiddleDims");
      return dst;
    };
    at::Tensor qg = grouped(q, H, G);
    at::Tensor kg = grouped(k, KV, 1);
    at::Tensor vg = grouped(v, KV, 1);
    at::Tensor out = at::empty({B * KV, S * G, D}, q.options());
    // Query positions per block: up to 256, fewer when the score block
    // [B·KV, C·G, keys] would pass 256 MiB (SetChunkedQueryBlockOverride
    // replaces the choice). Larger blocks compute more of the masked upper
    // triangle: n blocks of a causal sequence compute (n + 1) / 2n of the
    // square (n = 8: 0.5625; n = 1: 1).
    const int64_t keys_max =
        window > 0 ? std::min<int64_t>(S, window + 256) : S;
    const int64_t budget = int64_t{256} << 20;
    int64_t C =
        budget / std::max<int64_t>(1, B * KV * G * keys_max * q.element_size());
    C = std::clamp<int64_t>(C, 16, 256);
    const int64_t forced = g_query_block_override.load();
    if (forced > 0) C = std::min(forced, S);
    // Sub-phases of the full layers' attention in the profile (the layout
    // copies stay under the phase itself).
    const bool split = window == 0;
    for (int64_t s0 = 0; s0 < S; s0 += C) {
      const int64_t s1 = std::min(S, s0 + C);
      const int64_t k0 = window > 0 ? std::max<int64_t>(0, s0 - window + 1) : 0;
      const int64_t rows = (s1 - s0) * G;
      if (split) clock_->Mark("attention_full.qk");
      at::Tensor scores = at::bmm(qg.narrow(1, s0 * G, rows),
                                  kg.narrow(1, k0, s1 - k0).transpose(1, 2));
      if (split) clock_->Mark("attention_full.softmax");
      cuda_ops::CausalSoftmaxArgs a;
      a.dtype = OpDtype();
      a.scores = scores.data_ptr();
      a.batches = B * KV;
      a.rows = rows;
      a.keys = s1 - k0;
      a.group = static_cast<int>(G);
      a.q_start = s0;
      a.key_start = k0;
      a.window = window;
      a.scale = 1.0f;
      CudaCheck(cuda_ops::CausalSoftmax(a, stream_), "CausalSoftmax");
      if (split) clock_->Mark("attention_full.pv");
      at::Tensor dst = out.narrow(1, s0 * G, rows);
      at::bmm_out(dst, scores, vg.narrow(1, k0, s1 - k0));
    }
    if (split) clock_->Mark("attention_full");
    at::Tensor result = at::empty({B, S, H, D}, q.options());
    CudaCheck(cuda_ops::SwapMiddleDims(out.data_ptr(), B, KV, S, G * D * esize,
                                       result.data_ptr(), stream_),
              "SwapMiddleDims");
    return result;
#else
    SWEEPD_CHECK(false) << "GPU path in a build without SWEEPD_ENABLE_CUDA";
    return at::Tensor();
#endif
  }

  void StatsFast(int L, const at::Tensor& in, const at::Tensor& out) {
    at::Tensor a = in.reshape({-1, cfg_.hidden_size}).contiguous();
    at::Tensor b = out.reshape({-1, cfg_.hidden_size}).contiguous();
    auto fopts = at::TensorOptions().dtype(at::kFloat).device(s_.device);
    at::Tensor bi = at::empty({a.size(0)}, fopts);
    at::Tensor nb = at::empty({a.size(0)}, fopts);
#if SWEEPD_ENGINE_CUDA_OPS
    CudaCheck(cuda_ops::RowCosNorm(OpDtype(), a.data_ptr(), b.data_ptr(),
                                   a.size(0), a.size(1), bi.data_ptr<float>(),
                                   nb.data_ptr<float>(), stream_),
              "RowCosNorm");
#endif
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
    const int64_t T = targets_.size(0);
    for (int L = plan_.start_layer; L < N; ++L) {
      if (!stats_bi_[L].defined()) continue;
      layers.push_back(L);
      bis.push_back(stats_bi_[L]);
      norms.push_back(stats_norm_[L]);
      at::Tensor r = at::full({T}, -1, targets_.options());
      if (stats_rank_[L].defined()) r.index_copy_(0, lens_idx_, stats_rank_[L]);
      ranks.push_back(r);
    }
    if (layers.empty()) return;
    at::Tensor bi = at::stack(bis).to(at::kCPU).contiguous();
    at::Tensor nb = at::stack(norms).to(at::kCPU).contiguous();
    at::Tensor rk = at::stack(ranks).to(at::kCPU).contiguous();
    for (size_t i = 0; i < layers.size(); ++i) {
      LayerStats& st = out_->layer_stats[layers[i]];
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
#if SWEEPD_ENGINE_CUDA_OPS && SWEEPD_KERNELS_CUDA
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
      clock_->Mark("lm_head_gemm");
      at::Tensor logits = Linear(x.narrow(0, c0, cn), s_.embed);
      clock_->Mark("lm_head_pass");
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
        AllReduceMax(comm_, both);
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
        AllReduceSum(comm_, rescaled);
        if (rank != nullptr) AllReduceSum(comm_, count);
        check(kernels::LseFromMaxSumCuda(global_max.data_ptr<float>(),
                                         rescaled.data_ptr<float>(), cn,
                                         lse.data_ptr<float>(), stream_));
      }
      if (nll != nullptr) nll->narrow(0, c0, cn).copy_(lse - tl);
      if (rank != nullptr) rank->narrow(0, c0, cn).copy_(count.to(at::kLong));
    }
#else
    SWEEPD_CHECK(false) << "GPU path in a build without SWEEPD_ENABLE_CUDA";
#endif
  }

#if SWEEPD_ENGINE_CUDA_OPS
  cuda_ops::Dtype OpDtype() const {
    return s_.dtype == at::kBFloat16 ? cuda_ops::Dtype::kBFloat16
                                     : cuda_ops::Dtype::kFloat32;
  }
#endif

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
  // GPU path state.
  bool fast_ = false;
  void* stream_ = nullptr;  // cudaStream_t of the rank's compute stream
  PhaseClock* clock_ = nullptr;
  at::Tensor valid_idx_;      // positions with a target, int64
  at::Tensor valid_targets_;  // their target ids
  at::Tensor lens_idx_;       // logit-lens positions (Plan::lens), int64
  at::Tensor lens_targets_;   // their target ids
  at::Tensor lens_mask_;      // Plan::lens as a bool tensor [batch*seq]
  std::map<std::string, std::pair<at::Tensor, at::Tensor>> rope_cache_;
  std::vector<at::Tensor> stats_bi_, stats_norm_, stats_rank_;  // per layer
  std::vector<std::pair<int, at::Tensor>> lens_pending_;        // (layer, rows)
  int64_t lens_pending_rows_ = 0;
};

// ---------------------------------------------------------------------------------------------

absl::Status FromException(const std::exception& e, const char* where) {
  return absl::InternalError(
      absl::StrCat(where, ": libtorch error: ", e.what()));
}

// One long-lived thread per rank that runs every forward's rank work.
// libtorch keeps per-thread state that a fresh thread per forward would lose
// and rebuild each time: cuDNN's fused attention caches its execution graphs
// per thread (building one costs milliseconds), and cuBLAS/cuDNN handles and
// workspaces are reserved per thread. Thread-safe; RunAll calls are
// serialised.
class RankThreads {
 public:
  explicit RankThreads(int ranks) {
    for (int r = 0; r < ranks; ++r)
      threads_.emplace_back([this, r] { Loop(r); });
  }
  RankThreads(const RankThreads&) = delete;
  RankThreads& operator=(const RankThreads&) = delete;
  ~RankThreads() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    for (auto& t : threads_) t.join();
  }

  // Runs fn(r) on rank r's thread for every rank; returns when all returned.
  // fn must not throw.
  void RunAll(const std::function<void(int)>& fn) {
    absl::MutexLock run(&run_mu_);
    absl::MutexLock lock(&mu_);
    job_ = &fn;
    pending_ = static_cast<int>(threads_.size());
    ++generation_;
    mu_.Await(absl::Condition(
        +[](int* pending) { return *pending == 0; }, &pending_));
    job_ = nullptr;
  }

 private:
  void Loop(int r) {
    uint64_t seen = 0;
    while (true) {
      const std::function<void(int)>* job = nullptr;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [&] { return stop_ || generation_ != seen; };
        mu_.Await(absl::Condition(&ready));
        if (stop_) return;
        seen = generation_;
        job = job_;
      }
      (*job)(r);
      absl::MutexLock lock(&mu_);
      --pending_;
    }
  }

  absl::Mutex run_mu_;
  absl::Mutex mu_;
  const std::function<void(int)>* job_ ABSL_GUARDED_BY(mu_) = nullptr;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  int pending_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

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
    // A failure on one rank aborts every rank's communicator (an NCCL abort
    // covers only its own rank), so the others stop waiting now instead of
    // after the collective timeout. Abort() is thread-safe.
    auto abort_all = [&] {
      for (int j = 0; j < tp; ++j) comms_->rank(j)->Abort();
    };
    auto run_rank = [&](int r) {
      if (opts_.device == "cpu") at::set_num_threads(threads_per_rank);
      comm::Communicator* comm = comms_->rank(r);
      try {
        RankRunner(cfg_, opts_, &shards_[r], comm, plan, &result, &executed[r])
            .Run();
        // Device collectives are stream-ordered: a timed-out or failed one
        // is reported here, after the forward's work was enqueued (and read
        // back, which returns once the watchdog aborted the communicator).
        status[r] = comm->Synchronize();
      } catch (const CommFailure& f) {
        status[r] = f.status;
      } catch (const std::exception& e) {
        // Results read back after an aborted collective can make libtorch
        // throw; the communicator's error is then the root cause.
        absl::Status comm_status = comm->Synchronize();
        status[r] =
            !comm_status.ok()
                ? comm_status
                : FromException(e, absl::StrCat("forward on rank ", r).c_str());
      }
      if (!status[r].ok()) abort_all();
    };
    rank_threads_->RunAll(run_rank);
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
    if (!req.lens_positions.empty() &&
        static_cast<int64_t>(req.lens_positions.size()) != T) {
      return absl::InvalidArgumentError(
          absl::StrCat("lens_positions has ", req.lens_positions.size(),
                       " entries, batch*seq = ", T));
    }
    plan->lens.assign(T, 0);
    for (int64_t i = 0; i < T; ++i) {
      plan->lens[i] = plan->targets[i] >= 0 && (req.lens_positions.empty() ||
                                                req.lens_positions[i] != 0);
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
  // Declared after the state the rank work uses, so it stops first.
  std::unique_ptr<RankThreads> rank_threads_ =
      std::make_unique<RankThreads>(opts_.tp_size);
  std::atomic<int64_t> total_layer_forwards_{0};
  absl::Mutex mu_;  // one forward at a time
};

}  // namespace

void SetPhaseProfiling(bool enabled) { g_profiling.store(enabled); }

void SetChunkedQueryBlockOverride(int64_t positions) {
  g_query_block_override.store(std::max<int64_t>(0, positions));
}

std::vector<std::pair<std::string, bool>> CheckedAttentionKernels() {
  absl::MutexLock lock(&g_attention_checks_mu);
  std::vector<std::pair<std::string, bool>> out;
  for (const auto& [key, ok] : *AttentionChecks()) {
    out.emplace_back(absl::StrCat(key.first, " on device ", key.second), ok);
  }
  return out;
}

void SetGemmTuningOverride(std::optional<GemmTuning> tuning) {
  g_gemm_tuning_override.store(tuning ? static_cast<int>(*tuning) : -1);
}

std::vector<std::string> GemmTuningReport() {
  absl::MutexLock lock(&g_gemm_report_mu);
  return *GemmReportLines();
}

void SetAttentionPathOverride(std::optional<AttentionPath> path) {
  g_attention_override.store(path ? static_cast<int>(*path) : -1);
}

PhaseTimes TakePhaseProfile() {
  ProfileStore& store = Profiles();
  absl::MutexLock lock(&store.mu);
  PhaseTimes out;
  out.ms = std::move(store.ms);
  out.forwards = store.forwards;
  out.device_events = store.device_events;
  store.ms.clear();
  store.forwards = 0;
  return out;
}

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
