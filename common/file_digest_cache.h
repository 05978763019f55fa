// FileDigestCache: the SHA-256 of files, remembered by file identity, so that
// a multi-GB checkpoint is read once and later model fingerprints
// (common/model_fingerprint.h) only stat its files.
//
// An entry belongs to a file's absolute path (symlinks resolved) and is valid
// only while the file's identity is unchanged: size, modification time in ns,
// inode and device. Trade-off: a rewrite that keeps all of these (same size
// and the old mtime put back, e.g. with `touch -r` or a tool that preserves
// timestamps) keeps the old digest; any write through the normal file API,
// `touch`, a copy or a rename onto the path changes the identity and the file
// is hashed again. Callers insert only files whose mtime is at least
// kRacyWindowNs older than the moment they started reading (a write in the
// same timestamp tick as the hash would otherwise go unseen).
//
// Persistence: one small JSON file (DefaultFileDigestCachePath). Load reads it;
// a missing file is an empty cache, an unreadable or corrupt one is an empty
// cache plus a warning on the log, never an error. Save writes only when
// Insert added something: it merges the new entries into what the file holds
// at that moment (another process may share it), drops entries whose file is
// gone or has changed identity, and replaces the file atomically (temp file +
// rename), so concurrent savers may lose each other's entries but never leave
// a torn file.
//
// Thread-safe: Lookup, Insert and Save may be called from any thread.
#ifndef SWEEPD_COMMON_FILE_DIGEST_CACHE_H_
#define SWEEPD_COMMON_FILE_DIGEST_CACHE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace sweepd {

// Files modified less than this long before hashing started are not cached.
inline constexpr int64_t kRacyWindowNs = 1'000'000'000;

// What a cache entry is keyed and validated by.
struct FileIdentity {
  std::string path;  // absolute, symlinks resolved
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  uint64_t inode = 0;
  uint64_t device = 0;

  bool operator==(const FileIdentity& o) const {
    return path == o.path && size == o.size && mtime_ns == o.mtime_ns &&
           inode == o.inode && device == o.device;
  }
  bool operator!=(const FileIdentity& o) const { return !(*this == o); }
};

// Identity of the regular file `path` (stat(2), symlinks followed). NOT_FOUND
// when it does not exist, FAILED_PRECONDITION when it is not a regular file;
// the message names `path`.
absl::StatusOr<FileIdentity> StatFileIdentity(const std::string& path);

// The cache file sweepd and sweep-worker use unless told otherwise:
// $SWEEPD_FINGERPRINT_CACHE if set ("off" or empty: "" = no cache), else
// $XDG_CACHE_HOME/sweepd/fingerprints.json, else
// $HOME/.cache/sweepd/fingerprints.json, else "" (no cache).
std::string DefaultFileDigestCachePath();

class FileDigestCache {
 public:
  // Reads `path` (see above). `path` must not be empty.
  static std::unique_ptr<FileDigestCache> Load(const std::string& path);

  FileDigestCache(const FileDigestCache&) = delete;
  FileDigestCache& operator=(const FileDigestCache&) = delete;

  const std::string& path() const { return path_; }

  // The lower-case hex SHA-256 recorded for `id.path`, if its recorded
  // identity equals `id`.
  std::optional<std::string> Lookup(const FileIdentity& id) const;

  // Records `sha256_hex` as the digest of the file with identity `id`.
  void Insert(const FileIdentity& id, const std::string& sha256_hex);

  // Writes the cache if Insert added anything since Load or the last Save
  // (see above); creates the parent directory. The message names the file.
  absl::Status Save();

 private:
  struct Entry {
    FileIdentity id;
    std::string sha256;
  };
  using Entries = std::map<std::string, Entry>;

  explicit FileDigestCache(std::string path) : path_(std::move(path)) {}
  // Entries of the cache file at `path`; empty (with a warning unless the file
  // is missing) when it cannot be read or parsed.
  static Entries ReadEntries(const std::string& path);

  const std::string path_;
  mutable absl::Mutex mu_;
  Entries entries_ ABSL_GUARDED_BY(mu_);
  Entries inserted_ ABSL_GUARDED_BY(mu_);  // since the last Save
};

}  // namespace sweepd

#endif  // SWEEPD_COMMON_FILE_DIGEST_CACHE_H_
