#include "coordinator/snapshot.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/fs.h"
#include "common/logging.h"
#include "common/status.h"
#include "coordinator/ledger_lock.h"

namespace sweepd {
namespace {

constexpr char kPrefix[] = "ledger-";
constexpr char kSuffix[] = ".db";
constexpr char kTempPrefix[] = ".tmp-";

absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  return absl::InternalError(
      absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

absl::Status FsyncPath(const std::string& path, bool directory) {
  int fd =
      ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) return ErrnoError("open", path);
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return ErrnoError("fsync", path);
  return absl::OkStatus();
}

// An SQLite error as a Status naming `what`; the connection's message when
// there is one.
absl::Status SqliteError(sqlite3* db, int rc, absl::string_view what) {
  const char* msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  const absl::StatusCode code =
      (rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB
          ? absl::StatusCode::kDataLoss
          : absl::StatusCode::kInternal;
  return absl::Status(code,
                      absl::StrCat(what, ": ", msg, " (sqlite code ", rc, ")"));
}

// One sqlite3 connection, closed on scope exit.
struct Db {
  sqlite3* db = nullptr;
  ~Db() { sqlite3_close(db); }
  absl::Status Open(const std::string& path, int flags) {
    const int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
    if (rc != SQLITE_OK)
      return SqliteError(db, rc, absl::StrCat("open ", path));
    sqlite3_busy_timeout(db, 5'000);
    return absl::OkStatus();
  }
  absl::Status Exec(const std::string& sql) {
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return SqliteError(db, rc, sql.substr(0, 60));
    return absl::OkStatus();
  }
  absl::StatusOr<int64_t> Int(const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr);
    if (rc != SQLITE_OK) return SqliteError(db, rc, sql.substr(0, 60));
    rc = sqlite3_step(stmt);
    absl::StatusOr<int64_t> out =
        rc == SQLITE_ROW
            ? absl::StatusOr<int64_t>(sqlite3_column_int64(stmt, 0))
            : SqliteError(db, rc, sql.substr(0, 60));
    sqlite3_finalize(stmt);
    return out;
  }
};

// Copies `source` to a temp file next to `ledger_path`, raises its fencing for
// a restore and renames it over `ledger_path`. A ledger already there is moved
// to `aside` (with its WAL) when `aside` is set, else must be missing or
// empty; a WAL or shm file without a trusted main file is removed.
absl::StatusOr<RestoreInfo> InstallCopy(const std::string& source,
                                        const std::string& ledger_path,
                                        int64_t now_ms,
                                        const std::string& aside) {
  const std::string temp = ledger_path + ".restore-tmp";
  ::unlink((temp + "-wal").c_str());
  ::unlink((temp + "-shm").c_str());
  absl::Status copied = CopyFile(source, temp);
  if (!copied.ok()) return absl::InternalError(copied.message());
  absl::StatusOr<RestoreInfo> info = RaiseFencingForRestore(temp, now_ms);
  if (!info.ok()) {
    ::unlink(temp.c_str());
    return Annotate(info.status(), absl::StrCat("restoring ", source));
  }
  RETURN_IF_ERROR(FsyncPath(temp, false));
  if (!aside.empty() && PathExists(ledger_path)) {
    if (::rename(ledger_path.c_str(), aside.c_str()) != 0) {
      return ErrnoError("rename to", aside);
    }
    if (PathExists(ledger_path + "-wal") &&
        ::rename((ledger_path + "-wal").c_str(), (aside + "-wal").c_str()) !=
            0) {
      return ErrnoError("rename to", aside + "-wal");
    }
  }
  // A WAL next to a missing/replaced main file belongs to no database we can
  // trust.
  ::unlink((ledger_path + "-wal").c_str());
  ::unlink((ledger_path + "-shm").c_str());
  if (::rename(temp.c_str(), ledger_path.c_str()) != 0) {
    return ErrnoError("rename to", ledger_path);
  }
  RETURN_IF_ERROR(FsyncPath(DirName(ledger_path), true));
  return info;
}

}  // namespace

absl::StatusOr<RestoreInfo> RaiseFencingForRestore(const std::string& path,
                                                   int64_t now_ms) {
  Db d;
  RETURN_IF_ERROR(d.Open(path, SQLITE_OPEN_READWRITE));
  RETURN_IF_ERROR(d.Exec("BEGIN IMMEDIATE"));
  auto fail = [&](absl::Status s) {
    d.Exec("ROLLBACK").IgnoreError();
    return s;
  };
  absl::StatusOr<int64_t> counter =
      d.Int("SELECT value FROM meta WHERE key='fencing_counter'");
  if (!counter.ok()) return fail(counter.status());
  RestoreInfo info;
  info.fencing_counter =
      std::max(*counter + kRestoreFencingStride, now_ms * kRestoreTokensPerMs);
  absl::Status s = d.Exec(
      absl::StrCat("UPDATE meta SET value=", info.fencing_counter,
                   " WHERE key='fencing_counter';"
                   "INSERT INTO meta(key, value) VALUES('restore_epoch', 1) "
                   "ON CONFLICT(key) DO UPDATE SET value = value + 1;"));
  if (!s.ok()) return fail(s);
  absl::StatusOr<int64_t> epoch =
      d.Int("SELECT value FROM meta WHERE key='restore_epoch'");
  if (!epoch.ok()) return fail(epoch.status());
  info.restore_epoch = *epoch;
  RETURN_IF_ERROR(d.Exec("COMMIT"));
  return info;
}

absl::StatusOr<std::vector<std::string>> ListSnapshots(const std::string& dir) {
  if (!IsDirectory(dir)) {
    return absl::NotFoundError(
        absl::StrCat("snapshot dir ", dir, " does not exist"));
  }
  absl::StatusOr<std::vector<std::string>> entries = ListDir(dir);
  if (!entries.ok())
    return absl::InternalError(
        absl::StrCat("listing ", dir, ": ", entries.status().message()));
  std::vector<std::string> names;
  for (const std::string& name : *entries) {
    if (absl::StartsWith(name, kPrefix) && absl::EndsWith(name, kSuffix))
      names.push_back(name);
  }
  // Zero-padded timestamps: lexical order is time order.
  std::sort(names.rbegin(), names.rend());
  std::vector<std::string> out;
  for (const auto& n : names) out.push_back(JoinPath(dir, n));
  return out;
}

absl::StatusOr<std::string> WriteSnapshot(Ledger& ledger,
                                          const SnapshotOptions& options,
                                          int64_t now_ms) {
  if (options.dir.empty())
    return absl::InvalidArgumentError("snapshot dir is empty");
  if (options.keep < 1)
    return absl::InvalidArgumentError("snapshot keep must be >= 1");
  RETURN_IF_ERROR(MakeDirs(options.dir));
  // Leftovers of an interrupted snapshot (best effort, like the pruning below).
  absl::StatusOr<std::vector<std::string>> entries = ListDir(options.dir);
  if (entries.ok()) {
    for (const std::string& entry : *entries) {
      if (absl::StartsWith(entry, kTempPrefix)) {
        ::unlink(JoinPath(options.dir, entry).c_str());
      }
    }
  }
  const std::string name =
      absl::StrFormat("%s%013d%s", kPrefix, now_ms, kSuffix);
  const std::string final_path = JoinPath(options.dir, name);
  const std::string temp_path = JoinPath(options.dir, kTempPrefix + name);
  RETURN_IF_ERROR(Annotate(ledger.CopyTo(temp_path), "snapshot"));
  absl::Status check = CheckLedgerIntegrity(temp_path);
  if (!check.ok()) {
    ::unlink(temp_path.c_str());
    return Annotate(check, "snapshot");
  }
  RETURN_IF_ERROR(FsyncPath(temp_path, false));
  if (::rename(temp_path.c_str(), final_path.c_str()) != 0) {
    return ErrnoError("rename to", final_path);
  }
  RETURN_IF_ERROR(FsyncPath(options.dir, true));
  ASSIGN_OR_RETURN(std::vector<std::string> all, ListSnapshots(options.dir));
  for (size_t i = options.keep; i < all.size(); ++i) ::unlink(all[i].c_str());
  return final_path;
}

absl::StatusOr<std::optional<std::string>> RestoreNewestSnapshotIfMissing(
    const std::string& ledger_path, const std::string& dir, int64_t now_ms) {
  // An existing ledger whose size cannot be read (e.g. a directory) is left
  // alone too.
  absl::StatusOr<uint64_t> ledger_size = FileSize(ledger_path);
  if (ledger_size.ok() ? *ledger_size > 0 : PathExists(ledger_path)) {
    return std::optional<std::string>();
  }
  auto snapshots = ListSnapshots(dir);
  if (!snapshots.ok()) {
    if (snapshots.status().code() == absl::StatusCode::kNotFound) {
      return std::optional<std::string>();
    }
    return snapshots.status();
  }
  for (const std::string& snap : *snapshots) {
    absl::Status check = CheckLedgerIntegrity(snap);
    if (!check.ok()) {
      SWEEPD_LOG(WARNING) << "skipping snapshot " << snap << ": " << check;
      continue;
    }
    ASSIGN_OR_RETURN(RestoreInfo info,
                     InstallCopy(snap, ledger_path, now_ms, /*aside=*/""));
    SWEEPD_LOG(INFO) << "restored " << ledger_path << " from " << snap
                     << " (restore epoch " << info.restore_epoch
                     << ", fencing tokens continue above "
                     << info.fencing_counter << ")";
    return std::optional<std::string>(snap);
  }
  return std::optional<std::string>();
}

absl::Status BackupLedger(const std::string& ledger_path,
                          const std::string& out_path) {
  if (PathExists(out_path)) {
    return absl::AlreadyExistsError(
        absl::StrCat("backup target ", out_path, " exists"));
  }
  if (!PathExists(ledger_path)) {
    return absl::NotFoundError(
        absl::StrCat("ledger ", ledger_path, " does not exist"));
  }
  const std::string temp = JoinPath(
      DirName(out_path), absl::StrCat(kTempPrefix, BaseName(out_path)));
  ::unlink(temp.c_str());
  {
    Db src, dst;
    RETURN_IF_ERROR(src.Open(ledger_path, SQLITE_OPEN_READONLY));
    RETURN_IF_ERROR(dst.Open(temp, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE));
    sqlite3_backup* backup =
        sqlite3_backup_init(dst.db, "main", src.db, "main");
    if (backup == nullptr) {
      absl::Status s =
          SqliteError(dst.db, sqlite3_errcode(dst.db), "sqlite3_backup_init");
      ::unlink(temp.c_str());
      return s;
    }
    // One step copies every page inside one read transaction of the source:
    // a consistent copy, and in WAL mode the writer is never blocked.
    int rc = sqlite3_backup_step(backup, -1);
    while (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
      sqlite3_sleep(50);
      rc = sqlite3_backup_step(backup, -1);
    }
    const int finish = sqlite3_backup_finish(backup);
    if (rc != SQLITE_DONE || finish != SQLITE_OK) {
      absl::Status s = SqliteError(
          dst.db, rc != SQLITE_DONE ? rc : finish,
          absl::StrCat("online backup of ", ledger_path, " to ", temp));
      ::unlink(temp.c_str());
      return s;
    }
  }
  absl::Status check = CheckLedgerIntegrity(temp);
  if (!check.ok()) {
    ::unlink(temp.c_str());
    return Annotate(check, "backup");
  }
  RETURN_IF_ERROR(FsyncPath(temp, false));
  if (::rename(temp.c_str(), out_path.c_str()) != 0) {
    return ErrnoError("rename to", out_path);
  }
  return FsyncPath(DirName(out_path), true);
}

absl::StatusOr<RestoredLedger> RestoreLedger(const std::string& backup_path,
                                             const std::string& ledger_path,
                                             int64_t now_ms) {
  if (!PathExists(backup_path)) {
    return absl::NotFoundError(
        absl::StrCat("backup ", backup_path, " does not exist"));
  }
  RETURN_IF_ERROR(Annotate(CheckLedgerIntegrity(backup_path),
                           absl::StrCat("backup ", backup_path)));
  ASSIGN_OR_RETURN(std::unique_ptr<LedgerLock> lock,
                   LedgerLock::Acquire(ledger_path));
  RestoredLedger out;
  std::string aside;
  absl::StatusOr<uint64_t> size = FileSize(ledger_path);
  if (size.ok() && *size > 0) {
    aside = absl::StrCat(ledger_path, ".pre-restore-", now_ms);
    out.moved_aside = aside;
  }
  ASSIGN_OR_RETURN(out.info,
                   InstallCopy(backup_path, ledger_path, now_ms, aside));
  return out;
}

}  // namespace sweepd
