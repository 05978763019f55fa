// Bearer tokens of sweepd: the token file, its roles, and a store that reloads
// the file when it changes.
//
// Token file (docs/SECURITY.md): UTF-8 text, one token per line,
//     NAME ROLE SHA256 [cert=IDENTITY]
// separated by spaces or tabs; blank lines and lines starting with '#' are
// ignored. NAME identifies the caller (who submitted a sweep, logs); ROLE is
// admin | submitter | reader | worker; SHA256 is the lower-case hex SHA-256 of
// the token's bytes (`printf %s "$TOKEN" | sha256sum`): the file never holds a
// token. cert=IDENTITY binds the token to a client certificate: the call must
// come over mutual TLS with a certificate whose common name or a subject
// alternative name equals IDENTITY. Names and hashes are unique.
//
// TokenStore owns the parsed table and re-reads the file when its identity
// (size, mtime in ns, inode) changed, looked at no more often than every
// reload_interval_ms on the injected Clock. A file that no longer parses
// keeps the previous table (the error is logged), so a half-edited file never
// locks everyone out or lets anyone in. Thread-safe.
#ifndef SWEEPD_COORDINATOR_AUTH_TOKENS_H_
#define SWEEPD_COORDINATOR_AUTH_TOKENS_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"

namespace sweepd {

enum class Role { kAdmin, kSubmitter, kReader, kWorker };

// "admin", "submitter", "reader", "worker".
const char* RoleName(Role role);
std::optional<Role> ParseRole(absl::string_view name);

struct TokenEntry {
  std::string name;
  Role role = Role::kReader;
  // Lower-case hex SHA-256 of the token.
  std::string sha256;
  // Required client-certificate identity (CN or SAN); empty = not bound.
  std::string cert_identity;
};

// A parsed token file, looked up by the token's hash.
class TokenTable {
 public:
  // INVALID_ARGUMENT "<source>:<line>: ..." naming what is wrong (bad role,
  // malformed hash, duplicate name or hash, unknown field).
  static absl::StatusOr<TokenTable> Parse(absl::string_view text,
                                          const std::string& source);

  // The entry whose hash is SHA-256(token); nullptr when none.
  const TokenEntry* Find(absl::string_view token) const;
  size_t size() const { return by_hash_.size(); }

 private:
  absl::flat_hash_map<std::string, TokenEntry> by_hash_;
};

struct TokenStoreOptions {
  // Borrowed; decides when the file is looked at again.
  Clock* clock = Clock::Real();
  // Least time between two looks at the file's identity.
  int64_t reload_interval_ms = 1'000;
};

class TokenStore {
 public:
  // Reads and parses `path`; its errors are returned (a bad file at start-up
  // is fatal, unlike on reload).
  static absl::StatusOr<std::unique_ptr<TokenStore>> Open(
      const std::string& path, const TokenStoreOptions& options = {});

  // The entry for `token` in the current table (reloading first when due);
  // nullopt when the token is unknown. Returns a copy: the table may be
  // replaced at any time.
  std::optional<TokenEntry> Find(absl::string_view token);

  // Successful reloads after Open (tests, logs).
  int64_t reloads() const;

 private:
  struct FileId {
    off_t size = 0;
    int64_t mtime_ns = 0;
    ino_t inode = 0;
    bool operator==(const FileId& o) const {
      return size == o.size && mtime_ns == o.mtime_ns && inode == o.inode;
    }
  };
  TokenStore(std::string path, const TokenStoreOptions& options);
  static absl::StatusOr<FileId> Stat(const std::string& path);
  void MaybeReloadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  const TokenStoreOptions options_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const TokenTable> table_ ABSL_GUARDED_BY(mu_);
  FileId file_id_ ABSL_GUARDED_BY(mu_);
  int64_t next_check_ms_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t reloads_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace sweepd

#endif  // SWEEPD_COORDINATOR_AUTH_TOKENS_H_
