// Derived stages: submit-time validation and PlanDerivedStage (planner.h).
// See derived_stages.h for which stages are derived and docs/STAGES.md,
// docs/CALIBRATION.md for the rules.
#include "coordinator/derived_stages.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/fs.h"
#include "common/layer_selector.h"
#include "common/model_config.h"
#include "common/status.h"
#include "coordinator/drop_plan.h"
#include "coordinator/layer_profile.h"
#include "coordinator/planner_internal.h"
#include "coordinator/prune_plan.h"

namespace sweepd {
namespace {

namespace v1 = ::sweepd::v1;
using internal::PlanOneStage;
using internal::StageSpec;

absl::Status Invalid(absl::string_view field, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", message));
}

absl::Status Unmet(absl::string_view field, absl::string_view message) {
  return absl::FailedPreconditionError(absl::StrCat(field, ": ", message));
}

absl::Status ValidateDropPlan(const v1::SweepSpec& sub,
                              const v1::DropPlanDerivation& d,
                              const std::string& field) {
  if (sub.job_case() != v1::SweepSpec::kEval) {
    return Invalid(field, "a drop_plan stage needs an eval job");
  }
  if (sub.grid().axes_size() > 0) {
    return Invalid(field + ".grid",
                   "a drop_plan stage derives its grid; give no axes");
  }
  if (d.k_size() == 0) return Invalid(field + ".drop_plan.k", "required");
  for (int i = 0; i < d.k_size(); ++i) {
    if (d.k(i) < 1) {
      return Invalid(absl::StrCat(field, ".drop_plan.k[", i, "]"),
                     "must be >= 1");
    }
  }
  if (d.w_bi() < 0 || d.w_bi_var() < 0 || d.w_delta() < 0) {
    return Invalid(field + ".drop_plan", "score weights must be >= 0");
  }
  return absl::OkStatus();
}

// The index of the stage named `name` among stages [0, before), or -1.
int EarlierStage(const v1::SweepSpec& spec, const std::string& name,
                 int before) {
  for (int i = 0; i < before; ++i) {
    if (spec.stages(i).name() == name) return i;
  }
  return -1;
}

// A derived canary stage reads only its own datasets: its cases are inline,
// and the sweep's datasets (the calibration text) are not prompts.
v1::SweepSpec WithOwnDatasets(v1::SweepSpec sub, const v1::Stage& stage) {
  if (sub.has_canary() && stage.datasets_size() == 0) sub.clear_datasets();
  return sub;
}

// The stage's spec with what the derivation fills set to placeholders, for
// submit-time validation.
v1::SweepSpec WithPlaceholders(v1::SweepSpec sub, const v1::Stage& stage) {
  if (sub.has_heal()) {
    sub.clear_datasets();
    if (sub.heal().heads_removed_size() == 0) {
      sub.mutable_heal()->add_heads_removed(0);
    }
  }
  if (sub.has_materialize()) sub.clear_datasets();
  return WithOwnDatasets(std::move(sub), stage);
}

absl::Status ValidatePrunePlan(const v1::SweepSpec& spec, int index,
                               const v1::SweepSpec& sub,
                               const std::string& field) {
  const v1::PrunePlanDerivation& p = spec.stages(index).prune_plan();
  const std::string pf = field + ".prune_plan";
  if ((p.fraction() > 0) == (p.count() > 0) || p.fraction() < 0 ||
      p.count() < 0) {
    return Invalid(pf, "set exactly one of fraction and count");
  }
  if (!(p.fraction() < 1.0)) {
    return Invalid(pf + ".fraction",
                   absl::StrCat(p.fraction(), " must be in (0, 1)"));
  }
  if (!p.importance_stage().empty() &&
      EarlierStage(spec, p.importance_stage(), index) < 0) {
    return Invalid(pf + ".importance_stage",
                   absl::StrCat("no earlier stage is named \"",
                                p.importance_stage(), "\""));
  }
  switch (sub.job_case()) {
    case v1::SweepSpec::kHeal:
    case v1::SweepSpec::kMaterialize:
      if (sub.grid().axes_size() > 0) {
        return Invalid(field + ".grid",
                       "a prune_plan heal or materialize stage derives its "
                       "tasks; give no axes");
      }
      break;
    case v1::SweepSpec::kEval:
    case v1::SweepSpec::kGenerate:
    case v1::SweepSpec::kCanary:
      break;
    default:
      return Invalid(pf,
                     "needs a heal, materialize, eval, generate or "
                     "canary job");
  }
  return absl::OkStatus();
}

// The DONE records of stage `name`.
std::vector<const v1::TaskRecord*> StageRecords(
    const std::vector<v1::TaskRecord>& records, const std::string& name) {
  std::vector<const v1::TaskRecord*> out;
  for (const v1::TaskRecord& r : records) {
    if (r.spec().stage() == name && r.state() == v1::TASK_STATE_DONE) {
      out.push_back(&r);
    }
  }
  return out;
}

// Model shape for the prune plan: head count and per-layer KV heads.
absl::StatusOr<PrunePlanOptions> PruneOptions(const v1::SweepSpec& spec,
                                              const v1::PrunePlanDerivation& p,
                                              const std::string& pf) {
  ASSIGN_OR_RETURN(ModelConfig cfg, ModelConfig::FromFile(JoinPath(
                                        spec.model().path(), "config.json")));
  PrunePlanOptions o;
  o.fraction = p.fraction();
  o.count = p.count();
  o.kv_groups = p.kv_groups();
  o.num_heads = cfg.num_attention_heads;
  for (const LayerConfig& l : cfg.layers) o.kv_heads.push_back(l.num_kv_heads);
  if (!p.layers().empty()) {
    ASSIGN_OR_RETURN(
        o.layers,
        ParseLayerSelector(p.layers(), cfg.num_hidden_layers, pf + ".layers"));
  }
  return o;
}

absl::StatusOr<PrunePlan> DerivePlan(const v1::SweepSpec& spec, int index,
                                     const std::vector<v1::TaskRecord>& records,
                                     const std::string& field) {
  const v1::Stage& stage = spec.stages(index);
  const v1::PrunePlanDerivation& p = stage.prune_plan();
  const std::string pf = field + ".prune_plan";
  std::vector<v1::TaskRecord> earlier;
  for (const v1::TaskRecord& r : records) {
    if (r.spec().stage() != stage.name()) earlier.push_back(r);
  }
  const HeadImportance importance = PoolHeadImportance(
      earlier, p.importance_stage(), p.importance_stage().empty());
  ASSIGN_OR_RETURN(PrunePlanOptions options, PruneOptions(spec, p, pf));
  absl::StatusOr<PrunePlan> plan = DerivePrunePlan(importance, options);
  if (!plan.ok()) {
    return absl::Status(plan.status().code(),
                        absl::StrCat(field, ".", plan.status().message()));
  }
  if (plan->empty()) {
    return Unmet(pf,
                 "the plan prunes no head (fraction too small for the "
                 "model's heads?)");
  }
  return plan;
}

// The capture stage's Gram artifacts of attn_heads[layer] in dataset-shard
// order: calibration (every dataset but `heldout`) and held-out ones.
absl::Status FillGrams(const v1::SweepSpec& spec, int index,
                       const std::vector<v1::TaskRecord>& records,
                       const std::string& field, v1::HealJob* heal) {
  const std::string& capture = heal->capture_stage();
  const int ci = EarlierStage(spec, capture, index);
  if (ci < 0) {
    return Invalid(field + ".heal.capture_stage",
                   absl::StrCat("no earlier stage is named \"", capture, "\""));
  }
  const v1::Stage& cs = spec.stages(ci);
  const auto& datasets =
      cs.datasets_size() > 0 ? cs.datasets() : spec.datasets();
  std::map<std::string, const v1::Artifact*> by_name;
  for (const v1::TaskRecord* r : StageRecords(records, capture)) {
    for (const v1::Artifact& a : r->result().artifacts())
      by_name[a.name()] = &a;
  }
  const std::string point = absl::StrCat("attn_heads[", heal->layer(), "]");
  bool heldout_found = heal->heldout_dataset().empty();
  heal->clear_grams();
  heal->clear_heldout_grams();
  for (const v1::DatasetRef& ds : datasets) {
    const bool heldout = ds.name() == heal->heldout_dataset();
    heldout_found |= heldout;
    const int shards = std::max(1, ds.shards());
    for (int s = 0; s < shards; ++s) {
      const std::string name =
          absl::StrCat("gram/", point, "/", ds.name(), "/shard", s);
      auto it = by_name.find(name);
      if (it == by_name.end()) {
        return Unmet(
            field, absl::StrCat("capture stage \"", capture,
                                "\" has no Gram \"", name, "\" (capture ",
                                point, " with gram: true, every shard DONE)"));
      }
      v1::ArtifactRef* ref =
          heldout ? heal->add_heldout_grams() : heal->add_grams();
      ref->set_path(it->second->path());
      ref->set_sha256(it->second->sha256());
    }
  }
  if (!heldout_found) {
    return Invalid(
        field + ".heal.heldout_dataset",
        absl::StrCat("capture stage \"", capture, "\" has no dataset \"",
                     heal->heldout_dataset(), "\""));
  }
  if (heal->grams_size() == 0) {
    return Unmet(field, absl::StrCat("capture stage \"", capture,
                                     "\" leaves no calibration dataset "
                                     "besides the held-out one"));
  }
  return absl::OkStatus();
}

// Plans `sub` (one stage's spec) and appends its new tasks to `out`. A model
// or dataset that is missing or outside the roots (a materialized checkpoint
// that is not there) is FAILED_PRECONDITION: the results, not a transient
// error, decided it, so the stage fails instead of being retried forever.
absl::Status PlanInto(const v1::SweepSpec& sub, const PlannerOptions& options,
                      const std::string& stage, std::vector<PlannedTask>* out,
                      absl::flat_hash_set<std::string>* keys) {
  absl::StatusOr<Plan> planned = PlanOneStage(sub, options, stage);
  if (absl::IsNotFound(planned.status()) ||
      absl::IsPermissionDenied(planned.status())) {
    return absl::FailedPreconditionError(planned.status().message());
  }
  ASSIGN_OR_RETURN(Plan plan, std::move(planned));
  for (PlannedTask& t : plan.tasks) {
    if (keys->insert(t.task_key).second) out->push_back(std::move(t));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<PlannedTask>> PlanDropPlanStage(
    const v1::SweepSpec& resolved_spec, const v1::Stage& stage,
    const std::vector<v1::TaskRecord>& records, const std::string& field,
    const PlannerOptions& options) {
  const v1::DropPlanDerivation& d = stage.drop_plan();
  LayerProfileOptions profile_options;
  if (d.w_bi() > 0 || d.w_bi_var() > 0 || d.w_delta() > 0) {
    profile_options.weights.bi = d.w_bi();
    profile_options.weights.bi_var = d.w_bi_var();
    profile_options.weights.delta = d.w_delta();
  }
  if (d.critical_delta_pct() > 0)
    profile_options.critical_delta_pct = d.critical_delta_pct();
  profile_options.ablation_dataset = d.ablation_dataset();
  std::vector<v1::TaskRecord> earlier;
  for (const v1::TaskRecord& r : records) {
    if (r.spec().stage() != stage.name()) earlier.push_back(r);
  }
  ASSIGN_OR_RETURN(LayerStudy study, BuildLayerStudy(earlier, profile_options));
  ASSIGN_OR_RETURN(DropPlans drop_plans,
                   DeriveDropPlans(study, {d.k().begin(), d.k().end()}));

  v1::SweepSpec first = resolved_spec;
  first.clear_stages();
  v1::SweepSpec sub = StageSpec(first, stage);
  v1::InterventionList* items =
      sub.mutable_grid()->add_axes()->mutable_interventions();
  std::vector<std::string> infeasible;
  for (const DropPlan& p : drop_plans.plans) {
    if (!p.feasible) {
      infeasible.push_back(absl::StrCat(p.k));
      continue;
    }
    items->add_items()->add_interventions()->mutable_skip()->set_layers(
        absl::StrJoin(p.layers, ","));
  }
  if (items->items_size() == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        field, ".drop_plan: no feasible drop plan (k = ",
        absl::StrJoin(infeasible, ", "),
        "): the earlier stages must score more non-critical layers (a probe "
        "and a single-layer skip ablation with a baseline)"));
  }
  ASSIGN_OR_RETURN(Plan plan, PlanOneStage(sub, options, stage.name()));
  return std::move(plan.tasks);
}

// model_from_stage: the materialized checkpoint's path (relative to the model
// root) and fingerprint from the materialize stage's "materialized_model" row.
absl::Status UseMaterializedModel(const v1::SweepSpec& spec, int index,
                                  const std::vector<v1::TaskRecord>& records,
                                  const std::string& field, v1::SweepSpec* sub,
                                  std::string* fingerprint) {
  const std::string& from = spec.stages(index).model_from_stage();
  std::vector<const v1::Metric*> found;
  for (const v1::TaskRecord* r : StageRecords(records, from)) {
    for (const v1::Metric& m : r->result().metrics()) {
      if (m.name() == "materialized_model") found.push_back(&m);
    }
  }
  if (found.size() != 1) {
    return Unmet(field + ".model_from_stage",
                 absl::StrCat("stage \"", from, "\" reported ", found.size(),
                              " materialized_model rows (needs exactly one "
                              "DONE materialize task)"));
  }
  auto path = found[0]->labels().find("path");
  auto fp = found[0]->labels().find("fingerprint");
  if (path == found[0]->labels().end() || path->second.empty()) {
    return Unmet(field + ".model_from_stage",
                 absl::StrCat("stage \"", from,
                              "\"'s materialized_model row has no path"));
  }
  sub->mutable_model()->set_path(path->second);
  sub->mutable_model()->clear_fingerprint();
  sub->mutable_model()->clear_tokenizer();
  *fingerprint = fp == found[0]->labels().end() ? "" : fp->second;
  return absl::OkStatus();
}

// One interventions axis of one point holding a replace_layer per layer the
// retrain stage `from` trained (its DONE tasks' retrain/layer<L> artifacts),
// crossed with the stage's own axes.
absl::Status AddRetrainedLayers(const std::string& from,
                                const std::vector<v1::TaskRecord>& records,
                                const std::string& field, v1::SweepSpec* sub) {
  std::map<int, const v1::Artifact*> layers;
  for (const v1::TaskRecord* r : StageRecords(records, from)) {
    const int layer = r->spec().retrain().layer();
    const std::string name = absl::StrCat("retrain/layer", layer);
    for (const v1::Artifact& a : r->result().artifacts()) {
      if (a.name() != name) continue;
      if (layers.count(layer) != 0) {
        return Unmet(
            field + ".replace_layer_from_stage",
            absl::StrCat("retrain stage \"", from, "\" trained layer ", layer,
                         " in more than one task; one per layer"));
      }
      layers[layer] = &a;
    }
  }
  if (layers.empty()) {
    return Unmet(field + ".replace_layer_from_stage",
                 absl::StrCat("retrain stage \"", from,
                              "\" has no DONE task with a retrain/layer<L> "
                              "artifact"));
  }
  v1::InterventionSet* item =
      sub->mutable_grid()->add_axes()->mutable_interventions()->add_items();
  for (const auto& [layer, artifact] : layers) {
    v1::ReplaceLayer* rl = item->add_interventions()->mutable_replace_layer();
    rl->set_layer(layer);
    rl->mutable_weights()->set_path(artifact->path());
    rl->mutable_weights()->set_sha256(artifact->sha256());
  }
  return absl::OkStatus();
}

}  // namespace

bool IsDerivedStage(const v1::Stage& stage) {
  return stage.has_drop_plan() || stage.has_prune_plan() ||
         !stage.model_from_stage().empty() ||
         !stage.replace_layer_from_stage().empty() ||
         (stage.has_heal() && !stage.heal().capture_stage().empty()) ||
         (stage.has_materialize() && !stage.materialize().heal_stage().empty());
}

absl::Status ValidateDeferredStage(const v1::SweepSpec& spec, int index,
                                   const PlannerOptions& options) {
  const v1::Stage& stage = spec.stages(index);
  const std::string field = absl::StrCat("stages[", index, "]");
  v1::SweepSpec first = spec;
  first.clear_stages();
  v1::SweepSpec sub = StageSpec(first, stage);
  if (stage.has_drop_plan()) {
    if (stage.has_prune_plan()) {
      return Invalid(field, "give drop_plan or prune_plan, not both");
    }
    RETURN_IF_ERROR(ValidateDropPlan(sub, stage.drop_plan(), field));
  }
  if (stage.has_prune_plan()) {
    RETURN_IF_ERROR(ValidatePrunePlan(spec, index, sub, field));
  }
  if (sub.has_heal()) {
    const std::string& cs = sub.heal().capture_stage();
    if (cs.empty() && stage.has_prune_plan()) {
      return Invalid(field + ".heal.capture_stage",
                     "required: the stage whose Grams the heal fits");
    }
    if (!cs.empty() && EarlierStage(spec, cs, index) < 0) {
      return Invalid(field + ".heal.capture_stage",
                     absl::StrCat("no earlier stage is named \"", cs, "\""));
    }
    if (!stage.has_prune_plan() && sub.heal().heads_removed_size() == 0) {
      return Invalid(field + ".heal.heads_removed",
                     "required without a prune_plan");
    }
  }
  if (sub.has_materialize()) {
    const std::string& hs = sub.materialize().heal_stage();
    if (!hs.empty() && EarlierStage(spec, hs, index) < 0) {
      return Invalid(field + ".materialize.heal_stage",
                     absl::StrCat("no earlier stage is named \"", hs, "\""));
    }
  }
  const std::string& from = stage.model_from_stage();
  if (!from.empty()) {
    const int fi = EarlierStage(spec, from, index);
    if (fi < 0) {
      return Invalid(field + ".model_from_stage",
                     absl::StrCat("no earlier stage is named \"", from, "\""));
    }
    if (!spec.stages(fi).has_materialize()) {
      return Invalid(field + ".model_from_stage",
                     absl::StrCat("stage \"", from,
                                  "\" is not a materialize "
                                  "stage"));
    }
  }
  const std::string& rf = stage.replace_layer_from_stage();
  if (!rf.empty()) {
    const int ri = EarlierStage(spec, rf, index);
    if (ri < 0) {
      return Invalid(field + ".replace_layer_from_stage",
                     absl::StrCat("no earlier stage is named \"", rf, "\""));
    }
    if (!spec.stages(ri).has_retrain()) {
      return Invalid(field + ".replace_layer_from_stage",
                     absl::StrCat("stage \"", rf, "\" is not a retrain stage"));
    }
    if (!sub.has_eval() && !sub.has_probe() && !sub.has_generate() &&
        !sub.has_canary() && !sub.has_capture()) {
      return Invalid(field + ".replace_layer_from_stage",
                     "needs an eval, probe, generate, canary or capture job");
    }
  }
  // The job and datasets as they will be planned (model_from_stage stages are
  // checked on the base model: a materialized checkpoint has its shape).
  auto check =
      PlanOneStage(WithPlaceholders(sub, stage), options, stage.name());
  if (!check.ok()) return Annotate(check.status(), field);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<PlannedTask>> PlanDerivedStage(
    const v1::SweepSpec& resolved_spec, int stage_index,
    const std::vector<v1::TaskRecord>& records, int64_t first_index,
    const PlannerOptions& options) {
  if (stage_index < 0 || stage_index >= resolved_spec.stages_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("stage index ", stage_index, " out of range"));
  }
  const v1::Stage& stage = resolved_spec.stages(stage_index);
  const std::string field = absl::StrCat("stages[", stage_index, "]");
  std::vector<PlannedTask> tasks;
  if (stage.has_drop_plan()) {
    ASSIGN_OR_RETURN(tasks, PlanDropPlanStage(resolved_spec, stage, records,
                                              field, options));
  } else {
    v1::SweepSpec first = resolved_spec;
    first.clear_stages();
    v1::SweepSpec sub = WithOwnDatasets(StageSpec(first, stage), stage);
    std::string materialized_fingerprint;
    if (!stage.model_from_stage().empty()) {
      RETURN_IF_ERROR(UseMaterializedModel(resolved_spec, stage_index, records,
                                           field, &sub,
                                           &materialized_fingerprint));
    }
    PrunePlan plan;
    if (stage.has_prune_plan()) {
      ASSIGN_OR_RETURN(plan,
                       DerivePlan(resolved_spec, stage_index, records, field));
    }
    absl::flat_hash_set<std::string> keys;
    if (sub.has_heal()) {
      sub.clear_datasets();
      std::vector<v1::HealJob> heals;
      if (stage.has_prune_plan()) {
        for (const LayerPrune& lp : plan) {
          v1::HealJob h = sub.heal();
          h.set_layer(lp.layer);
          h.clear_heads_removed();
          for (int head : lp.heads) h.add_heads_removed(head);
          heals.push_back(std::move(h));
        }
      } else {
        heals.push_back(sub.heal());
      }
      for (v1::HealJob& h : heals) {
        if (!h.capture_stage().empty()) {
          RETURN_IF_ERROR(
              FillGrams(resolved_spec, stage_index, records, field, &h));
        }
        v1::SweepSpec one = sub;
        *one.mutable_heal() = std::move(h);
        RETURN_IF_ERROR(PlanInto(one, options, stage.name(), &tasks, &keys));
      }
    } else if (sub.has_materialize()) {
      sub.clear_datasets();
      v1::MaterializeJob* m = sub.mutable_materialize();
      std::map<int, std::vector<int>> pruned;
      for (const LayerPrune& lp : plan) pruned[lp.layer] = lp.heads;
      if (!m->heal_stage().empty()) {
        std::map<int, const v1::Artifact*> heals;
        for (const v1::TaskRecord* r : StageRecords(records, m->heal_stage())) {
          const int layer = r->spec().heal().layer();
          const std::string name = absl::StrCat("heal/o_proj/layer", layer);
          for (const v1::Artifact& a : r->result().artifacts()) {
            if (a.name() == name) heals[layer] = &a;
          }
          if (!stage.has_prune_plan() && m->pruned_size() == 0) {
            pruned[layer].assign(r->spec().heal().heads_removed().begin(),
                                 r->spec().heal().heads_removed().end());
          }
        }
        // Heals only for the layers the writer keeps ("all" and open
        // ranges need the model's layer count).
        std::vector<int> wanted;
        if (!m->layers().empty()) {
          ASSIGN_OR_RETURN(ModelConfig cfg,
                           ModelConfig::FromFile(JoinPath(
                               resolved_spec.model().path(), "config.json")));
          ASSIGN_OR_RETURN(
              wanted, ParseLayerSelector(m->layers(), cfg.num_hidden_layers,
                                         field + ".materialize.layers"));
        }
        m->clear_heals();
        for (const auto& [layer, heads] : pruned) {
          if (!wanted.empty() &&
              std::find(wanted.begin(), wanted.end(), layer) == wanted.end()) {
            continue;
          }
          auto it = heals.find(layer);
          if (it == heals.end()) {
            return Unmet(field,
                         absl::StrCat("heal stage \"", m->heal_stage(),
                                      "\" has no DONE heal of layer ", layer,
                                      " (artifact heal/o_proj/"
                                      "layer",
                                      layer, ")"));
          }
          v1::LayerArtifact* la = m->add_heals();
          la->set_layer(layer);
          la->mutable_artifact()->set_path(it->second->path());
          la->mutable_artifact()->set_sha256(it->second->sha256());
        }
      }
      if (!pruned.empty()) {
        m->clear_pruned();
        for (const auto& [layer, heads] : pruned) {
          v1::LayerHeads* lh = m->add_pruned();
          lh->set_layer(layer);
          for (int h : heads) lh->add_heads(h);
        }
      }
      RETURN_IF_ERROR(PlanInto(sub, options, stage.name(), &tasks, &keys));
    } else {
      if (stage.has_prune_plan()) {
        // The plan's head masks on every task (one interventions axis of one
        // point, crossed with the stage's own axes).
        v1::InterventionSet* masks = sub.mutable_grid()
                                         ->add_axes()
                                         ->mutable_interventions()
                                         ->add_items();
        for (const LayerPrune& lp : plan) {
          v1::HeadMask* hm = masks->add_interventions()->mutable_mask_heads();
          hm->set_layer(lp.layer);
          for (int h : lp.heads) hm->add_heads(h);
        }
      }
      if (!stage.replace_layer_from_stage().empty()) {
        RETURN_IF_ERROR(AddRetrainedLayers(stage.replace_layer_from_stage(),
                                           records, field, &sub));
      }
      RETURN_IF_ERROR(PlanInto(sub, options, stage.name(), &tasks, &keys));
    }
    if (!materialized_fingerprint.empty() && !tasks.empty() &&
        tasks[0].spec.model().fingerprint() != materialized_fingerprint) {
      return Unmet(
          field + ".model_from_stage",
          absl::StrCat("the checkpoint at ", sub.model().path(),
                       " has fingerprint ", tasks[0].spec.model().fingerprint(),
                       ", not the ", materialized_fingerprint,
                       " its materialize task reported"));
    }
  }
  for (size_t i = 0; i < tasks.size(); ++i) {
    tasks[i].spec.set_index(first_index + static_cast<int64_t>(i));
  }
  return tasks;
}

}  // namespace sweepd
