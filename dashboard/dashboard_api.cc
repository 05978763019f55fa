// DashboardApi. See dashboard_api.h.
#include "dashboard/dashboard_api.h"

#include <algorithm>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/report.h"
#include "client/report_assets.h"
#include "coordinator/task_summary.h"
#include "dashboard/dashboard_page.h"
#include "nlohmann/json.hpp"
#include "prometheus/collectable.h"
#include "prometheus/text_serializer.h"

namespace sweepd {
namespace {

using json = nlohmann::json;
namespace v1 = ::sweepd::v1;

std::string ShortEnum(const std::string& full, absl::string_view prefix) {
  std::string s = full;
  if (absl::StartsWith(s, prefix)) s = s.substr(prefix.size());
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string TaskStateText(v1::TaskState s) {
  return ShortEnum(v1::TaskState_Name(s), "TASK_STATE_");
}
std::string SweepStateText(v1::SweepState s) {
  return ShortEnum(v1::SweepState_Name(s), "SWEEP_STATE_");
}
std::string JobKindText(v1::JobKind k) {
  return ShortEnum(v1::JobKind_Name(k), "JOB_KIND_");
}

HttpReply Json(const json& value, int status = 200) {
  HttpReply r;
  r.status = status;
  r.body = value.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

HttpReply Error(int status, const std::string& message) {
  return Json(json{{"error", message}}, status);
}

HttpReply FromStatus(const absl::Status& s) {
  const int status = s.code() == absl::StatusCode::kNotFound          ? 404
                     : s.code() == absl::StatusCode::kInvalidArgument ? 400
                                                                      : 500;
  return Error(status, std::string(s.message()));
}

// The report options a sweep implies: its drop-plan stage's k, weights,
// critical threshold and ablation dataset when it has one (as the planner
// derives the stage), else ReportOptions' defaults, as `sweepctl report`.
ReportOptions ReportOptionsFor(const v1::SweepSpec& spec) {
  ReportOptions options;
  options.title = spec.name().empty() ? "" : spec.name();
  for (const v1::Stage& stage : spec.stages()) {
    if (!stage.has_drop_plan()) continue;
    const v1::DropPlanDerivation& d = stage.drop_plan();
    if (d.k_size() > 0) options.drop_k.assign(d.k().begin(), d.k().end());
    if (d.w_bi() > 0 || d.w_bi_var() > 0 || d.w_delta() > 0) {
      options.weights.bi = d.w_bi();
      options.weights.bi_var = d.w_bi_var();
      options.weights.delta = d.w_delta();
    }
    if (d.critical_delta_pct() > 0) {
      options.critical_delta_pct = d.critical_delta_pct();
    }
    options.ablation_dataset = d.ablation_dataset();
  }
  return options;
}

// Every task record of a sweep with the given states, through ledger pages.
absl::StatusOr<std::vector<v1::TaskRecord>> AllTasks(
    Ledger* ledger, const std::string& sweep_id,
    const std::vector<v1::TaskState>& states) {
  std::vector<v1::TaskRecord> out;
  int64_t after = -1;
  while (true) {
    absl::StatusOr<TaskPage> page =
        ledger->ListTasks(sweep_id, states, after, 1000);
    if (!page.ok()) return page.status();
    for (auto& t : page->tasks) out.push_back(std::move(t));
    if (!page->more || page->last_idx < 0) return out;
    after = page->last_idx;
  }
}

}  // namespace

DashboardApi::DashboardApi(const DashboardApiOptions& options)
    : options_(options), progress_(options.clock) {}

HttpReply DashboardApi::Handle(
    const std::string& path, const std::map<std::string, std::string>& query) {
  if (path == "/" || path == "/index.html") {
    return HttpReply{200, "text/html; charset=utf-8", DashboardPageHtml()};
  }
  if (absl::StartsWith(path, "/assets/")) {
    const std::string name = path.substr(8);
    for (const EmbeddedFile& file : ReportAssets()) {
      if (file.name == name) {
        return HttpReply{200, "application/javascript",
                         std::string(file.contents)};
      }
    }
    return Error(404, absl::StrCat("no asset ", name));
  }
  if (path == "/metrics") return Metrics();
  if (path == "/api/sweeps") return Sweeps();
  if (path == "/api/workers") return Workers();
  if (absl::StartsWith(path, "/api/sweeps/")) {
    std::vector<std::string> parts =
        absl::StrSplit(path.substr(12), '/', absl::SkipEmpty());
    if (parts.size() == 2 && parts[1] == "tasks") return Tasks(parts[0], query);
    if (parts.size() == 2 && parts[1] == "report") return Report(parts[0]);
  }
  return Error(404, absl::StrCat("no such page: ", path));
}

HttpReply DashboardApi::Sweeps() {
  json sweeps = json::array();
  for (const SweepSummary& s : options_.scheduler->ListSweeps()) {
    const v1::TaskCounts& c = s.counts;
    const int64_t finished = c.done() + c.failed() + c.cancelled();
    const SweepProgress p = progress_.Observe(s.sweep_id, finished, c.total());
    const bool running = s.state == v1::SWEEP_STATE_RUNNING;
    sweeps.push_back(json{
        {"sweep_id", s.sweep_id},
        {"name", s.name},
        {"state", SweepStateText(s.state)},
        {"total", c.total()},
        {"pending", c.pending()},
        {"leased", c.leased()},
        {"done", c.done()},
        {"failed", c.failed()},
        {"cancelled", c.cancelled()},
        {"progress", p.fraction},
        {"tasks_per_second", p.tasks_per_second},
        {"eta_seconds", running && p.eta_seconds.has_value()
                            ? json(*p.eta_seconds)
                            : json(nullptr)},
        {"created_unix_ms", s.created_ms},
        {"updated_unix_ms", s.updated_ms},
        {"blocked_reason", s.blocked_reason},
        {"version", s.version},
    });
  }
  return Json(json{{"now_unix_ms", options_.clock->NowMs()},
                   {"sweeps", std::move(sweeps)}});
}

HttpReply DashboardApi::Workers() {
  const int64_t now = options_.clock->NowMs();
  json workers = json::array();
  for (const v1::WorkerInfo& w : options_.scheduler->ListWorkers()) {
    workers.push_back(json{
        {"worker_id", w.worker_id()},
        {"name", w.name()},
        {"device_kind", w.device_kind()},
        {"gpu_count", w.gpu_count()},
        {"tensor_parallel", w.tensor_parallel()},
        {"model_fingerprint", w.model_fingerprint()},
        {"active_leases", w.active_leases()},
        {"last_heartbeat_unix_ms", w.last_seen_unix_ms()},
        {"heartbeat_age_seconds", (now - w.last_seen_unix_ms()) / 1000.0},
        {"draining", w.draining()},
        {"live", now - w.last_seen_unix_ms() <= options_.worker_timeout_ms},
        {"tasks_done", w.tasks_done()},
    });
  }
  return Json(json{{"now_unix_ms", now}, {"workers", std::move(workers)}});
}

HttpReply DashboardApi::Tasks(const std::string& sweep_id,
                              const std::map<std::string, std::string>& query) {
  std::vector<v1::TaskState> states;
  if (auto it = query.find("state"); it != query.end()) {
    for (absl::string_view name :
         absl::StrSplit(it->second, ',', absl::SkipEmpty())) {
      v1::TaskState state;
      if (!v1::TaskState_Parse(
              absl::StrCat("TASK_STATE_", absl::AsciiStrToUpper(name)),
              &state) ||
          state == v1::TASK_STATE_UNSPECIFIED) {
        return Error(400, absl::StrCat("unknown task state '", name, "'"));
      }
      states.push_back(state);
    }
  }
  const auto stage = query.find("stage");
  const auto intervention = query.find("intervention");
  int limit = options_.max_task_rows;
  if (auto it = query.find("limit"); it != query.end()) {
    if (!absl::SimpleAtoi(it->second, &limit) || limit <= 0) {
      return Error(400, absl::StrCat("limit must be a positive integer, got '",
                                     it->second, "'"));
    }
    limit = std::min(limit, options_.max_task_rows);
  }
  absl::StatusOr<SweepRow> sweep = options_.ledger->GetSweep(sweep_id);
  if (!sweep.ok()) return FromStatus(sweep.status());
  absl::StatusOr<std::vector<v1::TaskRecord>> records =
      AllTasks(options_.ledger, sweep_id, states);
  if (!records.ok()) return FromStatus(records.status());
  json rows = json::array();
  int64_t matched = 0;
  std::set<std::string> stages;
  for (const v1::TaskRecord& t : *records) {
    stages.insert(t.spec().stage());
    if (stage != query.end() && t.spec().stage() != stage->second) continue;
    const std::string summary = InterventionSummary(t.spec().interventions());
    if (intervention != query.end() &&
        !absl::StrContains(summary, intervention->second)) {
      continue;
    }
    ++matched;
    if (static_cast<int>(rows.size()) >= limit) continue;
    rows.push_back(json{
        {"task_key", t.task_key()},
        {"index", t.spec().index()},
        {"state", TaskStateText(t.state())},
        {"kind", JobKindText(t.spec().kind())},
        {"stage", t.spec().stage()},
        {"interventions", summary},
        {"params", ParamsSummary(t.spec())},
        {"dataset", t.spec().has_data()
                        ? absl::StrCat(t.spec().data().dataset().name(), "#",
                                       t.spec().data().shard_index())
                        : ""},
        {"attempts", t.attempts()},
        {"worker_id", t.worker_id()},
        {"metrics", t.result().metrics_size()},
        {"error", t.error()},
        {"updated_unix_ms", t.updated_unix_ms()},
    });
  }
  return Json(json{
      {"sweep_id", sweep_id},
      {"matched", matched},
      {"truncated", matched > static_cast<int64_t>(rows.size())},
      {"stages", json(std::vector<std::string>(stages.begin(), stages.end()))},
      {"tasks", std::move(rows)}});
}

HttpReply DashboardApi::Report(const std::string& sweep_id) {
  std::optional<SweepSummary> summary = options_.scheduler->GetSweep(sweep_id);
  if (!summary.has_value()) {
    return Error(404, absl::StrCat("sweep ", sweep_id, " not found"));
  }
  {
    absl::MutexLock lock(&cache_mu_);
    auto it = report_cache_.find(sweep_id);
    if (it != report_cache_.end() && it->second.version == summary->version) {
      return HttpReply{200, "application/json", it->second.json};
    }
  }
  absl::StatusOr<SweepRow> sweep = options_.ledger->GetSweep(sweep_id);
  if (!sweep.ok()) return FromStatus(sweep.status());
  absl::StatusOr<std::vector<v1::TaskRecord>> records =
      AllTasks(options_.ledger, sweep_id, {});
  if (!records.ok()) return FromStatus(records.status());
  ReportOptions options = ReportOptionsFor(sweep->spec);
  json out{{"sweep_id", sweep_id}, {"version", summary->version}};
  absl::StatusOr<ReportData> data = BuildReportData(*records, options);
  if (!data.ok()) {
    // A report that cannot be built yet (or at all) is shown as a note.
    out["title"] = options.title;
    out["body"] = "";
    out["specs"] = json::object();
    out["error"] = std::string(data.status().message());
  } else {
    ReportFragment fragment = RenderReportFragment(*data);
    out["title"] = data->title;
    out["body"] = fragment.body_html;
    out["specs"] = json::parse(fragment.specs_json);
  }
  HttpReply reply = Json(out);
  absl::MutexLock lock(&cache_mu_);
  report_cache_[sweep_id] = CachedReport{summary->version, reply.body};
  return reply;
}

HttpReply DashboardApi::Metrics() {
  if (options_.metrics.empty()) return Error(404, "no metrics here");
  std::vector<prometheus::MetricFamily> families;
  for (const auto& c : options_.metrics) {
    std::vector<prometheus::MetricFamily> more = c->Collect();
    families.insert(families.end(), std::make_move_iterator(more.begin()),
                    std::make_move_iterator(more.end()));
  }
  return HttpReply{200, "text/plain; version=0.0.4; charset=utf-8",
                   prometheus::TextSerializer().Serialize(families)};
}

}  // namespace sweepd
