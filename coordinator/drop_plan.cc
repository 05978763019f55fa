// Drop plans from a layer study. See drop_plan.h; formulas: docs/REPORTS.md.
#include "coordinator/drop_plan.h"

#include <algorithm>
#include <tuple>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace sweepd {

absl::Status ValidateDropSizes(const std::vector<int>& drop_k) {
  for (int k : drop_k) {
    if (k <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("drop_k entries must be > 0, got ", k));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<DropPlans> DeriveDropPlans(const LayerStudy& study,
                                          std::vector<int> drop_k) {
  if (absl::Status s = ValidateDropSizes(drop_k); !s.ok()) return s;
  std::sort(drop_k.begin(), drop_k.end());
  drop_k.erase(std::unique(drop_k.begin(), drop_k.end()), drop_k.end());

  std::vector<const LayerProfile*> candidates;
  for (const LayerProfile& p : study.layers) {
    if (p.score && !p.critical) candidates.push_back(&p);
  }
  std::sort(candidates.begin(), candidates.end(),
            [](const LayerProfile* a, const LayerProfile* b) {
              return std::tie(*a->score, a->layer) <
                     std::tie(*b->score, b->layer);
            });

  DropPlans out;
  for (int k : drop_k) {
    DropPlan plan;
    plan.k = k;
    plan.feasible = k <= static_cast<int>(candidates.size());
    if (plan.feasible) {
      for (int i = 0; i < k; ++i) plan.layers.push_back(candidates[i]->layer);
      std::sort(plan.layers.begin(), plan.layers.end());
      if (auto measured = PoolAblation(
              study, absl::StrCat("skip ", absl::StrJoin(plan.layers, ",")))) {
        plan.measured_ppl = measured->ppl;
        plan.measured_delta_pct = measured->delta_pct;
      }
    } else {
      out.notes.push_back(absl::StrCat("No drop plan for k = ", k, ": only ",
                                       candidates.size(),
                                       " scored layers are not critical."));
    }
    out.plans.push_back(std::move(plan));
  }
  return out;
}

void MarkVerdicts(const std::vector<DropPlan>& plans,
                  std::vector<LayerProfile>* layers) {
  for (const DropPlan& plan : plans) {
    for (int layer : plan.layers) {
      LayerProfile& p = (*layers)[layer];
      if (p.first_drop_k == 0) p.first_drop_k = plan.k;
    }
  }
  for (LayerProfile& p : *layers) {
    if (p.critical) {
      p.verdict = Verdict::kNeverTouch;
    } else if (!p.score) {
      p.verdict = Verdict::kUnscored;
    } else if (p.first_drop_k > 0) {
      p.verdict = Verdict::kDrop;
    } else {
      p.verdict = Verdict::kKeep;
    }
  }
}

}  // namespace sweepd
