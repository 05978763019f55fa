// sweepctl output formatting: tidy result rows (one per metric) as table, CSV
// or JSON, the sweep/worker tables, and the progress meter behind `sweepctl
// watch` (rate over a sliding window, ETA). Pure functions and one small value
// class; no RPC, so it is unit-testable.
//
// Thread-safety: free functions are thread-safe; a ProgressMeter is used by one
// thread.
#ifndef SWEEPD_CLIENT_CTL_FORMAT_H_
#define SWEEPD_CLIENT_CTL_FORMAT_H_

#include <cstdint>
#include <deque>
#include <map>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "coordinator/task_summary.h"
#include "sweepd/v1/coordinator.pb.h"
#include "sweepd/v1/task.pb.h"

namespace sweepd {

// "done", "failed", ... and back. ParseTaskState: INVALID_ARGUMENT listing the
// valid names.
std::string TaskStateName(sweepd::v1::TaskState state);
absl::StatusOr<sweepd::v1::TaskState> ParseTaskState(const std::string& name);
std::string SweepStateName(sweepd::v1::SweepState state);
// "eval", "generate", ...: the JobKind without its prefix, lower case. (Named
// apart from worker/agent's JobKindName: tests link both libraries.)
std::string JobKindLabel(sweepd::v1::JobKind kind);

// InterventionSummary and ParamsSummary: coordinator/task_summary.h.

// One tidy row: a metric of a task (or, for a task without metrics, one row
// with an empty metric and the task's error).
struct ResultRow {
  std::string sweep_id;
  std::string task_key;
  int64_t index = 0;
  std::string state;
  std::string interventions;
  std::string params;
  uint64_t seed = 0;
  std::string dataset;  // "name#shard" or ""
  std::string metric;
  std::map<std::string, std::string> labels;
  bool has_value = false;
  double value = 0.0;
  std::string error;
};

std::vector<ResultRow> TidyRows(const sweepd::v1::TaskRecord& record);

enum class ResultFormat { kTable, kCsv, kJson };
absl::StatusOr<ResultFormat> ParseResultFormat(const std::string& name);

// Writes rows; label keys become columns (sorted) in table and CSV, an object
// in JSON.
void WriteResults(const std::vector<ResultRow>& rows, ResultFormat format,
                  std::ostream& out);

// Fixed-width table with a header row; columns padded to the widest cell.
std::string FormatTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows);
// RFC 4180 field quoting.
std::string CsvField(const std::string& field);
// A header line and one line per row, every field quoted by CsvField.
void WriteCsv(const std::vector<std::string>& header,
              const std::vector<std::vector<std::string>>& rows,
              std::ostream& out);

std::string FormatSweepTable(
    const std::vector<sweepd::v1::SweepStatus>& sweeps);
std::string FormatSweepDetail(const sweepd::v1::SweepStatus& sweep);
std::string FormatWorkersTable(
    const std::vector<sweepd::v1::WorkerInfo>& workers, int64_t now_ms);
// "1h02m", "3m05s", "12s"; "-" for negative.
std::string FormatDuration(double seconds);
// UTC "2026-01-31 12:00:00"; "-" for 0.
std::string FormatUnixMs(int64_t unix_ms);

// Progress of one sweep for `watch`. Observe() each status; Line() renders
//   [#########...........]  450/1000 done  3 failed  8 running  52.1 tasks/s
//   ETA 10s  RUNNING
// The rate is finished tasks (done + failed + cancelled) per second over the
// last `window_ms`.
class ProgressMeter {
 public:
  ProgressMeter(Clock* clock, int64_t window_ms = 30'000)
      : clock_(clock), window_ms_(window_ms) {}
  void Observe(const sweepd::v1::SweepStatus& status);
  // Tasks per second; 0 until two observations span some time.
  double Rate() const;
  // Seconds left at the current rate; negative when unknown.
  double EtaSeconds() const;
  std::string Line(int bar_width = 24) const;

 private:
  Clock* clock_;  // borrowed
  int64_t window_ms_;
  sweepd::v1::SweepStatus last_;
  std::deque<std::pair<int64_t, int64_t>> samples_;  // (ms, finished tasks)
};

}  // namespace sweepd

#endif  // SWEEPD_CLIENT_CTL_FORMAT_H_
