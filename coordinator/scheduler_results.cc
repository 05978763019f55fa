// LeaseSchedulerImpl's result acceptance: a report is recorded by the ledger
// (which checks its fencing token) and mirrored once committed (scheduler.h
// has the contract; scheduler_impl.h says which file holds the rest).
#include "common/logging.h"
#include "coordinator/scheduler_impl.h"

namespace sweepd::scheduler_internal {

void LeaseSchedulerImpl::ReportResult(const ResultReport& report,
                                      Callback<bool> done) {
  absl::MutexLock lock(&mu_);
  if (WorkerEntry* w = mirror_.FindWorker(report.worker_id)) {
    w->last_seen_ms = clock_->NowMs();
  }
  ledger_->RecordResult(
      report, [this, worker_id = report.worker_id,
               done = std::move(done)](absl::StatusOr<ResultOutcome> r) {
        if (!r.ok()) return done(r.status());
        if (r->row.has_value()) {
          absl::MutexLock lock(&mu_);
          mirror_.Apply(*r->row);
          if (r->row->state == v1::TASK_STATE_DONE) {
            if (WorkerEntry* w = mirror_.FindWorker(worker_id)) {
              w->tasks_done++;
            }
          }
        }
        if (!r->committed) SWEEPD_LOG(DEBUG) << "report dropped: " << r->reason;
        done(r->committed);
      });
}

}  // namespace sweepd::scheduler_internal
