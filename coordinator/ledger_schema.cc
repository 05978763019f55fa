#include "coordinator/ledger_schema.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/status.h"
#include "coordinator/task_states.h"

namespace sweepd::ledger_internal {

using v1::TaskState;

// Ordered migrations: entry i upgrades version i to i+1. Never edit a shipped
// entry; append.
const std::vector<std::string>& Migrations() {
  static const auto* kMigrations = new std::vector<std::string>{
      // 0 -> 1: sweeps, tasks, workers, meta.
      R"sql(
      CREATE TABLE sweeps(
        sweep_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        spec BLOB NOT NULL,
        state INTEGER NOT NULL,
        total_tasks INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL);
      CREATE TABLE tasks(
        sweep_id TEXT NOT NULL,
        task_key TEXT NOT NULL,
        idx INTEGER NOT NULL,
        group_key TEXT NOT NULL,
        spec BLOB NOT NULL,
        state INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        fencing_token INTEGER NOT NULL DEFAULT 0,
        lease_worker TEXT NOT NULL DEFAULT '',
        lease_expires_ms INTEGER NOT NULL DEFAULT 0,
        next_eligible_ms INTEGER NOT NULL DEFAULT 0,
        result BLOB,
        error TEXT NOT NULL DEFAULT '',
        updated_ms INTEGER NOT NULL,
        PRIMARY KEY(sweep_id, task_key)) WITHOUT ROWID;
      CREATE UNIQUE INDEX tasks_by_idx ON tasks(sweep_id, idx);
      CREATE INDEX tasks_by_state ON tasks(sweep_id, state);
      CREATE TABLE workers(
        worker_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        capabilities BLOB NOT NULL,
        registered_ms INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL,
        tasks_done INTEGER NOT NULL DEFAULT 0);
      CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
      INSERT INTO meta(key, value) VALUES('fencing_counter', 0);
      )sql",
      // 1 -> 2: lease history (token -> task) and result reuse across sweeps by
      // task key.
      R"sql(
      CREATE TABLE leases(
        fencing_token INTEGER PRIMARY KEY,
        sweep_id TEXT NOT NULL,
        task_key TEXT NOT NULL,
        worker_id TEXT NOT NULL,
        granted_ms INTEGER NOT NULL);
      CREATE INDEX tasks_by_key ON tasks(task_key, state);
      )sql",
      // 2 -> 3: staged sweeps: derived stages not planned yet (comma-separated
      // indices into spec.stages).
      R"sql(
      ALTER TABLE sweeps ADD COLUMN deferred_stages TEXT NOT NULL DEFAULT '';
      )sql",
      // 3 -> 4: who submitted each sweep (the token's name; '' before
      // authorisation or with it off), so only they or an admin may cancel it.
      R"sql(
      ALTER TABLE sweeps ADD COLUMN submitter TEXT NOT NULL DEFAULT '';
      )sql",
  };
  return *kMigrations;
}

absl::StatusOr<int> ReadSchemaVersion(Conn& c) {
  ASSIGN_OR_RETURN(
      Stmt * s,
      c.Prepare("SELECT count(*) FROM sqlite_master WHERE type='table' "
                "AND name='schema_version'"));
  ASSIGN_OR_RETURN(bool row, s->Step());
  if (!row || s->Int(0) == 0) return 0;
  ASSIGN_OR_RETURN(Stmt * v,
                   c.Prepare("SELECT max(version) FROM schema_version"));
  ASSIGN_OR_RETURN(bool vrow, v->Step());
  return vrow ? static_cast<int>(v->Int(0)) : 0;
}

absl::Status Migrate(Conn& c, int64_t now_ms) {
  RETURN_IF_ERROR(c.Exec("BEGIN IMMEDIATE"));
  auto body = [&]() -> absl::Status {
    RETURN_IF_ERROR(
        c.Exec("CREATE TABLE IF NOT EXISTS schema_version(version INTEGER "
               "PRIMARY KEY, "
               "applied_ms INTEGER NOT NULL)"));
    ASSIGN_OR_RETURN(int version, ReadSchemaVersion(c));
    const auto& migrations = Migrations();
    if (version > static_cast<int>(migrations.size())) {
      return absl::FailedPreconditionError(
          absl::StrCat("ledger schema version ", version,
                       " is newer than this sweepd (", migrations.size(), ")"));
    }
    for (int v = version; v < static_cast<int>(migrations.size()); ++v) {
      RETURN_IF_ERROR(Annotate(c.Exec(migrations[v]),
                               absl::StrCat("migration to v", v + 1)));
      ASSIGN_OR_RETURN(Stmt * s,
                       c.Prepare("INSERT INTO schema_version VALUES(?, ?)"));
      RETURN_IF_ERROR(s->Bind(v + 1).Bind(now_ms).Run());
      SWEEPD_LOG(INFO) << "ledger schema migrated to version " << v + 1;
    }
    return absl::OkStatus();
  };
  absl::Status s = body();
  if (!s.ok()) {
    c.Exec("ROLLBACK").IgnoreError();
    return s;
  }
  return c.Exec("COMMIT");
}

void AddCount(v1::TaskCounts* c, int state, int64_t n) {
  c->set_total(c->total() + n);
  AdjustTaskCount(c, static_cast<v1::TaskState>(state), n);
}

absl::StatusOr<SweepRow> ReadSweepRow(Stmt& s) {
  SweepRow r;
  r.sweep_id = s.Text(0);
  r.name = s.Text(1);
  if (!r.spec.ParseFromString(s.Text(2))) {
    return absl::DataLossError(
        absl::StrCat("sweep ", r.sweep_id, ": unparsable spec"));
  }
  r.state = static_cast<v1::SweepState>(s.Int(3));
  r.total_tasks = s.Int(4);
  r.created_ms = s.Int(5);
  r.updated_ms = s.Int(6);
  r.deferred_stages = ParseStageList(s.Text(7));
  r.submitter = s.Text(8);
  return r;
}

std::vector<int> ParseStageList(const std::string& text) {
  std::vector<int> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int v = 0;
    if (absl::SimpleAtoi(part, &v)) out.push_back(v);
  }
  return out;
}

absl::StatusOr<v1::TaskRecord> ReadTaskRecord(Stmt& s) {
  v1::TaskRecord rec;
  rec.set_task_key(s.Text(0));
  rec.set_sweep_id(s.Text(1));
  rec.set_state(static_cast<TaskState>(s.Int(2)));
  if (!rec.mutable_spec()->ParseFromString(s.Text(3))) {
    return absl::DataLossError(
        absl::StrCat("task ", rec.task_key(), ": unparsable spec"));
  }
  rec.set_group_key(s.Text(4));
  rec.set_attempts(static_cast<int>(s.Int(5)));
  rec.set_worker_id(s.Text(6));
  if (!s.IsNull(7) && !rec.mutable_result()->ParseFromString(s.Text(7))) {
    return absl::DataLossError(
        absl::StrCat("task ", rec.task_key(), ": unparsable result"));
  }
  rec.set_error(s.Text(8));
  rec.set_updated_unix_ms(s.Int(9));
  return rec;
}

void ReadRowState(Stmt& s, int first, TaskRowState* r) {
  r->state = static_cast<TaskState>(s.Int(first));
  r->attempts = static_cast<int>(s.Int(first + 1));
  r->fencing_token = s.Int(first + 2);
  r->lease_worker = s.Text(first + 3);
  r->lease_expires_ms = s.Int(first + 4);
  r->next_eligible_ms = s.Int(first + 5);
}

}  // namespace sweepd::ledger_internal
