#include "coordinator/auth_tokens.h"

#include <sys/stat.h>

#include <cerrno>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/hash.h"
#include "common/logging.h"

namespace sweepd {

const char* RoleName(Role role) {
  switch (role) {
    case Role::kAdmin:
      return "admin";
    case Role::kSubmitter:
      return "submitter";
    case Role::kReader:
      return "reader";
    case Role::kWorker:
      return "worker";
  }
  return "?";
}

std::optional<Role> ParseRole(absl::string_view name) {
  for (Role r :
       {Role::kAdmin, Role::kSubmitter, Role::kReader, Role::kWorker}) {
    if (name == RoleName(r)) return r;
  }
  return std::nullopt;
}

namespace {

bool IsLowerHexSha256(absl::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!absl::ascii_isdigit(c) && !(c >= 'a' && c <= 'f')) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<TokenTable> TokenTable::Parse(absl::string_view text,
                                             const std::string& source) {
  TokenTable table;
  absl::flat_hash_set<std::string> names;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    auto bad = [&](absl::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ":", line_no, ": ", what));
    };
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (fields.size() < 3 || fields.size() > 4) {
      return bad(absl::StrCat("expected NAME ROLE SHA256 [cert=IDENTITY], got ",
                              fields.size(), " fields"));
    }
    TokenEntry e;
    e.name = std::string(fields[0]);
    std::optional<Role> role = ParseRole(fields[1]);
    if (!role.has_value()) {
      return bad(absl::StrCat("role '", fields[1],
                              "' is not admin, submitter, reader or worker"));
    }
    e.role = *role;
    if (!IsLowerHexSha256(fields[2])) {
      // The field may be a token pasted by mistake: never echo it.
      return bad(
          "the third field must be the lower-case hex SHA-256 of the token (64 "
          "characters; printf %s \"$TOKEN\" | sha256sum), not the token");
    }
    e.sha256 = std::string(fields[2]);
    if (fields.size() == 4) {
      if (!absl::ConsumePrefix(&fields[3], "cert=") || fields[3].empty()) {
        return bad("the fourth field must be cert=IDENTITY");
      }
      e.cert_identity = std::string(fields[3]);
    }
    if (!names.insert(e.name).second) {
      return bad(absl::StrCat("duplicate name '", e.name, "'"));
    }
    if (table.by_hash_.contains(e.sha256)) {
      return bad(absl::StrCat("the hash of '", e.name,
                              "' is already used by another name"));
    }
    std::string key = e.sha256;
    table.by_hash_.emplace(std::move(key), std::move(e));
  }
  return table;
}

const TokenEntry* TokenTable::Find(absl::string_view token) const {
  auto it = by_hash_.find(Sha256Hex(token));
  return it == by_hash_.end() ? nullptr : &it->second;
}

namespace {

absl::StatusOr<TokenTable> ReadTable(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("--token-file ", path, ": cannot open the file"));
  }
  std::stringstream text;
  text << in.rdbuf();
  return TokenTable::Parse(text.str(), path);
}

}  // namespace

TokenStore::TokenStore(std::string path, const TokenStoreOptions& options)
    : path_(std::move(path)), options_(options) {}

absl::StatusOr<TokenStore::FileId> TokenStore::Stat(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("stat ", path));
  }
  FileId id;
  id.size = st.st_size;
  id.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec;
  id.inode = st.st_ino;
  return id;
}

absl::StatusOr<std::unique_ptr<TokenStore>> TokenStore::Open(
    const std::string& path, const TokenStoreOptions& options) {
  if (options.clock == nullptr) {
    return absl::InvalidArgumentError("TokenStoreOptions.clock is null");
  }
  absl::StatusOr<FileId> id = Stat(path);
  if (!id.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--token-file ", path, ": ", id.status().message()));
  }
  absl::StatusOr<TokenTable> table = ReadTable(path);
  if (!table.ok()) return table.status();
  std::unique_ptr<TokenStore> store(new TokenStore(path, options));
  absl::MutexLock lock(&store->mu_);
  store->table_ = std::make_shared<const TokenTable>(std::move(*table));
  store->file_id_ = *id;
  store->next_check_ms_ = options.clock->NowMs() + options.reload_interval_ms;
  return store;
}

void TokenStore::MaybeReloadLocked() {
  const int64_t now = options_.clock->NowMs();
  if (now < next_check_ms_) return;
  next_check_ms_ = now + options_.reload_interval_ms;
  absl::StatusOr<FileId> id = Stat(path_);
  if (!id.ok()) {
    SWEEPD_LOG(ERROR) << "token file: " << id.status()
                      << "; keeping the tokens loaded before";
    return;
  }
  if (*id == file_id_) return;
  absl::StatusOr<TokenTable> table = ReadTable(path_);
  if (!table.ok()) {
    SWEEPD_LOG(ERROR) << "token file changed but does not parse: "
                      << table.status().message()
                      << "; keeping the tokens loaded before";
    // Looked at again once it changes once more.
    file_id_ = *id;
    return;
  }
  file_id_ = *id;
  table_ = std::make_shared<const TokenTable>(std::move(*table));
  ++reloads_;
  SWEEPD_LOG(INFO) << "token file " << path_ << " reloaded: " << table_->size()
                   << " tokens";
}

std::optional<TokenEntry> TokenStore::Find(absl::string_view token) {
  std::shared_ptr<const TokenTable> table;
  {
    absl::MutexLock lock(&mu_);
    MaybeReloadLocked();
    table = table_;
  }
  const TokenEntry* e = table->Find(token);
  if (e == nullptr) return std::nullopt;
  return *e;
}

int64_t TokenStore::reloads() const {
  absl::MutexLock lock(&mu_);
  return reloads_;
}

}  // namespace sweepd
