#include "worker/agent/conversion.h"

#include <algorithm>
#include <cctype>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/artifact_store.h"
#include "common/layer_selector.h"
#include "common/status.h"

namespace sweepd {
namespace {

namespace v1 = ::sweepd::v1;

constexpr char kJobKindPrefix[] = "JOB_KIND_";

}  // namespace

std::string JobKindName(sweepd::v1::JobKind kind) {
  if (kind == sweepd::v1::JOB_KIND_UNSPECIFIED) return "";
  std::string name = sweepd::v1::JobKind_Name(kind);
  if (absl::StartsWith(name, kJobKindPrefix))
    name = name.substr(sizeof(kJobKindPrefix) - 1);
  return absl::AsciiStrToLower(name);
}

absl::StatusOr<sweepd::v1::JobKind> JobKindFromName(const std::string& name) {
  sweepd::v1::JobKind kind;
  if (name.empty() ||
      !sweepd::v1::JobKind_Parse(
          absl::StrCat(kJobKindPrefix, absl::AsciiStrToUpper(name)), &kind) ||
      kind == sweepd::v1::JOB_KIND_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown job kind '", name, "'"));
  }
  return kind;
}

std::string TaskKindOf(const sweepd::v1::TaskSpec& spec) {
  if (spec.kind() != sweepd::v1::JOB_KIND_UNSPECIFIED)
    return JobKindName(spec.kind());
  switch (spec.job_case()) {
    case sweepd::v1::TaskSpec::kEval:
      return JobKindName(sweepd::v1::JOB_KIND_EVAL);
    case sweepd::v1::TaskSpec::kProbe:
      return JobKindName(sweepd::v1::JOB_KIND_PROBE);
    case sweepd::v1::TaskSpec::kHeadImportance:
      return JobKindName(sweepd::v1::JOB_KIND_HEAD_IMPORTANCE);
    case sweepd::v1::TaskSpec::kCapture:
      return JobKindName(sweepd::v1::JOB_KIND_CAPTURE);
    case sweepd::v1::TaskSpec::kHeal:
      return JobKindName(sweepd::v1::JOB_KIND_HEAL);
    case sweepd::v1::TaskSpec::kMaterialize:
      return JobKindName(sweepd::v1::JOB_KIND_MATERIALIZE);
    case sweepd::v1::TaskSpec::kGenerate:
      return JobKindName(sweepd::v1::JOB_KIND_GENERATE);
    case sweepd::v1::TaskSpec::kCanary:
      return JobKindName(sweepd::v1::JOB_KIND_CANARY);
    case sweepd::v1::TaskSpec::kSynthetic:
      return JobKindName(sweepd::v1::JOB_KIND_SYNTHETIC);
    case sweepd::v1::TaskSpec::kRetrain:
      return JobKindName(sweepd::v1::JOB_KIND_RETRAIN);
    case sweepd::v1::TaskSpec::JOB_NOT_SET:
      break;
  }
  return "";
}

namespace {

absl::Status Invalid(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

// The planner resolves selectors to explicit lists ("0-3,7"); "all" or an open
// range here means the task did not come from this coordinator's planner.
absl::StatusOr<std::vector<int>> ExplicitLayers(const std::string& selector,
                                                const std::string& field) {
  return ParseLayerSelector(selector, kLayerCountUnknown, field);
}

// An ArtifactRef of intervention `index` (checked for form only: the
// executor resolves it through its store).
absl::StatusOr<InterventionArtifactRef> ToArtifactRef(
    const v1::ArtifactRef& a, size_t index, const std::string& field) {
  if (a.path().empty()) return Invalid(field + ".path", "required");
  if (!IsArtifactObjectPath(a.path())) {
    return Invalid(field + ".path",
                   absl::StrCat("\"", a.path(),
                                "\" is not an artifact object path "
                                "(objects/<aa>/<sha256>)"));
  }
  InterventionArtifactRef ref;
  ref.intervention = index;
  ref.path = a.path();
  ref.sha256 = a.sha256();
  ref.tensor = a.tensor();
  return ref;
}

absl::Status AppendInterventions(
    const v1::InterventionSet& set, const std::string& prefix,
    std::vector<engine::Intervention>* out, std::vector<std::string>* fields,
    std::vector<InterventionArtifactRef>* artifacts) {
  for (int i = 0; i < set.interventions_size(); ++i) {
    const v1::Intervention& iv = set.interventions(i);
    const std::string field = absl::StrCat(prefix, ".interventions[", i, "]");
    std::string op_field;
    switch (iv.op_case()) {
      case v1::Intervention::kSkip: {
        op_field = field + ".skip.layers";
        ASSIGN_OR_RETURN(
            std::vector<int> layers,
            ExplicitLayers(iv.skip().layers(), field + ".skip.layers"));
        for (int l : layers) out->push_back(engine::Intervention::Skip(l));
        break;
      }
      case v1::Intervention::kZero: {
        op_field = field + ".zero.layers";
        ASSIGN_OR_RETURN(
            std::vector<int> layers,
            ExplicitLayers(iv.zero().layers(), field + ".zero.layers"));
        for (int l : layers) out->push_back(engine::Intervention::Zero(l));
        break;
      }
      case v1::Intervention::kReinit: {
        op_field = field + ".reinit.layers";
        ASSIGN_OR_RETURN(
            std::vector<int> layers,
            ExplicitLayers(iv.reinit().layers(), field + ".reinit.layers"));
        for (int l : layers) {
          out->push_back(engine::Intervention::Reinit(l, iv.reinit().seed()));
        }
        break;
      }
      case v1::Intervention::kMaskHeads: {
        op_field = field + ".mask_heads";
        const v1::HeadMask& m = iv.mask_heads();
        if (m.layer() < 0) {
          return Invalid(field + ".mask_heads.layer",
                         absl::StrCat(m.layer(), " is negative"));
        }
        if (m.heads().empty()) {
          return Invalid(field + ".mask_heads.heads",
                         "a non-empty list of head indices is required");
        }
        std::vector<int> heads;
        for (int h = 0; h < m.heads_size(); ++h) {
          if (m.heads(h) < 0) {
            return Invalid(absl::StrCat(field, ".mask_heads.heads[", h, "]"),
                           absl::StrCat(m.heads(h), " is negative"));
          }
          heads.push_back(m.heads(h));
        }
        out->push_back(
            engine::Intervention::MaskHeads(m.layer(), std::move(heads)));
        break;
      }
      case v1::Intervention::kSteer: {
        op_field = field + ".steer";
        const v1::Steer& st = iv.steer();
        if (st.layer() < 0) {
          return Invalid(field + ".steer.layer",
                         absl::StrCat(st.layer(), " is negative"));
        }
        engine::Intervention::SteerMode mode;
        if (st.mode().empty() || st.mode() == "add") {
          mode = engine::Intervention::SteerMode::kAdd;
        } else if (st.mode() == "replace") {
          mode = engine::Intervention::SteerMode::kReplace;
        } else {
          return Invalid(field + ".steer.mode",
                         absl::StrCat("must be \"add\" or \"replace\", got \"",
                                      st.mode(), "\""));
        }
        const bool has_artifact =
            st.has_vector_artifact() && !st.vector_artifact().path().empty();
        if (has_artifact == !st.vector().empty()) {
          return Invalid(field + ".steer",
                         "exactly one of vector and vector_artifact is "
                         "required");
        }
        if (has_artifact) {
          ASSIGN_OR_RETURN(InterventionArtifactRef ref,
                           ToArtifactRef(st.vector_artifact(), out->size(),
                                         field + ".steer.vector_artifact"));
          artifacts->push_back(std::move(ref));
        }
        out->push_back(engine::Intervention::Steer(
            st.layer(), mode,
            std::vector<float>(st.vector().begin(), st.vector().end()),
            st.has_scale() ? st.scale() : 1.0,
            std::vector<int>(st.positions().begin(), st.positions().end())));
        break;
      }
      case v1::Intervention::kReplaceLayer: {
        op_field = field + ".replace_layer";
        const v1::ReplaceLayer& r = iv.replace_layer();
        if (r.layer() < 0) {
          return Invalid(field + ".replace_layer.layer",
                         absl::StrCat(r.layer(), " is negative"));
        }
        ASSIGN_OR_RETURN(InterventionArtifactRef ref,
                         ToArtifactRef(r.weights(), out->size(),
                                       field + ".replace_layer.weights"));
        artifacts->push_back(std::move(ref));
        out->push_back(engine::Intervention::ReplaceLayer(r.layer(), ""));
        break;
      }
      case v1::Intervention::OP_NOT_SET:
        return Invalid(field,
                       "exactly one of skip, zero, reinit, mask_heads, steer, "
                       "replace_layer must be set");
    }
    fields->resize(out->size(), op_field);
  }
  return absl::OkStatus();
}

ModelRefSpec ToModelRef(const v1::ModelRef& m) {
  ModelRefSpec ref;
  ref.path = m.path();
  ref.fingerprint = m.fingerprint();
  ref.dtype = m.dtype();
  ref.tokenizer = m.tokenizer();
  return ref;
}

// The task's dataset shard (required).
absl::Status ToDatasetShard(const v1::TaskSpec& spec, std::string* name,
                            DatasetShardRef* data) {
  if (!spec.has_data()) {
    return Invalid("data", "required (an object with dataset and shard)");
  }
  const v1::DatasetRef& ds = spec.data().dataset();
  *name = ds.name();
  if (ds.path().empty()) return Invalid("data.dataset.path", "required");
  data->path = ds.path();
  if (ds.max_records() < 0) {
    return Invalid("data.dataset.max_records", "must be >= 0");
  }
  data->max_records = ds.max_records();
  ASSIGN_OR_RETURN(data->split,
                   ParseTextSplit(ds.split(), "data.dataset.split"));
  data->shard_index = spec.data().shard_index();
  data->num_shards = spec.data().num_shards() != 0 ? spec.data().num_shards()
                     : ds.shards() != 0            ? ds.shards()
                                                   : 1;
  if (data->num_shards < 1) {
    return Invalid("data.num_shards",
                   absl::StrCat("must be >= 1, got ", data->num_shards));
  }
  if (data->shard_index < 0 || data->shard_index >= data->num_shards) {
    return Invalid("data.shard_index",
                   absl::StrCat(data->shard_index, " outside [0, ",
                                data->num_shards, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<LmJobSpec> ToLmJob(const v1::TaskSpec& spec,
                                  const std::string& kind) {
  LmJobSpec job;
  job.model = ToModelRef(spec.model());
  RETURN_IF_ERROR(ToDatasetShard(spec, &job.dataset_name, &job.data));
  const v1::TextWindowing& w =
      kind == kEvalKind ? spec.eval().windowing() : spec.probe().windowing();
  ASSIGN_OR_RETURN(job.windowing,
                   ResolveWindowing(w.context_length(), w.stride(), w.bos(),
                                    kind + ".windowing"));
  if (kind == kEvalKind) {
    RETURN_IF_ERROR(AppendInterventions(
        spec.eval().base_interventions(), "eval.base_interventions",
        &job.interventions, &job.intervention_fields,
        &job.intervention_artifacts));
  }
  RETURN_IF_ERROR(AppendInterventions(
      spec.interventions(), "interventions", &job.interventions,
      &job.intervention_fields, &job.intervention_artifacts));
  return job;
}

absl::StatusOr<CaptureJobSpec> ToCaptureJob(const v1::TaskSpec& spec) {
  const v1::CaptureJob& c = spec.capture();
  CaptureJobSpec job;
  job.model = ToModelRef(spec.model());
  RETURN_IF_ERROR(ToDatasetShard(spec, &job.dataset_name, &job.data));
  const v1::TextWindowing& w = c.windowing();
  ASSIGN_OR_RETURN(job.windowing,
                   ResolveWindowing(w.context_length(), w.stride(), w.bos(),
                                    "capture.windowing"));
  if (c.points().empty()) {
    return Invalid("capture.points", "at least one is required");
  }
  job.points.assign(c.points().begin(), c.points().end());
  job.raw = c.raw() || !c.gram();
  job.gram = c.gram();
  job.dtype = c.dtype().empty() ? "bfloat16" : c.dtype();
  if (job.dtype != "bfloat16" && job.dtype != "float32") {
    return Invalid("capture.dtype",
                   absl::StrCat("\"", job.dtype,
                                "\" must be \"bfloat16\" or \"float32\""));
  }
  const v1::CapturePositions& p = c.positions();
  if (p.mode().empty() || p.mode() == "all") {
    job.positions.mode = CapturePositionsSpec::Mode::kAll;
  } else if (p.mode() == "last") {
    job.positions.mode = CapturePositionsSpec::Mode::kLast;
  } else if (p.mode() == "sample") {
    job.positions.mode = CapturePositionsSpec::Mode::kSample;
    if (p.k() < 1) return Invalid("capture.positions.k", "must be >= 1");
    if (p.min_position() < 0) {
      return Invalid("capture.positions.min_position", "must be >= 0");
    }
  } else {
    return Invalid("capture.positions.mode",
                   absl::StrCat("\"", p.mode(),
                                "\" must be \"all\", \"last\" or \"sample\""));
  }
  job.positions.k = p.k();
  job.positions.min_position = p.min_position();
  job.positions.seed = p.seed();
  if (!c.gram_targets().empty() && c.gram_targets_size() != c.points_size()) {
    return Invalid("capture.gram_targets",
                   absl::StrCat(c.gram_targets_size(), " targets for ",
                                c.points_size(), " points"));
  }
  job.gram_targets.assign(c.gram_targets().begin(), c.gram_targets().end());
  RETURN_IF_ERROR(AppendInterventions(
      spec.interventions(), "interventions", &job.interventions,
      &job.intervention_fields, &job.intervention_artifacts));
  return job;
}

std::vector<ArtifactRefSpec> ToArtifactRefs(
    const google::protobuf::RepeatedPtrField<v1::ArtifactRef>& refs) {
  std::vector<ArtifactRefSpec> out;
  for (const v1::ArtifactRef& r : refs) {
    out.push_back(ArtifactRefSpec{r.path(), r.sha256(), r.tensor()});
  }
  return out;
}

absl::StatusOr<HealJobSpec> ToHealJob(const v1::TaskSpec& spec) {
  const v1::HealJob& h = spec.heal();
  HealJobSpec job;
  job.model = ToModelRef(spec.model());
  if (h.layer() < 0) {
    return Invalid("heal.layer", absl::StrCat(h.layer(), " is negative"));
  }
  job.layer = h.layer();
  for (int i = 0; i < h.heads_removed_size(); ++i) {
    if (h.heads_removed(i) < 0) {
      return Invalid(absl::StrCat("heal.heads_removed[", i, "]"),
                     absl::StrCat(h.heads_removed(i), " is negative"));
    }
    job.heads_removed.push_back(h.heads_removed(i));
  }
  if (!(h.ridge_rel() >= 0.0)) {
    return Invalid("heal.ridge_rel", "must be >= 0");
  }
  job.ridge_rel = h.ridge_rel();
  job.grams = ToArtifactRefs(h.grams());
  job.heldout_grams = ToArtifactRefs(h.heldout_grams());
  if (job.grams.empty()) {
    return Invalid("heal.grams", "at least one Gram artifact is required");
  }
  return job;
}

absl::StatusOr<HeadImportanceJobSpec> ToHeadImportanceJob(
    const v1::TaskSpec& spec) {
  HeadImportanceJobSpec job;
  job.model = ToModelRef(spec.model());
  RETURN_IF_ERROR(ToDatasetShard(spec, &job.dataset_name, &job.data));
  const v1::HeadImportanceJob& hi = spec.head_importance();
  const v1::TextWindowing& w = hi.windowing();
  ASSIGN_OR_RETURN(job.windowing,
                   ResolveWindowing(w.context_length(), w.stride(), w.bos(),
                                    "head_importance.windowing"));
  ASSIGN_OR_RETURN(job.layers,
                   ExplicitLayers(hi.layers(), "head_importance.layers"));
  if (hi.heads_per_forward() < 0) {
    return Invalid("head_importance.heads_per_forward", "must be >= 0");
  }
  job.heads_per_forward = hi.heads_per_forward();
  return job;
}

// A 0 in the spec keeps RetrainJobSpec's default (the planner fills them in).
absl::StatusOr<RetrainJobSpec> ToRetrainJob(const v1::TaskSpec& spec) {
  RetrainJobSpec job;
  job.model = ToModelRef(spec.model());
  RETURN_IF_ERROR(ToDatasetShard(spec, &job.dataset_name, &job.data));
  const v1::RetrainJob& r = spec.retrain();
  const v1::TextWindowing& w = r.windowing();
  ASSIGN_OR_RETURN(job.windowing,
                   ResolveWindowing(w.context_length(), w.stride(), w.bos(),
                                    "retrain.windowing"));
  if (r.layer() < 0) {
    return Invalid("retrain.layer", absl::StrCat(r.layer(), " is negative"));
  }
  job.layer = r.layer();
  job.init_seed = r.init_seed();
  if (r.steps() <= 0) {
    return Invalid("retrain.steps", absl::StrCat(r.steps(), " must be > 0"));
  }
  job.steps = r.steps();
  if (r.batch_windows() <= 0) {
    return Invalid("retrain.batch_windows",
                   absl::StrCat(r.batch_windows(), " must be > 0"));
  }
  job.batch_windows = r.batch_windows();
  if (!(r.lr() >= 0.0) || !(r.weight_decay() >= 0.0)) {
    return Invalid("retrain.lr", "lr and weight_decay must be >= 0");
  }
  if (r.lr() > 0) job.lr = r.lr();
  job.weight_decay = r.weight_decay();
  auto beta = [](double value, const char* field,
                 double* into) -> absl::Status {
    if (!(value >= 0.0 && value < 1.0)) {
      return Invalid(field, absl::StrCat(value, " must be in [0, 1)"));
    }
    if (value > 0) *into = value;
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(beta(r.beta1(), "retrain.beta1", &job.beta1));
  RETURN_IF_ERROR(beta(r.beta2(), "retrain.beta2", &job.beta2));
  if (r.checkpoint_every() < 0) {
    return Invalid("retrain.checkpoint_every", "must be >= 0 (0 = 50)");
  }
  if (r.checkpoint_every() > 0) job.checkpoint_every = r.checkpoint_every();
  job.seed = r.seed();
  return job;
}

absl::StatusOr<bool> BosOn(const std::string& bos, const std::string& field) {
  if (bos.empty() || bos == "on") return true;
  if (bos == "off") return false;
  return Invalid(field,
                 absl::StrCat("must be \"on\" or \"off\", got \"", bos, "\""));
}

absl::StatusOr<GenerateJobSpec> ToGenerateJob(const v1::TaskSpec& spec,
                                              const std::string& kind) {
  GenerateJobSpec job;
  job.model.path = spec.model().path();
  job.model.fingerprint = spec.model().fingerprint();
  job.model.dtype = spec.model().dtype();
  job.model.tokenizer = spec.model().tokenizer();
  if (kind == kCanaryKind) {
    const v1::CanaryJob& c = spec.canary();
    for (int i = 0; i < c.cases_size(); ++i) {
      PromptSpec p;
      p.id = absl::StrCat("case", i);
      p.text = c.cases(i).prompt();
      p.expect.assign(c.cases(i).expect().begin(), c.cases(i).expect().end());
      job.prompts.push_back(std::move(p));
    }
    job.samples = 1;
    job.temperature = 0;
    job.max_new_tokens = c.max_new_tokens() > 0 ? c.max_new_tokens() : 32;
    ASSIGN_OR_RETURN(job.bos, BosOn(c.bos(), "canary.bos"));
    job.chat = c.chat();
  } else {
    const v1::GenerateJob& g = spec.generate();
    if (g.references_size() != 0 && g.references_size() != g.prompts_size()) {
      return Invalid("generate.references",
                     absl::StrCat(g.references_size(), " references for ",
                                  g.prompts_size(), " prompts"));
    }
    for (int i = 0; i < g.prompts_size(); ++i) {
      PromptSpec p;
      p.id = absl::StrCat("prompt", i);
      p.text = g.prompts(i);
      if (g.references_size() > 0) p.reference = g.references(i);
      job.prompts.push_back(std::move(p));
    }
    job.samples = g.samples() > 0 ? g.samples() : 1;
    job.max_new_tokens = g.max_new_tokens() > 0 ? g.max_new_tokens() : 128;
    job.temperature = g.temperature();
    job.top_k = g.top_k();
    job.top_p = g.top_p() > 0 ? g.top_p() : 1.0;
    job.min_p = g.min_p();
    for (const auto& [tok, bias] : g.logit_bias()) {
      job.logit_bias.emplace_back(tok, static_cast<float>(bias));
    }
    std::sort(job.logit_bias.begin(), job.logit_bias.end());
    job.banned_tokens.assign(g.banned_tokens().begin(),
                             g.banned_tokens().end());
    job.ban_strings.assign(g.ban_strings().begin(), g.ban_strings().end());
    job.stop.assign(g.stop().begin(), g.stop().end());
    ASSIGN_OR_RETURN(job.bos, BosOn(g.bos(), "generate.bos"));
    job.chat = g.chat();
    job.system = g.system();
    const v1::VerifierSpec& v = g.verifier_spec();
    job.verifier.kind = !v.kind().empty() ? v.kind() : g.verifier();
    job.verifier.pattern = v.pattern();
    job.verifier.command.assign(v.command().begin(), v.command().end());
    if (v.timeout_seconds() > 0) {
      job.verifier.timeout = absl::Seconds(v.timeout_seconds());
    }
    if (v.batch_size() > 0) job.verifier.batch_size = v.batch_size();
    if (v.abs_tolerance() > 0) job.verifier.abs_tolerance = v.abs_tolerance();
    job.verifier.rel_tolerance = v.rel_tolerance();
    job.verifier.case_insensitive = v.ignore_case();
    job.verifier.collapse_whitespace = v.collapse_whitespace();
    if (v.has_pass_threshold())
      job.verifier.pass_threshold = v.pass_threshold();
    job.max_batch = g.max_batch() > 0 ? g.max_batch() : 64;
    job.token_logprobs = g.token_logprobs();
  }
  if (spec.has_data() && !spec.data().dataset().path().empty()) {
    const v1::DatasetRef& ds = spec.data().dataset();
    job.has_data = true;
    job.dataset_name = ds.name();
    job.data.path = ds.path();
    job.data.max_records = ds.max_records();
    job.data.shard_index = spec.data().shard_index();
    job.data.num_shards = spec.data().num_shards() != 0
                              ? spec.data().num_shards()
                          : ds.shards() != 0 ? ds.shards()
                                             : 1;
    if (job.data.shard_index < 0 ||
        job.data.shard_index >= job.data.num_shards) {
      return Invalid("data.shard_index",
                     absl::StrCat(job.data.shard_index, " outside [0, ",
                                  job.data.num_shards, ")"));
    }
  }
  if (job.prompts.empty() && !job.has_data) {
    return Invalid(kind, "no prompts: give prompts (or cases) or a dataset");
  }
  RETURN_IF_ERROR(AppendInterventions(
      spec.interventions(), "interventions", &job.interventions,
      &job.intervention_fields, &job.intervention_artifacts));
  return job;
}

absl::StatusOr<MaterializeJobSpec> ToMaterializeJob(const v1::TaskSpec& spec) {
  const v1::MaterializeJob& m = spec.materialize();
  MaterializeJobSpec job;
  job.model.path = spec.model().path();
  job.model.fingerprint = spec.model().fingerprint();
  job.model.dtype = spec.model().dtype();
  job.model.tokenizer = spec.model().tokenizer();
  if (m.out_dir().empty()) return Invalid("materialize.out_dir", "required");
  job.out_dir = m.out_dir();
  job.mode = m.mode();
  for (int i = 0; i < m.pruned_size(); ++i) {
    MaterializeJobSpec::Pruned p;
    p.layer = m.pruned(i).layer();
    p.heads.assign(m.pruned(i).heads().begin(), m.pruned(i).heads().end());
    job.pruned.push_back(std::move(p));
  }
  for (int i = 0; i < m.heals_size(); ++i) {
    const v1::LayerArtifact& a = m.heals(i);
    if (a.artifact().path().empty()) {
      return Invalid(absl::StrCat("materialize.heals[", i, "].artifact.path"),
                     "required");
    }
    MaterializeJobSpec::Heal h;
    h.layer = a.layer();
    h.path = a.artifact().path();
    h.sha256 = a.artifact().sha256();
    h.tensor = a.artifact().tensor();
    job.heals.push_back(std::move(h));
  }
  if (!m.layers().empty()) {
    job.has_layers = true;
    ASSIGN_OR_RETURN(job.layers,
                     ExplicitLayers(m.layers(), "materialize.layers"));
  }
  return job;
}

SyntheticJobSpec ToSyntheticJob(const v1::SyntheticJob& s) {
  SyntheticJobSpec job;
  job.min_ms = s.min_ms();
  job.max_ms = s.max_ms();
  job.failure_rate = s.failure_rate();
  job.permanent_failure_rate = s.permanent_failure_rate();
  return job;
}

std::string ValueText(const v1::Value& v) {
  switch (v.kind_case()) {
    case v1::Value::kIntValue:
      return absl::StrCat(v.int_value());
    case v1::Value::kDoubleValue:
      return absl::StrCat(v.double_value());
    case v1::Value::kStringValue:
      return v.string_value();
    case v1::Value::kBoolValue:
      return v.bool_value() ? "true" : "false";
    case v1::Value::KIND_NOT_SET:
      break;
  }
  return "";
}

}  // namespace

absl::StatusOr<TaskInput> ToTaskInput(
    const sweepd::v1::TaskAssignment& assignment) {
  if (assignment.task_key().empty()) {
    return absl::InvalidArgumentError("TaskAssignment.task_key is empty");
  }
  const v1::TaskSpec& spec = assignment.spec();
  TaskInput input;
  input.task_key = assignment.task_key();
  input.sweep_id = assignment.sweep_id();
  input.group_key = assignment.group_key();
  input.kind = TaskKindOf(spec);
  input.attempt = assignment.attempt();
  input.index = spec.index();
  input.stage = spec.stage();
  input.seed = spec.seed();
  for (const auto& [name, value] : spec.params()) {
    input.params[name] = ValueText(value);
  }
  absl::Status converted = absl::OkStatus();
  if (input.kind == kEvalKind || input.kind == kProbeKind) {
    absl::StatusOr<LmJobSpec> job = ToLmJob(spec, input.kind);
    if (job.ok()) {
      input.job = std::move(*job);
    } else {
      converted = job.status();
    }
  } else if (input.kind == kCaptureKind) {
    absl::StatusOr<CaptureJobSpec> job = ToCaptureJob(spec);
    if (job.ok()) {
      input.job = std::move(*job);
    } else {
      converted = job.status();
    }
  } else if (input.kind == kHealKind) {
    absl::StatusOr<HealJobSpec> job = ToHealJob(spec);
    if (job.ok()) {
      input.job = std::move(*job);
    } else {
      converted = job.status();
    }
  } else if (input.kind == kRetrainKind) {
    absl::StatusOr<RetrainJobSpec> job = ToRetrainJob(spec);
    if (job.ok()) {
      input.job = std::move(*job);
    } else {
      converted = job.status();
    }
  } else if (input.kind == kHeadImportanceKind) {
    absl::StatusOr<HeadImportanceJobSpec> job = ToHeadImportanceJob(spec);
    if (job.ok()) {
      input.job = std::move(*job);
    } else {
      converted = job.status();
    }
  } else if (input.kind == kSyntheticKind) {
    input.job = ToSyntheticJob(spec.synthetic());
  } else if (input.kind == kGenerateKind || input.kind == kCanaryKind) {
    absl::StatusOr<GenerateJobSpec> job = ToGenerateJob(spec, input.kind);
    if (job.ok()) {
      input.job = std::move(*job);
    } else {
      converted = job.status();
    }
  } else if (input.kind == kMaterializeKind) {
    absl::StatusOr<MaterializeJobSpec> job = ToMaterializeJob(spec);
    if (job.ok()) {
      input.job = std::move(*job);
    } else {
      converted = job.status();
    }
  }
  // Other kinds keep an empty job: no executor of this worker runs them, and
  // the agent refuses them before conversion matters.
  if (!converted.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "task ", assignment.task_key(), ": ", converted.message()));
  }
  return input;
}

sweepd::v1::TaskResult ToTaskResult(const TaskOutput& output) {
  sweepd::v1::TaskResult result;
  for (const MetricRow& row : output.metrics) {
    sweepd::v1::Metric* m = result.add_metrics();
    m->set_name(row.name);
    m->set_value(row.value);
    for (const auto& [k, v] : row.labels) (*m->mutable_labels())[k] = v;
  }
  for (const ArtifactRow& row : output.artifacts) {
    sweepd::v1::Artifact* a = result.add_artifacts();
    a->set_name(row.name);
    a->set_path(row.path);
    a->set_bytes(row.bytes);
    a->set_sha256(row.sha256);
  }
  for (const SampleRow& row : output.samples) {
    sweepd::v1::Sample* s = result.add_samples();
    s->set_prompt_index(row.prompt_index);
    s->set_sample_index(row.sample_index);
    s->set_prompt_id(row.prompt_id);
    s->set_category(row.category);
    s->set_text(row.text);
    s->set_num_tokens(row.num_tokens);
    s->set_finish_reason(row.finish_reason);
    s->set_logprob_sum(row.logprob_sum);
    s->set_has_score(row.has_score);
    s->set_score(row.score);
    s->set_pass(row.pass);
    s->set_verifier_error(row.verifier_error);
    s->mutable_token_logprobs()->Add(row.token_logprobs.begin(),
                                     row.token_logprobs.end());
    s->mutable_token_ids()->Add(row.token_ids.begin(), row.token_ids.end());
  }
  result.set_wall_seconds(output.wall_seconds);
  const DeterminismRecord& d = output.determinism;
  v1::DeterminismRecord* r = result.mutable_determinism();
  r->set_dtype(d.dtype);
  r->set_device_kind(d.device_kind);
  r->set_tensor_parallel(d.tensor_parallel);
  r->set_attention_path(d.attention_path);
  r->set_gemm_tuning(d.gemm_tuning);
  r->set_libtorch_version(d.libtorch_version);
  r->set_cuda_version(d.cuda_version);
  r->set_cudnn_version(d.cudnn_version);
  r->set_nccl_version(d.nccl_version);
  r->set_code_version(d.code_version);
  return result;
}

sweepd::v1::TaskFailure ToTaskFailure(const absl::Status& status) {
  sweepd::v1::TaskFailure failure;
  failure.set_message(status.ToString());
  failure.set_retryable(!IsPermanentTaskError(status));
  return failure;
}

}  // namespace sweepd
