// Calibration report model (client/calibration_report.h). Formulas:
// docs/REPORTS.md, "Calibration".
#include "client/calibration_report.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "coordinator/prune_plan.h"
#include "coordinator/task_summary.h"

namespace sweepd {
namespace {

namespace v1 = ::sweepd::v1;

std::string Label(const v1::Metric& m, const std::string& key) {
  auto it = m.labels().find(key);
  return it == m.labels().end() ? "" : it->second;
}

std::string LastComponent(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const size_t slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

bool IsCalibrationKind(v1::JobKind kind) {
  return kind == v1::JOB_KIND_HEAD_IMPORTANCE || kind == v1::JOB_KIND_CAPTURE ||
         kind == v1::JOB_KIND_HEAL || kind == v1::JOB_KIND_MATERIALIZE;
}

}  // namespace

bool IsCalibrationSweep(const std::vector<v1::TaskRecord>& tasks) {
  for (const v1::TaskRecord& t : tasks) {
    if (IsCalibrationKind(t.spec().kind())) return true;
  }
  return false;
}

CalibrationReport BuildCalibrationReport(
    const std::vector<v1::TaskRecord>& tasks) {
  CalibrationReport report;
  if (!IsCalibrationSweep(tasks)) return report;

  // Importance heatmap: the planner's pooling over every stage.
  const HeadImportance importance =
      PoolHeadImportance(tasks, "", /*any_stage=*/true);
  report.importance_tasks = importance.tasks;
  std::set<std::pair<int, int>> pruned;
  std::set<std::pair<int, int>> healed_pruned;
  for (const v1::TaskRecord& t : tasks) {
    if (t.state() != v1::TASK_STATE_DONE) continue;
    if (t.spec().kind() == v1::JOB_KIND_MATERIALIZE) {
      for (const v1::LayerHeads& lh : t.spec().materialize().pruned()) {
        for (int h : lh.heads()) pruned.insert({lh.layer(), h});
      }
    }
    if (t.spec().kind() == v1::JOB_KIND_HEAL) {
      for (int h : t.spec().heal().heads_removed()) {
        healed_pruned.insert({t.spec().heal().layer(), h});
      }
    }
  }
  if (pruned.empty()) pruned = healed_pruned;
  for (const auto& [layer, heads] : importance.delta) {
    for (const auto& [head, delta] : heads) {
      report.importance.push_back(HeadImportanceCell{
          layer, head, delta, pruned.count({layer, head}) > 0});
      report.num_heads = std::max(report.num_heads, head + 1);
    }
  }

  // Heals.
  std::map<int, HealRow> heals;
  for (const v1::TaskRecord& t : tasks) {
    if (t.state() != v1::TASK_STATE_DONE ||
        t.spec().kind() != v1::JOB_KIND_HEAL) {
      continue;
    }
    HealRow& row = heals[t.spec().heal().layer()];
    row.layer = t.spec().heal().layer();
    row.heads_removed = absl::StrJoin(t.spec().heal().heads_removed(), ",");
    for (const v1::Metric& m : t.result().metrics()) {
      if (m.name() == "heal_residual_rel") {
        if (Label(m, "split") == "heldout") {
          row.residual_heldout = m.value();
        } else {
          row.residual_calibration = m.value();
        }
      } else if (m.name() == "heal_lambda") {
        row.lambda = m.value();
      } else if (m.name() == "heal_kept_heads") {
        row.kept_heads = static_cast<int64_t>(m.value());
      } else if (m.name() == "heal_solver") {
        row.solver = Label(m, "solver");
      }
    }
  }
  for (auto& [layer, row] : heals) report.heals.push_back(std::move(row));

  // Perplexity per (stage, model, interventions, dataset), pooled over shards.
  std::set<std::string> materialized;  // fingerprints
  for (const v1::TaskRecord& t : tasks) {
    if (t.state() != v1::TASK_STATE_DONE) continue;
    for (const v1::Metric& m : t.result().metrics()) {
      if (m.name() == "materialized_model") {
        materialized.insert(Label(m, "fingerprint"));
      }
    }
  }
  struct Sum {
    double nll = 0.0;
    int64_t tokens = 0;
    std::string model;
    bool materialized = false;
    bool base = false;
  };
  using Key = std::tuple<std::string, std::string, std::string, std::string>;
  std::map<Key, Sum> sums;  // (dataset, stage, fingerprint, interventions)
  for (const v1::TaskRecord& t : tasks) {
    if (t.state() != v1::TASK_STATE_DONE ||
        t.spec().kind() != v1::JOB_KIND_EVAL) {
      continue;
    }
    const std::string interventions =
        t.spec().interventions().interventions_size() == 0
            ? ""
            : InterventionSummary(t.spec().interventions());
    Sum& s = sums[Key{t.spec().data().dataset().name(), t.spec().stage(),
                      t.spec().model().fingerprint(), interventions}];
    s.model = LastComponent(t.spec().model().path());
    s.materialized = materialized.count(t.spec().model().fingerprint()) > 0;
    s.base = !s.materialized && interventions.empty();
    for (const v1::Metric& m : t.result().metrics()) {
      if (Label(m, "category") != "all") continue;
      if (m.name() == "nll_sum") s.nll += m.value();
      if (m.name() == "tokens") s.tokens += static_cast<int64_t>(m.value());
    }
  }
  std::map<std::string, double> base_ppl;  // dataset -> ppl
  for (const auto& [key, s] : sums) {
    if (s.base && s.tokens > 0 && base_ppl.count(std::get<0>(key)) == 0) {
      base_ppl[std::get<0>(key)] = std::exp(s.nll / s.tokens);
    }
  }
  for (const auto& [key, s] : sums) {
    if (s.tokens == 0) continue;
    const auto& [dataset, stage, fingerprint, interventions] = key;
    CheckpointPerplexity row;
    row.dataset = dataset;
    row.stage = stage;
    row.model = s.model;
    row.materialized = s.materialized;
    row.tokens = s.tokens;
    row.ppl = std::exp(s.nll / s.tokens);
    row.condition = s.materialized ? "materialized"
                    : s.base       ? "base"
                                   : absl::StrCat("base · ", interventions);
    auto b = base_ppl.find(dataset);
    if (b != base_ppl.end()) row.delta_pct = 100.0 * (row.ppl / b->second - 1);
    report.perplexity.push_back(std::move(row));
  }
  if (!report.perplexity.empty() && base_ppl.empty()) {
    report.notes.push_back(
        "no eval of the base model without interventions finished: the "
        "perplexity deltas are not shown");
  }
  return report;
}

}  // namespace sweepd
