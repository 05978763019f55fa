// LedgerImpl: the SQLite implementation behind the Ledger interface
// (ledger.h, which states the rules it keeps). Private to the ledger; its
// methods live in one file per subsystem:
//   ledger.cc              Open, Init, Close, policies, stats
//   ledger_writer.cc       writer thread: group commit, callbacks, checkpoints,
//                          fencing-token blocks
//   ledger_transitions.cc  state changes: submit, stages, leases, results,
//                          renew, release, expiry, cancel, workers
//   ledger_reads.cc        reads on the reader pool
//   ledger_schema.cc       migrations and row readers
//   ledger_sqlite.cc       the SQLite wrapper
// Thread-safety: as Ledger (all public methods thread-safe). Writer-thread
// state is touched only by the writer thread (and Init/Close before/after it
// runs); the rest is guarded by the mutex named on each field.
#ifndef SWEEPD_COORDINATOR_LEDGER_IMPL_H_
#define SWEEPD_COORDINATOR_LEDGER_IMPL_H_

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "coordinator/ledger.h"
#include "coordinator/ledger_sqlite.h"
#include "coordinator/sweep_policy.h"

namespace sweepd::ledger_internal {

using Policy = EffectivePolicy;
using v1::TaskState;

// A queued write operation (see Ledger: group commit).
struct WriteOp {
  // Runs inside the batch transaction (in its own savepoint unless
  // single_statement).
  std::function<absl::Status()> apply;
  // Called after COMMIT with apply's status, or with the commit error.
  std::function<void(absl::Status)> finish;
  // apply writes with at most one statement, after every check that can fail:
  // on error nothing of it is left to undo, so it needs no savepoint (which
  // would cost two statements and a sub-journal copy of each page it dirties).
  bool single_statement = false;
};

class LedgerImpl : public Ledger {
 public:
  LedgerImpl(std::string path, LedgerOptions options)
      : path_(std::move(path)), options_(options), clock_(options.clock) {}

  ~LedgerImpl() override { Close().IgnoreError(); }

  absl::Status Init();

  // ---- Writes ----

  void InsertSweep(const Plan& plan,
                   Callback<InsertSweepOutcome> done) override;

  void AppendStageTasks(const std::string& sweep_id, int stage_index,
                        std::vector<PlannedTask> tasks,
                        Callback<AppendStageOutcome> done) override;

  void LeaseTasks(const std::string& worker_id,
                  const std::vector<TaskId>& tasks,
                  Callback<LeaseOutcome> done) override;

  std::optional<int64_t> TakeReservedTokens(int n) override;

  void RecordLeases(const std::string& worker_id,
                    std::vector<GrantedLease> leases,
                    Callback<LeaseOutcome> done) override;

  int64_t LeaseMsOf(const v1::SweepSpec& spec) const override;

  void RecordResult(const ResultReport& report,
                    Callback<ResultOutcome> done) override;

  void RenewLeases(const std::string& worker_id,
                   const std::vector<LeaseRef>& leases,
                   Callback<RenewOutcome> done) override;

  void ReleaseLeases(const std::string& worker_id,
                     const std::vector<LeaseRef>& leases,
                     Callback<TaskChanges> done) override;

  void ExpireLeases(const std::vector<ExpiredLease>& leases,
                    Callback<TaskChanges> done) override;

  void CancelSweep(const std::string& sweep_id,
                   Callback<CancelOutcome> done) override;

  void UpsertWorker(const WorkerRow& worker, Callback<bool> done) override;

  void Barrier(Callback<bool> done) override;

  absl::Status Flush() override;

  absl::Status Close() override;

  absl::Status health() override;

  absl::Status writable() override;

  LedgerStats stats() override;

  // ---- Reads ----

  absl::StatusOr<SweepRow> GetSweep(const std::string& sweep_id) override;

  absl::StatusOr<std::vector<SweepRow>> ListSweeps() override;

  absl::StatusOr<v1::TaskCounts> CountTasks(
      const std::string& sweep_id) override;

  absl::StatusOr<TaskPage> ListTasks(const std::string& sweep_id,
                                     const std::vector<v1::TaskState>& states,
                                     int64_t after_idx, int limit,
                                     int64_t max_bytes) override;

  absl::StatusOr<v1::TaskRecord> GetTask(const std::string& sweep_id,
                                         const std::string& task_key) override;

  absl::Status ForEachActiveTask(
      const std::function<void(const ActiveTaskRow&)>& visit) override;

  absl::StatusOr<std::vector<WorkerRow>> ListWorkers() override;

  absl::StatusOr<int> SchemaVersion() override;

  absl::StatusOr<int64_t> LastFencingToken() override;

  absl::Status CopyTo(const std::string& path) override;

 private:
  // ---- Plumbing ----

  template <typename T>
  void Enqueue(std::function<absl::StatusOr<T>()> apply, Callback<T> done,
               bool single_statement = false) {
    auto holder =
        std::make_shared<absl::StatusOr<T>>(absl::UnknownError("not applied"));
    WriteOp op;
    op.single_statement = single_statement;
    op.apply = [holder, apply = std::move(apply)]() {
      *holder = apply();
      return holder->status();
    };
    op.finish = [holder, done = std::move(done)](absl::Status commit_status) {
      if (!commit_status.ok()) {
        done(commit_status);
      } else {
        done(std::move(*holder));
      }
    };
    std::function<void()> run_now;
    {
      absl::MutexLock lock(&queue_mu_);
      if (closed_ || !broken_.ok()) {
        absl::Status s =
            broken_.ok() ? absl::UnavailableError("ledger is closed") : broken_;
        auto fail = [f = std::move(op.finish), s](absl::Status) { f(s); };
        if (!writer_exited_) {
          // The writer still runs: fail the op from there, keeping the callback
          // contract.
          queue_.push_back(WriteOp{nullptr, std::move(fail)});
        } else {
          // Never on the caller's thread: it may hold a lock the callback
          // takes.
          run_now = [fail = std::move(fail)]() mutable {
            fail(absl::OkStatus());
          };
        }
      } else {
        queue_.push_back(std::move(op));
      }
    }
    if (run_now) {
      std::thread(std::move(run_now)).detach();
      return;
    }
    queue_cv_.Signal();
  }

  void WriterLoop();

  void RunBatch(std::vector<WriteOp>& batch);
  // While write_error_ is set: one small write transaction; clears
  // write_error_ when it commits.
  void ProbeWrite();

  struct CallbackBatch {
    std::vector<std::function<void(absl::Status)>> finish;
    std::vector<absl::Status> statuses;
  };

  void CallbackLoop();

  // SQLite calls this on the writer thread after each commit with the number
  // of frames in the WAL.
  static int WalHook(void* self, sqlite3* db, const char*, int pages);

  // Copies WAL pages back into the database file (and fsyncs it) on its own
  // connection, off the writer thread. PASSIVE never blocks the writer.
  void CheckpointLoop();

  template <typename T>
  absl::StatusOr<T> WithReader(
      const std::function<absl::StatusOr<T>(Conn&)>& fn,
      bool in_transaction = true) {
    Conn* conn = nullptr;
    {
      absl::MutexLock lock(&readers_mu_);
      if (readers_.empty()) return absl::UnavailableError("ledger is closed");
      readers_mu_.Await(absl::Condition(
          +[](LedgerImpl* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(
               self->readers_mu_) { return !self->free_readers_.empty(); },
          this));
      conn = free_readers_.back();
      free_readers_.pop_back();
    }
    // A read transaction so multi-statement readers see one snapshot.
    absl::Status begin =
        in_transaction ? conn->Exec("BEGIN") : absl::OkStatus();
    absl::StatusOr<T> result =
        begin.ok() ? fn(*conn) : absl::StatusOr<T>(begin);
    if (begin.ok() && in_transaction) conn->Exec("COMMIT").IgnoreError();
    {
      absl::MutexLock lock(&readers_mu_);
      free_readers_.push_back(conn);
    }
    return result;
  }

  Policy PolicyOf(const v1::SweepSpec& spec) const;

  Policy PolicyFor(const std::string& sweep_id) const;

  // ---- Writer-thread helpers (only called from apply functions) ----

  absl::StatusOr<std::optional<TaskRowState>> LoadRow(
      const std::string& sweep_id, const std::string& task_key);

  absl::Status StoreRow(const TaskRowState& r);

  // StoreRow plus the outcome columns, in one UPDATE.
  absl::Status SetOutcome(const TaskRowState& r, const std::string* result_blob,
                          const std::string& error);

  // Adds the batch's committed results to workers.tasks_done: one UPDATE per
  // worker per transaction.
  absl::Status FlushTasksDone();

  // (sweep_id, task_key) of the lease with `token`; NOT_FOUND if never issued,
  // INVALID_ARGUMENT if it was issued for another task.
  absl::StatusOr<TaskId> ResolveToken(const std::string& task_key,
                                      int64_t token);

  absl::Status SetFencingCounter(int64_t value);

  absl::Status UpdateSweepStates();

  // ---- Operations ----

  absl::StatusOr<InsertSweepOutcome> DoInsertSweep(const Plan& plan);

  absl::StatusOr<AppendStageOutcome> DoAppendStage(
      const std::string& sweep_id, int stage_index,
      const std::vector<PlannedTask>& tasks);

  // Inserts `tasks` of `sweep_id` with idx from `first_idx`. A task whose key
  // has a committed DONE result in another sweep is inserted DONE with that
  // result (finished work is never computed again).
  absl::Status InsertTaskRows(const std::string& sweep_id,
                              const std::vector<PlannedTask>& tasks,
                              int64_t first_idx, int64_t now,
                              std::vector<TaskState>* states);

  absl::StatusOr<LeaseOutcome> DoLease(const std::string& worker_id,
                                       const std::vector<TaskId>& tasks);

  // A token for a lease written in this transaction: it may exceed the
  // persisted limit, because this transaction persists it (RunBatch).
  int64_t NextTokenInTransaction();

  absl::StatusOr<LeaseOutcome> DoRecordLeases(
      const std::string& worker_id, const std::vector<GrantedLease>& leases);

  absl::StatusOr<ResultOutcome> DoRecordResult(const ResultReport& report);

  int64_t BackoffMs(const Policy& policy, int attempts) const;

  absl::StatusOr<RenewOutcome> DoRenew(const std::string& worker_id,
                                       const std::vector<LeaseRef>& leases);

  absl::StatusOr<TaskChanges> DoRelease(const std::string& worker_id,
                                        const std::vector<LeaseRef>& leases);

  absl::StatusOr<TaskChanges> DoExpire(const std::vector<ExpiredLease>& leases);

  absl::StatusOr<CancelOutcome> DoCancel(const std::string& sweep_id);

  absl::StatusOr<bool> DoUpsertWorker(const WorkerRow& w);

  const std::string path_;
  const LedgerOptions options_;
  Clock* const clock_;

  // Writer-thread state: no mutex, because only one thread touches it at a
  // time: Init before the writer starts, then the writer thread (apply
  // functions, RunBatch), then Close after joining it.
  std::unique_ptr<Conn> writer_;
  absl::flat_hash_map<std::string, Policy> policies_;
  std::set<std::string> touched_sweeps_;
  // Committed results per worker: of the current operation, of the batch.
  std::vector<std::string> op_tasks_done_;
  std::map<std::string, int64_t> tasks_done_;
  std::thread writer_thread_;

  // Fencing tokens. Every token ever handed out is <= meta.fencing_counter on
  // disk. LeaseTasks takes tokens inside its transaction (which persists the
  // counter); TakeReservedTokens only hands out tokens <=
  // durable_token_limit_, a value already committed.
  absl::Mutex token_mu_;
  int64_t last_token_ ABSL_GUARDED_BY(token_mu_) = 0;
  int64_t durable_token_limit_ ABSL_GUARDED_BY(token_mu_) = 0;
  bool want_token_block_ ABSL_GUARDED_BY(token_mu_) = false;
  int64_t token_grants_ ABSL_GUARDED_BY(token_mu_) = 0;
  int64_t token_misses_ ABSL_GUARDED_BY(token_mu_) = 0;

  // Callbacks of committed batches, run in order by callback_thread_.
  absl::Mutex callback_mu_;
  absl::CondVar callback_cv_;
  std::deque<CallbackBatch> callback_queue_ ABSL_GUARDED_BY(callback_mu_);
  bool callbacks_closed_ ABSL_GUARDED_BY(callback_mu_) = false;
  std::thread callback_thread_;

  // Background checkpoints (WalHook asks, CheckpointLoop does).
  static constexpr int kWalCheckpointPages = 2000;
  static constexpr int kWalWriterCheckpointPages = 4000;
  // Used by checkpoint_thread_ only (opened by Init, reset by Close after the
  // join).
  std::unique_ptr<Conn> checkpointer_;
  absl::Mutex checkpoint_mu_;
  absl::CondVar checkpoint_cv_;
  bool checkpoint_wanted_ ABSL_GUARDED_BY(checkpoint_mu_) = false;
  bool checkpoint_closed_ ABSL_GUARDED_BY(checkpoint_mu_) = false;
  std::thread checkpoint_thread_;

  // The write queue and the writer's outcome.
  absl::Mutex queue_mu_;
  absl::CondVar queue_cv_;
  std::deque<WriteOp> queue_ ABSL_GUARDED_BY(queue_mu_);
  bool closed_ ABSL_GUARDED_BY(queue_mu_) = false;
  bool writer_exited_ ABSL_GUARDED_BY(queue_mu_) = false;
  absl::Status broken_ ABSL_GUARDED_BY(queue_mu_);
  // Set while commits fail for want of space / with I/O errors (writable()).
  absl::Status write_error_ ABSL_GUARDED_BY(queue_mu_);
  LedgerStats stats_ ABSL_GUARDED_BY(queue_mu_);

  // The read-only connection pool (WithReader borrows one at a time).
  absl::Mutex readers_mu_;
  std::vector<std::unique_ptr<Conn>> readers_ ABSL_GUARDED_BY(readers_mu_);
  std::vector<Conn*> free_readers_ ABSL_GUARDED_BY(readers_mu_);
};

}  // namespace sweepd::ledger_internal

#endif  // SWEEPD_COORDINATOR_LEDGER_IMPL_H_
