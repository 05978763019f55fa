// LeaseSchedulerImpl's lease lifecycle: granting (from the mirror with
// reserved tokens, or ledger first), renewal by heartbeat, release and expiry
// (scheduler.h has the contract; scheduler_impl.h says which file holds the
// rest).
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/error_reason.h"
#include "common/logging.h"
#include "coordinator/scheduler_impl.h"

namespace sweepd::scheduler_internal {

void LeaseSchedulerImpl::LeaseTasks(
    const std::string& worker_id, int max_tasks,
    const std::optional<v1::WorkerCapabilities>& caps,
    Callback<LeaseBatch> done) {
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

std::optional<absl::StatusOr<LeaseBatch>> LeaseSchedulerImpl::LeaseLocked(
    const std::string& worker_id, int max_tasks,
    const std::optional<v1::WorkerCapabilities>& caps,
    Callback<LeaseBatch>& done) {
  const int64_t now = clock_->NowMs();
  WorkerEntry* w = mirror_.FindWorker(worker_id);
  if (w == nullptr) {
    return absl::StatusOr<LeaseBatch>(
        WithErrorReason(absl::NotFoundError(absl::StrCat(
                            "worker_id '", worker_id,
                            "' is not registered; call RegisterWorker")),
                        kReasonUnknownWorker));
  }
  w->last_seen_ms = now;
  if (caps.has_value()) w->caps = *caps;
  max_tasks = std::min(std::max(max_tasks, 1), options_.max_tasks_per_lease);
  mirror_.PromoteWaiting(now);
  std::vector<MemTask*> picked =
      w->draining ? std::vector<MemTask*>() : mirror_.Pick(w, max_tasks, now);
  if (picked.empty()) {
    LeaseBatch batch;
    batch.retry_after_ms = mirror_.RetryAfter(now);
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
            MemTask* t = mirror_.Find(id.sweep_id, id.task_key);
            if (t == nullptr) continue;
            t->reserved = false;
            if (!r.ok())
              mirror_.Place(
                  t);  // the lease did not happen: the task is leasable again
          }
          if (r.ok()) {
            for (const TaskRowState& row : r->not_granted) mirror_.Apply(row);
            for (const LeaseGrant& g : r->granted) {
              mirror_.Apply(g.row);
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
              batch.retry_after_ms = mirror_.RetryAfter(clock_->NowMs());
          }
        }
        if (!r.ok()) return done(r.status());
        done(std::move(batch));
      });
  return std::nullopt;
}

LeaseBatch LeaseSchedulerImpl::GrantFromMirror(
    const std::string& worker_id, const std::vector<MemTask*>& picked,
    int64_t first, int64_t now) {
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
    mirror_.Place(t);
    mirror_.Touch(s);
    grants.push_back(GrantedLease{TaskId{s->id, t->task_key}, t->fencing_token,
                                  t->expires_ms});
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
                mirror_.Find(grants[i].task.sweep_id, grants[i].task.task_key);
            if (t != nullptr && t->state == v1::TASK_STATE_LEASED &&
                t->fencing_token == grants[i].fencing_token) {
              mirror_.Apply(before[i]);
            }
          }
          return;
        }
        // Granted rows are what the mirror already holds; only refusals
        // (the task changed before the write) correct it.
        for (const TaskRowState& row : r->not_granted) mirror_.Apply(row);
      });
  return batch;
}

void LeaseSchedulerImpl::Heartbeat(const std::string& worker_id,
                                   const std::vector<LeaseRef>& leases,
                                   bool draining,
                                   Callback<HeartbeatOutcome> done) {
  absl::MutexLock lock(&mu_);
  const int64_t now = clock_->NowMs();
  WorkerEntry* w = mirror_.FindOrAddWorker(worker_id, now);
  w->last_seen_ms = now;
  if (draining && !w->draining) {
    w->draining = true;
    mirror_.UnpinAll(w);
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
            mirror_.Apply(row);
            if (out.lease_expires_ms == 0 ||
                row.lease_expires_ms < out.lease_expires_ms) {
              out.lease_expires_ms = row.lease_expires_ms;
            }
          }
        }
        done(std::move(out));
      });
}

void LeaseSchedulerImpl::ReleaseTasks(const std::string& worker_id,
                                      const std::vector<LeaseRef>& leases,
                                      Callback<int> done) {
  absl::MutexLock lock(&mu_);
  ledger_->ReleaseLeases(
      worker_id, leases,
      [this, done = std::move(done)](absl::StatusOr<TaskChanges> r) {
        if (!r.ok()) return done(r.status());
        {
          absl::MutexLock lock(&mu_);
          for (const TaskRowState& row : r->changed) mirror_.Apply(row);
        }
        done(static_cast<int>(r->changed.size()));
      });
}

void LeaseSchedulerImpl::ExpireLeases(Callback<int> done) {
  absl::MutexLock lock(&mu_);
  const int64_t now = clock_->NowMs();
  std::vector<ExpiredLease> expired = mirror_.MarkExpiring(now);
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
        if (MemTask* t = mirror_.Find(e.sweep_id, e.task_key)) {
          t->expiring = false;
        }
      }
      if (r.ok()) {
        for (const TaskRowState& row : r->changed) mirror_.Apply(row);
      }
    }
    if (!r.ok()) return done(r.status());
    if (!r->changed.empty()) {
      SWEEPD_LOG(INFO) << "expired " << r->changed.size() << " lease(s)";
    }
    done(static_cast<int>(r->changed.size()));
  });
}

}  // namespace sweepd::scheduler_internal
