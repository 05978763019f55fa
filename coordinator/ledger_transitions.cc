// LedgerImpl: every task and sweep state change (submit, stages, leases,
// results, renew, release, expiry, cancel, workers) and the sweep states
// derived at the end of each transaction. Runs on the writer thread.
#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "coordinator/ledger_impl.h"
#include "coordinator/ledger_schema.h"
#include "coordinator/task_states.h"

namespace sweepd::ledger_internal {

using v1::TaskState;

void LedgerImpl::InsertSweep(const Plan& plan,
                             Callback<InsertSweepOutcome> done) {
  auto plan_copy = std::make_shared<Plan>(plan);
  Enqueue<InsertSweepOutcome>(
      [this, plan_copy] { return DoInsertSweep(*plan_copy); }, std::move(done));
}

void LedgerImpl::AppendStageTasks(const std::string& sweep_id, int stage_index,
                                  std::vector<PlannedTask> tasks,
                                  Callback<AppendStageOutcome> done) {
  auto shared = std::make_shared<std::vector<PlannedTask>>(std::move(tasks));
  Enqueue<AppendStageOutcome>(
      [this, sweep_id, stage_index, shared] {
        return DoAppendStage(sweep_id, stage_index, *shared);
      },
      std::move(done));
}

void LedgerImpl::LeaseTasks(const std::string& worker_id,
                            const std::vector<TaskId>& tasks,
                            Callback<LeaseOutcome> done) {
  Enqueue<LeaseOutcome>(
      [this, worker_id, tasks] { return DoLease(worker_id, tasks); },
      std::move(done));
}

void LedgerImpl::RecordLeases(const std::string& worker_id,
                              std::vector<GrantedLease> leases,
                              Callback<LeaseOutcome> done) {
  auto shared = std::make_shared<std::vector<GrantedLease>>(std::move(leases));
  Enqueue<LeaseOutcome>(
      [this, worker_id, shared] { return DoRecordLeases(worker_id, *shared); },
      std::move(done));
}

void LedgerImpl::RecordResult(const ResultReport& report,
                              Callback<ResultOutcome> done) {
  // DoRecordResult checks first and then writes one UPDATE (SetOutcome).
  Enqueue<ResultOutcome>([this, report] { return DoRecordResult(report); },
                         std::move(done), /*single_statement=*/true);
}

void LedgerImpl::RenewLeases(const std::string& worker_id,
                             const std::vector<LeaseRef>& leases,
                             Callback<RenewOutcome> done) {
  Enqueue<RenewOutcome>(
      [this, worker_id, leases] { return DoRenew(worker_id, leases); },
      std::move(done));
}

void LedgerImpl::ReleaseLeases(const std::string& worker_id,
                               const std::vector<LeaseRef>& leases,
                               Callback<TaskChanges> done) {
  Enqueue<TaskChanges>(
      [this, worker_id, leases] { return DoRelease(worker_id, leases); },
      std::move(done));
}

void LedgerImpl::ExpireLeases(const std::vector<ExpiredLease>& leases,
                              Callback<TaskChanges> done) {
  Enqueue<TaskChanges>([this, leases] { return DoExpire(leases); },
                       std::move(done));
}

void LedgerImpl::CancelSweep(const std::string& sweep_id,
                             Callback<CancelOutcome> done) {
  Enqueue<CancelOutcome>([this, sweep_id] { return DoCancel(sweep_id); },
                         std::move(done));
}

void LedgerImpl::UpsertWorker(const WorkerRow& worker, Callback<bool> done) {
  Enqueue<bool>([this, worker] { return DoUpsertWorker(worker); },
                std::move(done));
}

absl::StatusOr<std::optional<TaskRowState>> LedgerImpl::LoadRow(
    const std::string& sweep_id, const std::string& task_key) {
  ASSIGN_OR_RETURN(Stmt * s,
                   writer_->Prepare(absl::StrCat(
                       "SELECT ", kTaskCols,
                       " FROM tasks WHERE sweep_id=? AND task_key=?")));
  s->Bind(sweep_id).Bind(task_key);
  ASSIGN_OR_RETURN(bool row, s->Step());
  if (!row) return std::optional<TaskRowState>();
  TaskRowState r;
  r.sweep_id = sweep_id;
  r.task_key = task_key;
  ReadRowState(*s, 0, &r);
  return std::optional<TaskRowState>(std::move(r));
}

absl::Status LedgerImpl::StoreRow(const TaskRowState& r) {
  ASSIGN_OR_RETURN(
      Stmt * s, writer_->Prepare(
                    "UPDATE tasks SET state=?, attempts=?, fencing_token=?, "
                    "lease_worker=?, lease_expires_ms=?, next_eligible_ms=?, "
                    "updated_ms=? WHERE sweep_id=? AND task_key=?"));
  s->Bind(static_cast<int64_t>(r.state))
      .Bind(int64_t{r.attempts})
      .Bind(r.fencing_token)
      .Bind(r.lease_worker)
      .Bind(r.lease_expires_ms)
      .Bind(r.next_eligible_ms)
      .Bind(clock_->NowMs())
      .Bind(r.sweep_id)
      .Bind(r.task_key);
  RETURN_IF_ERROR(s->Run());
  touched_sweeps_.insert(r.sweep_id);
  return absl::OkStatus();
}

absl::Status LedgerImpl::SetOutcome(const TaskRowState& r,
                                    const std::string* result_blob,
                                    const std::string& error) {
  ASSIGN_OR_RETURN(
      Stmt * s, writer_->Prepare(
                    "UPDATE tasks SET state=?, attempts=?, fencing_token=?, "
                    "lease_worker=?, lease_expires_ms=?, next_eligible_ms=?, "
                    "updated_ms=?, result=?, error=? WHERE sweep_id=? AND "
                    "task_key=?"));
  s->Bind(static_cast<int64_t>(r.state))
      .Bind(int64_t{r.attempts})
      .Bind(r.fencing_token)
      .Bind(r.lease_worker)
      .Bind(r.lease_expires_ms)
      .Bind(r.next_eligible_ms)
      .Bind(clock_->NowMs());
  if (result_blob != nullptr) {
    s->BindBlob(*result_blob);
  } else {
    s->BindNull();
  }
  s->Bind(error).Bind(r.sweep_id).Bind(r.task_key);
  RETURN_IF_ERROR(s->Run());
  touched_sweeps_.insert(r.sweep_id);
  return absl::OkStatus();
}

absl::Status LedgerImpl::FlushTasksDone() {
  for (const auto& [worker_id, n] : tasks_done_) {
    ASSIGN_OR_RETURN(
        Stmt * w, writer_->Prepare("UPDATE workers SET tasks_done=tasks_done+? "
                                   "WHERE worker_id=?"));
    RETURN_IF_ERROR(w->Bind(n).Bind(worker_id).Run());
  }
  tasks_done_.clear();
  return absl::OkStatus();
}

absl::StatusOr<TaskId> LedgerImpl::ResolveToken(const std::string& task_key,
                                                int64_t token) {
  ASSIGN_OR_RETURN(
      Stmt * s, writer_->Prepare("SELECT sweep_id, task_key FROM leases WHERE "
                                 "fencing_token=?"));
  s->Bind(token);
  ASSIGN_OR_RETURN(bool row, s->Step());
  if (!row) {
    return absl::NotFoundError(absl::StrCat("fencing_token ", token,
                                            " was never issued (task_key '",
                                            task_key, "')"));
  }
  TaskId id{s->Text(0), s->Text(1)};
  if (id.task_key != task_key) {
    return absl::InvalidArgumentError(
        absl::StrCat("fencing_token ", token, " belongs to task_key '",
                     id.task_key, "', not '", task_key, "'"));
  }
  return id;
}

absl::Status LedgerImpl::UpdateSweepStates() {
  for (const std::string& sweep_id : touched_sweeps_) {
    ASSIGN_OR_RETURN(
        Stmt * cur,
        writer_->Prepare("SELECT state FROM sweeps WHERE sweep_id=?"));
    cur->Bind(sweep_id);
    ASSIGN_OR_RETURN(bool row, cur->Step());
    if (!row) continue;
    int old_state = static_cast<int>(cur->Int(0));
    if (old_state == v1::SWEEP_STATE_CANCELLED) continue;
    ASSIGN_OR_RETURN(
        Stmt * active,
        writer_->Prepare(absl::StrCat(
            "SELECT EXISTS(SELECT 1 FROM tasks WHERE sweep_id=? AND "
            "state IN ",
            kActiveTaskStatesSql,
            ") OR EXISTS(SELECT 1 FROM sweeps WHERE "
            "sweep_id=? AND deferred_stages != ''), EXISTS(SELECT 1 FROM "
            "tasks WHERE sweep_id=? AND state=4)")));
    active->Bind(sweep_id).Bind(sweep_id).Bind(sweep_id);
    ASSIGN_OR_RETURN(bool arow, active->Step());
    if (!arow) continue;
    SweepStateInputs in;
    in.any_active = active->Int(0) != 0;  // active tasks or deferred stages
    in.any_failed = active->Int(1) != 0;
    const int new_state = SweepStateOf(in);
    ASSIGN_OR_RETURN(Stmt * up,
                     writer_->Prepare("UPDATE sweeps SET state=?, updated_ms=? "
                                      "WHERE sweep_id=?"));
    RETURN_IF_ERROR(up->Bind(int64_t{new_state})
                        .Bind(clock_->NowMs())
                        .Bind(sweep_id)
                        .Run());
  }
  touched_sweeps_.clear();
  return absl::OkStatus();
}

absl::StatusOr<InsertSweepOutcome> LedgerImpl::DoInsertSweep(const Plan& plan) {
  InsertSweepOutcome out;
  {
    ASSIGN_OR_RETURN(
        Stmt * s,
        writer_->Prepare("SELECT total_tasks FROM sweeps WHERE sweep_id=?"));
    s->Bind(plan.sweep_id);
    ASSIGN_OR_RETURN(bool row, s->Step());
    if (row) {
      out.already_existed = true;
      out.total_tasks = s->Int(0);
      return out;
    }
  }
  const int64_t now = clock_->NowMs();
  std::string spec_blob;
  plan.resolved_spec.SerializeToString(&spec_blob);
  {
    ASSIGN_OR_RETURN(
        Stmt * s,
        writer_->Prepare("INSERT INTO sweeps(sweep_id, name, spec, "
                         "state, total_tasks, created_ms, updated_ms, "
                         "deferred_stages, submitter) "
                         "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    const bool empty = plan.tasks.empty() && plan.deferred_stages.empty();
    RETURN_IF_ERROR(s->Bind(plan.sweep_id)
                        .Bind(plan.resolved_spec.name())
                        .BindBlob(spec_blob)
                        .Bind(int64_t{empty ? v1::SWEEP_STATE_DONE
                                            : v1::SWEEP_STATE_RUNNING})
                        .Bind(static_cast<int64_t>(plan.tasks.size()))
                        .Bind(now)
                        .Bind(now)
                        .Bind(absl::StrJoin(plan.deferred_stages, ","))
                        .Bind(plan.submitter)
                        .Run());
  }
  out.total_tasks = static_cast<int64_t>(plan.tasks.size());
  RETURN_IF_ERROR(
      InsertTaskRows(plan.sweep_id, plan.tasks, 0, now, &out.initial_states));
  policies_[plan.sweep_id] = PolicyOf(plan.resolved_spec);
  touched_sweeps_.insert(plan.sweep_id);
  return out;
}

absl::StatusOr<AppendStageOutcome> LedgerImpl::DoAppendStage(
    const std::string& sweep_id, int stage_index,
    const std::vector<PlannedTask>& tasks) {
  AppendStageOutcome out;
  ASSIGN_OR_RETURN(
      Stmt * cur,
      writer_->Prepare("SELECT deferred_stages, total_tasks FROM sweeps "
                       "WHERE sweep_id=?"));
  cur->Bind(sweep_id);
  ASSIGN_OR_RETURN(bool row, cur->Step());
  if (!row) {
    return absl::NotFoundError(
        absl::StrCat("sweep_id '", sweep_id, "' not found"));
  }
  std::vector<int> deferred = ParseStageList(cur->Text(0));
  const int64_t total = cur->Int(1);
  auto it = std::find(deferred.begin(), deferred.end(), stage_index);
  if (it == deferred.end()) {
    out.already_planned = true;
    return out;
  }
  deferred.erase(it);
  const int64_t now = clock_->NowMs();
  // Work the sweep already holds (an identical task of an earlier stage) is
  // not planned twice.
  std::vector<PlannedTask> fresh;
  for (const PlannedTask& t : tasks) {
    ASSIGN_OR_RETURN(auto existing, LoadRow(sweep_id, t.task_key));
    if (existing.has_value()) continue;
    fresh.push_back(t);
    fresh.back().spec.set_index(total + static_cast<int64_t>(fresh.size()) - 1);
  }
  RETURN_IF_ERROR(
      InsertTaskRows(sweep_id, fresh, total, now, &out.initial_states));
  out.tasks = std::move(fresh);
  ASSIGN_OR_RETURN(
      Stmt * up,
      writer_->Prepare("UPDATE sweeps SET deferred_stages=?, total_tasks=?, "
                       "updated_ms=? WHERE sweep_id=?"));
  RETURN_IF_ERROR(up->Bind(absl::StrJoin(deferred, ","))
                      .Bind(total + static_cast<int64_t>(out.tasks.size()))
                      .Bind(now)
                      .Bind(sweep_id)
                      .Run());
  touched_sweeps_.insert(sweep_id);
  return out;
}

absl::Status LedgerImpl::InsertTaskRows(const std::string& sweep_id,
                                        const std::vector<PlannedTask>& tasks,
                                        int64_t first_idx, int64_t now,
                                        std::vector<TaskState>* states) {
  states->reserve(states->size() + tasks.size());
  std::set<std::string> seen;
  for (size_t i = 0; i < tasks.size(); ++i) {
    const PlannedTask& t = tasks[i];
    if (t.task_key.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tasks[", i, "].task_key is empty"));
    }
    if (!seen.insert(t.task_key).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tasks[", i, "].task_key '", t.task_key, "' appears twice in sweep"));
    }
    // Reuse a committed result of identical work from another sweep.
    ASSIGN_OR_RETURN(
        Stmt * prior,
        writer_->Prepare("SELECT result, lease_worker FROM tasks WHERE "
                         "task_key=? AND state=3 LIMIT 1"));
    prior->Bind(t.task_key);
    ASSIGN_OR_RETURN(bool reuse, prior->Step());
    const bool failed = !t.failure.empty();
    reuse = reuse && !failed;
    std::string result_blob = reuse ? prior->Text(0) : std::string();
    std::string worker = reuse ? prior->Text(1) : std::string();
    std::string task_spec;
    t.spec.SerializeToString(&task_spec);
    ASSIGN_OR_RETURN(
        Stmt * s, writer_->Prepare(
                      "INSERT INTO tasks(sweep_id, task_key, idx, group_key, "
                      "spec, state, lease_worker, result, error, updated_ms) "
                      "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    const TaskState state = failed  ? v1::TASK_STATE_FAILED
                            : reuse ? v1::TASK_STATE_DONE
                                    : v1::TASK_STATE_PENDING;
    s->Bind(sweep_id)
        .Bind(t.task_key)
        .Bind(first_idx + static_cast<int64_t>(i))
        .Bind(t.group_key)
        .BindBlob(task_spec)
        .Bind(int64_t{state})
        .Bind(worker);
    if (reuse) {
      s->BindBlob(result_blob);
    } else {
      s->BindNull();
    }
    s->Bind(failed ? t.failure
            : reuse
                ? std::string(
                      "result reused from an identical task of another sweep")
                : std::string())
        .Bind(now);
    RETURN_IF_ERROR(s->Run());
    states->push_back(state);
  }
  return absl::OkStatus();
}

absl::StatusOr<LeaseOutcome> LedgerImpl::DoLease(
    const std::string& worker_id, const std::vector<TaskId>& tasks) {
  LeaseOutcome out;
  const int64_t now = clock_->NowMs();
  for (const TaskId& id : tasks) {
    ASSIGN_OR_RETURN(auto row, LoadRow(id.sweep_id, id.task_key));
    if (!row.has_value()) {
      return absl::NotFoundError(absl::StrCat("task '", id.task_key,
                                              "' of sweep '", id.sweep_id,
                                              "' is not in the ledger"));
    }
    if (row->state != v1::TASK_STATE_PENDING) {
      out.not_granted.push_back(std::move(*row));
      continue;
    }
    const Policy policy = PolicyFor(id.sweep_id);
    row->state = v1::TASK_STATE_LEASED;
    row->attempts += 1;
    row->fencing_token = NextTokenInTransaction();
    row->lease_worker = worker_id;
    row->lease_expires_ms = now + policy.lease_ms;
    RETURN_IF_ERROR(StoreRow(*row));
    ASSIGN_OR_RETURN(
        Stmt * ins,
        writer_->Prepare("INSERT INTO leases(fencing_token, sweep_id, "
                         "task_key, worker_id, granted_ms) VALUES(?, "
                         "?, ?, ?, ?)"));
    RETURN_IF_ERROR(ins->Bind(row->fencing_token)
                        .Bind(id.sweep_id)
                        .Bind(id.task_key)
                        .Bind(worker_id)
                        .Bind(now)
                        .Run());
    ASSIGN_OR_RETURN(Stmt * spec,
                     writer_->Prepare("SELECT spec, group_key FROM tasks WHERE "
                                      "sweep_id=? AND task_key=?"));
    spec->Bind(id.sweep_id).Bind(id.task_key);
    ASSIGN_OR_RETURN(bool srow, spec->Step());
    LeaseGrant grant;
    if (!srow || !grant.spec.ParseFromString(spec->Text(0))) {
      return absl::DataLossError(
          absl::StrCat("task '", id.task_key, "': unparsable spec"));
    }
    grant.group_key = spec->Text(1);
    grant.row = std::move(*row);
    out.granted.push_back(std::move(grant));
  }
  return out;
}

absl::StatusOr<LeaseOutcome> LedgerImpl::DoRecordLeases(
    const std::string& worker_id, const std::vector<GrantedLease>& leases) {
  LeaseOutcome out;
  const int64_t now = clock_->NowMs();
  for (const GrantedLease& l : leases) {
    {
      absl::MutexLock lock(&token_mu_);
      if (l.fencing_token <= 0 || l.fencing_token > durable_token_limit_) {
        return absl::InvalidArgumentError(absl::StrCat(
            "fencing_token ", l.fencing_token, " of task '", l.task.task_key,
            "' is not from a persisted block (limit ", durable_token_limit_,
            ")"));
      }
    }
    // One conditional UPDATE does the state check and the write. A lease
    // does not change the sweep's state (it stays RUNNING), so the sweep is
    // not marked touched.
    ASSIGN_OR_RETURN(
        Stmt * up,
        writer_->Prepare(
            "UPDATE tasks SET state=2, attempts=attempts+1, "
            "fencing_token=?, lease_worker=?, lease_expires_ms=?, "
            "updated_ms=? WHERE sweep_id=? AND task_key=? AND state=1 "
            "RETURNING attempts, next_eligible_ms"));
    up->Bind(l.fencing_token)
        .Bind(worker_id)
        .Bind(l.lease_expires_ms)
        .Bind(now)
        .Bind(l.task.sweep_id)
        .Bind(l.task.task_key);
    ASSIGN_OR_RETURN(bool updated, up->Step());
    std::optional<TaskRowState> row;
    if (updated) {
      row.emplace();
      row->sweep_id = l.task.sweep_id;
      row->task_key = l.task.task_key;
      row->state = v1::TASK_STATE_LEASED;
      row->attempts = static_cast<int>(up->Int(0));
      row->fencing_token = l.fencing_token;
      row->lease_worker = worker_id;
      row->lease_expires_ms = l.lease_expires_ms;
      row->next_eligible_ms = up->Int(1);
      ASSIGN_OR_RETURN(bool more, up->Step());  // finish the statement
      (void)more;
    } else {
      ASSIGN_OR_RETURN(row, LoadRow(l.task.sweep_id, l.task.task_key));
      if (!row.has_value()) {
        return absl::NotFoundError(absl::StrCat("task '", l.task.task_key,
                                                "' of sweep '", l.task.sweep_id,
                                                "' is not in the ledger"));
      }
      out.not_granted.push_back(std::move(*row));
      continue;
    }
    ASSIGN_OR_RETURN(
        Stmt * ins,
        writer_->Prepare("INSERT INTO leases(fencing_token, sweep_id, "
                         "task_key, worker_id, granted_ms) VALUES(?, "
                         "?, ?, ?, ?)"));
    RETURN_IF_ERROR(ins->Bind(row->fencing_token)
                        .Bind(l.task.sweep_id)
                        .Bind(l.task.task_key)
                        .Bind(worker_id)
                        .Bind(now)
                        .Run());
    LeaseGrant grant;
    grant.row = std::move(*row);
    out.granted.push_back(std::move(grant));
  }
  return out;
}

absl::StatusOr<ResultOutcome> LedgerImpl::DoRecordResult(
    const ResultReport& report) {
  if (report.result.has_value() == report.failure.has_value()) {
    return absl::InvalidArgumentError(
        "exactly one of result or failure must be set");
  }
  ASSIGN_OR_RETURN(TaskId id,
                   ResolveToken(report.task_key, report.fencing_token));
  ASSIGN_OR_RETURN(auto loaded, LoadRow(id.sweep_id, id.task_key));
  if (!loaded.has_value()) {
    return absl::DataLossError(
        absl::StrCat("lease ", report.fencing_token, " names task '",
                     id.task_key, "' missing from sweep '", id.sweep_id, "'"));
  }
  TaskRowState row = std::move(*loaded);
  ResultOutcome out;
  if (IsTerminalTaskState(row.state)) {
    out.reason = absl::StrCat("task already ", v1::TaskState_Name(row.state));
    return out;
  }
  const bool current = row.state == v1::TASK_STATE_LEASED &&
                       row.fencing_token == report.fencing_token;
  if (report.result.has_value()) {
    // Current lease, or a stale lease while nothing has committed: accept (no
    // lost work).
    std::string blob;
    report.result->SerializeToString(&blob);
    row.state = v1::TASK_STATE_DONE;
    row.lease_worker = report.worker_id;
    row.lease_expires_ms = 0;
    RETURN_IF_ERROR(SetOutcome(row, &blob, ""));
    op_tasks_done_.push_back(report.worker_id);
    out.committed = true;
    out.row = row;
    return out;
  }
  if (!current) {
    out.reason = absl::StrCat("failure from stale lease ", report.fencing_token,
                              " (current token ", row.fencing_token, ", state ",
                              v1::TaskState_Name(row.state), ")");
    return out;
  }
  const Policy policy = PolicyFor(id.sweep_id);
  const v1::TaskFailure& f = *report.failure;
  std::string error = absl::StrCat("attempt ", row.attempts, ": ", f.message());
  row.lease_expires_ms = 0;
  if (!f.retryable() || row.attempts >= policy.max_attempts) {
    row.state = v1::TASK_STATE_FAILED;
    if (f.retryable())
      absl::StrAppend(&error, " (max_attempts ", policy.max_attempts,
                      " reached)");
  } else {
    row.state = v1::TASK_STATE_PENDING;
    row.next_eligible_ms = clock_->NowMs() + BackoffMs(policy, row.attempts);
    row.lease_worker.clear();
  }
  RETURN_IF_ERROR(SetOutcome(row, nullptr, error));
  out.committed = true;
  out.row = row;
  return out;
}

int64_t LedgerImpl::BackoffMs(const Policy& policy, int attempts) const {
  int64_t backoff = policy.retry_backoff_ms;
  for (int i = 1; i < attempts && backoff < options_.max_retry_backoff_ms; ++i)
    backoff *= 2;
  return std::min(backoff, options_.max_retry_backoff_ms);
}

absl::StatusOr<RenewOutcome> LedgerImpl::DoRenew(
    const std::string& worker_id, const std::vector<LeaseRef>& leases) {
  RenewOutcome out;
  const int64_t now = clock_->NowMs();
  for (const LeaseRef& ref : leases) {
    auto id = ResolveToken(ref.task_key, ref.fencing_token);
    if (!id.ok()) {
      if (id.status().code() == absl::StatusCode::kInternal) return id.status();
      out.lost_task_keys.push_back(ref.task_key);
      continue;
    }
    ASSIGN_OR_RETURN(auto row, LoadRow(id->sweep_id, id->task_key));
    const bool ours = row.has_value() &&
                      row->fencing_token == ref.fencing_token &&
                      (row->state == v1::TASK_STATE_LEASED ||
                       row->state == v1::TASK_STATE_PENDING);
    if (!ours) {
      out.lost_task_keys.push_back(ref.task_key);
      continue;
    }
    row->state = v1::TASK_STATE_LEASED;
    row->lease_worker = worker_id;
    row->lease_expires_ms = now + PolicyFor(id->sweep_id).lease_ms;
    RETURN_IF_ERROR(StoreRow(*row));
    out.renewed.push_back(std::move(*row));
  }
  ASSIGN_OR_RETURN(
      Stmt * w,
      writer_->Prepare("UPDATE workers SET last_seen_ms=? WHERE worker_id=?"));
  RETURN_IF_ERROR(w->Bind(now).Bind(worker_id).Run());
  return out;
}

absl::StatusOr<TaskChanges> LedgerImpl::DoRelease(
    const std::string& worker_id, const std::vector<LeaseRef>& leases) {
  TaskChanges out;
  const int64_t now = clock_->NowMs();
  for (const LeaseRef& ref : leases) {
    auto id = ResolveToken(ref.task_key, ref.fencing_token);
    if (!id.ok()) continue;  // unknown or mismatched lease: nothing to release
    ASSIGN_OR_RETURN(auto row, LoadRow(id->sweep_id, id->task_key));
    if (!row.has_value() || row->state != v1::TASK_STATE_LEASED ||
        row->fencing_token != ref.fencing_token) {
      continue;
    }
    row->state = v1::TASK_STATE_PENDING;
    row->attempts =
        std::max(0, row->attempts - 1);  // a released attempt does not count
    row->lease_worker.clear();
    row->lease_expires_ms = 0;
    row->next_eligible_ms = now;
    RETURN_IF_ERROR(StoreRow(*row));
    out.changed.push_back(std::move(*row));
  }
  return out;
}

absl::StatusOr<TaskChanges> LedgerImpl::DoExpire(
    const std::vector<ExpiredLease>& leases) {
  TaskChanges out;
  const int64_t now = clock_->NowMs();
  for (const ExpiredLease& e : leases) {
    ASSIGN_OR_RETURN(auto row, LoadRow(e.sweep_id, e.task_key));
    if (!row.has_value() || row->state != v1::TASK_STATE_LEASED ||
        row->fencing_token != e.fencing_token || row->lease_expires_ms > now) {
      continue;
    }
    const Policy policy = PolicyFor(e.sweep_id);
    row->lease_expires_ms = 0;
    if (row->attempts >= policy.max_attempts) {
      row->state = v1::TASK_STATE_FAILED;
      RETURN_IF_ERROR(SetOutcome(
          *row, nullptr,
          absl::StrCat("lease expired on attempt ", row->attempts,
                       " (max_attempts ", policy.max_attempts,
                       " reached; last worker ", row->lease_worker, ")")));
    } else {
      row->state = v1::TASK_STATE_PENDING;
      row->next_eligible_ms = now;
      row->lease_worker.clear();
      RETURN_IF_ERROR(StoreRow(*row));
    }
    out.changed.push_back(std::move(*row));
  }
  return out;
}

absl::StatusOr<CancelOutcome> LedgerImpl::DoCancel(
    const std::string& sweep_id) {
  ASSIGN_OR_RETURN(
      Stmt * s, writer_->Prepare("SELECT state FROM sweeps WHERE sweep_id=?"));
  s->Bind(sweep_id);
  ASSIGN_OR_RETURN(bool exists, s->Step());
  if (!exists)
    return absl::NotFoundError(
        absl::StrCat("sweep_id '", sweep_id, "' not found"));
  CancelOutcome out;
  ASSIGN_OR_RETURN(Stmt * q, writer_->Prepare(absl::StrCat(
                                 "SELECT task_key, ", kTaskCols,
                                 " FROM tasks WHERE sweep_id=? AND state IN ",
                                 kActiveTaskStatesSql)));
  q->Bind(sweep_id);
  while (true) {
    ASSIGN_OR_RETURN(bool row, q->Step());
    if (!row) break;
    TaskRowState r;
    r.sweep_id = sweep_id;
    r.task_key = q->Text(0);
    ReadRowState(*q, 1, &r);
    r.state = v1::TASK_STATE_CANCELLED;
    r.lease_expires_ms = 0;
    out.changed.push_back(std::move(r));
  }
  const int64_t now = clock_->NowMs();
  ASSIGN_OR_RETURN(
      Stmt * up,
      writer_->Prepare(absl::StrCat(
          "UPDATE tasks SET state=5, lease_expires_ms=0, "
          "error='cancelled', updated_ms=? WHERE sweep_id=? AND state IN ",
          kActiveTaskStatesSql)));
  RETURN_IF_ERROR(up->Bind(now).Bind(sweep_id).Run());
  ASSIGN_OR_RETURN(
      Stmt * sw,
      writer_->Prepare("UPDATE sweeps SET state=?, updated_ms=? WHERE "
                       "sweep_id=?"));
  RETURN_IF_ERROR(sw->Bind(int64_t{v1::SWEEP_STATE_CANCELLED})
                      .Bind(now)
                      .Bind(sweep_id)
                      .Run());
  out.cancelled_tasks = static_cast<int64_t>(out.changed.size());
  return out;
}

absl::StatusOr<bool> LedgerImpl::DoUpsertWorker(const WorkerRow& w) {
  std::string caps;
  w.capabilities.SerializeToString(&caps);
  ASSIGN_OR_RETURN(
      Stmt * s, writer_->Prepare(
                    "INSERT INTO workers(worker_id, name, capabilities, "
                    "registered_ms, last_seen_ms, tasks_done) VALUES(?, ?, ?, "
                    "?, ?, ?) ON CONFLICT(worker_id) DO UPDATE SET "
                    "name=excluded.name, capabilities=excluded.capabilities, "
                    "last_seen_ms=excluded.last_seen_ms"));
  RETURN_IF_ERROR(s->Bind(w.worker_id)
                      .Bind(w.name)
                      .BindBlob(caps)
                      .Bind(w.registered_ms)
                      .Bind(w.last_seen_ms)
                      .Bind(w.tasks_done)
                      .Run());
  return true;
}

}  // namespace sweepd::ledger_internal
