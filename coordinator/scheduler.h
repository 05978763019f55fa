// LeaseScheduler: decides which worker runs which task. It keeps an in-memory
// mirror of every non-terminal task (loaded from the Ledger at Create, with
// each task's spec) plus per-sweep counts and the worker registry, so leasing
// never reads SQLite. Every decision becomes a Ledger write; the mirror is
// updated from the write's committed outcome (in the ledger's commit order).
//
// Leases are granted from the mirror: LeaseTasks takes fencing tokens from the
// ledger's durably reserved block (Ledger::TakeReservedTokens), marks the tasks
// LEASED in the mirror, enqueues the lease write for the next group commit and
// replies at once, without waiting for that commit. This is safe because
// (1) every later write about those leases (result, heartbeat, release,
// expiry) is enqueued after the lease write and applied after it; (2) the
// tokens are at most the persisted high-water mark, so a restart never issues
// them again; (3) if the process dies before the lease write commits, the
// ledger never saw the lease: the task is still PENDING there and is leased
// again after the restart, the old holder's heartbeat reports the lease lost
// and its result is refused (its token has no `leases` row), so a result is
// never committed twice. When no reserved tokens are left (the first lease
// after a start) the lease is written first and replied after its commit; the
// picked tasks are "reserved" until then, so two workers never race for one
// task. Every other callback of this class (results, heartbeats, releases,
// submissions, cancellations) runs only after the writes it reports on are
// durable.
//
// Policy:
//   - Eligible: PENDING, not reserved, next_eligible_ms <= now, sweep
//   policy.tensor_parallel
//     is 0 or equals the worker's, and the worker runs the job kind of the
//     task's group (a stage may have its own kind; empty list = all). Tasks no
//     live worker can run wait; GetSweep/ListSweeps say which kinds wait and
//     what the live workers offer (SweepSummary::blocked_reason).
//   - Order: sweep priority (higher first); within a priority, groups whose
//   model fingerprint
//     equals the worker's loaded model first; then submission order, task index
//     order.
//   - Prefix-share groups (group_key within a sweep) stick to one worker: a
//   worker first gets
//     more of the groups pinned to it, a lease from a group pins it, and a
//     group pinned to another live (recently seen, not draining) worker is only
//     handed out when nothing else is eligible. One LeaseTasks call takes a
//     whole group when max_tasks allows.
//   - Expiry: ExpireLeases() (run periodically by the service) returns leases
//   past their expiry
//     to PENDING (the attempt stays counted) or FAILED at max_attempts. Leases
//     loaded at Create get at least their own lease period (the sweep's
//     policy.lease_seconds) of grace so workers can heartbeat after a restart.
//   - Heartbeats renew leases matched by task_key + fencing token (whatever
//   worker_id the
//     caller now has) and return the keys of leases that are not the caller's
//     any more, which includes cancelled tasks.
//
// Time comes from the injected Clock. Thread-safe; the Ledger and Clock are
// borrowed and must outlive the scheduler. Destroying the scheduler waits for
// its lease writes still in flight (Ledger::Flush), so never destroy it on the
// ledger's callback thread.
#ifndef SWEEPD_COORDINATOR_SCHEDULER_H_
#define SWEEPD_COORDINATOR_SCHEDULER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "coordinator/ledger.h"
#include "coordinator/planner.h"
#include "sweepd/v1/coordinator.pb.h"
#include "sweepd/v1/worker.pb.h"

namespace sweepd {

struct SchedulerOptions {
  Clock* clock = Clock::Real();
  // A worker not heard from for this long no longer holds its groups' pins.
  int64_t worker_timeout_ms = 60'000;
  // Told to workers at registration.
  int64_t heartbeat_interval_ms = 5'000;
  // retry_after_ms when a LeaseTasks call finds nothing (capped by the next
  // backoff expiry).
  int64_t idle_retry_after_ms = 500;
  // Upper bound of LeaseTasksRequest.max_tasks.
  int max_tasks_per_lease = 1024;
  // Minimum remaining lease given to leases loaded from the ledger at start;
  // 0 = each lease's own length (its sweep's policy.lease_seconds, else the
  // ledger's default_lease_ms), so a lease whose grant reply died with the old
  // process comes back after its own lease period.
  int64_t restart_grace_ms = 0;
};

// In-memory view of one sweep (no spec): what GetSweep/ListSweeps/WatchSweep
// show.
struct SweepSummary {
  std::string sweep_id;
  std::string name;
  v1::SweepState state = v1::SWEEP_STATE_UNSPECIFIED;
  v1::TaskCounts counts;
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
  // Increments on every change of the sweep's counts or state.
  uint64_t version = 0;
  // Pending tasks by job kind, each saying whether a live worker runs it
  // (empty when nothing is pending or the sweep is cancelled).
  std::vector<v1::WaitingWork> waiting;
  // Non-empty when some pending kind has no live worker (recently seen, not
  // draining) that runs it at the sweep's TP size: says which and what the live
  // workers offer (live_workers). Such tasks wait; nothing refuses them.
  std::string blocked_reason;
  std::vector<v1::WorkerOffer> live_workers;
};

struct SubmitOutcome {
  std::string sweep_id;
  int64_t total_tasks = 0;
  bool already_existed = false;
};

// A sweep whose next derived stage can be planned: every task planned so far is
// terminal (docs/STAGES.md).
struct StageWork {
  std::string sweep_id;
  int stage_index = 0;
  int64_t first_index = 0;  // index of the stage's first task
};
struct LeaseBatch {
  std::vector<v1::TaskAssignment> tasks;
  int64_t retry_after_ms = 0;  // set when `tasks` is empty
};

struct HeartbeatOutcome {
  std::vector<std::string> cancelled_task_keys;
  // Earliest expiry among the renewed leases; 0 when none were renewed.
  int64_t lease_expires_ms = 0;
};

class LeaseScheduler {
 public:
  template <typename T>
  using Callback = std::function<void(absl::StatusOr<T>)>;

  // Loads sweeps, non-terminal tasks and workers from `ledger` (blocking
  // reads).
  static absl::StatusOr<std::unique_ptr<LeaseScheduler>> Create(
      Ledger* ledger, const SchedulerOptions& options);
  virtual ~LeaseScheduler() = default;

  // Records a planned sweep (idempotent by sweep_id) and makes its tasks
  // leasable.
  virtual void SubmitPlan(Plan plan, Callback<SubmitOutcome> done) = 0;
  // Registers a worker under a new id (persisted).
  virtual void RegisterWorker(const std::string& name,
                              const v1::WorkerCapabilities& caps,
                              Callback<v1::RegisterWorkerResponse> done) = 0;
  // NOT_FOUND for an unknown worker_id; empty batch for a draining worker;
  // the ledger's UNAVAILABLE while it cannot commit (Ledger::writable).
  virtual void LeaseTasks(const std::string& worker_id, int max_tasks,
                          const std::optional<v1::WorkerCapabilities>& caps,
                          Callback<LeaseBatch> done) = 0;
  virtual void Heartbeat(const std::string& worker_id,
                         const std::vector<LeaseRef>& leases, bool draining,
                         Callback<HeartbeatOutcome> done) = 0;
  // Yields whether the report committed (false: duplicate or stale failure,
  // dropped).
  virtual void ReportResult(const ResultReport& report,
                            Callback<bool> done) = 0;
  // Yields how many leases went back to PENDING (no attempt counted).
  virtual void ReleaseTasks(const std::string& worker_id,
                            const std::vector<LeaseRef>& leases,
                            Callback<int> done) = 0;
  // Cancels a sweep's pending and leased tasks; yields how many. NOT_FOUND if
  // unknown.
  virtual void CancelSweep(const std::string& sweep_id,
                           Callback<int64_t> done) = 0;
  // Sweeps ready for their next derived stage; each is marked as deriving until
  // AppendStage or AbandonStage, so it is handed out once.
  virtual std::vector<StageWork> TakeSweepsReadyForStage() = 0;
  // Records the planned tasks of a derived stage (ledger first) and makes them
  // leasable; yields how many were inserted.
  virtual void AppendStage(const std::string& sweep_id, int stage_index,
                           std::vector<PlannedTask> tasks,
                           Callback<int64_t> done) = 0;
  // A derivation failed transiently: the stage is offered again later.
  virtual void AbandonStage(const std::string& sweep_id) = 0;
  // One expiry pass over leases past their expiry; yields how many changed.
  virtual void ExpireLeases(Callback<int> done) = 0;

  virtual std::optional<SweepSummary> GetSweep(const std::string& sweep_id) = 0;
  virtual std::vector<SweepSummary> ListSweeps() = 0;
  virtual std::vector<v1::WorkerInfo> ListWorkers() = 0;
};

}  // namespace sweepd

#endif  // SWEEPD_COORDINATOR_SCHEDULER_H_
