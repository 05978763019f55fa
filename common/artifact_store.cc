#include "common/artifact_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/hash.h"
#include "common/path_confinement.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace sweepd {
namespace {

constexpr char kObjects[] = "objects";
constexpr char kTmp[] = "tmp";
constexpr char kCheckpoints[] = "checkpoints";

absl::Status ErrnoError(const std::string& what, const std::string& path) {
  const int err = errno;
  std::string message =
      absl::StrCat("artifact store: ", what, " ", path, ": ", strerror(err));
  if (err == ENOSPC || err == EDQUOT) {
    return absl::ResourceExhaustedError(
        absl::StrCat(message, " (the artifact store's disk is full)"));
  }
  return absl::InternalError(message);
}

absl::Status FsyncPath(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open", path);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  errno = err;
  return rc == 0 ? absl::OkStatus() : ErrnoError("fsync", path);
}

std::string RandomSuffix() {
  static std::atomic<uint64_t> counter{0};
  std::random_device rd;
  return absl::StrCat(::getpid(), "-", counter.fetch_add(1), "-", rd());
}

bool IsLowerHex(absl::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

std::string ObjectPath(const std::string& sha256) {
  return absl::StrCat(kObjects, "/", sha256.substr(0, 2), "/", sha256);
}

// Size and modification time (ms since the epoch) of a regular file; nullopt
// when it is gone (removed concurrently) or not a regular file.
struct FileFacts {
  int64_t bytes = 0;
  int64_t mtime_ms = 0;
};
std::optional<FileFacts> StatFile(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return std::nullopt;
  }
  FileFacts f;
  f.bytes = static_cast<int64_t>(st.st_size);
  f.mtime_ms = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000 +
               st.st_mtim.tv_nsec / 1'000'000;
  return f;
}

bool OldEnough(const FileFacts& f, int64_t now_ms, absl::Duration min_age) {
  return now_ms - f.mtime_ms >= absl::ToInt64Milliseconds(min_age);
}

class FileWriter final : public ArtifactWriter {
 public:
  FileWriter(std::string root, std::string name, std::string tmp_path, int fd)
      : root_(std::move(root)),
        name_(std::move(name)),
        tmp_path_(std::move(tmp_path)),
        fd_(fd) {}
  ~FileWriter() override {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_path_.c_str());
  }

  absl::Status Append(absl::string_view data) override {
    if (fd_ < 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("artifact ", name_, ": writer already committed"));
    }
    const char* p = data.data();
    size_t left = data.size();
    while (left > 0) {
      const ssize_t n = ::write(fd_, p, left);
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoError("write", tmp_path_);
      }
      p += n;
      left -= static_cast<size_t>(n);
    }
    hash_.Update(data);
    bytes_ += static_cast<int64_t>(data.size());
    return absl::OkStatus();
  }

  absl::StatusOr<ArtifactInfo> Commit() override {
    if (fd_ < 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("artifact ", name_, ": writer already committed"));
    }
    if (::fsync(fd_) != 0) return ErrnoError("fsync", tmp_path_);
    ::close(fd_);
    fd_ = -1;
    ArtifactInfo info;
    info.name = name_;
    info.bytes = bytes_;
    info.sha256 = hash_.HexDigest();
    info.path = ObjectPath(info.sha256);
    const std::string dir = JoinPath(root_, DirName(info.path));
    RETURN_IF_ERROR(MakeDirs(dir));
    const std::string final_path = JoinPath(root_, info.path);
    if (::rename(tmp_path_.c_str(), final_path.c_str()) != 0) {
      return ErrnoError("rename to", final_path);
    }
    committed_ = true;
    RETURN_IF_ERROR(FsyncPath(dir, O_RDONLY | O_DIRECTORY));
    return info;
  }

 private:
  const std::string root_;
  const std::string name_;
  const std::string tmp_path_;
  int fd_;
  bool committed_ = false;
  Sha256 hash_;
  int64_t bytes_ = 0;
};

class DirectoryStore final : public ArtifactStore {
 public:
  DirectoryStore(std::string root, Clock* clock)
      : root_(std::move(root)), clock_(clock) {}

  const std::string& root() const override { return root_; }

  absl::StatusOr<std::unique_ptr<ArtifactWriter>> NewWriter(
      const std::string& name) override {
    const std::string tmp =
        JoinPath(JoinPath(root_, kTmp), absl::StrCat("w-", RandomSuffix()));
    const int fd =
        ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return ErrnoError("create", tmp);
    return std::unique_ptr<ArtifactWriter>(
        new FileWriter(root_, name, tmp, fd));
  }

  absl::StatusOr<ArtifactInfo> PutBytes(const std::string& name,
                                        absl::string_view bytes) override {
    ASSIGN_OR_RETURN(std::unique_ptr<ArtifactWriter> w, NewWriter(name));
    RETURN_IF_ERROR(w->Append(bytes));
    return w->Commit();
  }

  absl::StatusOr<ArtifactInfo> PutFile(const std::string& name,
                                       const std::string& local_path) override {
    std::ifstream in(local_path, std::ios::binary);
    if (!in) {
      return absl::NotFoundError(
          absl::StrCat("artifact ", name, ": cannot open ", local_path));
    }
    ASSIGN_OR_RETURN(std::unique_ptr<ArtifactWriter> w, NewWriter(name));
    std::string buffer(size_t{4} << 20, '\0');
    while (in) {
      in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
      const std::streamsize n = in.gcount();
      if (n > 0) {
        RETURN_IF_ERROR(w->Append(
            absl::string_view(buffer.data(), static_cast<size_t>(n))));
      }
    }
    if (in.bad()) {
      return absl::InternalError(
          absl::StrCat("artifact ", name, ": read error on ", local_path));
    }
    return w->Commit();
  }

  absl::StatusOr<std::string> LocateUnverified(
      const std::string& path, const std::string& sha256) override {
    if (!IsArtifactObjectPath(path)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "artifact path \"", path,
          "\" is not an object path of the store (objects/<aa>/<sha256>)"));
    }
    if (!sha256.empty() && sha256 != HashOf(path)) {
      return absl::InvalidArgumentError(
          absl::StrCat("artifact ", path, ": reference sha256 ", sha256,
                       " does not match its path"));
    }
    const std::string full = JoinPath(root_, path);
    if (!PathExists(full)) {
      return absl::NotFoundError(absl::StrCat(
          "artifact ", path, " is missing from the store at ", root_));
    }
    // An object that is a symlink out of the store is not an artifact.
    ASSIGN_OR_RETURN(std::string real,
                     ConfinedRealPath(full, {root_}, "artifact"));
    return real;
  }

  absl::StatusOr<std::string> Resolve(const std::string& path,
                                      const std::string& sha256) override {
    ASSIGN_OR_RETURN(std::string full, LocateUnverified(path, sha256));
    ASSIGN_OR_RETURN(std::string actual, Sha256File(full));
    if (actual != HashOf(path)) {
      return absl::DataLossError(
          absl::StrCat("artifact ", full, ": checksum mismatch (content has ",
                       actual, ", expected ", HashOf(path), ")"));
    }
    return full;
  }

  absl::StatusOr<std::string> ReadBytes(const std::string& path,
                                        const std::string& sha256) override {
    ASSIGN_OR_RETURN(std::string full, LocateUnverified(path, sha256));
    std::ifstream in(full, std::ios::binary);
    if (!in) {
      return absl::NotFoundError(
          absl::StrCat("artifact ", full, ": cannot be opened"));
    }
    std::string bytes((std::istreambuf_iterator<char>(in)),
                      std::istreambuf_iterator<char>());
    if (in.bad()) {
      return absl::InternalError(
          absl::StrCat("artifact ", full, ": read error"));
    }
    // What was actually read is what is verified (one pass over the file).
    const std::string actual = Sha256Hex(bytes);
    if (actual != HashOf(path)) {
      return absl::DataLossError(
          absl::StrCat("artifact ", full, ": checksum mismatch (content has ",
                       actual, ", expected ", HashOf(path), ")"));
    }
    return bytes;
  }

  absl::Status Check(const ArtifactInfo& ref, bool rehash) override {
    absl::StatusOr<std::string> full = LocateUnverified(ref.path, ref.sha256);
    if (!full.ok()) return Named(ref, full.status());
    const std::optional<FileFacts> facts = StatFile(*full);
    if (!facts.has_value()) {
      return Named(ref, absl::NotFoundError(absl::StrCat(
                            "object ", ref.path, " is not a regular file")));
    }
    if (facts->bytes != ref.bytes) {
      return Named(ref, absl::DataLossError(absl::StrCat(
                            "object ", ref.path, " has ", facts->bytes,
                            " bytes, the reference says ", ref.bytes)));
    }
    if (rehash) {
      absl::StatusOr<std::string> verified = Resolve(ref.path, ref.sha256);
      if (!verified.ok()) return Named(ref, verified.status());
    }
    return absl::OkStatus();
  }

  absl::Status SetCheckpoint(const std::string& key,
                             const ArtifactInfo& info) override {
    // Only a stored object can be a checkpoint: a reference to nothing would
    // make a resume fail later, far from the mistake.
    RETURN_IF_ERROR(Check(info, /*rehash=*/false));
    nlohmann::json j = {{"key", key},
                        {"name", info.name},
                        {"path", info.path},
                        {"bytes", info.bytes},
                        {"sha256", info.sha256}};
    const std::string text = j.dump();
    const std::string final_path = CheckpointPath(key);
    const std::string tmp =
        JoinPath(JoinPath(root_, kTmp), absl::StrCat("c-", RandomSuffix()));
    const int fd =
        ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return ErrnoError("create", tmp);
    const ssize_t n = ::write(fd, text.data(), text.size());
    const bool ok = n == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
    const int err = errno;
    ::close(fd);
    if (!ok) {
      ::unlink(tmp.c_str());
      errno = err;
      return ErrnoError("write", tmp);
    }
    if (::rename(tmp.c_str(), final_path.c_str()) != 0) {
      const int rename_err = errno;
      ::unlink(tmp.c_str());
      errno = rename_err;
      return ErrnoError("rename to", final_path);
    }
    return FsyncPath(JoinPath(root_, kCheckpoints), O_RDONLY | O_DIRECTORY);
  }

  absl::StatusOr<std::optional<ArtifactInfo>> GetCheckpoint(
      const std::string& key) override {
    const std::string path = CheckpointPath(key);
    if (!PathExists(path)) return std::optional<ArtifactInfo>();
    ASSIGN_OR_RETURN(CheckpointFile file, ReadCheckpointFile(path));
    if (file.key != key) {
      return absl::DataLossError(
          absl::StrCat("artifact store: checkpoint file ", path,
                       " holds key \"", file.key, "\", not \"", key, "\""));
    }
    return std::optional<ArtifactInfo>(std::move(file.ref));
  }

  absl::Status ClearCheckpoint(const std::string& key) override {
    const std::string path = CheckpointPath(key);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return ErrnoError("remove", path);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<ArtifactInfo>> ListCheckpoints() override {
    std::vector<ArtifactInfo> out;
    const std::string dir = JoinPath(root_, kCheckpoints);
    ASSIGN_OR_RETURN(std::vector<std::string> files, ListDir(dir));
    for (const std::string& file : files) {
      const std::string path = JoinPath(dir, file);
      absl::StatusOr<CheckpointFile> checkpoint = ReadCheckpointFile(path);
      if (absl::IsNotFound(checkpoint.status())) continue;  // cleared meanwhile
      if (!checkpoint.ok()) return checkpoint.status();
      out.push_back(std::move(checkpoint->ref));
    }
    return out;
  }

  absl::StatusOr<std::vector<ArtifactInfo>> List() override {
    std::vector<ArtifactInfo> out;
    const std::string objects = JoinPath(root_, kObjects);
    ASSIGN_OR_RETURN(std::vector<std::string> prefixes, ListDir(objects));
    for (const std::string& prefix : prefixes) {
      const std::string dir = JoinPath(objects, prefix);
      if (!IsDirectory(dir)) continue;
      ASSIGN_OR_RETURN(std::vector<std::string> files, ListDir(dir));
      for (const std::string& file : files) {
        ArtifactInfo info;
        info.path = absl::StrCat(kObjects, "/", prefix, "/", file);
        if (!IsArtifactObjectPath(info.path)) continue;
        info.sha256 = file;
        const std::optional<FileFacts> facts = StatFile(JoinPath(dir, file));
        if (!facts.has_value()) continue;  // removed concurrently
        info.bytes = facts->bytes;
        out.push_back(std::move(info));
      }
    }
    std::sort(out.begin(), out.end(),
              [](const ArtifactInfo& a, const ArtifactInfo& b) {
                return a.path < b.path;
              });
    return out;
  }

  absl::StatusOr<ArtifactGcStats> CleanTemp(absl::Duration older_than,
                                            bool dry_run) override {
    ArtifactGcStats stats;
    const std::string dir = JoinPath(root_, kTmp);
    const int64_t now = clock_->NowMs();
    ASSIGN_OR_RETURN(std::vector<std::string> files, ListDir(dir));
    for (const std::string& file : files) {
      const std::string path = JoinPath(dir, file);
      const std::optional<FileFacts> facts = StatFile(path);
      if (!facts.has_value() || !OldEnough(*facts, now, older_than)) continue;
      if (!dry_run && ::unlink(path.c_str()) != 0) {
        if (errno == ENOENT) continue;  // its writer finished or gave up
        return ErrnoError("remove", path);
      }
      ++stats.tmp_files_deleted;
      stats.tmp_bytes_deleted += facts->bytes;
    }
    return stats;
  }

  absl::StatusOr<ArtifactGcStats> GarbageCollect(
      const ArtifactGcOptions& options) override {
    std::set<std::string> keep = options.referenced;
    ASSIGN_OR_RETURN(std::vector<ArtifactInfo> checkpoints, ListCheckpoints());
    for (const ArtifactInfo& c : checkpoints) keep.insert(c.path);
    ASSIGN_OR_RETURN(std::vector<ArtifactInfo> objects, List());
    ArtifactGcStats stats;
    stats.checkpoints = static_cast<int64_t>(checkpoints.size());
    const int64_t now = clock_->NowMs();
    for (const ArtifactInfo& o : objects) {
      if (keep.count(o.path) > 0) {
        ++stats.objects_kept;
        stats.bytes_kept += o.bytes;
        continue;
      }
      const std::string full = JoinPath(root_, o.path);
      // Re-stat right before removing: a writer that just renamed the same
      // content into place has refreshed the modification time.
      const std::optional<FileFacts> facts = StatFile(full);
      if (!facts.has_value()) continue;
      if (!OldEnough(*facts, now, options.min_age)) {
        ++stats.objects_too_young;
        ++stats.objects_kept;
        stats.bytes_kept += facts->bytes;
        continue;
      }
      if (!options.dry_run && ::unlink(full.c_str()) != 0) {
        if (errno == ENOENT) continue;
        return ErrnoError("remove", full);
      }
      ++stats.objects_deleted;
      stats.bytes_deleted += facts->bytes;
    }
    ASSIGN_OR_RETURN(ArtifactGcStats tmp,
                     CleanTemp(options.tmp_min_age, options.dry_run));
    stats.tmp_files_deleted = tmp.tmp_files_deleted;
    stats.tmp_bytes_deleted = tmp.tmp_bytes_deleted;
    return stats;
  }

 private:
  static std::string HashOf(const std::string& object_path) {
    return object_path.substr(object_path.rfind('/') + 1);
  }

  static absl::Status Named(const ArtifactInfo& ref,
                            const absl::Status& status) {
    if (ref.name.empty()) return status;
    return absl::Status(status.code(), absl::StrCat("artifact \"", ref.name,
                                                    "\": ", status.message()));
  }

  std::string CheckpointPath(const std::string& key) const {
    return JoinPath(JoinPath(root_, kCheckpoints), Sha256Hex(key));
  }

  // What a checkpoint file holds: its key and the reference.
  struct CheckpointFile {
    std::string key;
    ArtifactInfo ref;
  };
  static absl::StatusOr<CheckpointFile> ReadCheckpointFile(
      const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      return absl::NotFoundError(
          absl::StrCat("artifact store: checkpoint file ", path, " is gone"));
    }
    std::string text((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
    nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("path") ||
        !j["path"].is_string() || !j.contains("sha256") ||
        !j["sha256"].is_string() || !j.contains("key") ||
        !j["key"].is_string() ||
        !IsArtifactObjectPath(j["path"].get<std::string>())) {
      return absl::DataLossError(
          absl::StrCat("artifact store: checkpoint file ", path,
                       " is not a valid checkpoint reference"));
    }
    CheckpointFile out;
    out.key = j["key"].get<std::string>();
    out.ref.name = j.value("name", std::string());
    out.ref.path = j["path"].get<std::string>();
    out.ref.sha256 = j["sha256"].get<std::string>();
    out.ref.bytes = j.value("bytes", int64_t{0});
    return out;
  }

  const std::string root_;
  Clock* const clock_;
};

}  // namespace

bool IsArtifactObjectPath(absl::string_view path) {
  // objects/<aa>/<64 hex>
  constexpr size_t kLen = sizeof(kObjects) - 1 + 1 + 2 + 1 + 64;
  if (path.size() != kLen || !absl::StartsWith(path, "objects/")) return false;
  const absl::string_view prefix = path.substr(8, 2);
  const absl::string_view hex = path.substr(11);
  return path[10] == '/' && IsLowerHex(prefix) && IsLowerHex(hex) &&
         hex.substr(0, 2) == prefix;
}

absl::StatusOr<std::unique_ptr<ArtifactStore>> ArtifactStore::Open(
    const std::string& root, Clock* clock) {
  if (root.empty()) {
    return absl::InvalidArgumentError("artifact store: empty root path");
  }
  for (const char* sub : {kObjects, kTmp, kCheckpoints}) {
    absl::Status s = MakeDirs(JoinPath(root, sub));
    if (!s.ok()) {
      return absl::Status(s.code(), absl::StrCat("artifact store at ", root,
                                                 ": ", s.message()));
    }
  }
  return std::unique_ptr<ArtifactStore>(
      new DirectoryStore(root, clock != nullptr ? clock : Clock::Real()));
}

}  // namespace sweepd
