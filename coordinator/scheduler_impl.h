// LeaseSchedulerImpl: the LeaseScheduler (scheduler.h, whose comment holds the
// contract and the policy) over a TaskMirror (scheduler_mirror.h). Private to
// the scheduler; which file holds which methods:
//   scheduler.cc          Create/Load, sweeps (submit, stages, cancel),
//                         worker registration, GetSweep/ListSweeps/ListWorkers
//   scheduler_leases.cc   granting (from the mirror or ledger first), renewal
//                         (heartbeats), release and expiry
//   scheduler_results.cc  result acceptance
//
// Ownership: borrows the Ledger and the Clock; owns the mirror. Thread-safe:
// every mirror access holds mu_; ledger callbacks take mu_ themselves and
// replies are sent without holding it.
#ifndef SWEEPD_COORDINATOR_SCHEDULER_IMPL_H_
#define SWEEPD_COORDINATOR_SCHEDULER_IMPL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "coordinator/ledger.h"
#include "coordinator/scheduler.h"
#include "coordinator/scheduler_mirror.h"

namespace sweepd::scheduler_internal {

class LeaseSchedulerImpl : public LeaseScheduler {
 public:
  LeaseSchedulerImpl(Ledger* ledger, const SchedulerOptions& options);
  // Lease writes are enqueued without anyone waiting on their callbacks (which
  // use this object): wait for them. A closed ledger has run them already.
  ~LeaseSchedulerImpl() override;

  // Loads sweeps, non-terminal tasks and workers from the ledger.
  absl::Status Load();

  // ---- LeaseScheduler (scheduler.cc) ----
  void SubmitPlan(Plan plan, Callback<SubmitOutcome> done) override;
  std::vector<StageWork> TakeSweepsReadyForStage() override;
  void AbandonStage(const std::string& sweep_id) override;
  void AppendStage(const std::string& sweep_id, int stage_index,
                   std::vector<PlannedTask> tasks,
                   Callback<int64_t> done) override;
  void RegisterWorker(const std::string& name,
                      const v1::WorkerCapabilities& caps,
                      Callback<v1::RegisterWorkerResponse> done) override;
  void CancelSweep(const std::string& sweep_id,
                   Callback<int64_t> done) override;
  std::optional<SweepSummary> GetSweep(const std::string& sweep_id) override;
  std::vector<SweepSummary> ListSweeps() override;
  std::vector<v1::WorkerInfo> ListWorkers() override;

  // ---- LeaseScheduler (scheduler_leases.cc) ----
  void LeaseTasks(const std::string& worker_id, int max_tasks,
                  const std::optional<v1::WorkerCapabilities>& caps,
                  Callback<LeaseBatch> done) override;
  void Heartbeat(const std::string& worker_id,
                 const std::vector<LeaseRef>& leases, bool draining,
                 Callback<HeartbeatOutcome> done) override;
  void ReleaseTasks(const std::string& worker_id,
                    const std::vector<LeaseRef>& leases,
                    Callback<int> done) override;
  void ExpireLeases(Callback<int> done) override;

  // ---- LeaseScheduler (scheduler_results.cc) ----
  void ReportResult(const ResultReport& report, Callback<bool> done) override;

 private:
  // The reply when it is known now; nullopt when `done` was handed to a ledger
  // callback (moved from).
  std::optional<absl::StatusOr<LeaseBatch>> LeaseLocked(
      const std::string& worker_id, int max_tasks,
      const std::optional<v1::WorkerCapabilities>& caps,
      Callback<LeaseBatch>& done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Grants the reserved tasks `picked` in the mirror with tokens first,
  // first+1, ... (already durable as a reserved block), enqueues their ledger
  // write and replies without waiting for it. Every later write naming these
  // leases (report, heartbeat, release, expiry) is enqueued after it, so the
  // ledger applies them in order; if the process dies first, the tokens were
  // never recorded, the tasks are still PENDING in the ledger and the worker
  // learns at its next heartbeat that the leases are gone.
  LeaseBatch GrantFromMirror(const std::string& worker_id,
                             const std::vector<MemTask*>& picked, int64_t first,
                             int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Ledger* const ledger_;
  const SchedulerOptions options_;
  Clock* const clock_;

  absl::Mutex mu_;
  TaskMirror mirror_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sweepd::scheduler_internal

#endif  // SWEEPD_COORDINATOR_SCHEDULER_IMPL_H_
