#include "client/ctl_format.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace sweepd {
namespace {

namespace v1 = ::sweepd::v1;

// Lower-cases an enum value name and strips its prefix: TASK_STATE_DONE ->
// "done".
std::string ShortEnumName(const std::string& full, absl::string_view prefix) {
  std::string s = full;
  if (absl::StartsWith(s, prefix)) s = s.substr(prefix.size());
  return absl::AsciiStrToLower(s);
}

std::string Number(double v) { return absl::StrFormat("%.10g", v); }

}  // namespace

std::string TaskStateName(v1::TaskState state) {
  return ShortEnumName(v1::TaskState_Name(state), "TASK_STATE_");
}

absl::StatusOr<v1::TaskState> ParseTaskState(const std::string& name) {
  std::vector<std::string> valid;
  for (int i = v1::TaskState_MIN; i <= v1::TaskState_MAX; ++i) {
    if (!v1::TaskState_IsValid(i) || i == v1::TASK_STATE_UNSPECIFIED) continue;
    const auto state = static_cast<v1::TaskState>(i);
    if (absl::AsciiStrToLower(name) == TaskStateName(state)) return state;
    valid.push_back(TaskStateName(state));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown task state '", name, "' (one of ",
                   absl::StrJoin(valid, ", "), ")"));
}

std::string SweepStateName(v1::SweepState state) {
  return ShortEnumName(v1::SweepState_Name(state), "SWEEP_STATE_");
}

std::string JobKindLabel(v1::JobKind kind) {
  return ShortEnumName(v1::JobKind_Name(kind), "JOB_KIND_");
}

std::vector<ResultRow> TidyRows(const v1::TaskRecord& record) {
  ResultRow base;
  base.sweep_id = record.sweep_id();
  base.task_key = record.task_key();
  base.index = record.spec().index();
  base.state = TaskStateName(record.state());
  base.interventions = InterventionSummary(record.spec().interventions());
  base.params = ParamsSummary(record.spec());
  base.seed = record.spec().seed();
  if (record.spec().has_data()) {
    base.dataset = absl::StrCat(record.spec().data().dataset().name(), "#",
                                record.spec().data().shard_index());
  }
  base.error = record.error();
  std::vector<ResultRow> rows;
  for (const v1::Metric& m : record.result().metrics()) {
    ResultRow row = base;
    row.metric = m.name();
    row.labels.insert(m.labels().begin(), m.labels().end());
    row.has_value = true;
    row.value = m.value();
    rows.push_back(std::move(row));
  }
  if (rows.empty()) rows.push_back(std::move(base));
  return rows;
}

absl::StatusOr<ResultFormat> ParseResultFormat(const std::string& name) {
  if (name == "table") return ResultFormat::kTable;
  if (name == "csv") return ResultFormat::kCsv;
  if (name == "json") return ResultFormat::kJson;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown format '", name, "' (table, csv or json)"));
}

std::string CsvField(const std::string& field) {
  if (field.find_first_of(",\"\r\n") == std::string::npos) return field;
  std::string out = "\"";
  for (char c : field) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string FormatTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size(), 0);
  for (size_t c = 0; c < header.size(); ++c) width[c] = header[c].size();
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size() && c < width.size(); ++c) {
      width[c] = std::max(width[c], row[c].size());
    }
  }
  std::string out;
  auto emit = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (size_t c = 0; c < width.size(); ++c) {
      const std::string& cell = c < cells.size() ? cells[c] : std::string();
      line += cell;
      if (c + 1 < width.size())
        line += std::string(width[c] - cell.size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  };
  emit(header);
  for (const auto& row : rows) emit(row);
  return out;
}

void WriteResults(const std::vector<ResultRow>& rows, ResultFormat format,
                  std::ostream& out) {
  if (format == ResultFormat::kJson) {
    nlohmann::json array = nlohmann::json::array();
    for (const ResultRow& r : rows) {
      nlohmann::json o;
      o["sweep_id"] = r.sweep_id;
      o["task_key"] = r.task_key;
      o["index"] = r.index;
      o["state"] = r.state;
      o["interventions"] = r.interventions;
      o["params"] = r.params;
      o["seed"] = r.seed;
      o["dataset"] = r.dataset;
      o["metric"] = r.metric;
      o["labels"] = r.labels;
      if (r.has_value && std::isfinite(r.value)) {
        o["value"] = r.value;
      } else if (r.has_value) {
        o["value"] = std::isnan(r.value)
                         ? "NaN"
                         : (r.value > 0 ? "Infinity" : "-Infinity");
      } else {
        o["value"] = nullptr;
      }
      o["error"] = r.error;
      array.push_back(std::move(o));
    }
    out << array.dump(2) << "\n";
    return;
  }
  std::set<std::string> label_keys;
  for (const ResultRow& r : rows) {
    for (const auto& [k, v] : r.labels) label_keys.insert(k);
  }
  const bool table = format == ResultFormat::kTable;
  std::vector<std::string> header = {"sweep_id", "task_key",      "index",
                                     "state",    "interventions", "params",
                                     "seed",     "dataset",       "metric"};
  header.insert(header.end(), label_keys.begin(), label_keys.end());
  header.push_back("value");
  header.push_back("error");
  std::vector<std::vector<std::string>> cells;
  cells.reserve(rows.size());
  for (const ResultRow& r : rows) {
    std::vector<std::string> c = {r.sweep_id,
                                  table ? r.task_key.substr(0, 12) : r.task_key,
                                  absl::StrCat(r.index),
                                  r.state,
                                  r.interventions,
                                  r.params,
                                  absl::StrCat(r.seed),
                                  r.dataset,
                                  r.metric};
    for (const std::string& k : label_keys) {
      auto it = r.labels.find(k);
      c.push_back(it == r.labels.end() ? "" : it->second);
    }
    c.push_back(r.has_value ? (table ? absl::StrFormat("%.6g", r.value)
                                     : Number(r.value))
                            : "");
    c.push_back(r.error);
    cells.push_back(std::move(c));
  }
  if (table) {
    if (rows.empty()) {
      out << "(no results)\n";
      return;
    }
    out << FormatTable(header, cells);
    return;
  }
  WriteCsv(header, cells, out);
}

void WriteCsv(const std::vector<std::string>& header,
              const std::vector<std::vector<std::string>>& rows,
              std::ostream& out) {
  std::vector<std::string> quoted;
  for (const std::string& h : header) quoted.push_back(CsvField(h));
  out << absl::StrJoin(quoted, ",") << "\n";
  for (const auto& row : rows) {
    quoted.clear();
    for (const std::string& f : row) quoted.push_back(CsvField(f));
    out << absl::StrJoin(quoted, ",") << "\n";
  }
}

std::string FormatDuration(double seconds) {
  if (!(seconds >= 0) || !std::isfinite(seconds)) return "-";
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

std::string FormatUnixMs(int64_t unix_ms) {
  if (unix_ms == 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::FromUnixMillis(unix_ms),
                          absl::UTCTimeZone());
}

std::string FormatSweepTable(const std::vector<v1::SweepStatus>& sweeps) {
  std::vector<std::vector<std::string>> rows;
  for (const v1::SweepStatus& s : sweeps) {
    const auto& c = s.counts();
    rows.push_back({s.sweep_id(), s.name(), SweepStateName(s.state()),
                    absl::StrCat(c.done(), "/", c.total()),
                    absl::StrCat(c.failed()), absl::StrCat(c.leased()),
                    absl::StrCat(c.pending()),
                    FormatUnixMs(s.created_unix_ms())});
  }
  if (rows.empty()) return "(no sweeps)\n";
  std::string out =
      FormatTable({"SWEEP", "NAME", "STATE", "DONE/TOTAL", "FAILED", "RUNNING",
                   "PENDING", "CREATED (UTC)"},
                  rows);
  // Sweeps whose pending tasks no live worker can run say why, below.
  for (const v1::SweepStatus& s : sweeps) {
    if (s.blocked_reason().empty()) continue;
    absl::StrAppend(&out, s.sweep_id(), " blocked: ", s.blocked_reason(), "\n");
  }
  return out;
}

std::string FormatSweepDetail(const v1::SweepStatus& s) {
  const auto& c = s.counts();
  const v1::SweepSpec& spec = s.spec();
  std::string kind = "-";
  if (spec.job_case() != v1::SweepSpec::JOB_NOT_SET) {
    kind = spec.GetDescriptor()->FindFieldByNumber(spec.job_case())->name();
  }
  std::ostringstream out;
  out << "sweep:      " << s.sweep_id() << "\n"
      << "name:       " << s.name() << "\n"
      << "state:      " << SweepStateName(s.state()) << "\n"
      << "job:        " << kind << "\n";
  if (!spec.model().path().empty()) {
    out << "model:      " << spec.model().path() << " ("
        << spec.model().fingerprint().substr(0, 12) << ")\n";
  }
  for (const auto& ds : spec.datasets()) {
    out << "dataset:    " << ds.name() << " " << ds.path() << " x"
        << ds.shards() << " shards\n";
  }
  out << "tasks:      " << c.total() << " total, " << c.done() << " done, "
      << c.failed() << " failed, " << c.leased() << " running, " << c.pending()
      << " pending, " << c.cancelled() << " cancelled\n"
      << "policy:     max_attempts " << spec.policy().max_attempts()
      << ", lease " << spec.policy().lease_seconds() << " s, priority "
      << spec.policy().priority() << "\n"
      << "created:    " << FormatUnixMs(s.created_unix_ms()) << " UTC\n"
      << "updated:    " << FormatUnixMs(s.updated_unix_ms()) << " UTC\n";
  for (const v1::WaitingWork& w : s.waiting()) {
    out << "waiting:    " << w.pending() << " " << JobKindLabel(w.kind());
    if (w.tensor_parallel() != 0) {
      out << " (tensor_parallel " << w.tensor_parallel() << ")";
    }
    out << (w.no_capable_worker() ? ": no live worker runs it" : "") << "\n";
  }
  if (!s.blocked_reason().empty()) {
    out << "blocked:    " << s.blocked_reason() << "\n";
    if (s.live_workers().empty()) out << "workers:    none live\n";
    for (const v1::WorkerOffer& w : s.live_workers()) {
      std::vector<std::string> kinds;
      for (int k : w.job_kinds()) {
        kinds.push_back(JobKindLabel(static_cast<v1::JobKind>(k)));
      }
      out << "worker:     " << (w.name().empty() ? w.worker_id() : w.name())
          << " runs "
          << (kinds.empty() ? std::string("every kind")
                            : absl::StrJoin(kinds, ","))
          << ", tensor_parallel " << w.tensor_parallel() << "\n";
    }
  }
  for (const auto& [k, v] : std::map<std::string, std::string>(
           spec.labels().begin(), spec.labels().end())) {
    out << "label:      " << k << "=" << v << "\n";
  }
  return out.str();
}

std::string FormatWorkersTable(const std::vector<v1::WorkerInfo>& workers,
                               int64_t now_ms) {
  std::vector<std::vector<std::string>> rows;
  for (const v1::WorkerInfo& w : workers) {
    rows.push_back(
        {w.worker_id(), w.name(), w.device_kind(), absl::StrCat(w.gpu_count()),
         absl::StrCat(w.tensor_parallel()), w.model_fingerprint().substr(0, 12),
         absl::StrCat(w.active_leases()), absl::StrCat(w.tasks_done()),
         w.draining() ? "yes" : "no",
         w.last_seen_unix_ms() == 0
             ? "-"
             : FormatDuration((now_ms - w.last_seen_unix_ms()) / 1000.0) +
                   " ago"});
  }
  if (rows.empty()) return "(no workers)\n";
  return FormatTable({"WORKER", "NAME", "DEVICE", "GPUS", "TP", "MODEL",
                      "LEASES", "DONE", "DRAINING", "LAST SEEN"},
                     rows);
}

void ProgressMeter::Observe(const v1::SweepStatus& status) {
  last_ = status;
  const auto& c = status.counts();
  const int64_t now = clock_->NowMs();
  samples_.emplace_back(now, c.done() + c.failed() + c.cancelled());
  // Keep one sample at or before the window start as the rate's anchor.
  while (samples_.size() > 2 && samples_[1].first <= now - window_ms_)
    samples_.pop_front();
}

double ProgressMeter::Rate() const {
  if (samples_.size() < 2) return 0.0;
  const auto& first = samples_.front();
  const auto& last = samples_.back();
  const int64_t dt = last.first - first.first;
  if (dt <= 0) return 0.0;
  return static_cast<double>(last.second - first.second) * 1000.0 /
         static_cast<double>(dt);
}

double ProgressMeter::EtaSeconds() const {
  const auto& c = last_.counts();
  const int64_t left = c.total() - c.done() - c.failed() - c.cancelled();
  if (left <= 0) return 0.0;
  const double rate = Rate();
  if (rate <= 0) return -1.0;
  return static_cast<double>(left) / rate;
}

std::string ProgressMeter::Line(int bar_width) const {
  const auto& c = last_.counts();
  const int64_t finished = c.done() + c.failed() + c.cancelled();
  const double frac =
      c.total() > 0 ? static_cast<double>(finished) / c.total() : 0.0;
  const int filled =
      std::clamp(static_cast<int>(frac * bar_width), 0, bar_width);
  return absl::StrFormat(
      "[%s%s] %d/%d done  %d failed  %d running  %.1f tasks/s  ETA %s  %s",
      std::string(filled, '#'), std::string(bar_width - filled, '.'), c.done(),
      c.total(), c.failed(), c.leased(), Rate(), FormatDuration(EtaSeconds()),
      SweepStateName(last_.state()));
}

}  // namespace sweepd
