// The retrain executor. The one translation unit of sweepd that uses
// libtorch's C++ frontend (torch::optim::AdamW); it sees no protobuf.
#include "worker/jobs/retrain_executor.h"

#include <ATen/ATen.h>
#include <torch/optim/adamw.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <numeric>
#include <optional>
#include <sstream>
#include <type_traits>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/hash.h"
#include "common/logging.h"
#include "common/path_confinement.h"
#include "common/safetensors.h"
#include "common/status.h"
#include "worker/calib/gram_file.h"
#include "worker/engine/layer_trainer.h"
#include "worker/jobs/dataset.h"
#include "worker/jobs/determinism.h"
#include "worker/jobs/job_artifacts.h"
#include "worker/jobs/task_loop.h"
#include "worker/jobs/windowing.h"

namespace sweepd {
namespace {

constexpr char kCheckpointFormat[] = "sweepd-retrain-checkpoint 1";
constexpr double kAdamEps = 1e-8;

uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The RNG state an epoch's window order starts from: the first 64 bits of
// SHA-256("sweepd.retrain.order\n<seed>\n<epoch>").
uint64_t EpochRngState(uint64_t seed, int64_t epoch) {
  const std::string h =
      Sha256Hex(absl::StrCat("sweepd.retrain.order\n", seed, "\n", epoch));
  uint64_t v = 0;
  SWEEPD_CHECK(absl::SimpleHexAtoi(h.substr(0, 16), &v));
  return v;
}

// The order of n windows in epoch `epoch`: Fisher-Yates driven by SplitMix64
// (our own stream, identical on every platform).
std::vector<int64_t> EpochOrder(uint64_t seed, int64_t epoch, int64_t n) {
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  uint64_t s = EpochRngState(seed, epoch);
  for (int64_t i = n - 1; i > 0; --i) {
    const int64_t j =
        static_cast<int64_t>(SplitMix64(&s) % static_cast<uint64_t>(i + 1));
    std::swap(order[i], order[j]);
  }
  return order;
}

// The optimiser state map's key of parameter p (a string of the TensorImpl
// address in libtorch 1.x, the address itself in 2.x).
template <typename Optimizer>
auto StateKey(Optimizer& opt, const at::Tensor& p) {
  using Key = std::decay_t<decltype(opt.state().begin()->first)>;
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream o;
    o << p.unsafeGetTensorImpl();
    return o.str();
  } else {
    return static_cast<Key>(p.unsafeGetTensorImpl());
  }
}

absl::Status AddF32(SafetensorsWriter* w, const std::string& name,
                    const at::Tensor& t) {
  at::Tensor c = t.detach().to(at::kCPU, at::kFloat).contiguous();
  return w->Add(name, StDtype::kF32, c.sizes().vec(), c.data_ptr<float>(),
                c.numel() * sizeof(float));
}

// A float32 tensor of a checkpoint, copied, on `device`.
absl::StatusOr<at::Tensor> ReadF32(const SafetensorsFile& f,
                                   const std::string& name,
                                   const std::vector<int64_t>& shape,
                                   at::Device device) {
  const TensorView* t = f.Find(name);
  if (t == nullptr || t->dtype != StDtype::kF32 || t->shape != shape) {
    return absl::DataLossError(absl::StrCat("retrain checkpoint: tensor ", name,
                                            " missing or not F32 of shape"));
  }
  at::Tensor host = at::empty(shape, at::kFloat);
  std::memcpy(host.data_ptr<float>(), t->data, t->nbytes);
  return host.to(device);
}

std::string MetadataOr(const SafetensorsFile& f, const std::string& key) {
  auto it = f.metadata().find(key);
  return it == f.metadata().end() ? "" : it->second;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RetrainExecutor>> RetrainExecutor::Create(
    std::shared_ptr<LmBackend> backend, const RetrainExecutorOptions& options) {
  if (backend == nullptr) {
    return absl::InvalidArgumentError("RetrainExecutor needs an LmBackend");
  }
  return std::unique_ptr<RetrainExecutor>(
      new RetrainExecutor(std::move(backend), options));
}

RetrainExecutor::RetrainExecutor(std::shared_ptr<LmBackend> backend,
                                 const RetrainExecutorOptions& options)
    : backend_(std::move(backend)),
      options_(options),
      clock_(options.clock != nullptr ? options.clock : Clock::Real()) {}

void RetrainExecutor::RunGroup(const std::vector<TaskInput>& tasks,
                               TaskContext& ctx, const TaskSink& sink) {
  RunTasksOneByOne<RetrainJobSpec>(
      kRetrainKind, tasks, ctx, sink,
      [&](const TaskInput& task, const RetrainJobSpec& job, size_t i) {
        return RunTask(task, job, ctx, i);
      });
}

absl::StatusOr<TaskOutput> RetrainExecutor::RunTask(const TaskInput& task,
                                                    const RetrainJobSpec& job,
                                                    TaskContext& ctx,
                                                    size_t index) {
  const int64_t t0 = clock_->NowMs();
  ASSIGN_OR_RETURN(ArtifactStore * store,
                   RequireArtifactStore(options_.artifacts, "retrain"));
  if (job.steps <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("retrain.steps: ", job.steps, " must be > 0"));
  }
  if (job.batch_windows <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "retrain.batch_windows: ", job.batch_windows, " must be > 0"));
  }
  if (!(job.lr >= 0.0) || !(job.weight_decay >= 0.0)) {
    return absl::InvalidArgumentError(
        "retrain.lr / retrain.weight_decay: must be >= 0");
  }
  if (!(job.beta1 >= 0.0 && job.beta1 < 1.0) ||
      !(job.beta2 >= 0.0 && job.beta2 < 1.0)) {
    return absl::InvalidArgumentError(
        "retrain.beta1 / retrain.beta2: must be in [0, 1)");
  }
  const int checkpoint_every =
      job.checkpoint_every > 0 ? job.checkpoint_every : 50;
  if (!options_.data_roots.empty()) {
    RETURN_IF_ERROR(ConfinedRealPath(job.data.path, options_.data_roots,
                                     "data.dataset.path")
                        .status());
  }
  ASSIGN_OR_RETURN(LmBackend::Model model, backend_->Acquire(job.model));
  engine::Engine& engine = *model.engine;
  const ModelConfig& config = engine.config();
  if (job.layer < 0 || job.layer >= config.num_hidden_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("retrain.layer: ", job.layer, " out of range [0, ",
                     config.num_hidden_layers, ")"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<engine::LayerTrainer> trainer,
                   engine.StartLayerTraining(job.layer));
  const std::vector<engine::LayerTensorInfo>& infos = trainer->tensors();
  const int L = job.layer;

  // The corpus stream: the shard's documents tokenised (BOS policy per
  // document) and concatenated, cut into windows of equal length.
  ASSIGN_OR_RETURN(std::vector<TextRecord> records, ReadShard(job.data));
  std::vector<int32_t> stream;
  for (const TextRecord& r : records) {
    const std::string& text = !r.text.empty() ? r.text : r.prompt;
    absl::StatusOr<std::vector<int32_t>> ids =
        model.tokenizer->Encode(text, job.windowing.bos);
    if (!ids.ok()) {
      return Annotate(ids.status(),
                      absl::StrCat(job.data.path, ":", r.line, ": text"));
    }
    stream.insert(stream.end(), ids->begin(), ids->end());
  }
  std::vector<TokenWindow> windows =
      MakeWindows(static_cast<int64_t>(stream.size()), job.windowing);
  if (windows.size() > 1 && windows.back().length() < windows[0].length()) {
    windows.pop_back();  // the short tail: every batch has one length
  }
  if (windows.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("retrain: dataset ", job.data.path, " shard ",
                     job.data.shard_index, " has fewer than 2 tokens"));
  }
  const int64_t num_windows = static_cast<int64_t>(windows.size());
  const int64_t seq = windows[0].length();
  const int64_t bw = job.batch_windows;
  // Step s (0-based) takes the windows at stream positions [s*bw, (s+1)*bw)
  // of the epoch-concatenated orders: a pure function of the step.
  std::map<int64_t, std::vector<int64_t>> orders;
  auto batch_tokens = [&](int64_t step) {
    std::vector<int32_t> tokens;
    tokens.reserve(bw * seq);
    for (int64_t i = 0; i < bw; ++i) {
      const int64_t p = step * bw + i;
      const int64_t epoch = p / num_windows;
      auto it = orders.find(epoch);
      if (it == orders.end()) {
        if (orders.size() > 2) orders.erase(orders.begin());
        it = orders.emplace(epoch, EpochOrder(job.seed, epoch, num_windows))
                 .first;
      }
      const TokenWindow& w = windows[it->second[p % num_windows]];
      tokens.insert(tokens.end(), stream.begin() + w.begin,
                    stream.begin() + w.end);
    }
    return tokens;
  };

  // Master weights: float32 leaves on the engine's device.
  ASSIGN_OR_RETURN(std::vector<at::Tensor> params,
                   trainer->ReinitTensors(job.init_seed));
  std::vector<at::Tensor> decayed, plain;
  for (size_t i = 0; i < params.size(); ++i) {
    params[i] = params[i].detach().clone().set_requires_grad(true);
    (infos[i].shape.size() >= 2 ? decayed : plain).push_back(params[i]);
  }
  auto adam = [&](double wd) {
    return std::make_unique<torch::optim::AdamWOptions>(
        torch::optim::AdamWOptions(job.lr)
            .betas(std::make_tuple(job.beta1, job.beta2))
            .eps(kAdamEps)
            .weight_decay(wd));
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decayed, adam(job.weight_decay));
  if (!plain.empty()) groups.emplace_back(plain, adam(0.0));
  torch::optim::AdamW opt(std::move(groups),
                          torch::optim::AdamWOptions(job.lr)
                              .betas(std::make_tuple(job.beta1, job.beta2))
                              .eps(kAdamEps)
                              .weight_decay(job.weight_decay));

  // Checkpoints: the identity of everything that decides the bits.
  const engine::EngineOptions eopts = engine.options();
  const std::string identity = Sha256Hex(
      absl::StrCat(kCheckpointFormat, "\n", job.model.path, "\n",
                   job.model.fingerprint, "\n", engine::DTypeName(eopts.dtype),
                   "\n", eopts.device, "\n", job.data.path, "\n",
                   job.data.max_records, "\n", TextSplitName(job.data.split),
                   "\n", job.data.shard_index, "/", job.data.num_shards, "\n",
                   job.windowing.context_length, "/", job.windowing.stride, "/",
                   job.windowing.bos_name(), "\n", L, "/", job.init_seed, "/",
                   job.seed, "/", job.steps, "/", job.batch_windows, "\n",
                   absl::StrFormat("%.17g/%.17g/%.17g/%.17g", job.lr,
                                   job.weight_decay, job.beta1, job.beta2)));
  const std::string checkpoint_key = absl::StrCat(task.task_key, "/retrain");
  int start_step = 0;
  std::vector<double> losses;  // losses[s] = step s+1's loss
  double prior_seconds = 0.0;
  auto resume = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::optional<ArtifactInfo> ref,
                     store->GetCheckpoint(checkpoint_key));
    if (!ref) return absl::OkStatus();
    ASSIGN_OR_RETURN(std::string file, store->Resolve(ref->path, ref->sha256));
    ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> f,
                     SafetensorsFile::Open(file));
    int64_t next = 0, adam_step = 0;
    if (MetadataOr(*f, "format") != kCheckpointFormat ||
        MetadataOr(*f, "identity") != identity ||
        !absl::SimpleAtoi(MetadataOr(*f, "next_step"), &next) ||
        !absl::SimpleAtoi(MetadataOr(*f, "adam_step"), &adam_step) ||
        next <= 0 || next > job.steps) {
      return absl::FailedPreconditionError(
          "a retrain checkpoint of other inputs");
    }
    const TensorView* lv = f->Find("loss_history");
    if (lv == nullptr || lv->dtype != StDtype::kF64 ||
        lv->shape != std::vector<int64_t>{next}) {
      return absl::DataLossError("retrain checkpoint: loss_history");
    }
    std::vector<double> read_losses(next);
    std::memcpy(read_losses.data(), lv->data, next * sizeof(double));
    std::vector<at::Tensor> w(params.size()), m(params.size()),
        v(params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      const std::string& n = infos[i].name;
      ASSIGN_OR_RETURN(
          w[i], ReadF32(*f, "weights/" + n, infos[i].shape, trainer->device()));
      ASSIGN_OR_RETURN(
          m[i], ReadF32(*f, "exp_avg/" + n, infos[i].shape, trainer->device()));
      ASSIGN_OR_RETURN(v[i], ReadF32(*f, "exp_avg_sq/" + n, infos[i].shape,
                                     trainer->device()));
    }
    // Everything read: now change the state.
    {
      at::NoGradGuard no_grad;
      for (size_t i = 0; i < params.size(); ++i) params[i].copy_(w[i]);
    }
    for (size_t i = 0; i < params.size(); ++i) {
      auto state = std::make_unique<torch::optim::AdamWParamState>();
      state->step(adam_step);
      state->exp_avg(m[i]);
      state->exp_avg_sq(v[i]);
      opt.state()[StateKey(opt, params[i])] = std::move(state);
    }
    start_step = static_cast<int>(next);
    losses = std::move(read_losses);
    double seconds = 0;
    if (absl::SimpleAtod(MetadataOr(*f, "seconds"), &seconds)) {
      prior_seconds = seconds;
    }
    return absl::OkStatus();
  };
  if (absl::Status s = resume(); !s.ok()) {
    SWEEPD_LOG(WARNING) << "task " << task.task_key
                        << ": ignoring its retrain checkpoint (starting over): "
                        << s;
    start_step = 0;
    losses.clear();
    prior_seconds = 0.0;
    opt.state().clear();
    ASSIGN_OR_RETURN(std::vector<at::Tensor> fresh,
                     trainer->ReinitTensors(job.init_seed));
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < params.size(); ++i) params[i].copy_(fresh[i]);
  }
  if (start_step > 0) {
    SWEEPD_LOG(INFO) << "task " << task.task_key << ": retrain resumes at step "
                     << start_step + 1 << " of " << job.steps;
  }

  auto save_checkpoint = [&](int next_step) -> absl::Status {
    SafetensorsWriter w;
    int64_t adam_step = 0;
    for (size_t i = 0; i < params.size(); ++i) {
      const std::string& n = infos[i].name;
      RETURN_IF_ERROR(AddF32(&w, "weights/" + n, params[i]));
      auto it = opt.state().find(StateKey(opt, params[i]));
      if (it == opt.state().end()) {
        return absl::InternalError("AdamW has no state after a step");
      }
      auto& st = static_cast<torch::optim::AdamWParamState&>(*it->second);
      adam_step = st.step();
      RETURN_IF_ERROR(AddF32(&w, "exp_avg/" + n, st.exp_avg()));
      RETURN_IF_ERROR(AddF32(&w, "exp_avg_sq/" + n, st.exp_avg_sq()));
    }
    RETURN_IF_ERROR(w.Add("loss_history", StDtype::kF64,
                          {static_cast<int64_t>(losses.size())}, losses.data(),
                          losses.size() * sizeof(double)));
    const int64_t position = static_cast<int64_t>(next_step) * bw;
    const int64_t epoch = position / num_windows;
    w.SetMetadata("format", kCheckpointFormat);
    w.SetMetadata("identity", identity);
    w.SetMetadata("layer", absl::StrCat(L));
    w.SetMetadata("next_step", absl::StrCat(next_step));
    w.SetMetadata("adam_step", absl::StrCat(adam_step));
    w.SetMetadata("data_position", absl::StrCat(position));
    w.SetMetadata("data_windows", absl::StrCat(num_windows));
    w.SetMetadata("rng", "splitmix64 fisher-yates per epoch");
    w.SetMetadata("rng_seed", absl::StrCat(job.seed));
    w.SetMetadata("rng_epoch", absl::StrCat(epoch));
    w.SetMetadata("rng_state", absl::StrCat(EpochRngState(job.seed, epoch)));
    w.SetMetadata(
        "seconds",
        absl::StrFormat("%.17g", prior_seconds + (clock_->NowMs() - t0) / 1e3));
    ASSIGN_OR_RETURN(
        ArtifactInfo info,
        calib::PutSafetensors(
            store, absl::StrCat("checkpoint/retrain/", task.task_key), w));
    return store->SetCheckpoint(checkpoint_key, info);
  };

  // The loss of step 1 on the re-initialised layer is the initial loss; the
  // final loss is the trained layer's on the same (first) batch.
  for (int step = start_step; step < job.steps; ++step) {
    if (ctx.cancelled() || ctx.task_cancelled(index)) {
      return absl::CancelledError(
          absl::StrCat("retrain cancelled after ", step, " steps"));
    }
    at::Tensor in, target;
    RETURN_IF_ERROR(
        trainer->Residuals(batch_tokens(step), bw, seq, &in, &target));
    opt.zero_grad();
    ASSIGN_OR_RETURN(double loss,
                     trainer->Loss(in, target, params, /*backward=*/true));
    if (!std::isfinite(loss)) {
      return absl::InvalidArgumentError(
          absl::StrCat("retrain: the loss is ", loss, " at step ", step + 1,
                       " (lower retrain.lr)"));
    }
    opt.step();
    losses.push_back(loss);
    const int done = step + 1;
    if (done % checkpoint_every == 0 && done < job.steps) {
      RETURN_IF_ERROR(save_checkpoint(done));
    }
    ctx.SetProgress(static_cast<double>(done) / job.steps);
    if (options_.after_step && !options_.after_step(done)) {
      return absl::AbortedError(
          absl::StrCat("retrain stopped after ", done, " steps (after_step)"));
    }
  }

  // Final loss: the trained layer on the first batch.
  at::Tensor in0, target0;
  RETURN_IF_ERROR(trainer->Residuals(batch_tokens(0), bw, seq, &in0, &target0));
  ASSIGN_OR_RETURN(double final_loss,
                   trainer->Loss(in0, target0, params, /*backward=*/false));

  TaskOutput out;
  SafetensorsWriter w;
  for (size_t i = 0; i < params.size(); ++i) {
    RETURN_IF_ERROR(AddF32(&w, infos[i].name, params[i]));
  }
  w.SetMetadata("layer", absl::StrCat(L));
  w.SetMetadata("init_seed", absl::StrCat(job.init_seed));
  w.SetMetadata("steps", absl::StrCat(job.steps));
  w.SetMetadata("initial_loss", absl::StrFormat("%.9g", losses.front()));
  w.SetMetadata("final_loss", absl::StrFormat("%.9g", final_loss));
  w.SetMetadata("compute_dtype", engine::DTypeName(eopts.dtype));
  ASSIGN_OR_RETURN(
      ArtifactInfo info,
      calib::PutSafetensors(store, absl::StrCat("retrain/layer", L), w));
  out.artifacts.push_back(ToArtifactRow(info));

  const std::string layer = absl::StrCat(L);
  const int every =
      job.steps <= options_.max_loss_rows || options_.max_loss_rows <= 0
          ? 1
          : (job.steps + options_.max_loss_rows - 1) / options_.max_loss_rows;
  for (int s = 1; s <= job.steps; ++s) {
    if (s % every != 0 && s != 1 && s != job.steps) continue;
    out.metrics.push_back(
        MetricRow{"retrain_loss",
                  losses[s - 1],
                  {{"layer", layer}, {"step", absl::StrCat(s)}}});
  }
  const double seconds = prior_seconds + (clock_->NowMs() - t0) / 1e3;
  out.metrics.push_back(
      MetricRow{"retrain_initial_loss", losses.front(), {{"layer", layer}}});
  out.metrics.push_back(
      MetricRow{"retrain_final_loss", final_loss, {{"layer", layer}}});
  out.metrics.push_back(
      MetricRow{"retrain_seconds", seconds, {{"layer", layer}}});
  out.metrics.push_back(
      MetricRow{"retrain_tokens",
                static_cast<double>(int64_t{job.steps} * bw * seq),
                {{"layer", layer}}});
  out.metrics.push_back(MetricRow{
      "retrain_steps", static_cast<double>(job.steps), {{"layer", layer}}});
  out.metrics.push_back(MetricRow{"retrain_resumed_at",
                                  static_cast<double>(start_step),
                                  {{"layer", layer}}});
  // The result is complete; the checkpoint's object becomes garbage.
  if (absl::Status s = store->ClearCheckpoint(checkpoint_key); !s.ok()) {
    SWEEPD_LOG(WARNING) << "task " << task.task_key
                        << ": clearing its retrain checkpoint: " << s;
  }
  out.determinism = ToDeterminismRecord(engine::DescribeNumerics(eopts));
  out.wall_seconds = (clock_->NowMs() - t0) / 1000.0;
  return out;
}

}  // namespace sweepd
