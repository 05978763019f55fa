#include "coordinator/ledger_sqlite.h"

namespace sweepd::ledger_internal {

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

}  // namespace sweepd::ledger_internal
