// Ledger snapshots: consistent copies of the ledger in a durable directory, and
// restoring the newest one onto a box whose ledger is missing.
//
// WriteSnapshot: VACUUM INTO a temp file in the directory, PRAGMA
// integrity_check on it, fsync the file, atomically rename it to
// `ledger-<13-digit unix ms>.db`, fsync the directory, then delete all but the
// newest `keep` snapshots. A crash at any point leaves either the previous
// snapshots or the new one, never a partial file under a snapshot name (temp
// files start with
// ".tmp-" and are removed by the next WriteSnapshot).
//
// Free functions; thread-safe as long as one process writes a given directory.
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
// newest one that passes integrity_check to `ledger_path` (temp file + fsync +
// rename) and returns its path; returns nullopt when there was nothing to do.
absl::StatusOr<std::optional<std::string>> RestoreNewestSnapshotIfMissing(
    const std::string& ledger_path, const std::string& dir);

}  // namespace sweepd

#endif  // SWEEPD_COORDINATOR_SNAPSHOT_H_
