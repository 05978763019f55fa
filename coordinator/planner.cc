// Planner implementation. See planner.h for the contract and the key scheme.
//
// Spec -> tasks: PlanOneStage validates and resolves one stage's spec in one
// order (name, policy, model, datasets, job, grid), expands the grid into
// tasks and computes their keys; PlanSweep plans the first stage and every
// stage planned at submit time. The steps with their own contract live apart:
// path resolution and the model's shape and fingerprint (spec_paths.h), job
// and policy validation (job_validation.h; the calibration kinds in
// calibration_validation.h), interventions (intervention_validation.h), grid
// axes (grid_expansion.h), job parameters (job_params.h), policy defaults
// (sweep_policy.h), layer selectors (common/layer_selector.h), the layer
// profile and drop plans (layer_profile.h, drop_plan.h), the fingerprint
// (common/model_fingerprint.h), the shared field checks (spec_checks.h) and
// the derived stages (derived_stages.h).
//
// Canonical task form (what task_key hashes): the TaskSpec with the model and
// dataset *paths* cleared (their fingerprints identify the content, so moving a
// checkpoint does not change a key) and, except for synthetic tasks, the
// expansion index cleared (so the same work in another sweep, or at another
// grid position, has the same key). Synthetic tasks derive their work from the
// index, so it stays in their key. Layer selectors inside interventions are
// canonicalised ("all" -> "0-59") before hashing, so equivalent spellings share
// a key. Grid points that expand to identical work are planned once (the first
// occurrence wins).
//
// group_key hashes the canonical task with interventions and seed cleared:
// tasks that differ only in their intervention share one unablated prefix pass.
// Synthetic tasks have no prefix to share, so each is its own group.
#include "coordinator/planner.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/hash.h"
#include "common/path_confinement.h"
#include "common/status.h"
#include "coordinator/derived_stages.h"
#include "coordinator/grid_expansion.h"
#include "coordinator/job_params.h"
#include "coordinator/job_validation.h"
#include "coordinator/planner_internal.h"
#include "coordinator/spec_checks.h"
#include "coordinator/spec_paths.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace sweepd {
namespace {

namespace v1 = ::sweepd::v1;

constexpr int kMaxShards = 1'000'000;

using internal::AxisPoint;
using internal::CheckParamAxes;
using internal::CheckRange;
using internal::ExpandAxes;
using internal::Invalid;
using internal::ModelShape;
using internal::ReadModelInfo;
using internal::ResolveUnderRoot;
using internal::ValidateJob;
using internal::ValidatePolicy;

std::string DeterministicBytes(const google::protobuf::MessageLite& message) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    message.SerializeToCodedStream(&coded);
  }
  return out;
}

std::string HashWithVersion(absl::string_view domain, absl::string_view bytes) {
  Sha256 h;
  h.Update(kCodeVersion);
  h.Update(absl::string_view("\0", 1));
  h.Update(domain);
  h.Update(absl::string_view("\0", 1));
  h.Update(bytes);
  return h.HexDigest();
}

// ---- Job kinds
// ---------------------------------------------------------------------------

void CopyJob(const v1::SweepSpec& spec, v1::TaskSpec* task) {
  switch (spec.job_case()) {
    case v1::SweepSpec::kEval:
      *task->mutable_eval() = spec.eval();
      break;
    case v1::SweepSpec::kProbe:
      *task->mutable_probe() = spec.probe();
      break;
    case v1::SweepSpec::kHeadImportance:
      *task->mutable_head_importance() = spec.head_importance();
      break;
    case v1::SweepSpec::kCapture:
      *task->mutable_capture() = spec.capture();
      break;
    case v1::SweepSpec::kHeal:
      *task->mutable_heal() = spec.heal();
      break;
    case v1::SweepSpec::kMaterialize:
      *task->mutable_materialize() = spec.materialize();
      break;
    case v1::SweepSpec::kGenerate:
      *task->mutable_generate() = spec.generate();
      break;
    case v1::SweepSpec::kCanary:
      *task->mutable_canary() = spec.canary();
      break;
    case v1::SweepSpec::kSynthetic:
      *task->mutable_synthetic() = spec.synthetic();
      break;
    case v1::SweepSpec::kRetrain:
      *task->mutable_retrain() = spec.retrain();
      break;
    case v1::SweepSpec::JOB_NOT_SET:
      break;
  }
}

bool NeedsDatasets(v1::JobKind kind) {
  return kind == v1::JOB_KIND_EVAL || kind == v1::JOB_KIND_PROBE ||
         kind == v1::JOB_KIND_HEAD_IMPORTANCE || kind == v1::JOB_KIND_CAPTURE ||
         kind == v1::JOB_KIND_RETRAIN;
}

// Multiplies with saturation at `cap` + 1.
int64_t SaturatingMul(int64_t a, int64_t b, int64_t cap) {
  if (a == 0 || b == 0) return 0;
  if (a > (cap + 1) / b) return cap + 1;
  return std::min(a * b, cap + 1);
}

struct DataSlot {
  const v1::DatasetRef* dataset = nullptr;  // null: the job reads no dataset
  int shard = 0;
};

}  // namespace

v1::JobKind JobKindOf(v1::SweepSpec::JobCase job) {
  switch (job) {
    case v1::SweepSpec::kEval:
      return v1::JOB_KIND_EVAL;
    case v1::SweepSpec::kProbe:
      return v1::JOB_KIND_PROBE;
    case v1::SweepSpec::kHeadImportance:
      return v1::JOB_KIND_HEAD_IMPORTANCE;
    case v1::SweepSpec::kCapture:
      return v1::JOB_KIND_CAPTURE;
    case v1::SweepSpec::kHeal:
      return v1::JOB_KIND_HEAL;
    case v1::SweepSpec::kMaterialize:
      return v1::JOB_KIND_MATERIALIZE;
    case v1::SweepSpec::kGenerate:
      return v1::JOB_KIND_GENERATE;
    case v1::SweepSpec::kCanary:
      return v1::JOB_KIND_CANARY;
    case v1::SweepSpec::kSynthetic:
      return v1::JOB_KIND_SYNTHETIC;
    case v1::SweepSpec::kRetrain:
      return v1::JOB_KIND_RETRAIN;
    case v1::SweepSpec::JOB_NOT_SET:
      break;
  }
  return v1::JOB_KIND_UNSPECIFIED;
}

namespace {

// Sets the seed of every reinit intervention of `task` that names none (seed
// 0) to the task's grid seed. True if one took it.
bool FoldSeedIntoReinit(v1::TaskSpec* task) {
  bool used = false;
  auto fold = [&](v1::InterventionSet* set) {
    for (v1::Intervention& iv : *set->mutable_interventions()) {
      if (iv.has_reinit() && iv.reinit().seed() == 0) {
        iv.mutable_reinit()->set_seed(task->seed());
        used = true;
      }
    }
  };
  fold(task->mutable_interventions());
  if (task->has_eval())
    fold(task->mutable_eval()->mutable_base_interventions());
  return used;
}

// The sweep's job with each combination of swept parameters applied and
// validated (defaults filled, selectors canonicalised), computed once per
// combination.
class JobsByParams {
 public:
  JobsByParams(const v1::SweepSpec& unvalidated, const ModelShape& shape)
      : unvalidated_(unvalidated), shape_(shape) {}

  // The resolved sweep (only its job matters) for `params`. INVALID_ARGUMENT
  // naming the point when the values make an invalid job (e.g. a stride
  // larger than a swept context_length).
  absl::StatusOr<const v1::SweepSpec*> Get(
      const google::protobuf::Map<std::string, v1::Value>& params) {
    std::map<std::string, const v1::Value*> sorted;
    for (const auto& [name, value] : params) sorted[name] = &value;
    std::string key;
    std::vector<std::string> label;
    for (const auto& [name, value] : sorted) {
      absl::StrAppend(&key, name, "\0", DeterministicBytes(*value), "\0");
      label.push_back(absl::StrCat(name, "=", ParamValueText(*value)));
    }
    auto it = cache_.find(key);
    if (it != cache_.end()) return &it->second;
    v1::SweepSpec spec = unvalidated_;
    const std::string where =
        absl::StrCat("grid point {", absl::StrJoin(label, ", "), "}");
    for (const auto& [name, value] : sorted) {
      RETURN_IF_ERROR(ApplyJobParam(&spec, name, *value, where));
    }
    absl::Status valid = ValidateJob(&spec, shape_);
    if (!valid.ok()) {
      return Invalid(where, valid.message());
    }
    return &cache_.emplace(std::move(key), std::move(spec)).first->second;
  }

 private:
  const v1::SweepSpec& unvalidated_;
  const ModelShape& shape_;
  std::map<std::string, v1::SweepSpec> cache_;
};

}  // namespace

namespace internal {

absl::StatusOr<Plan> PlanOneStage(const v1::SweepSpec& spec,
                                  const PlannerOptions& options,
                                  const std::string& stage) {
  Plan plan;
  v1::SweepSpec& rs = plan.resolved_spec;
  rs = spec;

  if (absl::StripAsciiWhitespace(rs.name()).empty())
    return Invalid("name", "required");
  if (rs.job_case() == v1::SweepSpec::JOB_NOT_SET) {
    return Invalid(
        "job",
        "exactly one job must be set: eval, probe, head_importance, capture, "
        "heal, materialize, generate, canary or synthetic");
  }
  const v1::JobKind kind = JobKindOf(rs.job_case());
  const bool synthetic = kind == v1::JOB_KIND_SYNTHETIC;
  RETURN_IF_ERROR(ValidatePolicy(options.policy_defaults, rs.mutable_policy()));

  // Model.
  ModelShape shape;
  if (!rs.model().path().empty()) {
    ASSIGN_OR_RETURN(std::string dir,
                     ResolveUnderRoot(rs.model().path(), options.model_root,
                                      "model.path", "model root"));
    struct stat st;
    if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return Invalid("model.path", absl::StrCat("'", rs.model().path(),
                                                "' is not a directory"));
    }
    if (!options.model_root.empty()) {
      // Every file read below (config.json, shards, index, tokenizer.json)
      // must stay inside the root too, not only the directory.
      absl::Status confined = CheckModelDirConfined(dir, {options.model_root});
      if (!confined.ok()) {
        return absl::Status(confined.code(),
                            absl::StrCat("model.path: ", confined.message()));
      }
    }
    auto info = ReadModelInfo(dir, options);
    if (!info.ok()) return Annotate(info.status(), "model.path");
    shape.known = true;
    shape.num_layers = info->num_hidden_layers;
    shape.num_heads = info->num_attention_heads;
    shape.hidden_size = info->hidden_size;
    rs.mutable_model()->set_path(dir);
    rs.mutable_model()->set_fingerprint(info->fingerprint);
    if (!rs.model().tokenizer().empty()) {
      ASSIGN_OR_RETURN(
          *rs.mutable_model()->mutable_tokenizer(),
          ResolveUnderRoot(rs.model().tokenizer(), options.model_root,
                           "model.tokenizer", "model root"));
    }
  } else if (!synthetic) {
    return Invalid("model.path", "required");
  } else {
    rs.mutable_model()->clear_fingerprint();
  }
  // The dtype decides the numbers, so it is resolved here and becomes part of
  // every task key: results of one precision are never reused as the other's.
  if (shape.known && rs.model().dtype().empty()) {
    rs.mutable_model()->set_dtype(options.default_dtype);
  }
  const std::string& dtype = rs.model().dtype();
  if (!dtype.empty() && dtype != "float32" && dtype != "bfloat16") {
    return Invalid("model.dtype",
                   absl::StrCat("must be \"float32\" or \"bfloat16\", got \"",
                                dtype, "\""));
  }

  // Datasets.
  if (NeedsDatasets(kind) && rs.datasets_size() == 0) {
    return Invalid("datasets",
                   "at least one dataset is required for this job kind");
  }
  absl::flat_hash_set<std::string> dataset_names;
  for (int i = 0; i < rs.datasets_size(); ++i) {
    v1::DatasetRef* ds = rs.mutable_datasets(i);
    const std::string field = absl::StrCat("datasets[", i, "]");
    if (ds->name().empty()) return Invalid(field + ".name", "required");
    if (!dataset_names.insert(ds->name()).second) {
      return Invalid(field + ".name", absl::StrCat("duplicate dataset name \"",
                                                   ds->name(), "\""));
    }
    if (ds->shards() == 0) ds->set_shards(1);
    RETURN_IF_ERROR(CheckRange(ds->shards(), 1, kMaxShards, field + ".shards"));
    if (ds->max_records() < 0)
      return Invalid(field + ".max_records", "must be >= 0");
    if (ds->split() == "paragraph") ds->clear_split();  // the default's key
    if (!ds->split().empty() && ds->split() != "line" &&
        ds->split() != "file") {
      return Invalid(field + ".split",
                     absl::StrCat("must be \"paragraph\", \"line\" or "
                                  "\"file\", got \"",
                                  ds->split(), "\""));
    }
    if (!ds->split().empty() && absl::EndsWith(ds->path(), ".jsonl")) {
      return Invalid(field + ".split",
                     "applies to plain-text files; a JSONL file is one record "
                     "per line");
    }
    if (ds->split() == "file" && ds->shards() > 1) {
      return Invalid(field + ".shards",
                     "split \"file\" makes the whole file one document, "
                     "which cannot be cut into shards; use shards: 1");
    }
    ASSIGN_OR_RETURN(std::string path,
                     ResolveUnderRoot(ds->path(), options.data_root,
                                      field + ".path", "data root"));
    struct stat st;
    if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      return Invalid(field + ".path",
                     absl::StrCat("'", ds->path(), "' is not a regular file"));
    }
    auto fp = Sha256File(path);
    if (!fp.ok()) return Annotate(fp.status(), field + ".path");
    ds->set_path(path);
    ds->set_fingerprint(*fp);
  }

  // The job before defaults and canonicalisation: swept parameters are
  // applied to copies of it and validated per point (JobWithParams).
  const v1::SweepSpec unvalidated = rs;
  RETURN_IF_ERROR(ValidateJob(&rs, shape));
  if (synthetic) {
    for (int i = 0; i < rs.grid().axes_size(); ++i) {
      const auto k = rs.grid().axes(i).kind_case();
      if ((k == v1::Axis::kInterventions || k == v1::Axis::kLayers) &&
          !shape.known) {
        return Invalid(
            absl::StrCat("grid.axes[", i, "]"),
            "synthetic jobs without a model take only param and seeds axes");
      }
    }
  }
  ASSIGN_OR_RETURN(std::vector<std::vector<AxisPoint>> axes,
                   ExpandAxes(rs.mutable_grid(), shape));
  RETURN_IF_ERROR(CheckParamAxes(rs.grid(), axes, kind));

  // Data slots: every (dataset, shard), or one slot without data.
  std::vector<DataSlot> slots;
  for (const v1::DatasetRef& ds : rs.datasets()) {
    for (int s = 0; s < ds.shards(); ++s) slots.push_back({&ds, s});
  }
  if (slots.empty()) slots.push_back({});

  const int64_t cap = options.max_tasks;
  const int64_t reps = synthetic ? rs.synthetic().tasks() : 1;
  int64_t total = SaturatingMul(static_cast<int64_t>(slots.size()), reps, cap);
  for (const auto& a : axes)
    total = SaturatingMul(total, static_cast<int64_t>(a.size()), cap);
  if (total > cap) {
    // Recompute exactly (in double) only for the message.
    double exact =
        static_cast<double>(slots.size()) * static_cast<double>(reps);
    for (const auto& a : axes) exact *= static_cast<double>(a.size());
    return Invalid("grid",
                   absl::StrFormat("the sweep expands to %.0f tasks, more than "
                                   "max_tasks = %d",
                                   exact, cap));
  }

  {
    const std::string spec_bytes = DeterministicBytes(rs);
    plan.sweep_id =
        absl::StrCat("sw-", HashWithVersion("sweep", spec_bytes).substr(0, 16));
  }

  // Canonical template: paths cleared (see the file comment).
  v1::TaskSpec base;
  base.set_kind(kind);
  if (shape.known) {
    *base.mutable_model() = rs.model();
    base.mutable_model()->clear_path();
  }
  CopyJob(rs, &base);
  base.set_stage(stage);
  std::vector<const v1::Intervention*> base_interventions;
  if (rs.has_eval()) {
    for (const auto& iv : rs.eval().base_interventions().interventions()) {
      base_interventions.push_back(&iv);
    }
  }

  JobsByParams jobs_by_params(unvalidated, shape);
  // eval and probe use a grid seed only as the seed of reinit interventions
  // that name none (docs/JOBS.md, "Seeds").
  const bool seeds_fold_into_reinit =
      kind == v1::JOB_KIND_EVAL || kind == v1::JOB_KIND_PROBE;
  bool seed_used = false;
  plan.tasks.reserve(static_cast<size_t>(total));
  absl::flat_hash_set<std::string> seen;
  seen.reserve(static_cast<size_t>(total));
  std::vector<size_t> odometer(axes.size(), 0);

  for (const DataSlot& slot : slots) {
    v1::TaskSpec slot_base = base;
    if (slot.dataset != nullptr) {
      v1::DataShard* data = slot_base.mutable_data();
      *data->mutable_dataset() = *slot.dataset;
      data->mutable_dataset()->clear_path();
      data->set_shard_index(slot.shard);
      data->set_num_shards(slot.dataset->shards());
    }
    std::fill(odometer.begin(), odometer.end(), 0);
    bool more = true;
    while (more) {
      v1::TaskSpec point = slot_base;
      for (const v1::Intervention* iv : base_interventions) {
        *point.mutable_interventions()->add_interventions() = *iv;
      }
      for (size_t a = 0; a < axes.size(); ++a) {
        const AxisPoint& p = axes[a][odometer[a]];
        for (const v1::Intervention& iv : p.interventions) {
          *point.mutable_interventions()->add_interventions() = iv;
        }
        if (p.has_seed) point.set_seed(p.seed);
        if (p.param_name != nullptr)
          (*point.mutable_params())[*p.param_name] = p.param_value;
      }
      if (!point.params().empty()) {
        ASSIGN_OR_RETURN(const v1::SweepSpec* job,
                         jobs_by_params.Get(point.params()));
        CopyJob(*job, &point);
      }
      if (point.interventions().interventions_size() == 0)
        point.clear_interventions();
      if (seeds_fold_into_reinit && point.seed() != 0) {
        if (FoldSeedIntoReinit(&point)) {
          seed_used = true;
        } else {
          point.clear_seed();  // unused: the task shares the unseeded key
        }
      }

      // Group key: the canonical task without interventions and seed (computed
      // once per point).
      std::string group_key;
      if (!synthetic) {
        v1::TaskSpec group = point;
        group.clear_interventions();
        group.clear_seed();
        group.clear_stage();
        if (kind == v1::JOB_KIND_EVAL || kind == v1::JOB_KIND_PROBE) {
          // eval and probe tasks over the same shard and windowing share one
          // unablated pass (docs/JOBS.md), whichever stage planned them.
          const v1::TextWindowing w = kind == v1::JOB_KIND_EVAL
                                          ? group.eval().windowing()
                                          : group.probe().windowing();
          group.clear_kind();
          group.clear_job();
          *group.mutable_eval()->mutable_windowing() = w;
        }
        group_key = HashWithVersion("group", DeterministicBytes(group));
      }

      for (int64_t r = 0; r < reps; ++r) {
        PlannedTask task;
        task.spec = point;
        if (synthetic)
          task.spec.set_index(static_cast<int64_t>(plan.tasks.size()));
        task.task_key = HashWithVersion("task", DeterministicBytes(task.spec));
        if (!seen.insert(task.task_key).second) continue;
        task.group_key = synthetic
                             ? HashWithVersion("group-synthetic", task.task_key)
                             : group_key;
        task.spec.set_index(static_cast<int64_t>(plan.tasks.size()));
        if (shape.known) task.spec.mutable_model()->set_path(rs.model().path());
        if (slot.dataset != nullptr) {
          task.spec.mutable_data()->mutable_dataset()->set_path(
              slot.dataset->path());
        }
        plan.tasks.push_back(std::move(task));
      }

      // Advance the odometer (last axis fastest).
      more = false;
      for (size_t a = axes.size(); a-- > 0;) {
        if (++odometer[a] < axes[a].size()) {
          more = true;
          break;
        }
        odometer[a] = 0;
      }
    }
  }
  if (seeds_fold_into_reinit && !seed_used) {
    for (int i = 0; i < rs.grid().axes_size(); ++i) {
      if (rs.grid().axes(i).kind_case() != v1::Axis::kSeeds) continue;
      return Invalid(
          absl::StrCat("grid.axes[", i, "].seeds"),
          absl::StrCat(absl::AsciiStrToLower(absl::StripPrefix(
                           v1::JobKind_Name(kind), "JOB_KIND_")),
                       " tasks use a seed only for reinit interventions that "
                       "name none, and no task of this sweep has one: every "
                       "seed would compute the same numbers"));
    }
  }
  return plan;
}

// The spec of stage `stage` of `spec`: the sweep's model, policy and labels
// with the stage's job (or the sweep's), grid and datasets (or the sweep's).
v1::SweepSpec StageSpec(const v1::SweepSpec& spec, const v1::Stage& stage) {
  v1::SweepSpec sub = spec;
  sub.clear_stages();
  sub.clear_grid();
  if (stage.job_case() != v1::Stage::JOB_NOT_SET) {
    // The oneof fields share numbers between Stage and SweepSpec.
    const google::protobuf::Descriptor* from = stage.GetDescriptor();
    const google::protobuf::FieldDescriptor* field =
        from->FindFieldByNumber(static_cast<int>(stage.job_case()));
    const google::protobuf::FieldDescriptor* to =
        sub.GetDescriptor()->FindFieldByNumber(field->number());
    sub.GetReflection()->MutableMessage(&sub, to)->CopyFrom(
        stage.GetReflection()->GetMessage(stage, field));
  }
  *sub.mutable_grid() = stage.grid();
  if (stage.datasets_size() > 0) *sub.mutable_datasets() = stage.datasets();
  return sub;
}

}  // namespace internal

namespace {
using internal::PlanOneStage;
using internal::StageSpec;

}  // namespace

// Names and labels within their length limits (planner.h).
absl::Status CheckNamesAndLabels(const v1::SweepSpec& spec) {
  auto too_long = [](absl::string_view field, size_t size, size_t limit) {
    return Invalid(
        field, absl::StrCat("is ", size, " bytes long; the limit is ", limit,
                            " bytes"));
  };
  if (spec.name().size() > kMaxSweepNameBytes) {
    return too_long("name", spec.name().size(), kMaxSweepNameBytes);
  }
  for (int i = 0; i < spec.stages_size(); ++i) {
    if (spec.stages(i).name().size() > kMaxSweepNameBytes) {
      return too_long(absl::StrCat("stages[", i, "].name"),
                      spec.stages(i).name().size(), kMaxSweepNameBytes);
    }
  }
  if (spec.labels_size() > kMaxLabels) {
    return Invalid("labels",
                   absl::StrCat("has ", spec.labels_size(),
                                " entries; the limit is ", kMaxLabels));
  }
  for (const auto& [key, value] : spec.labels()) {
    const std::string field = absl::StrCat("labels[\"", key.substr(0, 40),
                                           key.size() > 40 ? "...\"]" : "\"]");
    if (key.size() > kMaxLabelKeyBytes) {
      return too_long(absl::StrCat(field, " (key)"), key.size(),
                      kMaxLabelKeyBytes);
    }
    if (value.size() > kMaxLabelValueBytes) {
      return too_long(field, value.size(), kMaxLabelValueBytes);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Plan> PlanSweep(const v1::SweepSpec& spec,
                               const PlannerOptions& options) {
  RETURN_IF_ERROR(CheckNamesAndLabels(spec));
  v1::SweepSpec first = spec;
  first.clear_stages();
  ASSIGN_OR_RETURN(Plan plan, PlanOneStage(first, options, ""));
  if (spec.stages_size() == 0) return plan;

  absl::flat_hash_set<std::string> names;
  absl::flat_hash_set<std::string> keys;
  for (const PlannedTask& t : plan.tasks) keys.insert(t.task_key);
  for (int i = 0; i < spec.stages_size(); ++i) {
    const v1::Stage& stage = spec.stages(i);
    const std::string field = absl::StrCat("stages[", i, "]");
    if (stage.name().empty()) return Invalid(field + ".name", "required");
    if (!names.insert(stage.name()).second) {
      return Invalid(field + ".name", absl::StrCat("duplicate stage name \"",
                                                   stage.name(), "\""));
    }
    v1::SweepSpec sub = StageSpec(first, stage);
    // A derived stage, and every stage after one, is planned later from the
    // results before it (docs/STAGES.md); it is validated now.
    if (IsDerivedStage(stage) || !plan.deferred_stages.empty()) {
      RETURN_IF_ERROR(ValidateDeferredStage(spec, i, options));
      plan.deferred_stages.push_back(i);
      continue;
    }
    auto staged = PlanOneStage(sub, options, stage.name());
    if (!staged.ok()) return Annotate(staged.status(), field);
    for (PlannedTask& t : staged->tasks) {
      if (!keys.insert(t.task_key).second) continue;
      t.spec.set_index(static_cast<int64_t>(plan.tasks.size()));
      plan.tasks.push_back(std::move(t));
    }
    if (static_cast<int64_t>(plan.tasks.size()) > options.max_tasks) {
      return Invalid(field, absl::StrCat("the sweep expands to more than "
                                         "max_tasks = ",
                                         options.max_tasks, " tasks"));
    }
  }
  *plan.resolved_spec.mutable_stages() = spec.stages();
  plan.sweep_id = absl::StrCat(
      "sw-", HashWithVersion("sweep", DeterministicBytes(plan.resolved_spec))
                 .substr(0, 16));
  return plan;
}

}  // namespace sweepd
