#include "coordinator/snapshot.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/logging.h"
#include "common/status.h"

namespace sweepd {
namespace {

namespace fs = std::filesystem;

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
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(
        absl::StrCat("snapshot dir ", dir, " does not exist"));
  }
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (absl::StartsWith(name, kPrefix) && absl::EndsWith(name, kSuffix))
      names.push_back(name);
  }
  if (ec)
    return absl::InternalError(
        absl::StrCat("listing ", dir, ": ", ec.message()));
  // Zero-padded timestamps: lexical order is time order.
  std::sort(names.rbegin(), names.rend());
  std::vector<std::string> out;
  for (const auto& n : names) out.push_back((fs::path(dir) / n).string());
  return out;
}

absl::StatusOr<std::string> WriteSnapshot(Ledger& ledger,
                                          const SnapshotOptions& options,
                                          int64_t now_ms) {
  if (options.dir.empty())
    return absl::InvalidArgumentError("snapshot dir is empty");
  if (options.keep < 1)
    return absl::InvalidArgumentError("snapshot keep must be >= 1");
  std::error_code ec;
  fs::create_directories(options.dir, ec);
  if (ec)
    return absl::InternalError(
        absl::StrCat("creating ", options.dir, ": ", ec.message()));
  // Leftovers of an interrupted snapshot.
  for (const auto& entry : fs::directory_iterator(options.dir, ec)) {
    if (absl::StartsWith(entry.path().filename().string(), kTempPrefix)) {
      fs::remove(entry.path(), ec);
    }
  }
  const std::string name =
      absl::StrFormat("%s%013d%s", kPrefix, now_ms, kSuffix);
  const std::string final_path = (fs::path(options.dir) / name).string();
  const std::string temp_path =
      (fs::path(options.dir) / (kTempPrefix + name)).string();
  RETURN_IF_ERROR(Annotate(ledger.CopyTo(temp_path), "snapshot"));
  absl::Status check = CheckLedgerIntegrity(temp_path);
  if (!check.ok()) {
    fs::remove(temp_path, ec);
    return Annotate(check, "snapshot");
  }
  RETURN_IF_ERROR(FsyncPath(temp_path, false));
  if (::rename(temp_path.c_str(), final_path.c_str()) != 0) {
    return ErrnoError("rename to", final_path);
  }
  RETURN_IF_ERROR(FsyncPath(options.dir, true));
  ASSIGN_OR_RETURN(std::vector<std::string> all, ListSnapshots(options.dir));
  for (size_t i = options.keep; i < all.size(); ++i) fs::remove(all[i], ec);
  return final_path;
}

absl::StatusOr<std::optional<std::string>> RestoreNewestSnapshotIfMissing(
    const std::string& ledger_path, const std::string& dir) {
  std::error_code ec;
  if (fs::exists(ledger_path, ec) && fs::file_size(ledger_path, ec) > 0) {
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
    fs::copy_file(snap, temp, fs::copy_options::overwrite_existing, ec);
    if (ec)
      return absl::InternalError(
          absl::StrCat("copying ", snap, ": ", ec.message()));
    RETURN_IF_ERROR(FsyncPath(temp, false));
    // A WAL next to a missing/empty main file belongs to no database we can
    // trust.
    fs::remove(ledger_path + "-wal", ec);
    fs::remove(ledger_path + "-shm", ec);
    if (::rename(temp.c_str(), ledger_path.c_str()) != 0) {
      return ErrnoError("rename to", ledger_path);
    }
    const std::string parent = fs::absolute(ledger_path).parent_path().string();
    RETURN_IF_ERROR(FsyncPath(parent, true));
    return std::optional<std::string>(snap);
  }
  return std::optional<std::string>();
}

}  // namespace sweepd
