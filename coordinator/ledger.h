// Ledger: the durable record of sweeps, tasks, leases, results and workers in
// one SQLite database (WAL mode, synchronous=FULL). It is the source of truth;
// the LeaseScheduler keeps an in-memory mirror of the non-terminal tasks that
// it updates from the outcomes reported here.
//
// Writes: one writer thread owns the only writing connection. Every write
// method enqueues an operation and returns at once; the writer takes as many
// queued operations as are waiting (up to LedgerOptions::max_batch_ops),
// applies each inside its own SAVEPOINT of one transaction and COMMITs once
// (group commit). Each operation's callback then runs on the ledger's CALLBACK
// THREAD, in enqueue order, only after the COMMIT that made it durable (or with
// the error), while the writer already builds the next transaction. Callbacks
// must be short and must not call blocking Ledger methods (Flush, Close).
// Checkpoints run on a third thread with their own connection, so a COMMIT
// pays only for its WAL append and fsync. Every task state change and its
// result is written in one transaction; conditions (the current state, the
// fencing token) are checked inside that transaction, so the rules below hold
// whatever the caller believed:
//   - Leases: a task is leased only from PENDING. Each lease gets a fencing
//     token that is globally monotonic and never reused after a restart:
//     meta.fencing_counter is a persisted high-water mark that every token
//     ever handed out is at most. LeaseTasks takes tokens inside the
//     transaction that records the lease and persists the mark with it.
//     TakeReservedTokens hands out tokens ahead of their lease's write, only
//     from a block (LedgerOptions::token_block) whose mark has already
//     committed; a reopened ledger continues above the mark, so tokens handed
//     out but never recorded are skipped, not reused. A lease counts one
//     attempt. A token without a `leases` row was never recorded: its lease
//     does not exist for the ledger (heartbeats report it lost, results are
//     refused with NOT_FOUND), and its task stayed PENDING.
//   - Results: a report whose task already has an outcome (DONE, FAILED,
//     CANCELLED) is a duplicate (committed=false). A success report from the
//     current lease commits; a success report from a stale lease (expired,
//     possibly re-leased) also commits when nothing has committed yet (no lost
//     work); a later report from the newer lease is then a duplicate. A failure
//     report only counts from the current lease: retryable failures go back to
//     PENDING with exponential backoff until max_attempts, then FAILED;
//     non-retryable ones fail at once.
//   - Release (draining worker): LEASED -> PENDING and the attempt is not
//     counted.
//   - Expiry: LEASED past its expiry -> PENDING (the attempt stays counted) or
//     FAILED when attempts reached max_attempts.
//
// Task identity: a task row is keyed by (sweep_id, task_key). The same task key
// may appear in two sweeps; the second sweep then reuses a committed DONE
// result of the first at submit time (the task is inserted DONE with the copied
// result), so finished work is never computed again. Wire messages name a lease
// by (task_key, fencing_token); the `leases` table maps each token to its
// (sweep_id, task_key), which makes that pair unambiguous.
//
// Reads: synchronous methods on a small pool of read-only connections (WAL
// readers never block the writer). They may block on I/O: never call them on a
// gRPC reactor thread.
//
// Thread-safety: all methods are thread-safe. The Ledger owns its connections
// and its writer, callback and checkpoint threads.
#ifndef SWEEPD_COORDINATOR_LEDGER_H_
#define SWEEPD_COORDINATOR_LEDGER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/clock.h"
#include "coordinator/planner.h"
#include "coordinator/sweep_policy.h"
#include "sweepd/v1/coordinator.pb.h"
#include "sweepd/v1/spec.pb.h"
#include "sweepd/v1/task.pb.h"
#include "sweepd/v1/worker.pb.h"

namespace sweepd {

// Current schema version; Open() migrates older databases up to it.
inline constexpr int kLedgerSchemaVersion = 4;

struct LedgerOptions {
  // Borrowed; times written to the ledger come from it.
  Clock* clock = Clock::Real();
  // Read-only connections in the reader pool.
  int reader_connections = 4;
  // Most operations committed by one transaction.
  int max_batch_ops = 4096;
  // What policy fields left at 0 become (lease length, attempts, backoff):
  // the same defaults the planner resolves specs with (sweep_policy.h).
  SweepPolicyDefaults policy_defaults;
  // Upper bound of the exponential retry backoff.
  int64_t max_retry_backoff_ms = 300'000;
  // Fencing tokens reserved (persisted) at a time for TakeReservedTokens; a new
  // block is persisted once less than half of the current one is left.
  int64_t token_block = 16384;
  // Called on the writer thread after every successful COMMIT with the
  // transaction's time (BEGIN to durable COMMIT, seconds) and its operation
  // count (metrics: coordinator_metrics.h). Must be cheap and not call the
  // ledger. Empty = none.
  std::function<void(double seconds, int64_t operations)> commit_observer;
  // While commits fail for want of disk space (or with I/O errors) the writer
  // tries a small write this often (real time) to see whether space returned.
  int64_t write_probe_interval_ms = 1'000;
};

// A task row's scheduling state after a write: what the scheduler mirrors.
struct TaskRowState {
  std::string sweep_id;
  std::string task_key;
  v1::TaskState state = v1::TASK_STATE_UNSPECIFIED;
  int attempts = 0;
  int64_t fencing_token = 0;  // of the latest lease; 0 = never leased
  std::string lease_worker;
  int64_t lease_expires_ms = 0;
  int64_t next_eligible_ms = 0;
};

struct InsertSweepOutcome {
  bool already_existed = false;
  int64_t total_tasks = 0;
  // Initial state of each inserted task, in plan order (empty when
  // already_existed).
  std::vector<v1::TaskState> initial_states;
};

struct AppendStageOutcome {
  // The stage had been planned before (a retried or repeated append): no-op.
  bool already_planned = false;
  // The inserted tasks (those the sweep did not hold yet) and their initial
  // states, in index order.
  std::vector<PlannedTask> tasks;
  std::vector<v1::TaskState> initial_states;
};
struct TaskId {
  std::string sweep_id;
  std::string task_key;
};

struct LeaseGrant {
  TaskRowState row;  // LEASED, with the new token and expiry
  std::string group_key;
  v1::TaskSpec spec;
};

// A lease granted before it was written (see TakeReservedTokens).
struct GrantedLease {
  TaskId task;
  int64_t fencing_token = 0;
  int64_t lease_expires_ms = 0;
};

struct LeaseOutcome {
  std::vector<LeaseGrant> granted;
  // Requested tasks that were not PENDING any more, with their actual state.
  std::vector<TaskRowState> not_granted;
};

struct ResultReport {
  std::string worker_id;
  std::string task_key;
  int64_t fencing_token = 0;
  // Exactly one of the two is set.
  std::optional<v1::TaskResult> result;
  std::optional<v1::TaskFailure> failure;
};

struct ResultOutcome {
  bool committed = false;
  // Why a report was dropped (for logs), e.g. "task already DONE".
  std::string reason;
  // The row after the write when it changed.
  std::optional<TaskRowState> row;
};

// A lease named the way workers name it.
struct LeaseRef {
  std::string task_key;
  int64_t fencing_token = 0;
};

struct RenewOutcome {
  std::vector<TaskRowState> renewed;
  // Keys of leases that are not the caller's any more (done, cancelled,
  // re-leased, unknown).
  std::vector<std::string> lost_task_keys;
};

struct TaskChanges {
  std::vector<TaskRowState> changed;
};

struct CancelOutcome {
  int64_t cancelled_tasks = 0;
  std::vector<TaskRowState> changed;
};

// An expired lease to return: only applied if the row still has this token and
// expiry passed.
struct ExpiredLease {
  std::string sweep_id;
  std::string task_key;
  int64_t fencing_token = 0;
};

struct SweepRow {
  std::string sweep_id;
  std::string name;
  v1::SweepSpec spec;
  v1::SweepState state = v1::SWEEP_STATE_UNSPECIFIED;
  int64_t total_tasks = 0;
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
  // Derived stages not planned yet (indices into spec.stages), in order.
  std::vector<int> deferred_stages;
  // Caller::name of whoever submitted it first ('' with authorisation off).
  std::string submitter;
};

struct WorkerRow {
  std::string worker_id;
  std::string name;
  v1::WorkerCapabilities capabilities;
  int64_t registered_ms = 0;
  int64_t last_seen_ms = 0;
  int64_t tasks_done = 0;
};

// A non-terminal task as loaded at start-up.
struct ActiveTaskRow {
  TaskRowState row;
  int64_t idx = 0;
  std::string group_key;
  v1::TaskSpec spec;
};

struct TaskPage {
  std::vector<v1::TaskRecord> tasks;
  // idx of the last returned task; -1 when the page is empty.
  int64_t last_idx = -1;
  bool more = false;
};

// Counters since Open (for tests and the benchmark). Times are wall-clock
// microseconds spent by the writer thread in each phase of its batches.
struct LedgerStats {
  int64_t transactions = 0;   // committed write transactions
  int64_t operations = 0;     // write operations they carried
  int64_t max_batch_ops = 0;  // most operations in one transaction
  int64_t apply_us = 0;       // BEGIN + operations + sweep states
  int64_t commit_us = 0;      // COMMIT (WAL write + fsync, checkpoints)
  int64_t callback_us = 0;    // callbacks after COMMIT
  int64_t max_commit_us = 0;  // slowest COMMIT
  // TakeReservedTokens calls answered from the reserved block / refused
  // because the block was used up (the caller then leased through LeaseTasks).
  int64_t reserved_token_grants = 0;
  int64_t reserved_token_misses = 0;
};

// One line for logs: "transactions=.. operations=.. ops/txn=.. ...".
std::string FormatLedgerStats(const LedgerStats& s);

class Ledger {
 public:
  template <typename T>
  using Callback = std::function<void(absl::StatusOr<T>)>;

  // Opens (creating if missing) the database at `path`, applies migrations and
  // starts the writer thread.
  static absl::StatusOr<std::unique_ptr<Ledger>> Open(
      const std::string& path, const LedgerOptions& options);

  virtual ~Ledger() = default;

  // ---- Writes (asynchronous; callbacks on the writer thread after COMMIT)
  // ----

  // Inserts a sweep and its tasks; a sweep_id that exists already is a no-op
  // reporting already_existed with the stored task count.
  virtual void InsertSweep(const Plan& plan,
                           Callback<InsertSweepOutcome> done) = 0;
  // Plans derived stage `stage_index` of a sweep: inserts `tasks` (indices
  // continue after the sweep's last task; keys the sweep already has are
  // skipped) and removes the stage from the sweep's deferred stages, in one
  // transaction. A stage no longer deferred is a no-op (already_planned).
  virtual void AppendStageTasks(const std::string& sweep_id, int stage_index,
                                std::vector<PlannedTask> tasks,
                                Callback<AppendStageOutcome> done) = 0;
  // Leases the given tasks (those still PENDING) to `worker_id`.
  virtual void LeaseTasks(const std::string& worker_id,
                          const std::vector<TaskId>& tasks,
                          Callback<LeaseOutcome> done) = 0;
  // Takes `n` consecutive fencing tokens (returns the first) for leases that
  // the caller hands out before they are written. Never blocks and never
  // waits for a commit: the tokens come from a block whose high-water mark is
  // already durable, so they are never reused after a restart. nullopt when
  // fewer than `n` reserved tokens are left: the next transaction then
  // persists a new block (use LeaseTasks meanwhile). The caller must pass the
  // tokens to RecordLeases, in the order taken, before enqueuing any other
  // write that names them.
  virtual std::optional<int64_t> TakeReservedTokens(int n) = 0;
  // Writes leases granted with tokens from TakeReservedTokens: each task still
  // PENDING becomes LEASED with the given token and expiry (one attempt
  // counted) and the token is recorded in `leases`; tasks no longer PENDING
  // (e.g. cancelled meanwhile) come back in not_granted with their actual
  // state and their token is not recorded. LeaseGrant::spec and group_key are
  // left empty (the caller has them).
  virtual void RecordLeases(const std::string& worker_id,
                            std::vector<GrantedLease> leases,
                            Callback<LeaseOutcome> done) = 0;
  // Lease length for tasks of a sweep with this spec: policy.lease_seconds, or
  // LedgerOptions::policy_defaults.lease_seconds when it is 0.
  virtual int64_t LeaseMsOf(const v1::SweepSpec& spec) const = 0;
  virtual void RecordResult(const ResultReport& report,
                            Callback<ResultOutcome> done) = 0;
  // Heartbeat: extends leases that are still the caller's (matched by task_key
  // + token, so a worker that re-registered under a new id keeps its leases)
  // and records last_seen. A lease that expired but whose task was not
  // re-leased is granted again with the same token.
  virtual void RenewLeases(const std::string& worker_id,
                           const std::vector<LeaseRef>& leases,
                           Callback<RenewOutcome> done) = 0;
  virtual void ReleaseLeases(const std::string& worker_id,
                             const std::vector<LeaseRef>& leases,
                             Callback<TaskChanges> done) = 0;
  virtual void ExpireLeases(const std::vector<ExpiredLease>& leases,
                            Callback<TaskChanges> done) = 0;
  // NOT_FOUND for an unknown sweep.
  virtual void CancelSweep(const std::string& sweep_id,
                           Callback<CancelOutcome> done) = 0;
  virtual void UpsertWorker(const WorkerRow& worker, Callback<bool> done) = 0;
  // Runs `done` after everything enqueued before it has committed.
  virtual void Barrier(Callback<bool> done) = 0;

  // Blocks until every operation enqueued so far has committed and its callback
  // ran.
  virtual absl::Status Flush() = 0;
  // Stops accepting writes (later writes fail with UNAVAILABLE), drains the
  // queue, stops the writer and closes connections. Idempotent.
  virtual absl::Status Close() = 0;
  // OK, or the error that broke the writer (a failed COMMIT other than a full
  // disk or an I/O error): the process should restart.
  virtual absl::Status health() = 0;
  // OK, or UNAVAILABLE ("... disk full ...") while commits fail for want of
  // disk space or with I/O errors. The ledger stays open meanwhile: reads are
  // served, every write fails with this status (nothing of its transaction is
  // kept) and the writer probes with a small write every
  // LedgerOptions::write_probe_interval_ms; the first commit that succeeds
  // makes it OK again. Callers refuse new work (leases, submits) while it is
  // not OK.
  virtual absl::Status writable() = 0;
  virtual LedgerStats stats() = 0;

  // ---- Reads (synchronous, reader pool) ----

  virtual absl::StatusOr<SweepRow> GetSweep(const std::string& sweep_id) = 0;
  virtual absl::StatusOr<std::vector<SweepRow>> ListSweeps() = 0;
  virtual absl::StatusOr<v1::TaskCounts> CountTasks(
      const std::string& sweep_id) = 0;
  // Tasks of a sweep with idx > after_idx, in idx order, optionally filtered by
  // state: at most `limit`, and when max_bytes > 0 no more once their records
  // reach max_bytes serialized (at least one; generate results carry every
  // sample, so a page of 500 can be large).
  virtual absl::StatusOr<TaskPage> ListTasks(
      const std::string& sweep_id, const std::vector<v1::TaskState>& states,
      int64_t after_idx, int limit, int64_t max_bytes = 0) = 0;
  virtual absl::StatusOr<v1::TaskRecord> GetTask(
      const std::string& sweep_id, const std::string& task_key) = 0;
  virtual absl::Status ForEachActiveTask(
      const std::function<void(const ActiveTaskRow&)>& visit) = 0;
  virtual absl::StatusOr<std::vector<WorkerRow>> ListWorkers() = 0;
  virtual absl::StatusOr<int> SchemaVersion() = 0;
  // The persisted fencing-token high-water mark: no token above it was ever
  // handed out (with reserved blocks it may exceed the last token used).
  virtual absl::StatusOr<int64_t> LastFencingToken() = 0;
  // Writes a consistent copy of the database to `path` (VACUUM INTO; `path`
  // must not exist).
  virtual absl::Status CopyTo(const std::string& path) = 0;
};

// Runs PRAGMA integrity_check on the database file at `path`; OK when it
// reports "ok".
absl::Status CheckLedgerIntegrity(const std::string& path);

}  // namespace sweepd

#endif  // SWEEPD_COORDINATOR_LEDGER_H_
