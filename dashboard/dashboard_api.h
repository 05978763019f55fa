// DashboardApi: what sweepd's read-only web dashboard serves, independent of
// HTTP (DashboardServer adapts cpp-httplib to it; tests call it directly). GET
// paths:
//
//   /                             the page (dashboard_page.h)
//   /assets/<name>                the embedded Vega builds
//   (client/report_assets.h) /api/sweeps                   sweeps: state,
//   counts, progress, rate, ETA /api/workers                  workers: device,
//   GPUs, TP, model, leases, last
//                                 heartbeat, draining, live
//   /api/sweeps/<id>/tasks        tasks, filtered by ?state=a,b &stage=S
//                                 &intervention=TEXT (substring) &limit=N
//   /api/sweeps/<id>/report       the sweep's report (client/report.h): body
//                                 HTML and Vega-Lite specs, the same as
//                                 `sweepctl report`; cached per sweep version
//   /metrics                      the coordinator's Prometheus metrics
//
// Ownership: borrows the scheduler, ledger, clock and metrics (they outlive
// it). Thread-safety: Handle() is thread-safe (the report cache and progress
// tracker have their own locks); it reads the scheduler's mirror and the
// ledger's reader pool, never the writer.
#ifndef SWEEPD_DASHBOARD_DASHBOARD_API_H_
#define SWEEPD_DASHBOARD_DASHBOARD_API_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "coordinator/ledger.h"
#include "coordinator/scheduler.h"
#include "dashboard/progress_tracker.h"

namespace prometheus {
class Collectable;
}  // namespace prometheus

namespace sweepd {

struct DashboardApiOptions {
  LeaseScheduler* scheduler = nullptr;  // required
  Ledger* ledger = nullptr;             // required
  Clock* clock = Clock::Real();
  // A worker not heard from for this long shows as not live.
  int64_t worker_timeout_ms = 60'000;
  // Served at /metrics; empty = 404.
  std::vector<std::shared_ptr<prometheus::Collectable>> metrics;
  // Most task rows one /tasks answer carries (?limit is capped to it).
  int max_task_rows = 2000;
};

struct HttpReply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

class DashboardApi {
 public:
  explicit DashboardApi(const DashboardApiOptions& options);

  // Answers GET `path` with query parameters `query` (already decoded).
  HttpReply Handle(const std::string& path,
                   const std::map<std::string, std::string>& query);

 private:
  HttpReply Sweeps();
  HttpReply Workers();
  HttpReply Tasks(const std::string& sweep_id,
                  const std::map<std::string, std::string>& query);
  HttpReply Report(const std::string& sweep_id);
  HttpReply Metrics();

  const DashboardApiOptions options_;
  ProgressTracker progress_;
  struct CachedReport {
    uint64_t version = 0;
    std::string json;
  };
  absl::Mutex cache_mu_;
  std::map<std::string, CachedReport> report_cache_ ABSL_GUARDED_BY(cache_mu_);
};

}  // namespace sweepd

#endif  // SWEEPD_DASHBOARD_DASHBOARD_API_H_
