// LedgerImpl: synchronous reads on the read-only connection pool.
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "coordinator/ledger_impl.h"
#include "coordinator/ledger_schema.h"
#include "coordinator/task_states.h"

namespace sweepd::ledger_internal {

using v1::TaskState;

absl::StatusOr<SweepRow> LedgerImpl::GetSweep(const std::string& sweep_id) {
  return WithReader<SweepRow>([&](Conn& c) -> absl::StatusOr<SweepRow> {
    ASSIGN_OR_RETURN(Stmt * s,
                     c.Prepare(absl::StrCat("SELECT ", kSweepColumns,
                                            " FROM sweeps WHERE sweep_id=?")));
    s->Bind(sweep_id);
    ASSIGN_OR_RETURN(bool row, s->Step());
    if (!row)
      return absl::NotFoundError(
          absl::StrCat("sweep_id '", sweep_id, "' not found"));
    return ReadSweepRow(*s);
  });
}

absl::StatusOr<std::vector<SweepRow>> LedgerImpl::ListSweeps() {
  return WithReader<std::vector<SweepRow>>(
      [&](Conn& c) -> absl::StatusOr<std::vector<SweepRow>> {
        ASSIGN_OR_RETURN(Stmt * s, c.Prepare(absl::StrCat(
                                       "SELECT ", kSweepColumns,
                                       " FROM sweeps ORDER BY created_ms")));
        std::vector<SweepRow> out;
        while (true) {
          ASSIGN_OR_RETURN(bool row, s->Step());
          if (!row) break;
          ASSIGN_OR_RETURN(SweepRow r, ReadSweepRow(*s));
          out.push_back(std::move(r));
        }
        return out;
      });
}

absl::StatusOr<v1::TaskCounts> LedgerImpl::CountTasks(
    const std::string& sweep_id) {
  return WithReader<v1::TaskCounts>(
      [&](Conn& c) -> absl::StatusOr<v1::TaskCounts> {
        ASSIGN_OR_RETURN(
            Stmt * s,
            c.Prepare("SELECT state, count(*) FROM tasks WHERE sweep_id=? "
                      "GROUP BY state"));
        s->Bind(sweep_id);
        v1::TaskCounts counts;
        while (true) {
          ASSIGN_OR_RETURN(bool row, s->Step());
          if (!row) break;
          AddCount(&counts, static_cast<int>(s->Int(0)), s->Int(1));
        }
        return counts;
      });
}

absl::StatusOr<TaskPage> LedgerImpl::ListTasks(
    const std::string& sweep_id, const std::vector<v1::TaskState>& states,
    int64_t after_idx, int limit, int64_t max_bytes) {
  return WithReader<TaskPage>([&](Conn& c) -> absl::StatusOr<TaskPage> {
    std::string sql = absl::StrCat(
        "SELECT task_key, sweep_id, state, spec, group_key, attempts, "
        "lease_worker, result, "
        "error, updated_ms, idx FROM tasks WHERE sweep_id=? AND idx>?");
    if (!states.empty()) {
      std::vector<std::string> parts;
      for (auto st : states)
        parts.push_back(absl::StrCat(static_cast<int>(st)));
      absl::StrAppend(&sql, " AND state IN (", absl::StrJoin(parts, ","), ")");
    }
    absl::StrAppend(&sql, " ORDER BY idx LIMIT ?");
    ASSIGN_OR_RETURN(Stmt * s, c.Prepare(sql));
    s->Bind(sweep_id).Bind(after_idx).Bind(static_cast<int64_t>(limit) + 1);
    TaskPage page;
    int64_t bytes = 0;
    while (true) {
      ASSIGN_OR_RETURN(bool row, s->Step());
      if (!row) break;
      if (static_cast<int>(page.tasks.size()) == limit ||
          (max_bytes > 0 && bytes >= max_bytes)) {
        page.more = true;
        break;
      }
      ASSIGN_OR_RETURN(v1::TaskRecord rec, ReadTaskRecord(*s));
      page.last_idx = s->Int(10);
      if (max_bytes > 0) bytes += static_cast<int64_t>(rec.ByteSizeLong());
      page.tasks.push_back(std::move(rec));
    }
    return page;
  });
}

absl::StatusOr<v1::TaskRecord> LedgerImpl::GetTask(
    const std::string& sweep_id, const std::string& task_key) {
  return WithReader<v1::TaskRecord>(
      [&](Conn& c) -> absl::StatusOr<v1::TaskRecord> {
        ASSIGN_OR_RETURN(Stmt * s,
                         c.Prepare("SELECT task_key, sweep_id, state, spec, "
                                   "group_key, attempts, lease_worker, "
                                   "result, error, updated_ms, idx FROM "
                                   "tasks WHERE sweep_id=? AND task_key=?"));
        s->Bind(sweep_id).Bind(task_key);
        ASSIGN_OR_RETURN(bool row, s->Step());
        if (!row) {
          return absl::NotFoundError(absl::StrCat(
              "task_key '", task_key, "' not found in sweep '", sweep_id, "'"));
        }
        return ReadTaskRecord(*s);
      });
}

absl::Status LedgerImpl::ForEachActiveTask(
    const std::function<void(const ActiveTaskRow&)>& visit) {
  return WithReader<bool>([&](Conn& c) -> absl::StatusOr<bool> {
           ASSIGN_OR_RETURN(
               Stmt * s,
               c.Prepare(absl::StrCat(
                   "SELECT sweep_id, task_key, ", kTaskCols,
                   ", idx, group_key, spec FROM tasks WHERE state IN ",
                   kActiveTaskStatesSql,
                   " "
                   "ORDER BY sweep_id, idx")));
           while (true) {
             ASSIGN_OR_RETURN(bool row, s->Step());
             if (!row) break;
             ActiveTaskRow a;
             a.row.sweep_id = s->Text(0);
             a.row.task_key = s->Text(1);
             ReadRowState(*s, 2, &a.row);
             a.idx = s->Int(8);
             a.group_key = s->Text(9);
             if (!a.spec.ParseFromString(s->Text(10))) {
               return absl::DataLossError(absl::StrCat("task '", a.row.task_key,
                                                       "': unparsable spec"));
             }
             visit(a);
           }
           return true;
         })
      .status();
}

absl::StatusOr<std::vector<WorkerRow>> LedgerImpl::ListWorkers() {
  return WithReader<std::vector<WorkerRow>>(
      [&](Conn& c) -> absl::StatusOr<std::vector<WorkerRow>> {
        ASSIGN_OR_RETURN(
            Stmt * s, c.Prepare("SELECT worker_id, name, capabilities, "
                                "registered_ms, last_seen_ms, tasks_done FROM "
                                "workers ORDER BY registered_ms"));
        std::vector<WorkerRow> out;
        while (true) {
          ASSIGN_OR_RETURN(bool row, s->Step());
          if (!row) break;
          WorkerRow w;
          w.worker_id = s->Text(0);
          w.name = s->Text(1);
          if (!w.capabilities.ParseFromString(s->Text(2))) {
            return absl::DataLossError(absl::StrCat(
                "worker ", w.worker_id, ": unparsable capabilities"));
          }
          w.registered_ms = s->Int(3);
          w.last_seen_ms = s->Int(4);
          w.tasks_done = s->Int(5);
          out.push_back(std::move(w));
        }
        return out;
      });
}

absl::StatusOr<int> LedgerImpl::SchemaVersion() {
  return WithReader<int>([](Conn& c) { return ReadSchemaVersion(c); });
}

absl::StatusOr<int64_t> LedgerImpl::LastFencingToken() {
  return WithReader<int64_t>([](Conn& c) -> absl::StatusOr<int64_t> {
    ASSIGN_OR_RETURN(
        Stmt * s,
        c.Prepare("SELECT value FROM meta WHERE key='fencing_counter'"));
    ASSIGN_OR_RETURN(bool row, s->Step());
    if (!row) return absl::DataLossError("meta.fencing_counter missing");
    return s->Int(0);
  });
}

absl::Status LedgerImpl::CopyTo(const std::string& path) {
  return WithReader<bool>(
             [&](Conn& c) -> absl::StatusOr<bool> {
               // VACUUM INTO is a write to another file; allow it on this
               // read connection.
               RETURN_IF_ERROR(c.Exec("PRAGMA query_only=0"));
               sqlite3_stmt* raw = nullptr;
               int rc = sqlite3_prepare_v2(c.db(), "VACUUM INTO ?", -1, &raw,
                                           nullptr);
               absl::Status status;
               if (rc != SQLITE_OK) {
                 status = SqlError(c.db(), rc, "prepare VACUUM INTO");
               } else {
                 sqlite3_bind_text(raw, 1, path.c_str(), -1, SQLITE_TRANSIENT);
                 rc = sqlite3_step(raw);
                 if (rc != SQLITE_DONE)
                   status =
                       SqlError(c.db(), rc, absl::StrCat("VACUUM INTO ", path));
               }
               sqlite3_finalize(raw);
               RETURN_IF_ERROR(c.Exec("PRAGMA query_only=1"));
               RETURN_IF_ERROR(status);
               return true;
             },
             /*in_transaction=*/false)

      .status();
}

}  // namespace sweepd::ledger_internal
