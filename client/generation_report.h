// The generation part of a sweep report (docs/REPORTS.md, "Generation"):
// from the kept samples of a sweep's generate and canary tasks,
//  - best-of-k curves per sampled grid point (client/best_of_k_table.h), for
//    the chart of pass@k / expected best score / selected-sample accuracy vs
//    k with bootstrap bands;
//  - seed 003's selection tables per category: greedy, first sample, best of
//    2, 3, 5, 10 (and N), mean over samples; one column pair (mean score,
//    accuracy) per sampled grid point;
//  - the canary table: pass/fail of each case per grid point (BOS on/off);
//  - seed 002's eye-test tables: one row per prompt, one column per
//    intervention, the text of each prompt's first sample, grouped by layer.
//
// Plain value types and a stateless builder: thread-safe, no I/O.
#ifndef SWEEPD_CLIENT_GENERATION_REPORT_H_
#define SWEEPD_CLIENT_GENERATION_REPORT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/best_of_k_table.h"
#include "common/best_of_k.h"
#include "sweepd/v1/task.pb.h"

namespace sweepd {

// One row of a selection table: for each sampled point (column), the mean
// over the category's prompts of the selected sample's score and pass.
struct SelectionRow {
  std::string selection;  // "greedy", "first sample", "best of 3", ...
  std::vector<std::optional<double>> score;
  std::vector<std::optional<double>> accuracy;
};

struct CategoryTable {
  std::string category;          // "all" first, then the categories sorted
  std::vector<int64_t> prompts;  // per column: prompts with scored samples
  std::vector<SelectionRow> rows;
};

struct CanaryCell {
  bool pass = false;
  double score = 0;  // fraction of the expected substrings found
  std::string text;  // the greedy continuation
};

struct CanaryRow {
  std::string case_id;
  std::string prompt;
  std::vector<std::string> expect;
  std::vector<std::optional<CanaryCell>> cells;  // one per column
};

struct CanaryTable {
  std::vector<std::string> columns;  // grid point labels, with bos=on/off
  std::vector<CanaryRow> rows;       // in case order
  std::vector<int64_t> passed;       // per column
};

struct EyeTestTable {
  std::string title;                 // "Layer 0", "Layers 3-4", "Other"
  std::vector<std::string> columns;  // "no modification", "zero", "reinit"...
  std::vector<std::string> prompts;  // row headers (the prompt text)
  // texts[row][column]: the first sample's text; nullopt when not run.
  std::vector<std::vector<std::optional<std::string>>> texts;
};

struct GenerationReport {
  int64_t generate_tasks = 0;  // DONE generate tasks
  int64_t canary_tasks = 0;    // DONE canary tasks
  int64_t samples = 0;
  BootstrapOptions bootstrap;
  // Sampled generate points (temperature > 0) with at least one scored
  // sample, sorted by point.
  std::vector<PointBestOfK> best_of_k;
  std::vector<CategoryTable> categories;  // columns = best_of_k
  std::optional<CanaryTable> canary;
  std::vector<EyeTestTable> eye_tests;
  std::vector<std::string> notes;

  bool empty() const { return generate_tasks == 0 && canary_tasks == 0; }
};

// Builds the generation report from every TaskRecord of one sweep (any
// order; only DONE generate and canary tasks contribute). INVALID_ARGUMENT
// for bad bootstrap options or a non-finite score.
absl::StatusOr<GenerationReport> BuildGenerationReport(
    const std::vector<sweepd::v1::TaskRecord>& tasks,
    const BootstrapOptions& bootstrap);

}  // namespace sweepd

#endif  // SWEEPD_CLIENT_GENERATION_REPORT_H_
