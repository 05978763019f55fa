// The engine's public API: a Gemma 4 text decoder (transformers'
// Gemma4ForCausalLM semantics) served tensor-parallel by one thread per rank,
// with interventions, capture points, per-layer probe statistics and prefix
// reuse. Plain C++ (no libtorch, no protobuf): job executors and the agent use
// it; see docs/ENGINE.md for the semantics in full.
//
// Ownership: Engine owns the model shards, its rank threads' communicators and
// nothing else. ForwardResult owns host copies of everything it returns.
// PrefixState handles are shared (shared_ptr) and keep their tensors alive
// until the last handle goes. Thread-safety: Engine::Forward may be called from
// several threads; calls are serialised internally (one forward at a time uses
// all ranks). config() is immutable; options() returns a snapshot
// (Reconfigure changes the forward-time options between forwards).
#ifndef SWEEPD_WORKER_ENGINE_ENGINE_H_
#define SWEEPD_WORKER_ENGINE_ENGINE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/model_config.h"

namespace sweepd::engine {

class DecodeSession;   // decode.h
struct DecodeOptions;  // decode.h
class LayerTrainer;    // layer_trainer.h (ATen; the retrain job)

enum class DType { kFloat32, kBFloat16 };
const char* DTypeName(DType dtype);  // "float32" / "bfloat16"
absl::StatusOr<DType> ParseDType(
    absl::string_view name);  // float32|fp32|bfloat16|bf16

// How the CUDA path computes attention (docs/ENGINE.md, "GPU path").
enum class AttentionPath {
  // cuDNN's fused attention where it applies (bf16, head_dim <= 256): causal
  // layers directly, sliding layers longer than their window as causal blocks
  // of window length plus FlashAttention-2 on the part of the previous block,
  // merged by log-sum-exp; chunked GEMM attention for head_dim > 256 (the full
  // layers); FlashAttention-2 when cuDNN's attention is missing or failed its
  // once-per-device check; SDPA for the rest.
  kAuto,
  // FlashAttention-2 where it applies (the window as its local attention),
  // chunked GEMM attention for head_dim > 256, SDPA for the rest: kAuto
  // without cuDNN.
  kFlash,
  // FlashAttention-2 where it applies, else SDPA (is_causal, or the band
  // mask).
  kSdpa,
  // Chunked GEMM attention on every layer (cuBLAS Q·Kᵀ per query block, fused
  // causal softmax, cuBLAS P·V; GQA without expanding K/V).
  kChunkedGemm,
};
// auto / flash / sdpa / chunked
const char* AttentionPathName(AttentionPath path);
absl::StatusOr<AttentionPath> ParseAttentionPath(absl::string_view name);

// How the CUDA path picks its cuBLAS GEMM algorithms (docs/ENGINE.md, "GPU
// path"). kOff: cuBLAS's heuristic (at::mm), bit-identical across processes.
// kAutotune: per GEMM shape, the fastest of cuBLASLt's candidates timed on the
// first call (gemm_tuner.h): faster, deterministic within a process, but
// another process may time differently and round differently.
enum class GemmTuning { kOff, kAutotune };
const char* GemmTuningName(GemmTuning tuning);  // off / autotune
absl::StatusOr<GemmTuning> ParseGemmTuning(absl::string_view name);

struct EngineOptions {
  // Hugging Face layout: config.json + model.safetensors (or index + shards).
  std::string model_dir;
  // With random_weights and no model_dir: the config.json to build the shape
  // from.
  std::string config_path;
  // Compute and weight dtype. Checkpoints in another dtype are converted per
  // slice on load.
  DType dtype = DType::kFloat32;
  int tp_size = 1;
  // "cpu" (in-process communicator) or "cuda" (rank r on device first_device +
  // r, NCCL; needs a build with SWEEPD_ENABLE_CUDA and SWEEPD_ENABLE_NCCL).
  std::string device = "cpu";
  int first_device = 0;
  // Build the weights directly on each rank's device from `seed` (the same
  // values MakeRandomModel writes), without reading a checkpoint.
  bool random_weights = false;
  uint64_t seed = 0;
  // Per rank: prefix-state bytes kept on the rank's device; the rest moves to
  // host memory.
  int64_t prefix_device_budget_bytes = int64_t{1} << 30;
  absl::Duration collective_timeout = absl::Minutes(5);
  // CPU: intra-op threads per rank thread (0 = max(1, hardware threads /
  // tp_size)).
  int cpu_threads_per_rank = 0;
  // Use scaled_dot_product_attention when the libtorch version has it (>= 2.1).
  bool use_sdpa = true;
  // CUDA path only; the CPU path always runs the eager attention.
  AttentionPath attention_path = AttentionPath::kAuto;
  // bf16 GEMMs on CUDA (GemmTuning).
  GemmTuning gemm_tuning = GemmTuning::kOff;
  // With kAutotune: a tuning cache file shared by processes that should pick
  // the same GEMM algorithms (gemm_tuner.h); empty: none.
  std::string gemm_tuning_cache;
  // CUDA, bf16: GEMMs of at most 32 rows (decode steps) through the skinny
  // GEMM kernel (kernels/skinny_gemm.h), which streams the weights at the
  // copy bandwidth, instead of cuBLAS (docs/KERNELS.md, "Skinny GEMM").
  bool skinny_gemm = false;
  // CUDA path, benchmarking: when > 0, the chunked GEMM attention processes
  // this many query positions per block (clamped to the sequence) instead of
  // its own choice.
  int64_t chunked_query_block = 0;
  // Record the phase profile of every forward (Engine::TakePhaseProfile): rank
  // 0 marks phase boundaries (CUDA events on its compute stream on the CUDA
  // path, the host clock otherwise). Each mark costs one event record.
  bool phase_profiling = false;
};

// Accumulated phase profile of an engine's forwards (EngineOptions::
// phase_profiling): the time between consecutive marks is added to the phase
// that began the interval.
struct PhaseTimes {
  // (phase, total milliseconds) in the order phases were first seen.
  std::vector<std::pair<std::string, double>> ms;
  int64_t forwards = 0;
  bool device_events = false;  // true: CUDA events; false: host clock
};

struct Intervention {
  enum class Kind {
    // The layer is the identity: resid_out[L] = resid_in[L]; its layer_scalar
    // is NOT applied.
    kSkipLayer,
    // q/k/v/o, gate/up/down, input/pre-feedforward norms and q/k norms are
    // zero;
    // post_attention_layernorm, post_feedforward_layernorm and layer_scalar
    // keep their
    // values, so resid_out[L] = resid_in[L] * layer_scalar.
    kZeroLayer,
    // All of the layer's weights re-drawn as transformers' _init_weights does
    // for Gemma 4:
    // matrices N(0, initializer_range) from `seed`, RMSNorm weights 1,
    // layer_scalar 1.
    kReinitLayer,
    // The listed attention heads' outputs (before o_proj) are zero; each rank
    // masks the heads
    // it owns. Heads are global indices in [0, num_attention_heads).
    kMaskHeads,
    // Steering / activation patching of the residual entering the layer
    // (resid_in[L]): at the selected positions, kAdd adds scale * vector,
    // kReplace sets the residual to scale * vector (docs/ENGINE.md,
    // "Interventions").
    kSteer,
    // The layer's tensors present in the safetensors file `weights_path`
    // (names relative to the layer, "self_attn.o_proj.weight", full shapes)
    // replace the checkpoint's; the others keep their values. Sharded and
    // converted to the compute dtype as the checkpoint's weights are.
    kReplaceLayer,
  };
  enum class SteerMode { kAdd, kReplace };
  Kind kind = Kind::kSkipLayer;
  int layer = 0;
  uint64_t seed = 0;
  std::vector<int> heads;
  // kSteer: [hidden_size] values, the scale, and the token positions of each
  // sequence (p >= 0: position p; p < 0: position len + p, len = the
  // sequence's length in a forward, the prompt's length in generation); empty
  // = every position. Positions outside a sequence select nothing.
  SteerMode steer_mode = SteerMode::kAdd;
  std::vector<float> vector;
  double scale = 1.0;
  std::vector<int> positions;
  // kReplaceLayer: a local safetensors file (executors resolve artifact
  // references to it).
  std::string weights_path;

  static Intervention Skip(int layer) { return Of(Kind::kSkipLayer, layer); }
  static Intervention Zero(int layer) { return Of(Kind::kZeroLayer, layer); }
  static Intervention Reinit(int layer, uint64_t seed) {
    Intervention iv = Of(Kind::kReinitLayer, layer);
    iv.seed = seed;
    return iv;
  }
  static Intervention MaskHeads(int layer, std::vector<int> heads) {
    Intervention iv = Of(Kind::kMaskHeads, layer);
    iv.heads = std::move(heads);
    return iv;
  }
  static Intervention Steer(int layer, SteerMode mode,
                            std::vector<float> vector, double scale = 1.0,
                            std::vector<int> positions = {}) {
    Intervention iv = Of(Kind::kSteer, layer);
    iv.steer_mode = mode;
    iv.vector = std::move(vector);
    iv.scale = scale;
    iv.positions = std::move(positions);
    return iv;
  }
  static Intervention ReplaceLayer(int layer, std::string weights_path) {
    Intervention iv = Of(Kind::kReplaceLayer, layer);
    iv.weights_path = std::move(weights_path);
    return iv;
  }
  static Intervention Of(Kind kind, int layer) {
    Intervention iv;
    iv.kind = kind;
    iv.layer = layer;
    return iv;
  }
};

// The lowest layer any intervention touches; `num_layers` if none.
int FirstTouchedLayer(const std::vector<Intervention>& interventions,
                      int num_layers);

// One batch row's own head mask (ForwardRequest::row_head_masks): the listed
// heads of `layer` are zero in this row only (before o_proj; each rank masks
// the heads it owns). An empty `heads` masks nothing (e.g. a baseline row).
struct RowHeadMask {
  int layer = 0;
  std::vector<int> heads;  // global indices in [0, num_attention_heads)
};

// A host float32 tensor, row-major.
struct HostTensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
  int64_t numel() const;
};

// Probe statistics of one layer L, each [batch * seq] row-major over (batch,
// position).
struct LayerStats {
  // 1 - cos(resid_in[L], resid_out[L]) per token (float32 math on the
  // residuals).
  std::vector<float> block_influence;
  // ||resid_out[L]||_2 per token.
  std::vector<float> resid_out_norm;
  // Logit lens: number of vocabulary entries whose softcapped logit of
  // lm_head(final_norm(resid_out[L])) is strictly larger than the target's (0 =
  // top-1); -1 where the target is ignored or the position is not one of
  // ForwardRequest::lens_positions.
  std::vector<int64_t> target_rank;
};

// Residuals entering every layer (and the final residual) of one forward, kept
// per rank. Opaque; obtained from ForwardResult::prefix_state and passed back
// in a later request.
class PrefixState {
 public:
  virtual ~PrefixState() = default;
  virtual int64_t device_bytes() const = 0;  // summed over ranks
  virtual int64_t host_bytes() const = 0;    // summed over ranks
  // Layers [0, valid_until] have residuals that no intervention of the
  // producing forward influenced: a forward may start from any layer L <=
  // valid_until.
  virtual int valid_until() const = 0;
};

// A Gram accumulation on the device (Engine::NewGram): the sums XᵀX and, with
// a target, XᵀY over the rows fed to it by forwards that list it in
// ForwardRequest::grams, in float64, kept on the ranks' devices between
// forwards (no activation is copied to the host). X is the capture point
// flattened per token ("attn_heads[L]": d = heads * head_dim, head-major);
// Y the target's. Under tensor parallelism rank r holds the row block of its
// own columns (attn_heads: its heads; other points: an even split), so each
// rank keeps d/tp × d float64 values (docs/ENGINE.md, "Gram accumulation").
// Opaque; read back with Engine::ReadGram. Shared handles; used by the
// engine's forwards one at a time.
class GramAccumulator {
 public:
  virtual ~GramAccumulator() = default;
  virtual const std::string& point() const = 0;
  virtual const std::string& target() const = 0;  // "" = none
  virtual int64_t width() const = 0;              // d
  virtual int64_t target_width() const = 0;       // e (0 without a target)
};

// The host copy of a GramAccumulator's sums, row-major float64.
struct GramSums {
  std::string point;
  std::string target;
  int64_t d = 0;
  int64_t e = 0;
  std::vector<double> xtx;  // [d, d]
  std::vector<double> xty;  // [d, e]; empty without a target
  double yy = 0.0;          // sum over rows of ||y||^2 (with a target)
  int64_t count = 0;        // rows summed
};

struct ForwardRequest {
  // Token ids [batch, seq] row-major.
  std::vector<int32_t> tokens;
  int64_t batch = 1;
  int64_t seq = 0;
  // Optional [batch, seq] targets (-1 = ignored). Empty: next-token targets
  // (targets[b, s] = tokens[b, s + 1], the last position ignored).
  std::vector<int32_t> targets;
  // Optional [batch, seq] (1 = rank here): where layer_stats computes the
  // logit-lens target rank; empty = every position with a target. NLL is
  // unaffected. Probes need one position per prompt, so this spares the LM head
  // (the costliest part of a lens) at every other position.
  std::vector<uint8_t> lens_positions;
  std::vector<Intervention> interventions;
  // Optional per-row head masks: empty, or one entry per batch row. Row b
  // masks row_head_masks[b] on top of `interventions` (which apply to every
  // row), so one forward evaluates as many different head ablations as it
  // has rows (head importance, docs/CALIBRATION.md). A row's masked layer
  // counts as touched for start_layer and valid_until like an intervention.
  std::vector<RowHeadMask> row_head_masks;
  // Also return the softcapped logits [batch, seq, vocab] (gathered across
  // ranks).
  bool return_logits = false;
  // Capture points: "resid_in[L]", "resid_out[L]" [batch, seq, hidden];
  // "attn_heads[L]" [batch, seq, heads, head_dim] (per-head attention output
  // before o_proj); "attn_out[L]" [batch, seq, hidden] (o_proj output, all-
  // reduced, before post_attention_layernorm); "mlp_in[L]" [batch, seq, hidden]
  // (pre_feedforward_layernorm output); "hidden_states[K]" with transformers'
  // indexing (K = 0 embeddings, K in 1..N-1 resid_out[K-1], K = N the
  // final-norm output).
  std::vector<std::string> captures;
  // Gram accumulations this forward adds to (Engine::NewGram of this engine;
  // each at most once): every row selected by gram_rows of the point's
  // activation (and target's) is summed in float64 on the device.
  std::vector<std::shared_ptr<GramAccumulator>> grams;
  // Optional [batch, seq] (1 = summed): the rows the grams take (valid tokens
  // only); empty = every row.
  std::vector<uint8_t> gram_rows;
  // Compute LayerStats for every layer.
  bool layer_stats = false;
  // Keep the residual entering every layer in ForwardResult::prefix_state.
  bool keep_prefix_state = false;
  // Start at layer `start_layer` from `start_from`'s residual. The request's
  // tokens must be the state's, or the state's rows repeated: with a state of
  // batch b, a request of batch m*b whose row r holds the tokens of the
  // state's row r mod b starts row r from that state row's residual (one
  // unablated pass of b windows serves m ablations of them in one batch).
  std::shared_ptr<const PrefixState> start_from;
  int start_layer = 0;
};

struct ForwardResult {
  int64_t batch = 0;
  int64_t seq = 0;
  // Natural-log NLL of the target per position [batch, seq]; 0 where the target
  // is ignored.
  std::vector<float> nll;
  std::vector<uint8_t>
      target_valid;   // [batch, seq], 1 where a target was scored
  HostTensor logits;  // when return_logits
  std::map<std::string, HostTensor> captures;
  // num_hidden_layers entries when layer_stats (entries below start_layer are
  // empty).
  std::vector<LayerStats> layer_stats;
  std::shared_ptr<PrefixState> prefix_state;  // when keep_prefix_state
  // Decoder layers executed by this forward (skipped layers and reused prefix
  // not counted).
  int64_t layer_forwards = 0;
};

// What decides an engine's numbers besides the task itself; every result
// records it (TaskResult.determinism, docs/ARCHITECTURE.md "Determinism
// record").
struct NumericsInfo {
  std::string dtype;        // "float32" / "bfloat16"
  std::string device_kind;  // "cpu", or the CUDA device's name
  int tensor_parallel = 1;
  // CPU: "sdpa" or "eager"; CUDA: AttentionPathName of the option.
  std::string attention_path;
  std::string gemm_tuning;  // GemmTuningName (CUDA); "off" on CPU
  std::string libtorch_version;
  std::string cuda_version;   // CUDA runtime libtorch uses; "" without CUDA
  std::string cudnn_version;  // "" without cuDNN
  std::string nccl_version;   // "" without NCCL
};

// The NumericsInfo of an engine created with `options` (reads the linked
// libraries' versions and, for "cuda", the first device's name).
NumericsInfo DescribeNumerics(const EngineOptions& options);

class Engine {
 public:
  static absl::StatusOr<std::unique_ptr<Engine>> Create(
      const EngineOptions& options);
  virtual ~Engine() = default;

  virtual const ModelConfig& config() const = 0;
  // The current options (a snapshot).
  virtual EngineOptions options() const = 0;
  virtual absl::StatusOr<ForwardResult> Forward(
      const ForwardRequest& request) = 0;
  // A token-generation session on this engine (decode.h); the engine must
  // outlive it. INVALID_ARGUMENT for bad options or interventions.
  virtual absl::StatusOr<std::unique_ptr<DecodeSession>> StartDecode(
      const DecodeOptions& options) = 0;
  // Layer-forwards executed since Create.
  virtual int64_t total_layer_forwards() const = 0;
  // Training access to decoder layer `layer` (layer_trainer.h; the retrain
  // job); the engine must outlive it. FAILED_PRECONDITION at tp_size > 1,
  // INVALID_ARGUMENT for a layer out of range.
  virtual absl::StatusOr<std::unique_ptr<LayerTrainer>> StartLayerTraining(
      int layer) = 0;

  // A new Gram accumulation of capture point `point` (any name
  // ForwardRequest::captures takes) with an optional target point ("" = XᵀX
  // only). Its device memory is allocated by
  // the first forward that feeds it. INVALID_ARGUMENT naming a bad point.
  virtual absl::StatusOr<std::shared_ptr<GramAccumulator>> NewGram(
      const std::string& point, const std::string& target) = 0;
  // Copies a Gram's sums to the host (waits for running forwards).
  // FAILED_PRECONDITION when a forward that fed it failed (its sums are
  // then incomplete); INVALID_ARGUMENT for a Gram of another engine.
  virtual absl::StatusOr<GramSums> ReadGram(const GramAccumulator& gram) = 0;

  // Benchmarking on one loaded model: replaces the forward-time options
  // (attention_path, gemm_tuning, chunked_query_block, phase_profiling) for
  // later forwards; waits for a running forward. Every other field must equal
  // the current options (INVALID_ARGUMENT naming the field otherwise).
  virtual absl::Status Reconfigure(const EngineOptions& options) = 0;
  // Returns this engine's accumulated phase profile and resets it.
  virtual PhaseTimes TakePhaseProfile() = 0;
  // The GEMM shapes this engine autotuned so far, one line each: rank, shape,
  // candidates, chosen index, heuristic's and chosen algorithm's median ms.
  virtual std::vector<std::string> GemmTuningReport() const = 0;
  // The fused attention kernels this engine checked: kAuto and kFlash use each
  // (FlashAttention-2 with a window; cuDNN's attention banded by window
  // blocks) only after it matched a float32 reference once per device.
  // ("<kernel> on device <n>", usable), sorted by name.
  virtual std::vector<std::pair<std::string, bool>> CheckedAttentionKernels()
      const = 0;
};

}  // namespace sweepd::engine

#endif  // SWEEPD_WORKER_ENGINE_ENGINE_H_
