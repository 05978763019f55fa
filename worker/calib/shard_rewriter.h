// Shard rewriter: writes copies of a checkpoint's safetensors files with some
// tensors' bytes replaced, and computes in the same pass every digest the
// materialized checkpoint's manifest and fingerprint need (the checkpoint
// editor's write step, checkpoint_editor.h; docs/CALIBRATION.md,
// "Materialize").
//
// Output. For each base file, `out_dir/<its name>`: the base file's bytes
// (length prefix, header and every tensor at the same offset — a valid
// safetensors file's tensors tile its data section, common/safetensors.h) with
// each replaced tensor's bytes swapped in place (same size). Byte ranges that
// are not replaced are copied by the kernel with copy_file_range(2) from the
// base file (a reflink on file systems that share extents, a page-cache copy
// elsewhere), in pieces of at most 256 MiB; where the kernel refuses, they are
// written with pwrite(2) from the base's mapping.
//
// Digests (lower-case hex SHA-256), computed from the bytes in memory (the
// mapping and the replacement buffers), never read back from disk: of each
// output file, of each output tensor, of each replaced tensor's base bytes and,
// on request, of each base file. Each digest is one sequential stream; the
// streams and the copies run in parallel on a small pool: the copies in file
// order on a quarter of the threads (at least one; they mostly wait for the
// kernel and the disk), so the disk works while the other threads hash, the
// longest streams first. A base file's
// digest shares its output file's stream up to the first replaced tensor
// (Sha256::Clone) and equals it when the file has none.
//
// Durability. Each output range's writeback is started as soon as it is
// written (sync_file_range(2), a hint) and every output file is fsynced
// before RewriteShards returns; the directory itself is not (the caller
// renames it into place).
//
// Consistency with the base. The copies read the base files by path while the
// digests read the caller's mappings: with `base_identities` (taken before the
// files were mapped) every file opened for copying must still have that
// identity, so both read the same bytes; the caller re-checks the identities
// afterwards (an in-place rewrite that keeps size and mtime is not seen,
// common/file_digest_cache.h).
//
// A stateless free function; thread-safe for different output directories.
// It reads and writes whole checkpoints: keep it off gRPC reactor threads.
#ifndef SWEEPD_WORKER_CALIB_SHARD_REWRITER_H_
#define SWEEPD_WORKER_CALIB_SHARD_REWRITER_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/file_digest_cache.h"
#include "common/safetensors.h"

namespace sweepd::calib {

struct ShardRewriteRequest {
  // The base's files (borrowed; their mappings are read while RewriteShards
  // runs). Output names are their base names, which must differ.
  std::vector<const SafetensorsFile*> base_files;
  // Tensor name -> the bytes that replace it (exactly its size). Borrowed;
  // null = none.
  const std::map<std::string, std::string>* replaced = nullptr;
  // An existing directory; the files are created in it (truncated if there).
  std::string out_dir;
  // Aligned with base_files, or empty (not checked): see "Consistency".
  std::vector<FileIdentity> base_identities;
  // Also compute each base file's digest (RewrittenShard::base_sha256).
  bool base_file_digests = false;
  // Jobs run at once; 0 = hardware threads, at most 8.
  int threads = 0;
  // false: never try copy_file_range (the pwrite path; tests).
  bool use_copy_file_range = true;
};

// One output file.
struct RewrittenShard {
  std::string name;  // base name, in out_dir
  uint64_t size = 0;
  std::string sha256;       // of the output file
  std::string base_sha256;  // of the base file; "" unless requested
  // The output file's identity once fsynced and closed
  // (ModelFingerprintOptions::known_digests).
  FileIdentity identity;
  // SHA-256 of each output tensor, aligned with the base file's tensors().
  std::vector<std::string> tensor_sha256;
};

struct ShardRewriteResult {
  std::vector<RewrittenShard> files;  // aligned with base_files
  // Replaced tensor name -> SHA-256 of its base bytes.
  std::map<std::string, std::string> replaced_base_sha256;
  bool used_copy_file_range = false;  // for at least one range
};

// Writes the files (see above). INVALID_ARGUMENT for a replacement of another
// size or naming no tensor of the files, or two files of one name;
// FAILED_PRECONDITION naming the file when a base file no longer has its
// identity or size; INTERNAL naming the file for an I/O error. On an error
// the files written so far are left for the caller to remove.
absl::StatusOr<ShardRewriteResult> RewriteShards(
    const ShardRewriteRequest& request);

}  // namespace sweepd::calib

#endif  // SWEEPD_WORKER_CALIB_SHARD_REWRITER_H_
