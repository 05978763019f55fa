// Kept samples of generate and canary sweeps as tidy rows (`sweepctl results
// --samples`): one SampleRecord per (task, prompt, sample) of every DONE
// task's TaskResult.samples, labelled with the task's grid point (stage,
// interventions, params: the identity of one best-of-k curve,
// client/best_of_k_table.h) and its dataset shard; and their table, CSV and
// JSON output, with the columns of `sweepctl results`.
//
// Pure functions over TaskRecords the caller owns; thread-safe; no I/O except
// the given stream.
#ifndef SWEEPD_CLIENT_SAMPLE_ROWS_H_
#define SWEEPD_CLIENT_SAMPLE_ROWS_H_

#include <cstdint>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "client/ctl_format.h"
#include "sweepd/v1/task.pb.h"

namespace sweepd {

// One point of a sweep's grid, as far as samples go: tasks of one point that
// differ only in dataset shard (or seed) pool their samples.
struct GridPoint {
  std::string stage;          // "" for the sweep's first stage
  std::string interventions;  // InterventionSummary: "baseline", "zero:2", ...
  std::string params;         // ParamsSummary: "bos=off,temperature=1", ""

  // "stage · interventions · params" without the empty parts.
  std::string Label() const;
  bool operator<(const GridPoint& o) const {
    return std::tie(stage, interventions, params) <
           std::tie(o.stage, o.interventions, o.params);
  }
  bool operator==(const GridPoint& o) const {
    return stage == o.stage && interventions == o.interventions &&
           params == o.params;
  }
};

// The grid point of a task.
GridPoint GridPointOf(const sweepd::v1::TaskSpec& spec);

struct SampleRecord {
  std::string task_key;
  int64_t task_index = 0;
  std::string kind;  // "generate" or "canary"
  GridPoint point;
  std::string dataset;  // "name#shard", "" for inline prompts only
  uint64_t seed = 0;
  int prompt_index = 0;
  int sample_index = 0;
  std::string prompt_id;
  std::string category;
  std::string text;
  int num_tokens = 0;
  std::string finish_reason;
  double logprob_sum = 0;
  bool has_score = false;  // false without a verifier or on a verifier error
  double score = 0;
  bool pass = false;
  std::string verifier_error;
};

// Every sample of every DONE task, in record order, then as the task kept
// them. Tasks in other states have no samples and give no rows.
std::vector<SampleRecord> CollectSamples(
    const std::vector<sweepd::v1::TaskRecord>& records);

// Columns: task_key, index, stage, interventions, params, seed, dataset,
// prompt_id, category, sample_index, num_tokens, finish_reason, logprob_sum,
// score, pass, verifier_error, text. score and pass are empty (JSON null)
// without a score. The table shows the first 12 characters of the task key
// and the first 60 of the text with line breaks as "\n"; CSV and JSON hold
// everything.
void WriteSamples(const std::vector<SampleRecord>& samples, ResultFormat format,
                  std::ostream& out);

}  // namespace sweepd

#endif  // SWEEPD_CLIENT_SAMPLE_ROWS_H_
