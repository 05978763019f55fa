#include "worker/jobs/heal_executor.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/model_config.h"
#include "common/path_confinement.h"
#include "common/safetensors.h"
#include "common/status.h"
#include "worker/calib/gram_file.h"
#include "worker/calib/ridge.h"
#include "worker/jobs/job_artifacts.h"
#include "worker/jobs/task_loop.h"

namespace sweepd {
namespace {

// The o_proj weight of `layer` (Gemma4ForCausalLM or the multimodal
// language_model prefix) as float64 [hidden, D].
absl::StatusOr<std::vector<double>> ReadOProj(const Checkpoint& ckpt,
                                              const std::string& dir, int layer,
                                              int64_t hidden, int64_t D) {
  const std::string suffix =
      absl::StrCat("layers.", layer, ".self_attn.o_proj.weight");
  const TensorView* t = nullptr;
  for (const char* prefix : {"model.", "model.language_model."}) {
    t = ckpt.Find(absl::StrCat(prefix, suffix));
    if (t != nullptr) break;
  }
  if (t == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("model ", dir, " has no tensor model.", suffix));
  }
  if (t->shape != std::vector<int64_t>{hidden, D}) {
    return absl::InvalidArgumentError(
        absl::StrCat(t->name, " in ", dir, " is not [", hidden, ", ", D, "]"));
  }
  ASSIGN_OR_RETURN(std::vector<float> f, TensorToFloat(*t));
  return std::vector<double>(f.begin(), f.end());
}

// Reads and sums `refs` in order; each must be a Gram of `point` of width d.
absl::StatusOr<calib::Gram> SumGrams(
    const std::shared_ptr<ArtifactStore>& store,
    const std::vector<ArtifactRefSpec>& refs, const std::string& field,
    const std::string& point, int64_t d) {
  calib::Gram total;
  for (size_t i = 0; i < refs.size(); ++i) {
    const std::string where = absl::StrCat(field, "[", i, "]");
    // A missing object is UNAVAILABLE (retryable): on a synced store it may
    // not be visible on this worker yet.
    ASSIGN_OR_RETURN(
        std::string path,
        ResolveInputArtifact(store, refs[i].path, refs[i].sha256, where));
    absl::StatusOr<calib::Gram> g = calib::ReadGramFile(path);
    if (!g.ok()) return Annotate(g.status(), where);
    auto it = g->metadata.find("point");
    if (it != g->metadata.end() && it->second != point) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": a Gram of ", it->second, ", the heal needs ", point));
    }
    if (g->d != d) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": Gram width ",
                                                     g->d, ", the layer has ",
                                                     d, " (heads x head_dim)"));
    }
    if (i == 0) {
      total = std::move(*g);
    } else if (absl::Status s = calib::AddGram(*g, &total); !s.ok()) {
      return Annotate(s, where);
    }
  }
  return total;
}

}  // namespace

absl::StatusOr<std::unique_ptr<HealExecutor>> HealExecutor::Create(
    const HealExecutorOptions& options) {
  return std::unique_ptr<HealExecutor>(new HealExecutor(options));
}

HealExecutor::HealExecutor(const HealExecutorOptions& options)
    : options_(options),
      clock_(options.clock != nullptr ? options.clock : Clock::Real()) {}

void HealExecutor::RunGroup(const std::vector<TaskInput>& tasks,
                            TaskContext& ctx, const TaskSink& sink) {
  RunTasksOneByOne<HealJobSpec>(kHealKind, tasks, ctx, sink,
                                [&](const TaskInput&, const HealJobSpec& job,
                                    size_t) { return RunTask(job); });
}

absl::StatusOr<TaskOutput> HealExecutor::RunTask(const HealJobSpec& job) {
  const int64_t t0 = clock_->NowMs();
  ASSIGN_OR_RETURN(ArtifactStore * store,
                   RequireArtifactStore(options_.artifacts, "heal"));
  if (job.grams.empty()) {
    return absl::InvalidArgumentError("heal.grams: at least one is required");
  }
  const bool worker_model =
      job.model.path.empty() ||
      (!job.model.fingerprint.empty() && !options_.model_fingerprint.empty() &&
       job.model.fingerprint == options_.model_fingerprint);
  const std::string dir = worker_model ? options_.model_dir : job.model.path;
  if (dir.empty()) {
    return absl::FailedPreconditionError(
        "the task names no model.path and the worker has no model");
  }
  RETURN_IF_ERROR(CheckModelDirConfined(dir, options_.model_roots));
  ASSIGN_OR_RETURN(ModelConfig cfg,
                   ModelConfig::FromFile(absl::StrCat(dir, "/config.json")));
  const int L = job.layer;
  if (L < 0 || L >= cfg.num_hidden_layers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "heal.layer: ", L, " outside [0, ", cfg.num_hidden_layers, ")"));
  }
  const int H = cfg.num_attention_heads;
  for (size_t i = 0; i < job.heads_removed.size(); ++i) {
    if (job.heads_removed[i] < 0 || job.heads_removed[i] >= H) {
      return absl::InvalidArgumentError(
          absl::StrCat("heal.heads_removed[", i, "]: head ",
                       job.heads_removed[i], " outside [0, ", H, ")"));
    }
  }
  const int64_t hd = cfg.layers[L].head_dim;
  const int64_t D = H * hd;
  const int64_t hidden = cfg.hidden_size;
  ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> ckpt, Checkpoint::Open(dir));
  ASSIGN_OR_RETURN(std::vector<double> w, ReadOProj(*ckpt, dir, L, hidden, D));

  const std::string point = absl::StrCat("attn_heads[", L, "]");
  ASSIGN_OR_RETURN(
      calib::Gram calibration,
      SumGrams(options_.artifacts, job.grams, "heal.grams", point, D));
  calib::RidgeOptions ropts;
  ropts.ridge_rel = job.ridge_rel;
  ropts.device = options_.device;
  const std::vector<int64_t> kept =
      calib::KeptColumns(H, hd, job.heads_removed);
  ASSIGN_OR_RETURN(calib::RidgeSolution sol,
                   calib::SolveRidge(calibration, w, hidden, kept, ropts));
  ASSIGN_OR_RETURN(double calib_rel,
                   calib::RelativeResidual(calibration, w, hidden, sol.weight,
                                           options_.device));
  std::optional<double> heldout_rel;
  if (!job.heldout_grams.empty()) {
    ASSIGN_OR_RETURN(calib::Gram heldout,
                     SumGrams(options_.artifacts, job.heldout_grams,
                              "heal.heldout_grams", point, D));
    ASSIGN_OR_RETURN(heldout_rel,
                     calib::RelativeResidual(heldout, w, hidden, sol.weight,
                                             options_.device));
  }

  std::vector<int> removed = job.heads_removed;
  std::sort(removed.begin(), removed.end());
  removed.erase(std::unique(removed.begin(), removed.end()), removed.end());
  std::vector<float> weight(sol.weight.begin(), sol.weight.end());
  SafetensorsWriter writer;
  RETURN_IF_ERROR(writer.Add("self_attn.o_proj.weight", StDtype::kF32,
                             {hidden, D}, weight.data(),
                             weight.size() * sizeof(float)));
  writer.SetMetadata("layer", absl::StrCat(L));
  writer.SetMetadata("heads_removed", absl::StrJoin(removed, ","));
  writer.SetMetadata("ridge_rel", absl::StrCat(job.ridge_rel));
  writer.SetMetadata("lambda", absl::StrCat(sol.lambda));
  writer.SetMetadata("solver", sol.solver);
  writer.SetMetadata("solver_device", sol.device);
  writer.SetMetadata("tokens", absl::StrCat(calibration.count));
  writer.SetMetadata("residual_rel_calibration", absl::StrCat(calib_rel));
  if (heldout_rel) {
    writer.SetMetadata("residual_rel_heldout", absl::StrCat(*heldout_rel));
  }
  ASSIGN_OR_RETURN(ArtifactInfo info,
                   calib::PutSafetensors(
                       store, absl::StrCat("heal/o_proj/layer", L), writer));

  TaskOutput out;
  out.artifacts.push_back(ToArtifactRow(info));
  const std::string layer = absl::StrCat(L);
  out.metrics.push_back({"heal_residual_rel",
                         calib_rel,
                         {{"layer", layer}, {"split", "calibration"}}});
  if (heldout_rel) {
    out.metrics.push_back({"heal_residual_rel",
                           *heldout_rel,
                           {{"layer", layer}, {"split", "heldout"}}});
  }
  out.metrics.push_back({"heal_lambda", sol.lambda, {{"layer", layer}}});
  out.metrics.push_back(
      {"heal_kept_heads",
       static_cast<double>(H - static_cast<int>(removed.size())),
       {{"layer", layer}}});
  out.metrics.push_back(
      {"heal_solver", 1.0, {{"layer", layer}, {"solver", sol.solver}}});
  out.metrics.push_back({"heal_tokens",
                         static_cast<double>(calibration.count),
                         {{"layer", layer}}});
  out.wall_seconds = (clock_->NowMs() - t0) / 1000.0;
  out.metrics.push_back({"heal_seconds", out.wall_seconds, {{"layer", layer}}});
  out.determinism.tensor_parallel = 1;
  out.determinism.dtype = "float64";
  return out;
}

}  // namespace sweepd
