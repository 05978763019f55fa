#include "coordinator/ledger.h"

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/logging.h"
#include "common/status.h"
#include "coordinator/task_states.h"

namespace sweepd {
namespace {

using v1::TaskState;

// ---- Thin SQLite wrappers
// ----------------------------------------------------------------

absl::Status SqlError(sqlite3* db, int rc, absl::string_view what) {
  const char* msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  absl::StatusCode code = absl::StatusCode::kInternal;
  if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
    code = absl::StatusCode::kUnavailable;
  if (rc == SQLITE_FULL || rc == SQLITE_IOERR)
    code = absl::StatusCode::kResourceExhausted;
  if (rc == SQLITE_CANTOPEN) code = absl::StatusCode::kNotFound;
  if (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB)
    code = absl::StatusCode::kDataLoss;
  return absl::Status(
      code, absl::StrCat("sqlite: ", what, ": ", msg, " (code ", rc, ")"));
}

absl::Status Exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err != nullptr ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    return absl::InternalError(
        absl::StrCat("sqlite: ", sql.substr(0, 60), ": ", msg));
  }
  return absl::OkStatus();
}

// A prepared statement; reset on every Bind() cycle.
class Stmt {
 public:
  Stmt(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Stmt(const Stmt&) = delete;
  ~Stmt() { sqlite3_finalize(stmt_); }

  Stmt& Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    next_ = 1;
    return *this;
  }
  Stmt& Bind(int64_t v) {
    sqlite3_bind_int64(stmt_, next_++, v);
    return *this;
  }
  Stmt& Bind(const std::string& v) {
    sqlite3_bind_text(stmt_, next_++, v.data(), static_cast<int>(v.size()),
                      SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& BindNull() {
    sqlite3_bind_null(stmt_, next_++);
    return *this;
  }
  Stmt& BindBlob(const std::string& v) {
    sqlite3_bind_blob(stmt_, next_++, v.data(), static_cast<int>(v.size()),
                      SQLITE_TRANSIENT);
    return *this;
  }
  // True when a row is available; false when done.
  absl::StatusOr<bool> Step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqlError(db_, rc, sqlite3_sql(stmt_));
  }
  absl::Status Run() {
    auto r = Step();
    if (!r.ok()) return r.status();
    return absl::OkStatus();
  }
  int64_t Int(int col) { return sqlite3_column_int64(stmt_, col); }
  std::string Text(int col) {
    const void* p = sqlite3_column_blob(stmt_, col);
    int n = sqlite3_column_bytes(stmt_, col);
    return p == nullptr ? std::string()
                        : std::string(static_cast<const char*>(p), n);
  }
  bool IsNull(int col) {
    return sqlite3_column_type(stmt_, col) == SQLITE_NULL;
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_;
  int next_ = 1;
};

// One connection with a cache of prepared statements.
class Conn {
 public:
  static absl::StatusOr<std::unique_ptr<Conn>> Open(const std::string& path,
                                                    bool writer) {
    sqlite3* db = nullptr;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
                (writer ? SQLITE_OPEN_CREATE : 0);
    int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
    if (rc != SQLITE_OK) {
      absl::Status s = SqlError(db, rc, absl::StrCat("open ", path));
      sqlite3_close(db);
      return s;
    }
    auto conn = std::unique_ptr<Conn>(new Conn(db));
    sqlite3_busy_timeout(db, 10'000);
    return conn;
  }
  ~Conn() {
    cache_.clear();
    sqlite3_close(db_);
  }
  sqlite3* db() { return db_; }
  absl::StatusOr<Stmt*> Prepare(const std::string& sql) {
    auto it = cache_.find(sql);
    if (it != cache_.end()) return &it->second->Reset();
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr);
    if (rc != SQLITE_OK)
      return SqlError(db_, rc, absl::StrCat("prepare ", sql));
    auto owned = std::make_unique<Stmt>(db_, stmt);
    Stmt* raw = owned.get();
    cache_.emplace(sql, std::move(owned));
    return raw;
  }
  // Runs one cached statement that returns no rows (SAVEPOINT, RELEASE) without
  // resetting the rest of the cache: the per-operation fast path.
  absl::Status Run(const std::string& sql) {
    ASSIGN_OR_RETURN(Stmt * s, Prepare(sql));
    absl::Status st = s->Run();
    s->Reset();
    return st;
  }
  // Resets every cached statement first: a statement left mid-result keeps its
  // read open and would make COMMIT fail.
  absl::Status Exec(const std::string& sql) {
    for (auto& [text, stmt] : cache_) stmt->Reset();
    return ::sweepd::Exec(db_, sql);
  }

 private:
  explicit Conn(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  std::map<std::string, std::unique_ptr<Stmt>> cache_;
};

// ---- Schema
// ------------------------------------------------------------------------------

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

using Policy = EffectivePolicy;

// ---- Write operations
// --------------------------------------------------------------------

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

// Full task columns used by the write paths.
constexpr char kTaskCols[] =
    "state, attempts, fencing_token, lease_worker, lease_expires_ms, "
    "next_eligible_ms";

class LedgerImpl : public Ledger {
 public:
  LedgerImpl(std::string path, LedgerOptions options)
      : path_(std::move(path)), options_(options), clock_(options.clock) {}

  ~LedgerImpl() override { Close().IgnoreError(); }

  absl::Status Init() {
    ASSIGN_OR_RETURN(writer_, Conn::Open(path_, /*writer=*/true));
    {
      ASSIGN_OR_RETURN(Stmt * s, writer_->Prepare("PRAGMA journal_mode=WAL"));
      ASSIGN_OR_RETURN(bool row, s->Step());
      std::string mode = row ? s->Text(0) : "";
      if (mode != "wal") {
        return absl::FailedPreconditionError(absl::StrCat(
            "ledger ", path_, ": cannot enable WAL mode (got '", mode, "')"));
      }
    }
    RETURN_IF_ERROR(writer_->Exec("PRAGMA synchronous=FULL"));
    RETURN_IF_ERROR(writer_->Exec("PRAGMA foreign_keys=OFF"));
    // Page cache large enough for the hot part of the tasks table and its
    // indices; temporary b-trees in memory. Checkpoints mostly run on their
    // own thread and connection (CheckpointLoop); the writer finishes one when
    // the WAL reaches kWalWriterCheckpointPages so the WAL restarts (WalHook).
    RETURN_IF_ERROR(writer_->Exec("PRAGMA cache_size=-65536"));
    RETURN_IF_ERROR(writer_->Exec("PRAGMA temp_store=MEMORY"));
    RETURN_IF_ERROR(writer_->Exec("PRAGMA wal_autocheckpoint=0"));
    RETURN_IF_ERROR(Annotate(Migrate(*writer_, clock_->NowMs()), path_));
    {
      ASSIGN_OR_RETURN(
          Stmt * s, writer_->Prepare(
                        "SELECT value FROM meta WHERE key='fencing_counter'"));
      ASSIGN_OR_RETURN(bool row, s->Step());
      if (!row)
        return absl::DataLossError(
            absl::StrCat(path_, ": meta.fencing_counter missing"));
      std::lock_guard<std::mutex> lock(token_mu_);
      last_token_ = s->Int(0);
      durable_token_limit_ = last_token_;
    }
    {
      ASSIGN_OR_RETURN(Stmt * s,
                       writer_->Prepare("SELECT sweep_id, spec FROM sweeps"));
      while (true) {
        ASSIGN_OR_RETURN(bool row, s->Step());
        if (!row) break;
        v1::SweepSpec spec;
        if (!spec.ParseFromString(s->Text(1))) {
          return absl::DataLossError(absl::StrCat(path_, ": sweep ", s->Text(0),
                                                  " has an unparsable spec"));
        }
        policies_[s->Text(0)] = PolicyOf(spec);
      }
    }
    for (int i = 0; i < std::max(1, options_.reader_connections); ++i) {
      ASSIGN_OR_RETURN(auto conn, Conn::Open(path_, /*writer=*/false));
      RETURN_IF_ERROR(conn->Exec("PRAGMA query_only=1"));
      readers_.push_back(std::move(conn));
      free_readers_.push_back(readers_.back().get());
    }
    ASSIGN_OR_RETURN(checkpointer_, Conn::Open(path_, /*writer=*/false));
    sqlite3_wal_hook(writer_->db(), &LedgerImpl::WalHook, this);
    callback_thread_ = std::thread([this] { CallbackLoop(); });
    checkpoint_thread_ = std::thread([this] { CheckpointLoop(); });
    writer_thread_ = std::thread([this] { WriterLoop(); });
    return absl::OkStatus();
  }

  // ---- Writes ----

  void InsertSweep(const Plan& plan,
                   Callback<InsertSweepOutcome> done) override {
    auto plan_copy = std::make_shared<Plan>(plan);
    Enqueue<InsertSweepOutcome>(
        [this, plan_copy] { return DoInsertSweep(*plan_copy); },
        std::move(done));
  }

  void AppendStageTasks(const std::string& sweep_id, int stage_index,
                        std::vector<PlannedTask> tasks,
                        Callback<AppendStageOutcome> done) override {
    auto shared = std::make_shared<std::vector<PlannedTask>>(std::move(tasks));
    Enqueue<AppendStageOutcome>(
        [this, sweep_id, stage_index, shared] {
          return DoAppendStage(sweep_id, stage_index, *shared);
        },
        std::move(done));
  }

  void LeaseTasks(const std::string& worker_id,
                  const std::vector<TaskId>& tasks,
                  Callback<LeaseOutcome> done) override {
    Enqueue<LeaseOutcome>(
        [this, worker_id, tasks] { return DoLease(worker_id, tasks); },
        std::move(done));
  }

  std::optional<int64_t> TakeReservedTokens(int n) override {
    if (n <= 0) return std::nullopt;
    std::lock_guard<std::mutex> lock(token_mu_);
    const int64_t block = std::max<int64_t>(1, options_.token_block);
    if (last_token_ + n > durable_token_limit_) {
      want_token_block_ = true;  // the next transaction persists a block
      ++token_misses_;
      return std::nullopt;
    }
    ++token_grants_;
    const int64_t first = last_token_ + 1;
    last_token_ += n;
    if (durable_token_limit_ - last_token_ < block / 2)
      want_token_block_ = true;
    return first;
  }

  void RecordLeases(const std::string& worker_id,
                    std::vector<GrantedLease> leases,
                    Callback<LeaseOutcome> done) override {
    auto shared =
        std::make_shared<std::vector<GrantedLease>>(std::move(leases));
    Enqueue<LeaseOutcome>(
        [this, worker_id, shared] {
          return DoRecordLeases(worker_id, *shared);
        },
        std::move(done));
  }

  int64_t LeaseMsOf(const v1::SweepSpec& spec) const override {
    return PolicyOf(spec).lease_ms;
  }

  void RecordResult(const ResultReport& report,
                    Callback<ResultOutcome> done) override {
    // DoRecordResult checks first and then writes one UPDATE (SetOutcome).
    Enqueue<ResultOutcome>([this, report] { return DoRecordResult(report); },
                           std::move(done), /*single_statement=*/true);
  }

  void RenewLeases(const std::string& worker_id,
                   const std::vector<LeaseRef>& leases,
                   Callback<RenewOutcome> done) override {
    Enqueue<RenewOutcome>(
        [this, worker_id, leases] { return DoRenew(worker_id, leases); },
        std::move(done));
  }

  void ReleaseLeases(const std::string& worker_id,
                     const std::vector<LeaseRef>& leases,
                     Callback<TaskChanges> done) override {
    Enqueue<TaskChanges>(
        [this, worker_id, leases] { return DoRelease(worker_id, leases); },
        std::move(done));
  }

  void ExpireLeases(const std::vector<ExpiredLease>& leases,
                    Callback<TaskChanges> done) override {
    Enqueue<TaskChanges>([this, leases] { return DoExpire(leases); },
                         std::move(done));
  }

  void CancelSweep(const std::string& sweep_id,
                   Callback<CancelOutcome> done) override {
    Enqueue<CancelOutcome>([this, sweep_id] { return DoCancel(sweep_id); },
                           std::move(done));
  }

  void UpsertWorker(const WorkerRow& worker, Callback<bool> done) override {
    Enqueue<bool>([this, worker] { return DoUpsertWorker(worker); },
                  std::move(done));
  }

  void Barrier(Callback<bool> done) override {
    Enqueue<bool>([]() -> absl::StatusOr<bool> { return true; },
                  std::move(done));
  }

  absl::Status Flush() override {
    absl::Notification n;
    absl::Status result;
    Barrier([&](absl::StatusOr<bool> r) {
      result = r.status();
      n.Notify();
    });
    n.WaitForNotification();
    return result;
  }

  absl::Status Close() override {
    {
      std::lock_guard<std::mutex> lock(queue_mu_);
      if (closed_) return absl::OkStatus();
      closed_ = true;
      queue_cv_.notify_all();
    }
    if (writer_thread_.joinable()) writer_thread_.join();
    {
      std::lock_guard<std::mutex> lock(callback_mu_);
      callbacks_closed_ = true;
    }
    callback_cv_.notify_all();
    if (callback_thread_.joinable()) callback_thread_.join();
    {
      std::lock_guard<std::mutex> lock(checkpoint_mu_);
      checkpoint_closed_ = true;
    }
    checkpoint_cv_.notify_all();
    if (checkpoint_thread_.joinable()) checkpoint_thread_.join();
    checkpointer_.reset();
    {
      absl::MutexLock lock(&readers_mu_);
      readers_mu_.Await(absl::Condition(
          +[](LedgerImpl* self)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->readers_mu_) {
                 return self->free_readers_.size() == self->readers_.size();
               },
          this));
      free_readers_.clear();
      readers_.clear();
    }
    if (writer_ != nullptr) {
      // Fold the WAL back into the main file so a copied ledger is
      // self-contained.
      writer_->Exec("PRAGMA wal_checkpoint(TRUNCATE)").IgnoreError();
      writer_.reset();
    }
    return health();
  }

  absl::Status health() override {
    std::lock_guard<std::mutex> lock(queue_mu_);
    return broken_;
  }

  LedgerStats stats() override {
    LedgerStats out;
    {
      std::lock_guard<std::mutex> lock(queue_mu_);
      out = stats_;
    }
    std::lock_guard<std::mutex> lock(token_mu_);
    out.reserved_token_grants = token_grants_;
    out.reserved_token_misses = token_misses_;
    return out;
  }

  // ---- Reads ----

  absl::StatusOr<SweepRow> GetSweep(const std::string& sweep_id) override {
    return WithReader<SweepRow>([&](Conn& c) -> absl::StatusOr<SweepRow> {
      ASSIGN_OR_RETURN(
          Stmt * s, c.Prepare(absl::StrCat("SELECT ", kSweepColumns,
                                           " FROM sweeps WHERE sweep_id=?")));
      s->Bind(sweep_id);
      ASSIGN_OR_RETURN(bool row, s->Step());
      if (!row)
        return absl::NotFoundError(
            absl::StrCat("sweep_id '", sweep_id, "' not found"));
      return ReadSweepRow(*s);
    });
  }

  absl::StatusOr<std::vector<SweepRow>> ListSweeps() override {
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

  absl::StatusOr<v1::TaskCounts> CountTasks(
      const std::string& sweep_id) override {
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

  absl::StatusOr<TaskPage> ListTasks(const std::string& sweep_id,
                                     const std::vector<v1::TaskState>& states,
                                     int64_t after_idx, int limit) override {
    return WithReader<TaskPage>([&](Conn& c) -> absl::StatusOr<TaskPage> {
      std::string sql = absl::StrCat(
          "SELECT task_key, sweep_id, state, spec, group_key, attempts, "
          "lease_worker, result, "
          "error, updated_ms, idx FROM tasks WHERE sweep_id=? AND idx>?");
      if (!states.empty()) {
        std::vector<std::string> parts;
        for (auto st : states)
          parts.push_back(absl::StrCat(static_cast<int>(st)));
        absl::StrAppend(&sql, " AND state IN (", absl::StrJoin(parts, ","),
                        ")");
      }
      absl::StrAppend(&sql, " ORDER BY idx LIMIT ?");
      ASSIGN_OR_RETURN(Stmt * s, c.Prepare(sql));
      s->Bind(sweep_id).Bind(after_idx).Bind(static_cast<int64_t>(limit) + 1);
      TaskPage page;
      while (true) {
        ASSIGN_OR_RETURN(bool row, s->Step());
        if (!row) break;
        if (static_cast<int>(page.tasks.size()) == limit) {
          page.more = true;
          break;
        }
        ASSIGN_OR_RETURN(v1::TaskRecord rec, ReadTaskRecord(*s));
        page.last_idx = s->Int(10);
        page.tasks.push_back(std::move(rec));
      }
      return page;
    });
  }

  absl::StatusOr<v1::TaskRecord> GetTask(const std::string& sweep_id,
                                         const std::string& task_key) override {
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
            return absl::NotFoundError(absl::StrCat("task_key '", task_key,
                                                    "' not found in sweep '",
                                                    sweep_id, "'"));
          }
          return ReadTaskRecord(*s);
        });
  }

  absl::Status ForEachActiveTask(
      const std::function<void(const ActiveTaskRow&)>& visit) override {
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
                 return absl::DataLossError(absl::StrCat(
                     "task '", a.row.task_key, "': unparsable spec"));
               }
               visit(a);
             }
             return true;
           })
        .status();
  }

  absl::StatusOr<std::vector<WorkerRow>> ListWorkers() override {
    return WithReader<std::vector<WorkerRow>>(
        [&](Conn& c) -> absl::StatusOr<std::vector<WorkerRow>> {
          ASSIGN_OR_RETURN(
              Stmt * s,
              c.Prepare("SELECT worker_id, name, capabilities, "
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

  absl::StatusOr<int> SchemaVersion() override {
    return WithReader<int>([](Conn& c) { return ReadSchemaVersion(c); });
  }

  absl::StatusOr<int64_t> LastFencingToken() override {
    return WithReader<int64_t>([](Conn& c) -> absl::StatusOr<int64_t> {
      ASSIGN_OR_RETURN(
          Stmt * s,
          c.Prepare("SELECT value FROM meta WHERE key='fencing_counter'"));
      ASSIGN_OR_RETURN(bool row, s->Step());
      if (!row) return absl::DataLossError("meta.fencing_counter missing");
      return s->Int(0);
    });
  }

  absl::Status CopyTo(const std::string& path) override {
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
                   sqlite3_bind_text(raw, 1, path.c_str(), -1,
                                     SQLITE_TRANSIENT);
                   rc = sqlite3_step(raw);
                   if (rc != SQLITE_DONE)
                     status = SqlError(c.db(), rc,
                                       absl::StrCat("VACUUM INTO ", path));
                 }
                 sqlite3_finalize(raw);
                 RETURN_IF_ERROR(c.Exec("PRAGMA query_only=1"));
                 RETURN_IF_ERROR(status);
                 return true;
               },
               /*in_transaction=*/false)

        .status();
  }

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
      std::lock_guard<std::mutex> lock(queue_mu_);
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
    queue_cv_.notify_one();
  }

  void WriterLoop() {
    while (true) {
      std::vector<WriteOp> batch;
      {
        std::unique_lock<std::mutex> lock(queue_mu_);
        queue_cv_.wait(lock, [this] { return closed_ || !queue_.empty(); });
        if (queue_.empty() && closed_) {
          writer_exited_ = true;
          return;
        }
        while (!queue_.empty() &&
               static_cast<int>(batch.size()) < options_.max_batch_ops) {
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
      RunBatch(batch);
    }
  }

  void RunBatch(std::vector<WriteOp>& batch) {
    using SteadyClock = std::chrono::steady_clock;
    auto micros = [](SteadyClock::time_point a, SteadyClock::time_point b) {
      return std::chrono::duration_cast<std::chrono::microseconds>(b - a)
          .count();
    };
    const auto t_start = SteadyClock::now();
    auto t_commit = t_start;
    auto t_committed = t_start;
    std::vector<absl::Status> statuses(batch.size());
    bool any_apply = false;
    for (auto& op : batch) any_apply |= (op.apply != nullptr);
    absl::Status commit = absl::OkStatus();
    int64_t token_limit = 0;  // fencing_counter written by this transaction
    if (any_apply) {
      touched_sweeps_.clear();
      tasks_done_.clear();
      commit = writer_->Exec("BEGIN IMMEDIATE");
      if (commit.ok()) {
        for (size_t i = 0; i < batch.size(); ++i) {
          if (batch[i].apply == nullptr) continue;
          if (batch[i].single_statement) {
            op_tasks_done_.clear();
            statuses[i] = batch[i].apply();
            if (statuses[i].ok()) {
              for (const std::string& w : op_tasks_done_) tasks_done_[w]++;
            }
            continue;
          }
          absl::Status sp = writer_->Run("SAVEPOINT op");
          if (!sp.ok()) {
            statuses[i] = sp;
            continue;
          }
          op_tasks_done_.clear();
          statuses[i] = batch[i].apply();
          if (statuses[i].ok()) {
            statuses[i] = writer_->Run("RELEASE op");
          } else {
            writer_->Exec("ROLLBACK TO op").IgnoreError();
            writer_->Exec("RELEASE op").IgnoreError();
          }
          if (statuses[i].ok()) {
            for (const std::string& w : op_tasks_done_) tasks_done_[w]++;
          }
        }
        commit = UpdateSweepStates();
        if (commit.ok()) commit = FlushTasksDone();
        if (commit.ok()) {
          // Persist the token high-water mark: every token issued inside this
          // transaction (LeaseTasks) is covered, and when leases are being
          // granted from the mirror, a fresh block of tokens is reserved ahead.
          std::lock_guard<std::mutex> lock(token_mu_);
          if (want_token_block_) {
            token_limit =
                last_token_ + std::max<int64_t>(1, options_.token_block);
            want_token_block_ = false;
          } else if (last_token_ > durable_token_limit_) {
            token_limit = last_token_;
          }
        }
        if (commit.ok() && token_limit > 0) {
          commit = SetFencingCounter(token_limit);
        }
        t_commit = SteadyClock::now();
        if (commit.ok()) commit = writer_->Exec("COMMIT");
        t_committed = SteadyClock::now();
        if (!commit.ok()) writer_->Exec("ROLLBACK").IgnoreError();
      }
      if (!commit.ok()) {
        SWEEPD_LOG(ERROR) << "ledger " << path_
                          << ": commit failed, writer stops: " << commit;
        std::lock_guard<std::mutex> lock(queue_mu_);
        broken_ = absl::UnavailableError(
            absl::StrCat("ledger commit failed: ", commit.message()));
        commit = broken_;
      } else {
        if (token_limit > 0) {
          std::lock_guard<std::mutex> lock(token_mu_);
          durable_token_limit_ = std::max(durable_token_limit_, token_limit);
        }
        std::lock_guard<std::mutex> lock(queue_mu_);
        stats_.transactions++;
        stats_.operations += static_cast<int64_t>(batch.size());
        stats_.max_batch_ops =
            std::max<int64_t>(stats_.max_batch_ops, batch.size());
        stats_.apply_us += micros(t_start, t_commit);
        stats_.commit_us += micros(t_commit, t_committed);
        stats_.max_commit_us = std::max<int64_t>(stats_.max_commit_us,
                                                 micros(t_commit, t_committed));
      }
    }
    // Callbacks run on the callback thread, in order, while this thread
    // starts the next transaction.
    CallbackBatch done;
    done.finish.reserve(batch.size());
    done.statuses.reserve(batch.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      done.finish.push_back(std::move(batch[i].finish));
      done.statuses.push_back(commit.ok() ? statuses[i] : commit);
    }
    {
      std::lock_guard<std::mutex> lock(callback_mu_);
      callback_queue_.push_back(std::move(done));
    }
    callback_cv_.notify_one();
  }

  struct CallbackBatch {
    std::vector<std::function<void(absl::Status)>> finish;
    std::vector<absl::Status> statuses;
  };

  void CallbackLoop() {
    while (true) {
      CallbackBatch batch;
      {
        std::unique_lock<std::mutex> lock(callback_mu_);
        callback_cv_.wait(lock, [this] {
          return callbacks_closed_ || !callback_queue_.empty();
        });
        if (callback_queue_.empty()) return;
        batch = std::move(callback_queue_.front());
        callback_queue_.pop_front();
      }
      const auto t0 = std::chrono::steady_clock::now();
      for (size_t i = 0; i < batch.finish.size(); ++i) {
        batch.finish[i](batch.statuses[i]);
      }
      const int64_t us = std::chrono::duration_cast<std::chrono::microseconds>(
                             std::chrono::steady_clock::now() - t0)
                             .count();
      std::lock_guard<std::mutex> lock(queue_mu_);
      stats_.callback_us += us;
    }
  }

  // SQLite calls this on the writer thread after each commit with the number
  // of frames in the WAL.
  static int WalHook(void* self, sqlite3* db, const char*, int pages) {
    auto* ledger = static_cast<LedgerImpl*>(self);
    // Only a checkpoint that backfills every frame lets the next transaction
    // restart the WAL from its beginning, and under a steady write load the
    // background checkpointer never catches up with the writer. So the writer
    // finishes the job itself at kWalWriterCheckpointPages: by then the
    // checkpointer has copied most frames and only the rest is copied here.
    // (A PASSIVE checkpoint that finds the checkpointer busy returns at once;
    // the next commit tries again.)
    if (pages >= kWalWriterCheckpointPages) {
      sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr,
                                nullptr);
    } else if (pages >= kWalCheckpointPages) {
      {
        std::lock_guard<std::mutex> lock(ledger->checkpoint_mu_);
        ledger->checkpoint_wanted_ = true;
      }
      ledger->checkpoint_cv_.notify_one();
    }
    return SQLITE_OK;
  }

  // Copies WAL pages back into the database file (and fsyncs it) on its own
  // connection, off the writer thread. PASSIVE never blocks the writer.
  void CheckpointLoop() {
    while (true) {
      {
        std::unique_lock<std::mutex> lock(checkpoint_mu_);
        checkpoint_cv_.wait(
            lock, [this] { return checkpoint_closed_ || checkpoint_wanted_; });
        if (checkpoint_closed_) return;
        checkpoint_wanted_ = false;
      }
      int rc = sqlite3_wal_checkpoint_v2(checkpointer_->db(), nullptr,
                                         SQLITE_CHECKPOINT_PASSIVE, nullptr,
                                         nullptr);
      if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
        SWEEPD_LOG(WARNING)
            << "ledger " << path_
            << ": checkpoint failed: " << sqlite3_errmsg(checkpointer_->db());
      }
    }
  }

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

  Policy PolicyOf(const v1::SweepSpec& spec) const {
    return EffectivePolicyOf(spec.policy(), options_.policy_defaults);
  }

  Policy PolicyFor(const std::string& sweep_id) const {
    auto it = policies_.find(sweep_id);
    if (it != policies_.end()) return it->second;
    return EffectivePolicyOf(v1::ExecutionPolicy(), options_.policy_defaults);
  }

  static void AddCount(v1::TaskCounts* c, int state, int64_t n) {
    c->set_total(c->total() + n);
    AdjustTaskCount(c, static_cast<v1::TaskState>(state), n);
  }

  // The columns ReadSweepRow reads, in its order: every SELECT of sweep rows
  // uses this list, so a new column is added in one place.
  static constexpr char kSweepColumns[] =
      "sweep_id, name, spec, state, total_tasks, created_ms, updated_ms, "
      "deferred_stages";

  static absl::StatusOr<SweepRow> ReadSweepRow(Stmt& s) {
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
    return r;
  }

  static std::vector<int> ParseStageList(const std::string& text) {
    std::vector<int> out;
    for (absl::string_view part :
         absl::StrSplit(text, ',', absl::SkipEmpty())) {
      int v = 0;
      if (absl::SimpleAtoi(part, &v)) out.push_back(v);
    }
    return out;
  }

  static absl::StatusOr<v1::TaskRecord> ReadTaskRecord(Stmt& s) {
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

  // Reads kTaskCols starting at column `first`.
  static void ReadRowState(Stmt& s, int first, TaskRowState* r) {
    r->state = static_cast<TaskState>(s.Int(first));
    r->attempts = static_cast<int>(s.Int(first + 1));
    r->fencing_token = s.Int(first + 2);
    r->lease_worker = s.Text(first + 3);
    r->lease_expires_ms = s.Int(first + 4);
    r->next_eligible_ms = s.Int(first + 5);
  }

  // ---- Writer-thread helpers (only called from apply functions) ----

  absl::StatusOr<std::optional<TaskRowState>> LoadRow(
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

  absl::Status StoreRow(const TaskRowState& r) {
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

  // StoreRow plus the outcome columns, in one UPDATE.
  absl::Status SetOutcome(const TaskRowState& r, const std::string* result_blob,
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

  // Adds the batch's committed results to workers.tasks_done: one UPDATE per
  // worker per transaction.
  absl::Status FlushTasksDone() {
    for (const auto& [worker_id, n] : tasks_done_) {
      ASSIGN_OR_RETURN(
          Stmt * w,
          writer_->Prepare("UPDATE workers SET tasks_done=tasks_done+? "
                           "WHERE worker_id=?"));
      RETURN_IF_ERROR(w->Bind(n).Bind(worker_id).Run());
    }
    tasks_done_.clear();
    return absl::OkStatus();
  }

  // (sweep_id, task_key) of the lease with `token`; NOT_FOUND if never issued,
  // INVALID_ARGUMENT if it was issued for another task.
  absl::StatusOr<TaskId> ResolveToken(const std::string& task_key,
                                      int64_t token) {
    ASSIGN_OR_RETURN(
        Stmt * s,
        writer_->Prepare("SELECT sweep_id, task_key FROM leases WHERE "
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

  absl::Status SetFencingCounter(int64_t value) {
    ASSIGN_OR_RETURN(
        Stmt * s, writer_->Prepare(
                      "UPDATE meta SET value=? WHERE key='fencing_counter'"));
    return s->Bind(value).Run();
  }

  absl::Status UpdateSweepStates() {
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
      ASSIGN_OR_RETURN(
          Stmt * up, writer_->Prepare("UPDATE sweeps SET state=?, updated_ms=? "
                                      "WHERE sweep_id=?"));
      RETURN_IF_ERROR(up->Bind(int64_t{new_state})
                          .Bind(clock_->NowMs())
                          .Bind(sweep_id)
                          .Run());
    }
    touched_sweeps_.clear();
    return absl::OkStatus();
  }

  // ---- Operations ----

  absl::StatusOr<InsertSweepOutcome> DoInsertSweep(const Plan& plan) {
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
                           "deferred_stages) VALUES(?, ?, ?, ?, ?, ?, ?, ?)"));
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
                          .Run());
    }
    out.total_tasks = static_cast<int64_t>(plan.tasks.size());
    RETURN_IF_ERROR(
        InsertTaskRows(plan.sweep_id, plan.tasks, 0, now, &out.initial_states));
    policies_[plan.sweep_id] = PolicyOf(plan.resolved_spec);
    touched_sweeps_.insert(plan.sweep_id);
    return out;
  }

  absl::StatusOr<AppendStageOutcome> DoAppendStage(
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
      fresh.back().spec.set_index(total + static_cast<int64_t>(fresh.size()) -
                                  1);
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

  // Inserts `tasks` of `sweep_id` with idx from `first_idx`. A task whose key
  // has a committed DONE result in another sweep is inserted DONE with that
  // result (finished work is never computed again).
  absl::Status InsertTaskRows(const std::string& sweep_id,
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
        return absl::InvalidArgumentError(
            absl::StrCat("tasks[", i, "].task_key '", t.task_key,
                         "' appears twice in sweep"));
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

  absl::StatusOr<LeaseOutcome> DoLease(const std::string& worker_id,
                                       const std::vector<TaskId>& tasks) {
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
      ASSIGN_OR_RETURN(
          Stmt * spec,
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

  // A token for a lease written in this transaction: it may exceed the
  // persisted limit, because this transaction persists it (RunBatch).
  int64_t NextTokenInTransaction() {
    std::lock_guard<std::mutex> lock(token_mu_);
    return ++last_token_;
  }

  absl::StatusOr<LeaseOutcome> DoRecordLeases(
      const std::string& worker_id, const std::vector<GrantedLease>& leases) {
    LeaseOutcome out;
    const int64_t now = clock_->NowMs();
    for (const GrantedLease& l : leases) {
      {
        std::lock_guard<std::mutex> lock(token_mu_);
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
          return absl::NotFoundError(
              absl::StrCat("task '", l.task.task_key, "' of sweep '",
                           l.task.sweep_id, "' is not in the ledger"));
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

  absl::StatusOr<ResultOutcome> DoRecordResult(const ResultReport& report) {
    if (report.result.has_value() == report.failure.has_value()) {
      return absl::InvalidArgumentError(
          "exactly one of result or failure must be set");
    }
    ASSIGN_OR_RETURN(TaskId id,
                     ResolveToken(report.task_key, report.fencing_token));
    ASSIGN_OR_RETURN(auto loaded, LoadRow(id.sweep_id, id.task_key));
    if (!loaded.has_value()) {
      return absl::DataLossError(absl::StrCat(
          "lease ", report.fencing_token, " names task '", id.task_key,
          "' missing from sweep '", id.sweep_id, "'"));
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
      out.reason = absl::StrCat(
          "failure from stale lease ", report.fencing_token, " (current token ",
          row.fencing_token, ", state ", v1::TaskState_Name(row.state), ")");
      return out;
    }
    const Policy policy = PolicyFor(id.sweep_id);
    const v1::TaskFailure& f = *report.failure;
    std::string error =
        absl::StrCat("attempt ", row.attempts, ": ", f.message());
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

  int64_t BackoffMs(const Policy& policy, int attempts) const {
    int64_t backoff = policy.retry_backoff_ms;
    for (int i = 1; i < attempts && backoff < options_.max_retry_backoff_ms;
         ++i)
      backoff *= 2;
    return std::min(backoff, options_.max_retry_backoff_ms);
  }

  absl::StatusOr<RenewOutcome> DoRenew(const std::string& worker_id,
                                       const std::vector<LeaseRef>& leases) {
    RenewOutcome out;
    const int64_t now = clock_->NowMs();
    for (const LeaseRef& ref : leases) {
      auto id = ResolveToken(ref.task_key, ref.fencing_token);
      if (!id.ok()) {
        if (id.status().code() == absl::StatusCode::kInternal)
          return id.status();
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
        Stmt * w, writer_->Prepare(
                      "UPDATE workers SET last_seen_ms=? WHERE worker_id=?"));
    RETURN_IF_ERROR(w->Bind(now).Bind(worker_id).Run());
    return out;
  }

  absl::StatusOr<TaskChanges> DoRelease(const std::string& worker_id,
                                        const std::vector<LeaseRef>& leases) {
    TaskChanges out;
    const int64_t now = clock_->NowMs();
    for (const LeaseRef& ref : leases) {
      auto id = ResolveToken(ref.task_key, ref.fencing_token);
      if (!id.ok())
        continue;  // unknown or mismatched lease: nothing to release
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

  absl::StatusOr<TaskChanges> DoExpire(
      const std::vector<ExpiredLease>& leases) {
    TaskChanges out;
    const int64_t now = clock_->NowMs();
    for (const ExpiredLease& e : leases) {
      ASSIGN_OR_RETURN(auto row, LoadRow(e.sweep_id, e.task_key));
      if (!row.has_value() || row->state != v1::TASK_STATE_LEASED ||
          row->fencing_token != e.fencing_token ||
          row->lease_expires_ms > now) {
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

  absl::StatusOr<CancelOutcome> DoCancel(const std::string& sweep_id) {
    ASSIGN_OR_RETURN(
        Stmt * s,
        writer_->Prepare("SELECT state FROM sweeps WHERE sweep_id=?"));
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

  absl::StatusOr<bool> DoUpsertWorker(const WorkerRow& w) {
    std::string caps;
    w.capabilities.SerializeToString(&caps);
    ASSIGN_OR_RETURN(
        Stmt * s,
        writer_->Prepare(
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

  const std::string path_;
  const LedgerOptions options_;
  Clock* const clock_;

  // Writer-thread state.
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
  std::mutex token_mu_;
  int64_t last_token_ = 0;           // guarded by token_mu_
  int64_t durable_token_limit_ = 0;  // guarded by token_mu_
  bool want_token_block_ = false;    // guarded by token_mu_
  int64_t token_grants_ = 0;         // guarded by token_mu_
  int64_t token_misses_ = 0;         // guarded by token_mu_

  // Callbacks of committed batches, run in order by callback_thread_.
  std::mutex callback_mu_;
  std::condition_variable callback_cv_;
  std::deque<CallbackBatch> callback_queue_;  // guarded by callback_mu_
  bool callbacks_closed_ = false;             // guarded by callback_mu_
  std::thread callback_thread_;

  // Background checkpoints (WalHook asks, CheckpointLoop does).
  static constexpr int kWalCheckpointPages = 2000;
  static constexpr int kWalWriterCheckpointPages = 4000;
  std::unique_ptr<Conn> checkpointer_;
  std::mutex checkpoint_mu_;
  std::condition_variable checkpoint_cv_;
  bool checkpoint_wanted_ = false;  // guarded by checkpoint_mu_
  bool checkpoint_closed_ = false;  // guarded by checkpoint_mu_
  std::thread checkpoint_thread_;

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<WriteOp> queue_;   // guarded by queue_mu_
  bool closed_ = false;         // guarded by queue_mu_
  bool writer_exited_ = false;  // guarded by queue_mu_
  absl::Status broken_;         // guarded by queue_mu_
  LedgerStats stats_;           // guarded by queue_mu_

  absl::Mutex readers_mu_;
  std::vector<std::unique_ptr<Conn>> readers_ ABSL_GUARDED_BY(readers_mu_);
  std::vector<Conn*> free_readers_ ABSL_GUARDED_BY(readers_mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<Ledger>> Ledger::Open(
    const std::string& path, const LedgerOptions& options) {
  if (path.empty()) return absl::InvalidArgumentError("ledger path is empty");
  if (options.clock == nullptr)
    return absl::InvalidArgumentError("LedgerOptions.clock is null");
  auto ledger = std::make_unique<LedgerImpl>(path, options);
  RETURN_IF_ERROR(
      Annotate(ledger->Init(), absl::StrCat("opening ledger ", path)));
  return std::unique_ptr<Ledger>(std::move(ledger));
}

std::string FormatLedgerStats(const LedgerStats& s) {
  const double txns = std::max<int64_t>(1, s.transactions);
  return absl::StrFormat(
      "transactions=%d operations=%d ops/txn=%.1f max_batch_ops=%d "
      "apply_us/txn=%.0f commit_us/txn=%.0f max_commit_us=%d "
      "callback_us/txn=%.0f reserved_token_grants=%d "
      "reserved_token_misses=%d",
      s.transactions, s.operations, s.operations / txns, s.max_batch_ops,
      s.apply_us / txns, s.commit_us / txns, s.max_commit_us,
      s.callback_us / txns, s.reserved_token_grants, s.reserved_token_misses);
}

absl::Status CheckLedgerIntegrity(const std::string& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status s = SqlError(db, rc, absl::StrCat("open ", path));
    sqlite3_close(db);
    return s;
  }
  sqlite3_stmt* stmt = nullptr;
  std::string first;
  rc = sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &stmt, nullptr);
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
      const unsigned char* t = sqlite3_column_text(stmt, 0);
      first = t != nullptr ? reinterpret_cast<const char*>(t) : "";
    }
  }
  absl::Status status;
  if (rc != SQLITE_ROW) {
    status = SqlError(db, rc, absl::StrCat("integrity_check ", path));
  } else if (first != "ok") {
    status = absl::DataLossError(
        absl::StrCat("integrity_check of ", path, ": ", first));
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return status;
}

}  // namespace sweepd
