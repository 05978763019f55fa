// Content hashing: SHA-256 (hex) of byte strings and files, used for task keys,
// dataset and model fingerprints and artifact digests. Stateless and
// thread-safe.
#ifndef SWEEPD_COMMON_HASH_H_
#define SWEEPD_COMMON_HASH_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sweepd {

// Lower-case hex SHA-256 of `data`.
std::string Sha256Hex(absl::string_view data);

// Lower-case hex SHA-256 of a file's bytes (streamed); NOT_FOUND if it cannot
// be opened.
absl::StatusOr<std::string> Sha256File(const std::string& path);

// Incremental SHA-256.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(absl::string_view data);
  std::string HexDigest();  // finalises; call once
  // A new hasher in this one's state (as if fed the same bytes so far): two
  // streams that share a prefix hash it once.
  std::unique_ptr<Sha256> Clone() const;

 private:
  void* ctx_;  // EVP_MD_CTX*, kept out of the header
};

// 64-bit non-cryptographic hash (first 8 bytes of SHA-256), for deterministic
// pseudo-random decisions derived from keys (synthetic workload, seeds).
uint64_t Hash64(absl::string_view data);

}  // namespace sweepd

#endif  // SWEEPD_COMMON_HASH_H_
