// Ledger snapshots and backups: consistent copies of the ledger, and
// installing one as the ledger (restore).
//
// WriteSnapshot: VACUUM INTO a temp file in the directory, PRAGMA
// integrity_check on it, fsync the file, atomically rename it to
// `ledger-<13-digit unix ms>.db`, fsync the directory, then delete all but the
// newest `keep` snapshots. A crash at any point leaves either the previous
// snapshots or the new one, never a partial file under a snapshot name (temp
// files start with ".tmp-" and are removed by the next WriteSnapshot).
//
// BackupLedger: the same guarantees for one copy of a live ledger file taken
// with SQLite's online backup API (`sweepctl backup`): readers and the writer
// of a running sweepd are not blocked (WAL mode).
//
// Restoring (RestoreNewestSnapshotIfMissing at start-up, RestoreLedger for
// `sweepctl restore`) installs a copy that passes integrity_check and raises
// its fencing counter past anything the lost ledger could have issued after
// the copy was taken (RaiseFencingForRestore), so a lease granted by the lost
// ledger can never match a lease of the restored one: its results are refused
// and its heartbeats report it lost.
//
// Free functions; thread-safe as long as one process writes a given directory
// or ledger path.
#ifndef SWEEPD_COORDINATOR_SNAPSHOT_H_
#define SWEEPD_COORDINATOR_SNAPSHOT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/ledger.h"

namespace sweepd {

struct SnapshotOptions {
  std::string dir;
  // Newest snapshots kept (>= 1).
  int keep = 3;
};

// Returns the path of the snapshot written.
absl::StatusOr<std::string> WriteSnapshot(Ledger& ledger,
                                          const SnapshotOptions& options,
                                          int64_t now_ms);

// Snapshot files of `dir`, newest first. NOT_FOUND if `dir` does not exist.
absl::StatusOr<std::vector<std::string>> ListSnapshots(const std::string& dir);

// If `ledger_path` is missing or empty and `dir` holds snapshots, copies the
// newest one that passes integrity_check to `ledger_path` (temp file, fencing
// raised for `now_ms` (unix ms), fsync, rename) and returns its path; corrupt
// snapshots are skipped with a warning. Returns nullopt when there was nothing
// to do.
absl::StatusOr<std::optional<std::string>> RestoreNewestSnapshotIfMissing(
    const std::string& ledger_path, const std::string& dir, int64_t now_ms);

// Fencing after a restore. The lost ledger may have issued tokens above the
// copy's counter after the copy was taken; the restored ledger continues
// above max(counter + kRestoreFencingStride, now_ms * kRestoreTokensPerMs).
// The stride covers a billion leases granted after the copy (days at the
// ledger's full rate); the clock term covers a lost ledger that had itself
// been restored, as long as no ledger grants more than kRestoreTokensPerMs
// leases per millisecond (far above what one SQLite writer commits).
inline constexpr int64_t kRestoreFencingStride = 1'000'000'000;
inline constexpr int64_t kRestoreTokensPerMs = 1'000;

struct RestoreInfo {
  int64_t fencing_counter = 0;  // the raised meta.fencing_counter
  int64_t restore_epoch = 0;    // meta.restore_epoch: restores so far
};

// Raises meta.fencing_counter of the ledger file at `path` (not open by a
// coordinator) for a restore at `now_ms` and increments meta.restore_epoch.
absl::StatusOr<RestoreInfo> RaiseFencingForRestore(const std::string& path,
                                                   int64_t now_ms);

// Online backup of the ledger at `ledger_path` (which a running sweepd may be
// writing) to `out_path` through sqlite3_backup: temp file next to `out_path`,
// integrity_check, fsync, rename. ALREADY_EXISTS if `out_path` exists.
absl::Status BackupLedger(const std::string& ledger_path,
                          const std::string& out_path);

struct RestoredLedger {
  RestoreInfo info;
  // Where the ledger that was replaced (with its -wal) was moved; "" if there
  // was none.
  std::string moved_aside;
};

// Installs the copy at `backup_path` as the ledger at `ledger_path`: offline,
// under the ledger's lock (FAILED_PRECONDITION naming the holder while a
// sweepd runs on it). The copy must pass integrity_check (DATA_LOSS
// otherwise); its fencing is raised for `now_ms`; an existing ledger is kept
// as `<ledger>.pre-restore-<now_ms>` (with its -wal), never deleted.
absl::StatusOr<RestoredLedger> RestoreLedger(const std::string& backup_path,
                                             const std::string& ledger_path,
                                             int64_t now_ms);

}  // namespace sweepd

#endif  // SWEEPD_COORDINATOR_SNAPSHOT_H_
