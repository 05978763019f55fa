// EngineImpl: the Engine of engine.h. Owns the rank shards, one RankBackend
// and one thread per rank (rank_threads.h), the ranks' communicators and the
// engine's diagnostics; loads the weights (weights.h), validates each request
// into a Plan (forward_plan.h) and fans it out to the ranks (rank_forward.h),
// turning exceptions at the rank's edge into Status. Semantics:
// docs/ENGINE.md.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/safetensors.h"
#include "common/status.h"
#include "worker/engine/backend_registry.h"
#include "worker/engine/comm_factory.h"
#include "worker/engine/decode.h"
#include "worker/engine/decode_session.h"
#include "worker/engine/diagnostics.h"
#include "worker/engine/engine.h"
#include "worker/engine/forward_plan.h"
#include "worker/engine/gram.h"
#include "worker/engine/layer_trainer.h"
#include "worker/engine/prefix_state.h"
#include "worker/engine/rank_backend.h"
#include "worker/engine/rank_forward.h"
#include "worker/engine/rank_threads.h"
#include "worker/engine/tp_ops.h"
#include "worker/engine/weights.h"

namespace sweepd::engine {
namespace {

using internal::AccountPrefixState;
using internal::CheckpointSlices;
using internal::CommFailure;
using internal::CreateDecodeSession;
using internal::CreateRankBackend;
using internal::DecodeHost;
using internal::DetectPrefix;
using internal::EngineDiagnostics;
using internal::GramAccumulatorImpl;
using internal::MakeGramAccumulator;
using internal::MakePlan;
using internal::Plan;
using internal::RandomSlices;
using internal::RankBackend;
using internal::RankContext;
using internal::RankForward;
using internal::RankShard;
using internal::RankThreads;
using internal::ShardGeometry;
using internal::SliceFn;

absl::Status FromException(const std::exception& e, const char* where) {
  return absl::InternalError(
      absl::StrCat(where, ": libtorch error: ", e.what()));
}

// The first field of `b` that differs from `a` among those fixed at Create;
// nullptr when none does.
const char* FixedFieldChanged(const EngineOptions& a, const EngineOptions& b) {
  if (a.model_dir != b.model_dir) return "model_dir";
  if (a.config_path != b.config_path) return "config_path";
  if (a.dtype != b.dtype) return "dtype";
  if (a.tp_size != b.tp_size) return "tp_size";
  if (a.device != b.device) return "device";
  if (a.first_device != b.first_device) return "first_device";
  if (a.random_weights != b.random_weights) return "random_weights";
  if (a.seed != b.seed) return "seed";
  if (a.prefix_device_budget_bytes != b.prefix_device_budget_bytes) {
    return "prefix_device_budget_bytes";
  }
  if (a.collective_timeout != b.collective_timeout) {
    return "collective_timeout";
  }
  if (a.cpu_threads_per_rank != b.cpu_threads_per_rank) {
    return "cpu_threads_per_rank";
  }
  if (a.use_sdpa != b.use_sdpa) return "use_sdpa";
  if (a.gemm_tuning_cache != b.gemm_tuning_cache) return "gemm_tuning_cache";
  if (a.skinny_gemm != b.skinny_gemm) return "skinny_gemm";
  return nullptr;
}

class EngineImpl : public Engine, private DecodeHost {
 public:
  EngineImpl(ModelConfig cfg, EngineOptions opts)
      : cfg_(std::move(cfg)), opts_(std::move(opts)) {}

  const ModelConfig& config() const override { return cfg_; }
  EngineOptions options() const override {
    absl::MutexLock lock(&options_mu_);
    return opts_;
  }
  int64_t total_layer_forwards() const override {
    return total_layer_forwards_.load();
  }

  absl::Status Reconfigure(const EngineOptions& options) override {
    absl::MutexLock forward(&mu_);
    absl::MutexLock lock(&options_mu_);
    if (const char* field = FixedFieldChanged(opts_, options)) {
      return absl::InvalidArgumentError(
          absl::StrCat("EngineOptions.", field,
                       " cannot change after Create (Reconfigure changes only "
                       "attention_path, gemm_tuning, chunked_query_block and "
                       "phase_profiling)"));
    }
    opts_.attention_path = options.attention_path;
    opts_.gemm_tuning = options.gemm_tuning;
    opts_.chunked_query_block = options.chunked_query_block;
    opts_.phase_profiling = options.phase_profiling;
    return absl::OkStatus();
  }

  PhaseTimes TakePhaseProfile() override { return diagnostics_.TakePhases(); }
  std::vector<std::string> GemmTuningReport() const override {
    return diagnostics_.GemmLines();
  }
  std::vector<std::pair<std::string, bool>> CheckedAttentionKernels()
      const override {
    return diagnostics_.Checks();
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
      ASSIGN_OR_RETURN(s.geom, ShardGeometry(cfg_, tp, r));
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
    for (int r = 0; r < tp; ++r) {
      backends_.push_back(
          CreateRankBackend(cfg_, opts_, &shards_[r], &diagnostics_));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<ForwardResult> Forward(const ForwardRequest& req) override {
    absl::MutexLock lock(&mu_);
    Plan plan;
    RETURN_IF_ERROR(MakePlan(cfg_, opts_.tp_size, this, req, &plan));
    ForwardResult result;
    result.batch = req.batch;
    result.seq = req.seq;
    std::vector<int64_t> executed(opts_.tp_size, 0);
    absl::Status ran = RunRanksLocked(
        [&](const RankContext& ctx) {
          RankForward(cfg_, opts_, ctx.shard, ctx.backend, ctx.comm, plan,
                      &diagnostics_, &result, &executed[ctx.rank])
              .Run();
        },
        "forward");
    for (GramAccumulatorImpl* g : plan.grams) {
      // A failed forward may have added to some ranks' blocks and not others.
      if (!ran.ok()) g->failed = true;
      g->count += static_cast<int64_t>(plan.gram_rows.size());
    }
    RETURN_IF_ERROR(ran);
    result.layer_forwards = executed[0];
    total_layer_forwards_ += executed[0];
    if (plan.keep_state) {
      AccountPrefixState(plan.keep_state.get(), opts_.device == "cuda",
                         opts_.prefix_device_budget_bytes);
      result.prefix_state = plan.keep_state;
    }
    return result;
  }

  absl::StatusOr<std::shared_ptr<GramAccumulator>> NewGram(
      const std::string& point, const std::string& target) override {
    ASSIGN_OR_RETURN(
        std::shared_ptr<GramAccumulatorImpl> g,
        MakeGramAccumulator(cfg_, opts_.tp_size, this, point, target));
    return std::shared_ptr<GramAccumulator>(std::move(g));
  }

  absl::StatusOr<GramSums> ReadGram(const GramAccumulator& gram) override {
    absl::MutexLock lock(&mu_);
    const auto* g = dynamic_cast<const GramAccumulatorImpl*>(&gram);
    if (g == nullptr || g->owner != this) {
      return absl::InvalidArgumentError(
          "ReadGram: the Gram was not made by this engine's NewGram");
    }
    if (g->failed) {
      return absl::FailedPreconditionError(absl::StrCat(
          "Gram of ", g->point_,
          ": a forward that fed it failed, so its sums are incomplete"));
    }
    const int tp = opts_.tp_size;
    std::vector<at::Tensor> xtx(tp), xty(tp);
    at::Tensor yy;
    // Each rank copies its own block on its own thread (its device stream).
    RETURN_IF_ERROR(RunRanksLocked(
        [&](const RankContext& ctx) {
          const internal::GramBlock& b = g->blocks[ctx.rank];
          if (!b.xtx.defined()) return;
          xtx[ctx.rank] = b.xtx.to(at::kCPU).contiguous();
          if (b.xty.defined()) xty[ctx.rank] = b.xty.to(at::kCPU).contiguous();
          if (b.yy.defined()) yy = b.yy.to(at::kCPU);
        },
        "reading a Gram"));
    GramSums out;
    out.point = g->point_;
    out.target = g->target_;
    out.d = g->d;
    out.e = g->e;
    out.count = g->count;
    out.xtx.assign(g->d * g->d, 0.0);
    if (g->y) out.xty.assign(g->d * g->e, 0.0);
    for (int r = 0; r < tp; ++r) {
      const internal::GramBlock& b = g->blocks[r];
      if (!xtx[r].defined()) continue;
      std::copy(xtx[r].data_ptr<double>(),
                xtx[r].data_ptr<double>() + xtx[r].numel(),
                out.xtx.begin() + b.row_start * g->d);
      if (xty[r].defined()) {
        std::copy(xty[r].data_ptr<double>(),
                  xty[r].data_ptr<double>() + xty[r].numel(),
                  out.xty.begin() + b.row_start * g->e);
      }
    }
    if (yy.defined()) out.yy = yy.item<double>();
    return out;
  }

  absl::StatusOr<std::unique_ptr<DecodeSession>> StartDecode(
      const DecodeOptions& options) override {
    return CreateDecodeSession(this, options);
  }

  absl::StatusOr<std::unique_ptr<LayerTrainer>> StartLayerTraining(
      int layer) override {
    return internal::CreateLayerTrainer(this, layer);
  }

 private:
  // DecodeHost.
  const ModelConfig& cfg() const override { return cfg_; }
  const EngineOptions& opts() const override { return opts_; }
  int tp() const override { return opts_.tp_size; }
  EngineDiagnostics* diagnostics() override { return &diagnostics_; }
  const void* owner() const override { return this; }
  void AddLayerForwards(int64_t n) override { total_layer_forwards_ += n; }
  absl::Status RunRanks(const std::function<void(const RankContext&)>& fn,
                        const char* what) override {
    absl::MutexLock lock(&mu_);
    return RunRanksLocked(fn, what);
  }

  // Runs fn on every rank's thread; the first rank's failure (the root cause
  // rather than the ranks aborted because of it) is the result.
  absl::Status RunRanksLocked(const std::function<void(const RankContext&)>& fn,
                              const char* what)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const int tp = opts_.tp_size;
    std::vector<absl::Status> status(tp);
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
        fn(RankContext{r, &shards_[r], backends_[r].get(), comm});
        // Device collectives are stream-ordered: a timed-out or failed one
        // is reported here, after the work was enqueued (and read back,
        // which returns once the watchdog aborted the communicator).
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
                : FromException(e, absl::StrCat(what, " on rank ", r).c_str());
      }
      if (!status[r].ok()) abort_all();
    };
    rank_threads_->RunAll(run_rank);
    absl::Status first_error;
    for (const absl::Status& s : status) {
      if (s.ok()) continue;
      if (first_error.ok() ||
          (absl::IsAborted(first_error) && !absl::IsAborted(s))) {
        first_error = s;
      }
    }
    if (!first_error.ok()) {
      // A failed collective leaves the group aborted: make a fresh one for
      // later work.
      auto fresh = CreateRankComms(opts_.device, tp, opts_.first_device,
                                   opts_.collective_timeout);
      if (fresh.ok()) comms_ = std::move(*fresh);
    }
    return first_error;
  }

  const ModelConfig cfg_;
  // Written only by Reconfigure, which holds mu_ (so no forward runs) and
  // options_mu_; the rank threads read it during a forward, options() under
  // options_mu_. Backends and ranks borrow it for the engine's lifetime.
  EngineOptions opts_;
  mutable absl::Mutex options_mu_;
  EngineDiagnostics diagnostics_;
  std::vector<RankShard> shards_;
  std::vector<std::unique_ptr<RankBackend>> backends_;  // one per rank
  std::unique_ptr<RankComms> comms_;
  // Declared after the state the rank work uses, so it stops first.
  std::unique_ptr<RankThreads> rank_threads_ =
      std::make_unique<RankThreads>(opts_.tp_size);
  std::atomic<int64_t> total_layer_forwards_{0};
  absl::Mutex mu_;  // one forward at a time
};

}  // namespace

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
