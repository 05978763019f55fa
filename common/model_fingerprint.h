// The model fingerprint: one SHA-256 that ties every task and result to the
// exact bytes of a model directory, so that an edited checkpoint (healed,
// pruned, fine-tuned) never shares its base's fingerprint, task keys or
// copied-in results.
//
// What is hashed. Each file's bytes are hashed whole (plain SHA-256, the same
// digest `sha256sum` and the Hugging Face Hub's LFS pointers give). The
// fingerprint is the lower-case hex SHA-256 of a stream of records, each
// record being
//     <label> NUL <decimal byte length of value> NUL <value>
// (labels never contain NUL; values are length-prefixed, so no two different
// record lists give the same stream), in this order:
//   1. label "format", value "sweepd-model-fingerprint-v2";
//   2. label "config config.json";
//   3. label "weights <name>" for every *.safetensors file of the directory,
//      sorted by name (byte order);
//   4. label "index <name>" for every *.safetensors.index.json, sorted;
//   5. label "tokenizer tokenizer.json" when that file is present;
// where each file record's value is "<size in bytes> <hex SHA-256 of the
// file's bytes>". Nothing else in the directory is covered (tokenizer_config,
// generation_config, README, ...), nor are file names outside these patterns
// or timestamps. Every *.safetensors file must pass the safetensors reader's
// header validation (common/safetensors.h) first.
//
// Speed. Files are hashed in parallel on a few threads, read sequentially in
// large blocks; with a cache (ModelFingerprintOptions::cache_path) a file whose
// identity (absolute path, size, mtime in ns, inode, device) matches a cached
// entry is not read at all (see common/file_digest_cache.h for the
// trade-off). A caller that has just computed a file's digest itself (e.g.
// from the bytes as it wrote them) passes it in
// ModelFingerprintOptions::known_digests, with the file's identity at that
// moment; the file is then not read either. docs/PERFORMANCE.md has cold and
// cached timings.
//
// Stateless free functions; thread-safe (concurrent calls may share a cache
// file). They read whole checkpoints: keep them off gRPC reactor threads.
#ifndef SWEEPD_COMMON_MODEL_FINGERPRINT_H_
#define SWEEPD_COMMON_MODEL_FINGERPRINT_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "common/file_digest_cache.h"

namespace sweepd {

// A digest the caller computed itself, valid while the file's identity
// (common/file_digest_cache.h: resolved path, size, mtime, inode, device) is
// `identity`.
struct KnownFileDigest {
  FileIdentity identity;
  std::string sha256;  // lower-case hex of the file's bytes
};

struct ModelFingerprintOptions {
  // Per-file digest cache (common/file_digest_cache.h); "" = no cache, every
  // file is read. The binaries default to DefaultFileDigestCachePath().
  std::string cache_path;
  // Files hashed at once; 0 = the number of hardware threads, at most 8.
  int threads = 0;
  // Digests already known, by file name within the directory: a file whose
  // identity equals its entry's is not read (its safetensors header is still
  // validated); one whose identity differs is hashed as usual. Checked before
  // the cache; not inserted into it.
  std::map<std::string, KnownFileDigest> known_digests;

  // The binaries' options: cache_path = DefaultFileDigestCachePath().
  static ModelFingerprintOptions WithDefaultCache();
};

struct ModelFingerprint {
  std::string hex;            // the fingerprint
  int files = 0;              // files covered
  int files_hashed = 0;       // of those, read and hashed (not from the cache)
  uint64_t bytes_hashed = 0;  // bytes read to hash them
};

// Fingerprint of the model directory `dir` (see above). NOT_FOUND when
// config.json or every *.safetensors file is missing; INVALID_ARGUMENT naming
// the file when a safetensors header is invalid; FAILED_PRECONDITION naming the
// file when it changed while it was being hashed. A cache that cannot be
// written is logged, not an error.
absl::StatusOr<ModelFingerprint> FingerprintModelDir(
    const std::string& dir, const ModelFingerprintOptions& options = {});

// FingerprintModelDir(dir, options)->hex.
absl::StatusOr<std::string> ComputeModelFingerprint(
    const std::string& dir, const ModelFingerprintOptions& options = {});

}  // namespace sweepd

#endif  // SWEEPD_COMMON_MODEL_FINGERPRINT_H_
