#include "coordinator/calibration_validation.h"

#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/artifact_store.h"
#include "common/status.h"

namespace sweepd::internal {
namespace {

namespace v1 = ::sweepd::v1;

// Raw-capture dtype, positions and Gram targets (docs/CALIBRATION.md,
// "Capture"); fills the defaults (dtype "bfloat16", positions "all").
absl::Status ValidateCaptureOptions(v1::CaptureJob* job) {
  if (job->dtype().empty()) job->set_dtype("bfloat16");
  if (job->dtype() == "bf16") job->set_dtype("bfloat16");
  if (job->dtype() == "fp32") job->set_dtype("float32");
  if (job->dtype() != "bfloat16" && job->dtype() != "float32") {
    return Invalid("capture.dtype",
                   absl::StrCat("\"", job->dtype(),
                                "\" must be \"bfloat16\" or \"float32\""));
  }
  v1::CapturePositions* pos = job->mutable_positions();
  if (pos->mode().empty()) pos->set_mode("all");
  if (pos->mode() == "sample") {
    if (pos->k() < 1) {
      return Invalid("capture.positions.k",
                     absl::StrCat(pos->k(), ": sample mode needs k >= 1"));
    }
    if (pos->min_position() < 0) {
      return Invalid("capture.positions.min_position",
                     absl::StrCat(pos->min_position(), " must be >= 0"));
    }
  } else if (pos->mode() == "all" || pos->mode() == "last") {
    if (pos->k() != 0 || pos->min_position() != 0 || pos->seed() != 0) {
      return Invalid("capture.positions",
                     absl::StrCat("k, min_position and seed apply only to mode "
                                  "\"sample\", not \"",
                                  pos->mode(), "\""));
    }
  } else {
    return Invalid("capture.positions.mode",
                   absl::StrCat("\"", pos->mode(),
                                "\" must be \"all\", \"last\" or \"sample\""));
  }
  if (job->gram_targets_size() != 0) {
    if (!job->gram()) {
      return Invalid("capture.gram_targets", "needs gram: true");
    }
    if (job->gram_targets_size() != job->points_size()) {
      return Invalid("capture.gram_targets",
                     absl::StrCat(job->gram_targets_size(), " targets for ",
                                  job->points_size(),
                                  " points (one per point, \"\" = none)"));
    }
  }
  return absl::OkStatus();
}

// A heal's Grams: given, or derived from capture_stage (docs/STAGES.md).
absl::Status ValidateHealGrams(const v1::HealJob& job) {
  if (job.grams_size() == 0 && job.capture_stage().empty()) {
    return Invalid("heal.grams",
                   "at least one Gram artifact (or a capture_stage to derive "
                   "them from)");
  }
  auto check = [](const v1::ArtifactRef& ref, const std::string& field) {
    if (!IsArtifactObjectPath(ref.path())) {
      return Invalid(field + ".path",
                     absl::StrCat("\"", ref.path(),
                                  "\" is not an artifact object path "
                                  "(objects/<aa>/<sha256>)"));
    }
    return absl::OkStatus();
  };
  for (int i = 0; i < job.grams_size(); ++i) {
    RETURN_IF_ERROR(check(job.grams(i), absl::StrCat("heal.grams[", i, "]")));
  }
  for (int i = 0; i < job.heldout_grams_size(); ++i) {
    RETURN_IF_ERROR(check(job.heldout_grams(i),
                          absl::StrCat("heal.heldout_grams[", i, "]")));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateCapturePoint(const std::string& point, const ModelShape& m,
                                  const std::string& field) {
  const size_t open = point.find('[');
  int64_t index = -1;
  if (open == std::string::npos || point.empty() || point.back() != ']' ||
      !ParseIndex(
          absl::string_view(point).substr(open + 1, point.size() - open - 2),
          &index)) {
    return Invalid(
        field, absl::StrCat("\"", point, "\" is not of the form name[index]"));
  }
  const std::string name = point.substr(0, open);
  if (name == "hidden_states") {
    if (index > m.num_layers) {
      return Invalid(field,
                     absl::StrCat("hidden_states index ", index,
                                  " out of range [0, ", m.num_layers, "]"));
    }
    return absl::OkStatus();
  }
  if (name != "resid_in" && name != "resid_out" && name != "attn_heads" &&
      name != "attn_out" && name != "mlp_in") {
    return Invalid(field, absl::StrCat("unknown capture point \"", name,
                                       "\" (resid_in, resid_out, attn_heads, "
                                       "attn_out, mlp_in, hidden_states)"));
  }
  return CheckLayer(static_cast<int>(index), m, field);
}

bool IsCalibrationJob(v1::SweepSpec::JobCase job) {
  return job == v1::SweepSpec::kHeadImportance ||
         job == v1::SweepSpec::kCapture || job == v1::SweepSpec::kHeal ||
         job == v1::SweepSpec::kMaterialize || job == v1::SweepSpec::kRetrain;
}

absl::Status ValidateRetrainJob(v1::RetrainJob* job, const ModelShape& m) {
  RETURN_IF_ERROR(
      ValidateWindowing(job->mutable_windowing(), "retrain.windowing"));
  RETURN_IF_ERROR(CheckLayer(job->layer(), m, "retrain.layer"));
  if (job->steps() <= 0) {
    return Invalid("retrain.steps", absl::StrCat(job->steps(), " must be > 0"));
  }
  if (job->batch_windows() <= 0) {
    return Invalid("retrain.batch_windows",
                   absl::StrCat(job->batch_windows(), " must be > 0"));
  }
  if (!(job->lr() >= 0.0) || !std::isfinite(job->lr())) {
    return Invalid("retrain.lr",
                   absl::StrCat(job->lr(), " must be finite and >= 0"));
  }
  if (!(job->weight_decay() >= 0.0) || !std::isfinite(job->weight_decay())) {
    return Invalid(
        "retrain.weight_decay",
        absl::StrCat(job->weight_decay(), " must be finite and >= 0"));
  }
  if (!(job->beta1() >= 0.0 && job->beta1() < 1.0)) {
    return Invalid("retrain.beta1",
                   absl::StrCat(job->beta1(), " must be in [0, 1)"));
  }
  if (!(job->beta2() >= 0.0 && job->beta2() < 1.0)) {
    return Invalid("retrain.beta2",
                   absl::StrCat(job->beta2(), " must be in [0, 1)"));
  }
  if (job->checkpoint_every() < 0) {
    return Invalid("retrain.checkpoint_every",
                   absl::StrCat(job->checkpoint_every(),
                                " must be >= 0 (0 = every 50 steps)"));
  }
  // The defaults a 0 stands for, written into the spec (and so the key).
  if (job->lr() == 0.0) job->set_lr(1e-4);
  if (job->beta1() == 0.0) job->set_beta1(0.9);
  if (job->beta2() == 0.0) job->set_beta2(0.999);
  if (job->checkpoint_every() == 0) job->set_checkpoint_every(50);
  return absl::OkStatus();
}

absl::Status ValidateCalibrationJob(v1::SweepSpec* spec, const ModelShape& m) {
  switch (spec->job_case()) {
    case v1::SweepSpec::kHeadImportance: {
      auto* job = spec->mutable_head_importance();
      RETURN_IF_ERROR(ValidateWindowing(job->mutable_windowing(),
                                        "head_importance.windowing"));
      if (job->layers().empty()) job->set_layers("all");
      ASSIGN_OR_RETURN(
          *job->mutable_layers(),
          CanonicalLayers(job->layers(), m, "head_importance.layers"));
      if (job->heads_per_forward() < 0) {
        return Invalid("head_importance.heads_per_forward",
                       "must be >= 0 (0 = all heads of a layer per forward)");
      }
      return absl::OkStatus();
    }
    case v1::SweepSpec::kCapture: {
      auto* job = spec->mutable_capture();
      RETURN_IF_ERROR(
          ValidateWindowing(job->mutable_windowing(), "capture.windowing"));
      if (job->points_size() == 0)
        return Invalid("capture.points", "at least one is required");
      for (int i = 0; i < job->points_size(); ++i) {
        RETURN_IF_ERROR(ValidateCapturePoint(
            job->points(i), m, absl::StrCat("capture.points[", i, "]")));
      }
      for (int i = 0; i < job->gram_targets_size(); ++i) {
        if (job->gram_targets(i).empty()) continue;
        RETURN_IF_ERROR(ValidateCapturePoint(
            job->gram_targets(i), m,
            absl::StrCat("capture.gram_targets[", i, "]")));
      }
      if (!job->gram() && !job->raw()) job->set_raw(true);
      return ValidateCaptureOptions(job);
    }
    case v1::SweepSpec::kHeal: {
      auto* job = spec->mutable_heal();
      RETURN_IF_ERROR(CheckLayer(job->layer(), m, "heal.layer"));
      RETURN_IF_ERROR(
          CheckHeads(job->mutable_heads_removed(), m, "heal.heads_removed"));
      if (!(job->ridge_rel() >= 0.0) || !std::isfinite(job->ridge_rel())) {
        return Invalid(
            "heal.ridge_rel",
            absl::StrCat(job->ridge_rel(), " must be finite and >= 0"));
      }
      return ValidateHealGrams(*job);
    }
    case v1::SweepSpec::kRetrain:
      // One layer is trained on one token stream: one task per layer.
      if (spec->datasets_size() > 1) {
        return Invalid("datasets",
                       absl::StrCat("a retrain job trains on one dataset, got ",
                                    spec->datasets_size()));
      }
      for (int i = 0; i < spec->datasets_size(); ++i) {
        if (spec->datasets(i).shards() > 1) {
          return Invalid(absl::StrCat("datasets[", i, "].shards"),
                         absl::StrCat(spec->datasets(i).shards(),
                                      ": a retrain job trains on one stream "
                                      "(shards: 1)"));
        }
      }
      return ValidateRetrainJob(spec->mutable_retrain(), m);
    case v1::SweepSpec::kMaterialize: {
      // pruned / heals may be empty here: a prune_plan stage fills them from
      // results (docs/CALIBRATION.md).
      auto* job = spec->mutable_materialize();
      if (job->out_dir().empty()) {
        return Invalid("materialize.out_dir", "required");
      }
      for (absl::string_view part : absl::StrSplit(job->out_dir(), '/')) {
        if (part == "..") {
          return Invalid("materialize.out_dir",
                         absl::StrCat("'", job->out_dir(),
                                      "' may not contain '..' (it is written "
                                      "under the workers' model root)"));
        }
      }
      if (!job->mode().empty() && job->mode() != "mask") {
        return Invalid("materialize.mode",
                       absl::StrCat("'", job->mode(),
                                    "' is not supported (only \"mask\")"));
      }
      std::set<int> pruned_layers;
      for (int i = 0; i < job->pruned_size(); ++i) {
        const std::string field = absl::StrCat("materialize.pruned[", i, "]");
        auto* p = job->mutable_pruned(i);
        RETURN_IF_ERROR(CheckLayer(p->layer(), m, field + ".layer"));
        if (!pruned_layers.insert(p->layer()).second) {
          return Invalid(field + ".layer", absl::StrCat("layer ", p->layer(),
                                                        " is listed twice"));
        }
        RETURN_IF_ERROR(CheckHeads(p->mutable_heads(), m, field + ".heads"));
        if (p->heads_size() >= m.num_heads) {
          return Invalid(field + ".heads",
                         absl::StrCat("all ", m.num_heads, " heads of layer ",
                                      p->layer(), " would be pruned"));
        }
      }
      std::set<int> healed_layers;
      for (int i = 0; i < job->heals_size(); ++i) {
        const std::string field = absl::StrCat("materialize.heals[", i, "]");
        RETURN_IF_ERROR(CheckLayer(job->heals(i).layer(), m, field + ".layer"));
        if (!healed_layers.insert(job->heals(i).layer()).second) {
          return Invalid(
              field + ".layer",
              absl::StrCat("layer ", job->heals(i).layer(), " has two heals"));
        }
        if (job->heals(i).artifact().path().empty()) {
          return Invalid(field + ".artifact.path", "required");
        }
      }
      if (!job->layers().empty()) {
        ASSIGN_OR_RETURN(
            *job->mutable_layers(),
            CanonicalLayers(job->layers(), m, "materialize.layers"));
      }
      return absl::OkStatus();
    }
    default:
      break;
  }
  return Invalid("job", "not a calibration job kind");
}

}  // namespace sweepd::internal
