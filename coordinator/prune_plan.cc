#include "coordinator/prune_plan.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace sweepd {
namespace {

namespace v1 = ::sweepd::v1;

bool LabelInt(const v1::Metric& m, const std::string& key, int* out) {
  auto it = m.labels().find(key);
  return it != m.labels().end() && absl::SimpleAtoi(it->second, out);
}

}  // namespace

HeadImportance PoolHeadImportance(const std::vector<v1::TaskRecord>& records,
                                  const std::string& stage, bool any_stage) {
  HeadImportance out;
  std::map<int, std::map<int, double>> weighted;
  std::map<std::string, std::pair<double, double>> baseline;  // sum, weight
  for (const v1::TaskRecord& r : records) {
    if (r.state() != v1::TASK_STATE_DONE ||
        r.spec().kind() != v1::JOB_KIND_HEAD_IMPORTANCE) {
      continue;
    }
    if (!any_stage && r.spec().stage() != stage) continue;
    ++out.tasks;
    // Tokens per dataset of this task (one dataset per task in practice).
    std::map<std::string, double> tokens;
    for (const v1::Metric& m : r.result().metrics()) {
      if (m.name() != "head_importance_tokens") continue;
      auto it = m.labels().find("dataset");
      tokens[it == m.labels().end() ? "" : it->second] = m.value();
    }
    auto weight_of = [&](const v1::Metric& m) {
      auto it = m.labels().find("dataset");
      auto t = tokens.find(it == m.labels().end() ? "" : it->second);
      return t == tokens.end() ? 1.0 : t->second;
    };
    for (const v1::Metric& m : r.result().metrics()) {
      if (m.name() == "head_importance_baseline_nll") {
        auto it = m.labels().find("dataset");
        auto& b = baseline[it == m.labels().end() ? "" : it->second];
        b.first += m.value() * weight_of(m);
        b.second += weight_of(m);
        continue;
      }
      if (m.name() != "head_nll_delta" || !std::isfinite(m.value())) continue;
      int layer = 0, head = 0;
      if (!LabelInt(m, "layer", &layer) || !LabelInt(m, "head", &head)) {
        continue;
      }
      const double w = weight_of(m);
      weighted[layer][head] += m.value() * w;
      out.weight[layer][head] += w;
    }
  }
  for (const auto& [layer, heads] : weighted) {
    for (const auto& [head, sum] : heads) {
      const double w = out.weight[layer][head];
      if (w > 0) out.delta[layer][head] = sum / w;
    }
  }
  for (const auto& [ds, b] : baseline) {
    if (b.second > 0) out.baseline_nll[ds] = b.first / b.second;
  }
  return out;
}

absl::StatusOr<PrunePlan> DerivePrunePlan(const HeadImportance& importance,
                                          const PrunePlanOptions& options) {
  const bool by_fraction = options.fraction > 0;
  if (by_fraction == (options.count > 0)) {
    return absl::InvalidArgumentError(
        "prune_plan: set exactly one of fraction (0 < f < 1) and count (>= 1)");
  }
  if (by_fraction && !(options.fraction < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prune_plan.fraction: ", options.fraction, " must be in (0, 1)"));
  }
  if (options.num_heads < 1) {
    return absl::InvalidArgumentError(
        "prune_plan: the model's head count is unknown");
  }
  if (importance.delta.empty()) {
    return absl::FailedPreconditionError(
        "prune_plan: no head_nll_delta rows (no head_importance task of the "
        "importance stage finished)");
  }
  std::vector<int> layers = options.layers;
  if (layers.empty()) {
    for (const auto& [layer, heads] : importance.delta) layers.push_back(layer);
  }
  std::sort(layers.begin(), layers.end());
  layers.erase(std::unique(layers.begin(), layers.end()), layers.end());
  const int H = options.num_heads;
  PrunePlan plan;
  for (int layer : layers) {
    auto it = importance.delta.find(layer);
    if (it == importance.delta.end()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "prune_plan: layer ", layer,
          " has no head_nll_delta rows (score it in the importance stage or "
          "leave it out of prune_plan.layers)"));
    }
    const std::map<int, double>& deltas = it->second;
    std::vector<int> missing;
    for (int h = 0; h < H; ++h) {
      if (deltas.count(h) == 0) missing.push_back(h);
    }
    if (!missing.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("prune_plan: layer ", layer, " has no delta for heads ",
                       absl::StrJoin(missing, ","), " of ", H));
    }
    // Units: heads, or KV groups of `group` consecutive query heads.
    int group = 1;
    if (options.kv_groups) {
      const int kv = layer < static_cast<int>(options.kv_heads.size())
                         ? options.kv_heads[layer]
                         : 0;
      if (kv < 1 || H % kv != 0) {
        return absl::FailedPreconditionError(absl::StrCat(
            "prune_plan.kv_groups: layer ", layer, " has ", kv,
            " KV heads, which do not divide its ", H, " query heads"));
      }
      group = H / kv;
    }
    const int units = H / group;
    const int drop =
        by_fraction
            ? static_cast<int>(std::floor(options.fraction * units + 1e-9))
            : options.count;
    if (drop >= units) {
      return absl::FailedPreconditionError(absl::StrCat(
          "prune_plan: layer ", layer, " would lose all of its ", units,
          options.kv_groups ? " KV groups" : " heads", " (drop ", drop, ")"));
    }
    if (drop == 0) continue;
    std::vector<std::pair<double, int>> scored;  // (score, unit)
    for (int u = 0; u < units; ++u) {
      double score = 0.0;
      for (int h = u * group; h < (u + 1) * group; ++h) score += deltas.at(h);
      scored.emplace_back(score, u);
    }
    std::sort(scored.begin(), scored.end());  // ties: lower unit first
    LayerPrune lp;
    lp.layer = layer;
    for (int k = 0; k < drop; ++k) {
      const int u = scored[k].second;
      for (int h = u * group; h < (u + 1) * group; ++h) lp.heads.push_back(h);
    }
    std::sort(lp.heads.begin(), lp.heads.end());
    plan.push_back(std::move(lp));
  }
  return plan;
}

}  // namespace sweepd
