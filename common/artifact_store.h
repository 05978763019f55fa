// The artifact store: a directory (local disk or a mounted bucket) that holds
// the large outputs of tasks (activation shards, Gram matrices, healed
// weights, training checkpoints) as content-addressed files, so that the
// ledger only keeps references {name, path, bytes, sha256} (docs/ARTIFACTS.md).
//
// Layout under the root:
//   objects/<aa>/<sha256 hex>   immutable content, <aa> = first two hex digits
//   tmp/                        files being written (never referenced)
//   checkpoints/<key hash>      the latest checkpoint reference of a key
// A reference's `path` is relative to the root ("objects/ab/ab12...").
//
// Writes are atomic: content goes to a temp file under tmp/, is hashed while
// written, fsynced, then renamed to its content address and the directory is
// fsynced. A writer killed at any point leaves at most a stray file in tmp/
// (removed by CleanTemp or GarbageCollect once older than their grace
// period), never a half-written object. Reads verify the SHA-256 (NotFound /
// DataLoss naming the path otherwise) and only ever open object paths that
// resolve under the root, symlinks followed (the store root is a read root
// for artifacts only, docs/SECURITY.md).
//
// Ownership: ArtifactStore owns nothing but its root path and borrows its
// Clock (ages of temp files and objects for CleanTemp/GarbageCollect; the
// Clock must outlive the store); ArtifactWriter owns its temp file until
// Commit or destruction (which removes it).
// Thread-safety: ArtifactStore is thread-safe (objects are immutable and
// renames atomic; several processes may share one root). An ArtifactWriter is
// used by one thread.
#ifndef SWEEPD_COMMON_ARTIFACT_STORE_H_
#define SWEEPD_COMMON_ARTIFACT_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace sweepd {

// A reference to one stored object (TaskResult.artifacts, spec ArtifactRef).
struct ArtifactInfo {
  std::string name;  // what it is ("gram/attn_heads[3]/shard0")
  std::string path;  // relative to the store root
  int64_t bytes = 0;
  std::string sha256;  // lower-case hex
};

// Streams one object into the store.
class ArtifactWriter {
 public:
  virtual ~ArtifactWriter() = default;
  virtual absl::Status Append(absl::string_view data) = 0;
  // Hashes, fsyncs and renames the content to its address; the writer is
  // spent afterwards. Writing the same content twice gives the same path.
  virtual absl::StatusOr<ArtifactInfo> Commit() = 0;
};

// What CleanTemp and GarbageCollect removed (or, dry run, would remove).
struct ArtifactGcStats {
  int64_t objects_kept = 0;
  int64_t bytes_kept = 0;
  int64_t objects_deleted = 0;
  int64_t bytes_deleted = 0;
  // Unreferenced objects younger than min_age (kept: a running task may be
  // about to report them).
  int64_t objects_too_young = 0;
  int64_t tmp_files_deleted = 0;
  int64_t tmp_bytes_deleted = 0;
  // Checkpoint references whose objects were kept.
  int64_t checkpoints = 0;
};

struct ArtifactGcOptions {
  // Object paths ("objects/ab/ab12...") still referenced (ledger results,
  // specs); objects named by a checkpoint reference are kept as well.
  std::set<std::string> referenced;
  // Unreferenced objects modified less than this long ago are kept.
  absl::Duration min_age = absl::Hours(1);
  // Temp files modified less than this long ago are kept (a writer may be
  // busy with them).
  absl::Duration tmp_min_age = absl::Hours(1);
  // Count only; remove nothing.
  bool dry_run = false;
};

class ArtifactStore {
 public:
  // Opens (creating if needed) the store rooted at `root`. `clock` (borrowed;
  // null = Clock::Real()) gives "now" for the ages of files.
  static absl::StatusOr<std::unique_ptr<ArtifactStore>> Open(
      const std::string& root, Clock* clock = nullptr);
  virtual ~ArtifactStore() = default;

  virtual const std::string& root() const = 0;

  // A writer for an object called `name`.
  virtual absl::StatusOr<std::unique_ptr<ArtifactWriter>> NewWriter(
      const std::string& name) = 0;
  // Stores `bytes` (NewWriter + Append + Commit).
  virtual absl::StatusOr<ArtifactInfo> PutBytes(const std::string& name,
                                                absl::string_view bytes) = 0;
  // Copies the file at `local_path` into the store.
  virtual absl::StatusOr<ArtifactInfo> PutFile(
      const std::string& name, const std::string& local_path) = 0;

  // The absolute path of a referenced object after checking that its bytes
  // hash to `sha256` (empty `sha256`: the one in the path). NOT_FOUND when
  // missing, DATA_LOSS on a mismatch, INVALID_ARGUMENT for a path that is not
  // an object path of this store (no "..", no absolute paths),
  // PERMISSION_DENIED for an object that resolves outside the root.
  virtual absl::StatusOr<std::string> Resolve(const std::string& path,
                                              const std::string& sha256) = 0;
  // The object's bytes, verified as Resolve does (read and hashed once).
  virtual absl::StatusOr<std::string> ReadBytes(const std::string& path,
                                                const std::string& sha256) = 0;
  // The absolute path of an object WITHOUT hashing it (path form, sha256
  // against the path, existence and confinement checked as Resolve does): for
  // readers that hash while they stream (sweepd's FetchArtifact).
  virtual absl::StatusOr<std::string> LocateUnverified(
      const std::string& path, const std::string& sha256) = 0;
  // The cheap check of a reported reference: the object exists with
  // `ref.bytes` bytes (DATA_LOSS naming both sizes otherwise); with `rehash`
  // its content is hashed too. Errors as Resolve; they name ref.name.
  virtual absl::Status Check(const ArtifactInfo& ref, bool rehash) = 0;

  // Checkpoints of long tasks: `key` (any string, e.g. a task key plus a
  // role) names the latest checkpoint object. SetCheckpoint replaces the
  // reference atomically (INVALID_ARGUMENT for a reference that is not an
  // object path of the store, NOT_FOUND when the object is missing);
  // GetCheckpoint returns it (nullopt if none).
  virtual absl::Status SetCheckpoint(const std::string& key,
                                     const ArtifactInfo& info) = 0;
  virtual absl::StatusOr<std::optional<ArtifactInfo>> GetCheckpoint(
      const std::string& key) = 0;
  virtual absl::Status ClearCheckpoint(const std::string& key) = 0;
  // Every checkpoint reference (name = the reference's name).
  virtual absl::StatusOr<std::vector<ArtifactInfo>> ListCheckpoints() = 0;

  // Every object in the store (name unknown: empty), sorted by path.
  virtual absl::StatusOr<std::vector<ArtifactInfo>> List() = 0;

  // Removes files under tmp/ last modified at least `older_than` ago: what
  // writers killed mid-write left behind (a live writer's file has a recent
  // modification time). Counts go to tmp_files_deleted / tmp_bytes_deleted.
  virtual absl::StatusOr<ArtifactGcStats> CleanTemp(absl::Duration older_than,
                                                    bool dry_run = false) = 0;
  // Removes every object that is neither in options.referenced nor named by a
  // checkpoint reference and is at least options.min_age old, then cleans
  // tmp/ as CleanTemp(options.tmp_min_age).
  virtual absl::StatusOr<ArtifactGcStats> GarbageCollect(
      const ArtifactGcOptions& options) = 0;
};

// True when `path` has the form of an object path ("objects/<aa>/<64 hex>").
bool IsArtifactObjectPath(absl::string_view path);

}  // namespace sweepd

#endif  // SWEEPD_COMMON_ARTIFACT_STORE_H_
