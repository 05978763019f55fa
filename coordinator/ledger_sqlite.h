// The ledger's thin SQLite wrapper: errors as absl::Status (codes by cause),
// prepared statements with chained binds, and a connection that caches its
// prepared statements. Private to the ledger (coordinator/ledger*.cc).
//
// Ownership: a Conn owns its sqlite3 handle and its statements; a Stmt* from
// Conn::Prepare is borrowed from the cache and reset on every Prepare of the
// same SQL. Thread-safety: none; one thread uses a Conn at a time (the writer
// thread, the checkpointer, or a reader borrowed from the pool).
#ifndef SWEEPD_COORDINATOR_LEDGER_SQLITE_H_
#define SWEEPD_COORDINATOR_LEDGER_SQLITE_H_

#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/status.h"

namespace sweepd::ledger_internal {

// An SQLite error as a Status: BUSY/LOCKED -> UNAVAILABLE, FULL/IOERR ->
// RESOURCE_EXHAUSTED, CANTOPEN -> NOT_FOUND, CORRUPT/NOTADB -> DATA_LOSS, else
// INTERNAL; the message names `what`.
absl::Status SqlError(sqlite3* db, int rc, absl::string_view what);

// Runs `sql` (any number of statements, no rows) on `db`.
absl::Status Exec(sqlite3* db, const std::string& sql);

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
    return ::sweepd::ledger_internal::Exec(db_, sql);
  }

 private:
  explicit Conn(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  std::map<std::string, std::unique_ptr<Stmt>> cache_;
};

}  // namespace sweepd::ledger_internal

#endif  // SWEEPD_COORDINATOR_LEDGER_SQLITE_H_
