#include "coordinator/snapshot.h"

#include <fcntl.h>
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

}  // namespace

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
    const std::string& ledger_path, const std::string& dir) {
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
    const std::string temp = ledger_path + ".restore-tmp";
    absl::Status copied = CopyFile(snap, temp);
    if (!copied.ok()) return absl::InternalError(copied.message());
    RETURN_IF_ERROR(FsyncPath(temp, false));
    // A WAL next to a missing/empty main file belongs to no database we can
    // trust.
    ::unlink((ledger_path + "-wal").c_str());
    ::unlink((ledger_path + "-shm").c_str());
    if (::rename(temp.c_str(), ledger_path.c_str()) != 0) {
      return ErrnoError("rename to", ledger_path);
    }
    const std::string parent = DirName(ledger_path);
    RETURN_IF_ERROR(FsyncPath(parent, true));
    return std::optional<std::string>(snap);
  }
  return std::optional<std::string>();
}

}  // namespace sweepd
