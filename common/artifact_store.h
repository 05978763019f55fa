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
// (removed by Open after a grace period, or by GarbageCollect), never a
// half-written object. Reads verify the SHA-256 (NotFound / DataLoss naming
// the path otherwise).
//
// Ownership: ArtifactStore owns nothing but its root path; ArtifactWriter owns
// its temp file until Commit or destruction (which removes it).
// Thread-safety: ArtifactStore is thread-safe (objects are immutable and
// renames atomic; several processes may share one root). An ArtifactWriter is
// used by one thread.
#ifndef SWEEPD_COMMON_ARTIFACT_STORE_H_
#define SWEEPD_COMMON_ARTIFACT_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

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

class ArtifactStore {
 public:
  // Opens (creating if needed) the store rooted at `root`.
  static absl::StatusOr<std::unique_ptr<ArtifactStore>> Open(
      const std::string& root);
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
  // an object path of this store (no "..", no absolute paths).
  virtual absl::StatusOr<std::string> Resolve(const std::string& path,
                                              const std::string& sha256) = 0;
  // The object's bytes, verified as Resolve does.
  virtual absl::StatusOr<std::string> ReadBytes(const std::string& path,
                                                const std::string& sha256) = 0;

  // Checkpoints of long tasks: `key` (any string, e.g. a task key plus a
  // role) names the latest checkpoint object. SetCheckpoint replaces the
  // reference atomically; GetCheckpoint returns it (nullopt if none).
  virtual absl::Status SetCheckpoint(const std::string& key,
                                     const ArtifactInfo& info) = 0;
  virtual absl::StatusOr<std::optional<ArtifactInfo>> GetCheckpoint(
      const std::string& key) = 0;
  virtual absl::Status ClearCheckpoint(const std::string& key) = 0;

  // Every object in the store (name unknown: empty), sorted by path.
  virtual absl::StatusOr<std::vector<ArtifactInfo>> List() = 0;
};

// True when `path` has the form of an object path ("objects/<aa>/<64 hex>").
bool IsArtifactObjectPath(absl::string_view path);

}  // namespace sweepd

#endif  // SWEEPD_COMMON_ARTIFACT_STORE_H_
