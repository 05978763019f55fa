// LeaseScheduler::Create and the LeaseSchedulerImpl methods about sweeps and
// workers: loading the mirror, submissions, derived stages, cancellation,
// worker registration and the read-only views (scheduler_impl.h says which
// file holds the rest).
#include "coordinator/scheduler.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"
#include "coordinator/scheduler_impl.h"

namespace sweepd {
namespace scheduler_internal {

LeaseSchedulerImpl::LeaseSchedulerImpl(Ledger* ledger,
                                       const SchedulerOptions& options)
    : ledger_(ledger),
      options_(options),
      clock_(options.clock),
      mirror_(options.clock, options) {}

LeaseSchedulerImpl::~LeaseSchedulerImpl() { ledger_->Flush().IgnoreError(); }

absl::Status LeaseSchedulerImpl::Load() {
  const int64_t now = clock_->NowMs();
  ASSIGN_OR_RETURN(std::vector<SweepRow> sweeps, ledger_->ListSweeps());
  absl::MutexLock lock(&mu_);
  for (const SweepRow& row : sweeps) {
    SweepInfo* s = mirror_.AddSweep(row.sweep_id, row.spec, row.created_ms,
                                    ledger_->LeaseMsOf(row.spec));
    ASSIGN_OR_RETURN(s->counts, ledger_->CountTasks(row.sweep_id));
    s->cancelled = row.state == v1::SWEEP_STATE_CANCELLED;
    s->deferred_stages = row.deferred_stages;
    s->updated_ms = row.updated_ms;
  }
  absl::Status visit_status;
  // Runs inside ForEachActiveTask, on this thread, while mu_ is held.
  RETURN_IF_ERROR(ledger_->ForEachActiveTask(
      [&](const ActiveTaskRow& a) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        SweepInfo* s = mirror_.FindSweep(a.row.sweep_id);
        if (s == nullptr) {
          visit_status = absl::DataLossError(absl::StrCat(
              "task '", a.row.task_key, "' belongs to unknown sweep '",
              a.row.sweep_id, "'"));
          return;
        }
        MemTask* t = mirror_.AddTask(s, a.row.task_key, a.idx, a.group_key,
                                     a.spec.kind());
        CopyRow(a.row, t);
        t->spec = a.spec;
        if (t->state == v1::TASK_STATE_PENDING) {
          s->pending_by_kind[t->group->kind]++;
        }
        if (t->state == v1::TASK_STATE_LEASED) {
          // A lease whose grant reply may have died with the old process
          // comes back after its own lease period (the sweep's policy),
          // unless the options ask for a fixed grace.
          const int64_t grace = options_.restart_grace_ms > 0
                                    ? options_.restart_grace_ms
                                    : s->lease_ms;
          t->expires_ms = std::max(t->expires_ms, now + grace);
          // The pin follows the lease so the group stays with that worker
          // after a restart.
          if (!t->worker.empty()) mirror_.Pin(t->group, t->worker);
        }
        mirror_.Place(t);
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
    mirror_.AdoptPins(mirror_.AddWorker(std::move(e)));
  }
  SWEEPD_LOG(INFO) << "scheduler loaded " << mirror_.sweep_count()
                   << " sweeps, " << mirror_.task_count() << " active tasks, "
                   << mirror_.worker_count() << " workers";
  return absl::OkStatus();
}

void LeaseSchedulerImpl::SubmitPlan(Plan plan, Callback<SubmitOutcome> done) {
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
          mirror_.AddSweep(shared->sweep_id, shared->resolved_spec, now,
                           ledger_->LeaseMsOf(shared->resolved_spec));
      s->deferred_stages = shared->deferred_stages;
      mirror_.AddPlanned(s, shared->tasks, r->initial_states);
    }
    done(out);
  });
}

std::vector<StageWork> LeaseSchedulerImpl::TakeSweepsReadyForStage() {
  absl::MutexLock lock(&mu_);
  return mirror_.TakeSweepsReadyForStage();
}

void LeaseSchedulerImpl::AbandonStage(const std::string& sweep_id) {
  absl::MutexLock lock(&mu_);
  if (SweepInfo* s = mirror_.FindSweep(sweep_id)) s->deriving = false;
}

void LeaseSchedulerImpl::AppendStage(const std::string& sweep_id,
                                     int stage_index,
                                     std::vector<PlannedTask> tasks,
                                     Callback<int64_t> done) {
  ledger_->AppendStageTasks(
      sweep_id, stage_index, std::move(tasks),
      [this, sweep_id, stage_index,
       done = std::move(done)](absl::StatusOr<AppendStageOutcome> r) {
        absl::MutexLock lock(&mu_);
        SweepInfo* s = mirror_.FindSweep(sweep_id);
        if (s == nullptr) {
          return done(absl::NotFoundError(
              absl::StrCat("sweep_id '", sweep_id, "' not found")));
        }
        s->deriving = false;
        if (!r.ok()) return done(r.status());
        auto& d = s->deferred_stages;
        d.erase(std::remove(d.begin(), d.end(), stage_index), d.end());
        if (!r->already_planned) {
          mirror_.AddPlanned(s, r->tasks, r->initial_states);
        }
        mirror_.Touch(s);
        done(static_cast<int64_t>(r->tasks.size()));
      });
}

void LeaseSchedulerImpl::RegisterWorker(
    const std::string& name, const v1::WorkerCapabilities& caps,
    Callback<v1::RegisterWorkerResponse> done) {
  WorkerRow row;
  {
    absl::MutexLock lock(&mu_);
    const int64_t now = clock_->NowMs();
    auto e = std::make_unique<WorkerEntry>();
    e->id = mirror_.NewWorkerId(now);
    e->name = name;
    e->caps = caps;
    e->registered_ms = now;
    e->last_seen_ms = now;
    row.worker_id = e->id;
    row.name = name;
    row.capabilities = caps;
    row.registered_ms = now;
    row.last_seen_ms = now;
    mirror_.AddWorker(std::move(e));
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

void LeaseSchedulerImpl::CancelSweep(const std::string& sweep_id,
                                     Callback<int64_t> done) {
  absl::MutexLock lock(&mu_);
  ledger_->CancelSweep(sweep_id, [this, sweep_id, done = std::move(done)](
                                     absl::StatusOr<CancelOutcome> r) {
    if (!r.ok()) return done(r.status());
    {
      absl::MutexLock lock(&mu_);
      SweepInfo* s = mirror_.FindSweep(sweep_id);
      if (s != nullptr) s->cancelled = true;
      for (const TaskRowState& row : r->changed) mirror_.Apply(row);
      if (s != nullptr) mirror_.Touch(s);
    }
    done(r->cancelled_tasks);
  });
}

std::optional<SweepSummary> LeaseSchedulerImpl::GetSweep(
    const std::string& sweep_id) {
  absl::MutexLock lock(&mu_);
  const SweepInfo* s = mirror_.FindSweep(sweep_id);
  if (s == nullptr) return std::nullopt;
  return mirror_.Summarize(*s, clock_->NowMs());
}

std::vector<SweepSummary> LeaseSchedulerImpl::ListSweeps() {
  absl::MutexLock lock(&mu_);
  return mirror_.SummarizeAll(clock_->NowMs());
}

std::vector<v1::WorkerInfo> LeaseSchedulerImpl::ListWorkers() {
  absl::MutexLock lock(&mu_);
  return mirror_.WorkerInfos();
}

}  // namespace scheduler_internal

absl::StatusOr<std::unique_ptr<LeaseScheduler>> LeaseScheduler::Create(
    Ledger* ledger, const SchedulerOptions& options) {
  if (ledger == nullptr) return absl::InvalidArgumentError("ledger is null");
  if (options.clock == nullptr)
    return absl::InvalidArgumentError("SchedulerOptions.clock is null");
  auto s =
      std::make_unique<scheduler_internal::LeaseSchedulerImpl>(ledger, options);
  RETURN_IF_ERROR(
      Annotate(s->Load(), "loading scheduler state from the ledger"));
  return std::unique_ptr<LeaseScheduler>(std::move(s));
}

}  // namespace sweepd
