// The calibration part of a sweep report (docs/REPORTS.md, "Calibration";
// seed 001's pipeline, docs/CALIBRATION.md): from the records of a sweep's
// head_importance, heal, materialize and eval tasks,
//  - the head importance heatmap: the leave-one-out NLL delta per (layer,
//    head), pooled over shards and datasets weighted by tokens (the same
//    pooling as the planner's prune plan, coordinator/prune_plan.h);
//  - the heal table: per healed layer, the relative residual on the
//    calibration and held-out data, λ, the kept heads and the solver;
//  - the perplexity of every evaluated checkpoint (the base, the base under the
//    plan's head masks, each materialized checkpoint) and its delta against
//    the base without interventions, per dataset.
// The canary table is the generation report's (client/generation_report.h).
//
// Plain value types and a stateless builder: thread-safe, no I/O.
#ifndef SWEEPD_CLIENT_CALIBRATION_REPORT_H_
#define SWEEPD_CLIENT_CALIBRATION_REPORT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sweepd/v1/task.pb.h"

namespace sweepd {

struct HeadImportanceCell {
  int layer = 0;
  int head = 0;
  double delta = 0.0;   // nats per token
  bool pruned = false;  // in a materialize task's (else a heal task's) plan
};

struct HealRow {
  int layer = 0;
  std::optional<double> residual_calibration;
  std::optional<double> residual_heldout;
  std::optional<double> lambda;
  std::optional<int64_t> kept_heads;
  std::string heads_removed;  // "1,5"
  std::string solver;         // "cholesky" / "eigh" / ""
};

struct CheckpointPerplexity {
  std::string condition;  // "base", "base · mask_heads ...", "pruned (stage)"
  std::string stage;
  std::string model;  // the model directory's last path component
  std::string dataset;
  double ppl = 0.0;
  int64_t tokens = 0;
  std::optional<double> delta_pct;  // vs the base on the same dataset
  bool materialized = false;
};

struct CalibrationReport {
  int64_t importance_tasks = 0;
  int num_heads = 0;  // 1 + the largest head index seen
  std::vector<HeadImportanceCell> importance;  // by layer, head
  std::vector<HealRow> heals;                  // by layer
  std::vector<CheckpointPerplexity> perplexity;
  std::vector<std::string> notes;

  bool empty() const {
    return importance.empty() && heals.empty() && perplexity.empty();
  }
};

// Whether the sweep is a calibration sweep (it has head_importance, capture,
// heal or materialize tasks): its eval tasks then belong to this report, not
// to the layer study.
bool IsCalibrationSweep(const std::vector<sweepd::v1::TaskRecord>& tasks);

// Builds the report from every TaskRecord of one sweep (any order; only DONE
// tasks contribute; eval tasks only in a calibration sweep).
CalibrationReport BuildCalibrationReport(
    const std::vector<sweepd::v1::TaskRecord>& tasks);

}  // namespace sweepd

#endif  // SWEEPD_CLIENT_CALIBRATION_REPORT_H_
