// LeaseScheduler's implementation. One concept (the in-memory mirror of the
// ledger's active tasks and the policy that picks from it) in one file past
// ~900 lines: the mirror's indices (ready groups, per-model groups, waiting
// and leased sets, pins, per-kind pending counts) are kept consistent by the
// same few helpers that every transition calls, so splitting them apart would
// spread one invariant over several files.
#include "coordinator/scheduler.h"

#include <algorithm>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <tuple>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "common/error_reason.h"
#include "common/logging.h"
#include "common/status.h"
#include "coordinator/task_states.h"

namespace sweepd {
namespace {

using v1::TaskState;

struct SweepInfo {
  std::string id;
  std::string name;
  int priority = 0;
  int tensor_parallel = 0;
  std::string model_fingerprint;
  v1::JobKind kind = v1::JOB_KIND_UNSPECIFIED;
  bool cancelled = false;
  // Derived stages not planned yet (docs/STAGES.md); the sweep runs until
  // they are.
  std::vector<int> deferred_stages;
  // A derivation of the next deferred stage is in flight.
  bool deriving = false;
  v1::TaskCounts counts;
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
  uint64_t version = 0;
  // Lease length of its tasks (policy.lease_seconds or the ledger default).
  int64_t lease_ms = 0;
  // PENDING tasks per job kind (a stage may have its own kind).
  std::map<v1::JobKind, int64_t> pending_by_kind;
};

struct Group;

struct MemTask {
  SweepInfo* sweep = nullptr;
  Group* group = nullptr;
  std::string task_key;
  int64_t idx = 0;
  TaskState state = v1::TASK_STATE_PENDING;
  bool reserved = false;  // picked for a lease that has not committed yet
  bool expiring = false;  // an expiry write is in flight
  int attempts = 0;
  int64_t fencing_token = 0;
  std::string worker;
  int64_t expires_ms = 0;
  int64_t next_eligible_ms = 0;
  // What a lease hands the worker (kept so leases never read SQLite).
  v1::TaskSpec spec;
};

struct Group {
  SweepInfo* sweep = nullptr;
  std::string group_key;
  // Job kind of its tasks (one group never mixes kinds).
  v1::JobKind kind = v1::JOB_KIND_UNSPECIFIED;
  int64_t seq = 0;
  // Leasable now: PENDING, not reserved, eligible time reached. Ordered by task
  // index.
  std::set<std::pair<int64_t, MemTask*>> ready;
  std::string pinned_worker;
};

struct WorkerEntry {
  std::string id;
  std::string name;
  v1::WorkerCapabilities caps;
  int64_t registered_ms = 0;
  int64_t last_seen_ms = 0;
  bool draining = false;
  int64_t tasks_done = 0;
  absl::flat_hash_set<Group*> pinned_groups;
};

std::string TaskMapKey(absl::string_view sweep_id, absl::string_view task_key) {
  return absl::StrCat(sweep_id, "\n", task_key);
}

v1::SweepState StateOf(const SweepInfo& s) {
  return SweepStateFromCounts(s.counts, s.cancelled,
                              !s.deferred_stages.empty());
}

class LeaseSchedulerImpl : public LeaseScheduler {
 public:
  LeaseSchedulerImpl(Ledger* ledger, const SchedulerOptions& options)
      : ledger_(ledger), options_(options), clock_(options.clock) {}
  // Lease writes are enqueued without anyone waiting on their callbacks (which
  // use this object): wait for them. A closed ledger has run them already.
  ~LeaseSchedulerImpl() override { ledger_->Flush().IgnoreError(); }

  absl::Status Load() {
    const int64_t now = clock_->NowMs();
    ASSIGN_OR_RETURN(std::vector<SweepRow> sweeps, ledger_->ListSweeps());
    absl::MutexLock lock(&mu_);
    for (const SweepRow& row : sweeps) {
      SweepInfo* s = AddSweepLocked(row.sweep_id, row.spec, row.created_ms);
      ASSIGN_OR_RETURN(s->counts, ledger_->CountTasks(row.sweep_id));
      s->cancelled = row.state == v1::SWEEP_STATE_CANCELLED;
      s->deferred_stages = row.deferred_stages;
      s->updated_ms = row.updated_ms;
    }
    absl::Status visit_status;
    // Runs inside ForEachActiveTask, on this thread, while mu_ is held.
    RETURN_IF_ERROR(ledger_->ForEachActiveTask(
        [&](const ActiveTaskRow& a) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          auto it = sweeps_.find(a.row.sweep_id);
          if (it == sweeps_.end()) {
            visit_status = absl::DataLossError(absl::StrCat(
                "task '", a.row.task_key, "' belongs to unknown sweep '",
                a.row.sweep_id, "'"));
            return;
          }
          MemTask* t = AddTaskLocked(it->second.get(), a.row.task_key, a.idx,
                                     a.group_key, a.spec.kind());
          CopyRow(a.row, t);
          t->spec = a.spec;
          if (t->state == v1::TASK_STATE_PENDING) {
            it->second->pending_by_kind[t->group->kind]++;
          }
          if (t->state == v1::TASK_STATE_LEASED) {
            // A lease whose grant reply may have died with the old process
            // comes back after its own lease period (the sweep's policy),
            // unless the options ask for a fixed grace.
            const int64_t grace = options_.restart_grace_ms > 0
                                      ? options_.restart_grace_ms
                                      : it->second->lease_ms;
            t->expires_ms = std::max(t->expires_ms, now + grace);
            // The pin follows the lease so the group stays with that worker
            // after a restart.
            if (!t->worker.empty()) Pin(t->group, t->worker);
          }
          Place(t);
        }));
    RETURN_IF_ERROR(visit_status);
    ASSIGN_OR_RETURN(std::vector<WorkerRow> workers, ledger_->ListWorkers());
    for (const WorkerRow& w : workers) {
      auto e = std::make_unique<WorkerEntry>();
      e->id = w.worker_id;
      e->name = w.name;
      e->caps = w.capabilities;
      e->registered_ms = w.registered_ms;
      // Give every known worker one timeout from now to come back.
      e->last_seen_ms = std::max(w.last_seen_ms, now);
      e->tasks_done = w.tasks_done;
      WorkerEntry* raw = e.get();
      workers_[w.worker_id] = std::move(e);
      for (auto& [key, g] : groups_) {
        if (g->pinned_worker == w.worker_id) raw->pinned_groups.insert(g.get());
      }
    }
    SWEEPD_LOG(INFO) << "scheduler loaded " << sweeps_.size() << " sweeps, "
                     << tasks_.size() << " active tasks, " << workers_.size()
                     << " workers";
    return absl::OkStatus();
  }

  // ---- LeaseScheduler ----

  void SubmitPlan(Plan plan, Callback<SubmitOutcome> done) override {
    auto shared = std::make_shared<Plan>(std::move(plan));
    // No lock: inserting does not depend on the mirror, and copying a big plan
    // must not stall leasing.
    ledger_->InsertSweep(*shared, [this, shared, done = std::move(done)](
                                      absl::StatusOr<InsertSweepOutcome> r) {
      if (!r.ok()) return done(r.status());
      SubmitOutcome out{shared->sweep_id, r->total_tasks, r->already_existed};
      if (!r->already_existed) {
        absl::MutexLock lock(&mu_);
        const int64_t now = clock_->NowMs();
        SweepInfo* s =
            AddSweepLocked(shared->sweep_id, shared->resolved_spec, now);
        s->deferred_stages = shared->deferred_stages;
        AddPlannedLocked(s, shared->tasks, r->initial_states);
      }
      done(out);
    });
  }

  std::vector<StageWork> TakeSweepsReadyForStage() override {
    std::vector<StageWork> out;
    absl::MutexLock lock(&mu_);
    for (auto& [id, s] : sweeps_) {
      if (s->cancelled || s->deriving || s->deferred_stages.empty()) continue;
      if (s->counts.pending() + s->counts.leased() > 0) continue;
      s->deriving = true;
      out.push_back({id, s->deferred_stages.front(), s->counts.total()});
    }
    return out;
  }

  void AbandonStage(const std::string& sweep_id) override {
    absl::MutexLock lock(&mu_);
    auto it = sweeps_.find(sweep_id);
    if (it != sweeps_.end()) it->second->deriving = false;
  }

  void AppendStage(const std::string& sweep_id, int stage_index,
                   std::vector<PlannedTask> tasks,
                   Callback<int64_t> done) override {
    ledger_->AppendStageTasks(
        sweep_id, stage_index, std::move(tasks),
        [this, sweep_id, stage_index,
         done = std::move(done)](absl::StatusOr<AppendStageOutcome> r) {
          absl::MutexLock lock(&mu_);
          auto it = sweeps_.find(sweep_id);
          if (it == sweeps_.end()) {
            return done(absl::NotFoundError(
                absl::StrCat("sweep_id '", sweep_id, "' not found")));
          }
          SweepInfo* s = it->second.get();
          s->deriving = false;
          if (!r.ok()) return done(r.status());
          auto& d = s->deferred_stages;
          d.erase(std::remove(d.begin(), d.end(), stage_index), d.end());
          if (!r->already_planned) {
            AddPlannedLocked(s, r->tasks, r->initial_states);
          }
          Touch(s);
          done(static_cast<int64_t>(r->tasks.size()));
        });
  }

  void RegisterWorker(const std::string& name,
                      const v1::WorkerCapabilities& caps,
                      Callback<v1::RegisterWorkerResponse> done) override {
    WorkerRow row;
    {
      absl::MutexLock lock(&mu_);
      const int64_t now = clock_->NowMs();
      auto e = std::make_unique<WorkerEntry>();
      e->id = NewWorkerIdLocked(now);
      e->name = name;
      e->caps = caps;
      e->registered_ms = now;
      e->last_seen_ms = now;
      row.worker_id = e->id;
      row.name = name;
      row.capabilities = caps;
      row.registered_ms = now;
      row.last_seen_ms = now;
      workers_[e->id] = std::move(e);
      ledger_->UpsertWorker(
          row, [this, id = row.worker_id,
                done = std::move(done)](absl::StatusOr<bool> r) {
            if (!r.ok()) return done(r.status());
            v1::RegisterWorkerResponse resp;
            resp.set_worker_id(id);
            resp.set_heartbeat_interval_ms(options_.heartbeat_interval_ms);
            done(resp);
          });
    }
  }

  void LeaseTasks(const std::string& worker_id, int max_tasks,
                  const std::optional<v1::WorkerCapabilities>& caps,
                  Callback<LeaseBatch> done) override {
    // No leases while the ledger cannot commit (disk full): a lease granted
    // from the mirror would be taken back when its write fails.
    if (absl::Status writable = ledger_->writable(); !writable.ok()) {
      return done(writable);
    }
    std::optional<absl::StatusOr<LeaseBatch>> reply;
    {
      absl::MutexLock lock(&mu_);
      reply = LeaseLocked(worker_id, max_tasks, caps, done);
    }
    // Replies decided here are sent without holding mu_.
    if (reply.has_value()) done(std::move(*reply));
  }

  // The reply when it is known now; nullopt when `done` was handed to a ledger
  // callback (moved from).
  std::optional<absl::StatusOr<LeaseBatch>> LeaseLocked(
      const std::string& worker_id, int max_tasks,
      const std::optional<v1::WorkerCapabilities>& caps,
      Callback<LeaseBatch>& done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const int64_t now = clock_->NowMs();
    auto wit = workers_.find(worker_id);
    if (wit == workers_.end()) {
      return absl::StatusOr<LeaseBatch>(
          WithErrorReason(absl::NotFoundError(absl::StrCat(
                              "worker_id '", worker_id,
                              "' is not registered; call RegisterWorker")),
                          kReasonUnknownWorker));
    }
    WorkerEntry* w = wit->second.get();
    w->last_seen_ms = now;
    if (caps.has_value()) w->caps = *caps;
    max_tasks = std::min(std::max(max_tasks, 1), options_.max_tasks_per_lease);
    PromoteWaiting(now);
    std::vector<MemTask*> picked =
        w->draining ? std::vector<MemTask*>() : Pick(w, max_tasks, now);
    if (picked.empty()) {
      LeaseBatch batch;
      batch.retry_after_ms = RetryAfterLocked(now);
      // Still go through the ledger so this reply follows every earlier commit.
      ledger_->Barrier([batch, done = std::move(done)](absl::StatusOr<bool> r) {
        if (!r.ok()) return done(r.status());
        done(batch);
      });
      return std::nullopt;
    }
    if (std::optional<int64_t> first =
            ledger_->TakeReservedTokens(static_cast<int>(picked.size()))) {
      return absl::StatusOr<LeaseBatch>(
          GrantFromMirror(worker_id, picked, *first, now));
    }
    // No reserved tokens left (the first lease after a start, or a block in
    // flight): the lease is written first and replied after its commit.
    std::vector<TaskId> ids;
    ids.reserve(picked.size());
    for (MemTask* t : picked) ids.push_back(TaskId{t->sweep->id, t->task_key});
    ledger_->LeaseTasks(
        worker_id, ids,
        [this, ids, done = std::move(done)](absl::StatusOr<LeaseOutcome> r) {
          LeaseBatch batch;
          {
            absl::MutexLock lock(&mu_);
            for (const TaskId& id : ids) {
              MemTask* t = Find(id.sweep_id, id.task_key);
              if (t == nullptr) continue;
              t->reserved = false;
              if (!r.ok())
                Place(
                    t);  // the lease did not happen: the task is leasable again
            }
            if (r.ok()) {
              for (const TaskRowState& row : r->not_granted) ApplyLocked(row);
              for (const LeaseGrant& g : r->granted) {
                ApplyLocked(g.row);
                v1::TaskAssignment a;
                a.set_task_key(g.row.task_key);
                a.set_sweep_id(g.row.sweep_id);
                a.set_group_key(g.group_key);
                *a.mutable_spec() = g.spec;
                a.set_fencing_token(g.row.fencing_token);
                a.set_lease_expires_unix_ms(g.row.lease_expires_ms);
                a.set_attempt(g.row.attempts);
                batch.tasks.push_back(std::move(a));
              }
              if (batch.tasks.empty())
                batch.retry_after_ms = RetryAfterLocked(clock_->NowMs());
            }
          }
          if (!r.ok()) return done(r.status());
          done(std::move(batch));
        });
    return std::nullopt;
  }

  // Grants the reserved tasks `picked` in the mirror with tokens first,
  // first+1, ... (already durable as a reserved block), enqueues their ledger
  // write and replies without waiting for it. Every later write naming these
  // leases (report, heartbeat, release, expiry) is enqueued after it, so the
  // ledger applies them in order; if the process dies first, the tokens were
  // never recorded, the tasks are still PENDING in the ledger and the worker
  // learns at its next heartbeat that the leases are gone.
  LeaseBatch GrantFromMirror(const std::string& worker_id,
                             const std::vector<MemTask*>& picked, int64_t first,
                             int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    LeaseBatch batch;
    std::vector<GrantedLease> grants;
    std::vector<TaskRowState> before;
    grants.reserve(picked.size());
    before.reserve(picked.size());
    int64_t token = first;
    for (MemTask* t : picked) {
      t->reserved = false;
      before.push_back(RowOf(*t));
      SweepInfo* s = t->sweep;
      CountTask(s, t->group->kind, t->state, -1);
      CountTask(s, t->group->kind, v1::TASK_STATE_LEASED, +1);
      t->state = v1::TASK_STATE_LEASED;
      t->attempts += 1;
      t->fencing_token = token++;
      t->worker = worker_id;
      t->expires_ms = now + s->lease_ms;
      Place(t);
      Touch(s);
      grants.push_back(GrantedLease{TaskId{s->id, t->task_key},
                                    t->fencing_token, t->expires_ms});
      v1::TaskAssignment a;
      a.set_task_key(t->task_key);
      a.set_sweep_id(s->id);
      a.set_group_key(t->group->group_key);
      *a.mutable_spec() = t->spec;
      a.set_fencing_token(t->fencing_token);
      a.set_lease_expires_unix_ms(t->expires_ms);
      a.set_attempt(t->attempts);
      batch.tasks.push_back(std::move(a));
    }
    ledger_->RecordLeases(
        worker_id, grants,
        [this, grants, before](absl::StatusOr<LeaseOutcome> r) {
          absl::MutexLock lock(&mu_);
          if (!r.ok()) {
            // Nothing was written: the tasks are as they were in the ledger.
            SWEEPD_LOG(WARNING) << "recording " << grants.size()
                                << " lease(s) failed: " << r.status();
            for (size_t i = 0; i < grants.size(); ++i) {
              MemTask* t =
                  Find(grants[i].task.sweep_id, grants[i].task.task_key);
              if (t != nullptr && t->state == v1::TASK_STATE_LEASED &&
                  t->fencing_token == grants[i].fencing_token) {
                ApplyLocked(before[i]);
              }
            }
            return;
          }
          // Granted rows are what the mirror already holds; only refusals
          // (the task changed before the write) correct it.
          for (const TaskRowState& row : r->not_granted) ApplyLocked(row);
        });
    return batch;
  }

  static TaskRowState RowOf(const MemTask& t) {
    TaskRowState r;
    r.sweep_id = t.sweep->id;
    r.task_key = t.task_key;
    r.state = t.state;
    r.attempts = t.attempts;
    r.fencing_token = t.fencing_token;
    r.lease_worker = t.worker;
    r.lease_expires_ms = t.expires_ms;
    r.next_eligible_ms = t.next_eligible_ms;
    return r;
  }

  void Heartbeat(const std::string& worker_id,
                 const std::vector<LeaseRef>& leases, bool draining,
                 Callback<HeartbeatOutcome> done) override {
    absl::MutexLock lock(&mu_);
    const int64_t now = clock_->NowMs();
    WorkerEntry* w = FindOrAddWorkerLocked(worker_id, now);
    w->last_seen_ms = now;
    if (draining && !w->draining) {
      w->draining = true;
      UnpinAll(w);
    }
    ledger_->RenewLeases(
        worker_id, leases,
        [this, done = std::move(done)](absl::StatusOr<RenewOutcome> r) {
          if (!r.ok()) return done(r.status());
          HeartbeatOutcome out;
          out.cancelled_task_keys = r->lost_task_keys;
          {
            absl::MutexLock lock(&mu_);
            for (const TaskRowState& row : r->renewed) {
              ApplyLocked(row);
              if (out.lease_expires_ms == 0 ||
                  row.lease_expires_ms < out.lease_expires_ms) {
                out.lease_expires_ms = row.lease_expires_ms;
              }
            }
          }
          done(std::move(out));
        });
  }

  void ReportResult(const ResultReport& report, Callback<bool> done) override {
    absl::MutexLock lock(&mu_);
    auto wit = workers_.find(report.worker_id);
    if (wit != workers_.end()) wit->second->last_seen_ms = clock_->NowMs();
    ledger_->RecordResult(
        report, [this, worker_id = report.worker_id,
                 done = std::move(done)](absl::StatusOr<ResultOutcome> r) {
          if (!r.ok()) return done(r.status());
          if (r->row.has_value()) {
            absl::MutexLock lock(&mu_);
            ApplyLocked(*r->row);
            if (r->row->state == v1::TASK_STATE_DONE) {
              auto it = workers_.find(worker_id);
              if (it != workers_.end()) it->second->tasks_done++;
            }
          }
          if (!r->committed)
            SWEEPD_LOG(DEBUG) << "report dropped: " << r->reason;
          done(r->committed);
        });
  }

  void ReleaseTasks(const std::string& worker_id,
                    const std::vector<LeaseRef>& leases,
                    Callback<int> done) override {
    absl::MutexLock lock(&mu_);
    ledger_->ReleaseLeases(
        worker_id, leases,
        [this, done = std::move(done)](absl::StatusOr<TaskChanges> r) {
          if (!r.ok()) return done(r.status());
          {
            absl::MutexLock lock(&mu_);
            for (const TaskRowState& row : r->changed) ApplyLocked(row);
          }
          done(static_cast<int>(r->changed.size()));
        });
  }

  void CancelSweep(const std::string& sweep_id,
                   Callback<int64_t> done) override {
    absl::MutexLock lock(&mu_);
    ledger_->CancelSweep(sweep_id, [this, sweep_id, done = std::move(done)](
                                       absl::StatusOr<CancelOutcome> r) {
      if (!r.ok()) return done(r.status());
      {
        absl::MutexLock lock(&mu_);
        auto it = sweeps_.find(sweep_id);
        if (it != sweeps_.end()) it->second->cancelled = true;
        for (const TaskRowState& row : r->changed) ApplyLocked(row);
        if (it != sweeps_.end()) Touch(it->second.get());
      }
      done(r->cancelled_tasks);
    });
  }

  void ExpireLeases(Callback<int> done) override {
    absl::MutexLock lock(&mu_);
    const int64_t now = clock_->NowMs();
    std::vector<ExpiredLease> expired;
    for (auto it = leased_.begin(); it != leased_.end() && it->first <= now;
         ++it) {
      MemTask* t = it->second;
      if (t->expiring) continue;
      t->expiring = true;
      expired.push_back(
          ExpiredLease{t->sweep->id, t->task_key, t->fencing_token});
    }
    if (expired.empty()) {
      ledger_->Barrier([done = std::move(done)](absl::StatusOr<bool> r) {
        if (!r.ok()) return done(r.status());
        done(0);
      });
      return;
    }
    ledger_->ExpireLeases(expired, [this, expired, done = std::move(done)](
                                       absl::StatusOr<TaskChanges> r) {
      {
        absl::MutexLock lock(&mu_);
        for (const ExpiredLease& e : expired) {
          if (MemTask* t = Find(e.sweep_id, e.task_key)) t->expiring = false;
        }
        if (r.ok()) {
          for (const TaskRowState& row : r->changed) ApplyLocked(row);
        }
      }
      if (!r.ok()) return done(r.status());
      if (!r->changed.empty()) {
        SWEEPD_LOG(INFO) << "expired " << r->changed.size() << " lease(s)";
      }
      done(static_cast<int>(r->changed.size()));
    });
  }

  std::optional<SweepSummary> GetSweep(const std::string& sweep_id) override {
    absl::MutexLock lock(&mu_);
    auto it = sweeps_.find(sweep_id);
    if (it == sweeps_.end()) return std::nullopt;
    return Summarize(*it->second, clock_->NowMs());
  }

  std::vector<SweepSummary> ListSweeps() override {
    absl::MutexLock lock(&mu_);
    std::vector<SweepSummary> out;
    const int64_t now = clock_->NowMs();
    for (const auto& [id, s] : sweeps_) out.push_back(Summarize(*s, now));
    std::sort(out.begin(), out.end(),
              [](const SweepSummary& a, const SweepSummary& b) {
                return std::tie(a.created_ms, a.sweep_id) <
                       std::tie(b.created_ms, b.sweep_id);
              });
    return out;
  }

  std::vector<v1::WorkerInfo> ListWorkers() override {
    absl::MutexLock lock(&mu_);
    absl::flat_hash_map<std::string, int> active;
    for (const auto& [exp, t] : leased_) active[t->worker]++;
    std::vector<v1::WorkerInfo> out;
    for (const auto& [id, w] : workers_) {
      v1::WorkerInfo info;
      info.set_worker_id(id);
      info.set_name(w->name);
      info.set_device_kind(w->caps.device_kind());
      info.set_gpu_count(w->caps.gpu_count());
      info.set_tensor_parallel(w->caps.tensor_parallel());
      info.set_model_fingerprint(w->caps.model_fingerprint());
      info.set_last_seen_unix_ms(w->last_seen_ms);
      info.set_active_leases(active.contains(id) ? active[id] : 0);
      info.set_draining(w->draining);
      info.set_tasks_done(w->tasks_done);
      out.push_back(std::move(info));
    }
    std::sort(out.begin(), out.end(),
              [](const v1::WorkerInfo& a, const v1::WorkerInfo& b) {
                return a.worker_id() < b.worker_id();
              });
    return out;
  }

 private:
  // ---- Mirror maintenance (mu_ held) ----

  SweepInfo* AddSweepLocked(const std::string& id, const v1::SweepSpec& spec,
                            int64_t created)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto s = std::make_unique<SweepInfo>();
    s->id = id;
    s->name = spec.name();
    s->priority = spec.policy().priority();
    s->tensor_parallel = spec.policy().tensor_parallel();
    s->model_fingerprint = spec.model().fingerprint();
    s->kind = JobKindOf(spec.job_case());
    s->created_ms = created;
    s->updated_ms = created;
    s->lease_ms = ledger_->LeaseMsOf(spec);
    SweepInfo* raw = s.get();
    sweeps_[id] = std::move(s);
    return raw;
  }

  MemTask* AddTaskLocked(SweepInfo* s, const std::string& task_key, int64_t idx,
                         const std::string& group_key, v1::JobKind kind)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const std::string gk = TaskMapKey(s->id, group_key);
    auto& g = groups_[gk];
    if (g == nullptr) {
      g = std::make_unique<Group>();
      g->sweep = s;
      g->group_key = group_key;
      g->kind = KindOf(*s, kind);
      g->seq = next_group_seq_++;
    }
    auto t = std::make_unique<MemTask>();
    t->sweep = s;
    t->group = g.get();
    t->task_key = task_key;
    t->idx = idx;
    MemTask* raw = t.get();
    tasks_[TaskMapKey(s->id, task_key)] = std::move(t);
    return raw;
  }

  MemTask* Find(const std::string& sweep_id, const std::string& task_key)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = tasks_.find(TaskMapKey(sweep_id, task_key));
    return it == tasks_.end() ? nullptr : it->second.get();
  }

  // A task's job kind: its spec's, else (older specs) its sweep's.
  static v1::JobKind KindOf(const SweepInfo& s, v1::JobKind task_kind) {
    return task_kind != v1::JOB_KIND_UNSPECIFIED ? task_kind : s.kind;
  }

  // Adds `delta` tasks of `kind` in `state` to the sweep's counts.
  static void CountTask(SweepInfo* s, v1::JobKind kind, TaskState state,
                        int64_t delta) {
    AdjustTaskCount(&s->counts, state, delta);
    if (state == v1::TASK_STATE_PENDING) {
      int64_t& n = s->pending_by_kind[kind];
      n += delta;
      if (n == 0) s->pending_by_kind.erase(kind);
    }
  }

  static void CopyRow(const TaskRowState& row, MemTask* t) {
    t->state = row.state;
    t->attempts = row.attempts;
    t->fencing_token = row.fencing_token;
    t->worker = row.lease_worker;
    t->expires_ms = row.lease_expires_ms;
    t->next_eligible_ms = row.next_eligible_ms;
  }

  using GroupOrder = std::tuple<int, int64_t, Group*>;
  static GroupOrder OrderOf(Group* g) {
    return GroupOrder(-g->sweep->priority, g->seq, g);
  }

  // Puts `t` into the index its state calls for.
  void Place(MemTask* t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (t->reserved) return;
    if (t->state == v1::TASK_STATE_LEASED) {
      leased_.insert({t->expires_ms, t});
    } else if (t->state == v1::TASK_STATE_PENDING) {
      if (t->next_eligible_ms > clock_->NowMs()) {
        waiting_.insert({t->next_eligible_ms, t});
      } else {
        if (t->group->ready.empty()) MarkReady(t->group);
        t->group->ready.insert({t->idx, t});
      }
    }
  }

  void Unplace(MemTask* t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    leased_.erase({t->expires_ms, t});
    waiting_.erase({t->next_eligible_ms, t});
    if (t->group->ready.erase({t->idx, t}) > 0 && t->group->ready.empty()) {
      MarkNotReady(t->group);
    }
  }

  // A group's entries in the indices of groups with leasable tasks.
  void MarkReady(Group* g) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ready_groups_.insert(OrderOf(g));
    const std::string& model = g->sweep->model_fingerprint;
    if (!model.empty()) ready_by_model_[model].insert(OrderOf(g));
  }
  void MarkNotReady(Group* g) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ready_groups_.erase(OrderOf(g));
    const std::string& model = g->sweep->model_fingerprint;
    if (model.empty()) return;
    auto it = ready_by_model_.find(model);
    if (it == ready_by_model_.end()) return;
    // An emptied set stays: Pick may be iterating it.
    it->second.erase(OrderOf(g));
  }

  // Adds newly inserted tasks (with their committed initial states) to the
  // mirror and makes the non-terminal ones leasable.
  void AddPlannedLocked(SweepInfo* s, const std::vector<PlannedTask>& tasks,
                        const std::vector<TaskState>& states)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (size_t i = 0; i < tasks.size(); ++i) {
      const TaskState st = states[i];
      const PlannedTask& pt = tasks[i];
      CountTask(s, KindOf(*s, pt.spec.kind()), st, 1);
      s->counts.set_total(s->counts.total() + 1);
      if (IsTerminalTaskState(st)) continue;
      MemTask* t = AddTaskLocked(s, pt.task_key, pt.spec.index(), pt.group_key,
                                 pt.spec.kind());
      t->next_eligible_ms = 0;
      t->spec = pt.spec;
      Place(t);
    }
    Touch(s);
  }

  void Touch(SweepInfo* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    s->version++;
    s->updated_ms = clock_->NowMs();
  }

  // Mirrors a committed row state.
  void ApplyLocked(const TaskRowState& row) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = tasks_.find(TaskMapKey(row.sweep_id, row.task_key));
    if (it == tasks_.end()) return;  // already terminal in the mirror
    MemTask* t = it->second.get();
    Unplace(t);
    SweepInfo* s = t->sweep;
    if (t->state != row.state) {
      CountTask(s, t->group->kind, t->state, -1);
      CountTask(s, t->group->kind, row.state, +1);
    }
    Touch(s);
    if (IsTerminalTaskState(row.state)) {
      tasks_.erase(it);
      return;
    }
    CopyRow(row, t);
    Place(t);
  }

  void PromoteWaiting(int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    while (!waiting_.empty() && waiting_.begin()->first <= now) {
      MemTask* t = waiting_.begin()->second;
      waiting_.erase(waiting_.begin());
      Place(t);
    }
  }

  int64_t RetryAfterLocked(int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    int64_t after = options_.idle_retry_after_ms;
    if (!waiting_.empty())
      after =
          std::min(after, std::max<int64_t>(1, waiting_.begin()->first - now));
    return after;
  }

  bool Alive(const std::string& worker_id, int64_t now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = workers_.find(worker_id);
    return it != workers_.end() && !it->second->draining &&
           it->second->last_seen_ms + options_.worker_timeout_ms > now;
  }

  // Whether a worker with `caps` runs `kind` at the TP size a sweep requires
  // (0 = any).
  static bool CanRun(const v1::WorkerCapabilities& caps, v1::JobKind kind,
                     int tensor_parallel) {
    if (tensor_parallel != 0 && tensor_parallel != caps.tensor_parallel())
      return false;
    return caps.job_kinds_size() == 0 ||
           std::find(caps.job_kinds().begin(), caps.job_kinds().end(), kind) !=
               caps.job_kinds().end();
  }
  static bool Compatible(const WorkerEntry& w, const Group& g) {
    return !g.sweep->cancelled &&
           CanRun(w.caps, g.kind, g.sweep->tensor_parallel);
  }

  void Pin(Group* g, const std::string& worker_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (g->pinned_worker == worker_id) return;
    if (!g->pinned_worker.empty()) {
      auto it = workers_.find(g->pinned_worker);
      if (it != workers_.end()) it->second->pinned_groups.erase(g);
    }
    g->pinned_worker = worker_id;
    auto it = workers_.find(worker_id);
    if (it != workers_.end()) it->second->pinned_groups.insert(g);
  }

  void UnpinAll(WorkerEntry* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (Group* g : w->pinned_groups) g->pinned_worker.clear();
    w->pinned_groups.clear();
  }

  // Reserves up to `n` tasks for `w` following the policy in scheduler.h.
  // Cost: the worker's pinned groups plus the groups visited until `n` tasks
  // are found (model matches come from ready_by_model_), never a scan of every
  // ready group.
  std::vector<MemTask*> Pick(WorkerEntry* w, int n, int64_t now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<MemTask*> picked;
    auto full = [&] { return static_cast<int>(picked.size()) >= n; };
    auto take = [&](Group* g, bool pin) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      while (!full() && !g->ready.empty()) {
        MemTask* t = g->ready.begin()->second;
        Unplace(t);
        t->reserved = true;
        picked.push_back(t);
      }
      if (pin) Pin(g, w->id);
    };
    // 1. Groups already pinned to this worker that have leasable tasks
    // (copied: take() may re-pin).
    std::vector<Group*> mine;
    for (Group* g : w->pinned_groups) {
      if (!g->ready.empty() && Compatible(*w, *g)) mine.push_back(g);
    }
    std::sort(mine.begin(), mine.end(),
              [](Group* a, Group* b) { return OrderOf(a) < OrderOf(b); });
    for (Group* g : mine) {
      if (full()) break;
      take(g, true);
    }
    // 2. By priority; within a priority, the worker's model first; skip others'
    // pins. Iterators step past a group before take() may erase its entry.
    std::vector<Group*> pinned_elsewhere;
    const std::string& model = w->caps.model_fingerprint();
    const std::set<GroupOrder>* model_groups = nullptr;
    if (!model.empty()) {
      auto mit = ready_by_model_.find(model);
      if (mit != ready_by_model_.end()) model_groups = &mit->second;
    }
    auto consider = [&](Group* g) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (g->ready.empty() || !Compatible(*w, *g)) return;
      if (!g->pinned_worker.empty() && g->pinned_worker != w->id &&
          Alive(g->pinned_worker, now)) {
        pinned_elsewhere.push_back(g);
        return;
      }
      take(g, true);
    };
    auto it = ready_groups_.begin();
    while (it != ready_groups_.end() && !full()) {
      const int level = std::get<0>(*it);
      const GroupOrder level_begin(level, std::numeric_limits<int64_t>::min(),
                                   nullptr);
      const GroupOrder next_level(level + 1,
                                  std::numeric_limits<int64_t>::min(), nullptr);
      // Pass 0: groups of the worker's model at this level.
      if (model_groups != nullptr) {
        for (auto m = model_groups->lower_bound(level_begin);
             m != model_groups->end() && std::get<0>(*m) == level && !full();) {
          Group* g = std::get<2>(*m++);
          consider(g);
        }
      }
      // Pass 1: the other groups at this level.
      for (auto l = ready_groups_.lower_bound(level_begin);
           l != ready_groups_.end() && std::get<0>(*l) == level && !full();) {
        Group* g = std::get<2>(*l++);
        if (!model.empty() && g->sweep->model_fingerprint == model) continue;
        consider(g);
      }
      it = ready_groups_.lower_bound(next_level);
    }
    // 3. Nothing else: help with groups pinned to other live workers (pins stay
    // theirs).
    if (picked.empty()) {
      for (Group* g : pinned_elsewhere) {
        if (full()) break;
        if (!g->ready.empty()) take(g, false);
      }
    }
    return picked;
  }

  WorkerEntry* FindOrAddWorkerLocked(const std::string& id, int64_t now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto& e = workers_[id];
    if (e == nullptr) {
      // Unknown id (its row was lost): keep serving its leases, which are
      // matched by token.
      e = std::make_unique<WorkerEntry>();
      e->id = id;
      e->registered_ms = now;
      e->last_seen_ms = now;
      for (auto& [key, g] : groups_) {
        if (g->pinned_worker == id) e->pinned_groups.insert(g.get());
      }
    }
    return e.get();
  }

  std::string NewWorkerIdLocked(int64_t now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::string id;
    do {
      id = absl::StrFormat("w-%x-%08x", now, static_cast<uint32_t>(rng_()));
    } while (workers_.contains(id));
    return id;
  }

  SweepSummary Summarize(const SweepInfo& s, int64_t now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    SweepSummary out;
    out.sweep_id = s.id;
    out.name = s.name;
    out.state = StateOf(s);
    out.counts = s.counts;
    out.created_ms = s.created_ms;
    out.updated_ms = s.updated_ms;
    out.version = s.version;
    if (!s.cancelled) ExplainWaitingLocked(s, now, &out);
    return out;
  }

  // Which kinds of the sweep's pending tasks wait, and whether a live worker
  // runs each; when some kind has none, why (blocked_reason) and what the live
  // workers offer. Cost: kinds x workers.
  void ExplainWaitingLocked(const SweepInfo& s, int64_t now, SweepSummary* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (s.pending_by_kind.empty()) return;
    std::vector<const WorkerEntry*> live;
    for (const auto& [id, w] : workers_) {
      if (Alive(id, now)) live.push_back(w.get());
    }
    std::sort(live.begin(), live.end(),
              [](const WorkerEntry* a, const WorkerEntry* b) {
                return a->id < b->id;
              });
    std::vector<std::string> stuck;
    for (const auto& entry : s.pending_by_kind) {
      const v1::JobKind kind = entry.first;
      const int64_t pending = entry.second;
      v1::WaitingWork work;
      work.set_kind(kind);
      work.set_pending(pending);
      work.set_tensor_parallel(s.tensor_parallel);
      const bool capable =
          std::any_of(live.begin(), live.end(), [&](const WorkerEntry* w) {
            return CanRun(w->caps, kind, s.tensor_parallel);
          });
      work.set_no_capable_worker(!capable);
      if (!capable) {
        stuck.push_back(absl::StrCat(
            pending, " pending ", JobKindLabel(kind),
            s.tensor_parallel != 0
                ? absl::StrCat(" (tensor_parallel ", s.tensor_parallel, ")")
                : ""));
      }
      out->waiting.push_back(std::move(work));
    }
    if (stuck.empty()) return;
    std::vector<std::string> offers;
    for (const WorkerEntry* w : live) {
      v1::WorkerOffer offer;
      offer.set_worker_id(w->id);
      offer.set_name(w->name);
      *offer.mutable_job_kinds() = w->caps.job_kinds();
      offer.set_tensor_parallel(w->caps.tensor_parallel());
      std::vector<std::string> kinds;
      for (int k : w->caps.job_kinds()) {
        kinds.push_back(JobKindLabel(static_cast<v1::JobKind>(k)));
      }
      offers.push_back(absl::StrCat(
          w->name.empty() ? w->id : w->name, " runs ",
          kinds.empty() ? std::string("every kind") : absl::StrJoin(kinds, ","),
          " with tensor_parallel ", w->caps.tensor_parallel()));
      out->live_workers.push_back(std::move(offer));
    }
    out->blocked_reason = absl::StrCat(
        "no live worker can run ", absl::StrJoin(stuck, "; "), " task(s); ",
        offers.empty()
            ? std::string("no live worker is registered")
            : absl::StrCat("live workers: ", absl::StrJoin(offers, "; ")));
  }

  // "eval" for JOB_KIND_EVAL.
  static std::string JobKindLabel(v1::JobKind kind) {
    return absl::AsciiStrToLower(
        absl::StripPrefix(v1::JobKind_Name(kind), "JOB_KIND_"));
  }

  Ledger* const ledger_;
  const SchedulerOptions options_;
  Clock* const clock_;

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<SweepInfo>> sweeps_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::unique_ptr<MemTask>> tasks_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::unique_ptr<Group>> groups_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::unique_ptr<WorkerEntry>> workers_
      ABSL_GUARDED_BY(mu_);
  // Groups with leasable tasks, in policy order; and the same per model
  // fingerprint of their sweep (so affinity never scans other models' groups).
  std::set<GroupOrder> ready_groups_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::set<GroupOrder>> ready_by_model_
      ABSL_GUARDED_BY(mu_);
  std::set<std::pair<int64_t, MemTask*>> waiting_ ABSL_GUARDED_BY(mu_);
  std::set<std::pair<int64_t, MemTask*>> leased_ ABSL_GUARDED_BY(mu_);
  int64_t next_group_seq_ ABSL_GUARDED_BY(mu_) = 0;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_){std::random_device{}()};
};

}  // namespace

absl::StatusOr<std::unique_ptr<LeaseScheduler>> LeaseScheduler::Create(
    Ledger* ledger, const SchedulerOptions& options) {
  if (ledger == nullptr) return absl::InvalidArgumentError("ledger is null");
  if (options.clock == nullptr)
    return absl::InvalidArgumentError("SchedulerOptions.clock is null");
  auto s = std::make_unique<LeaseSchedulerImpl>(ledger, options);
  RETURN_IF_ERROR(
      Annotate(s->Load(), "loading scheduler state from the ledger"));
  return std::unique_ptr<LeaseScheduler>(std::move(s));
}

}  // namespace sweepd
